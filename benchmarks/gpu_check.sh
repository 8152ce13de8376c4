#!/usr/bin/env bash
# make gpu-check: on a machine with one CUDA GPU and Python 3.11/3.12 + torch >= 2.4 already installed.
# Installs the carried wheels (.gpu/wheels, from `make gpu-prep`) into /tmp/lipsync-site without the
# network when a package is missing, then runs benchmarks/bench_gpu.py. Extra arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SITE=/tmp/lipsync-site
if ! $PY -c "import diffusers, hydra, av, whisper, litdata, deepspeed" 2>/dev/null; then
  if ! ls .gpu/wheels/*.whl >/dev/null 2>&1; then
    echo "gpu-check: error: diffusers/hydra/av/whisper/litdata are missing and .gpu/wheels is empty; run \`make gpu-prep\` on a machine with PyPI access first" >&2
    exit 1
  fi
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu/wheels/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec $PY benchmarks/bench_gpu.py "$@"
