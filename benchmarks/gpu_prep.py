"""Everything ``make gpu-check`` needs on a GPU machine that cannot download: ``.gpu/`` (git-ignored).

    python benchmarks/gpu_prep.py [--wheels-only] [--no-deepspeed]     # make gpu-prep / make gpu-wheels

- ``.gpu/wheels``: the packages lipsync imports that a plain CUDA image lacks (diffusers, hydra-core,
  omegaconf, av, openai-whisper, litdata and what they import; DeepSpeed for ``make gpu-check``'s
  ``train_deepspeed`` unless --no-deepspeed), as manylinux x86_64 / CPython 3.12 wheels, built here from
  sdists where PyPI has no wheel. botocore is kept without its AWS service
  models (litdata imports it; local shards never call S3), which keeps the folder under 60 MB.
- ``.gpu/video``: a 10 s synthetic-world video at 256 px with its true landmarks file, so the full-size
  dub needs no face model, and a 2 s one (``synth_00001``) that ``dub_compile`` dubs twice.
- ``.gpu/showcase``: the showcase model's training shards (``experiment=showcase``, issue 18): 28 synthetic
  identities x 8 s (seed 0, the first of ``make demo``'s training identities) curated as ``make demo`` does
  but at 32 px crops; 42 MB, so with the wheels the GPU needs for training (no av: 15 MB) it fits one
  64 MiB device call (leave DeepSpeed's wheels, ``deepspeed``, ``pydantic*``, ``annotated_types``,
  ``typing_inspection`` and ``hjson``, out of that call as ``av``).

The machine then installs the folder offline (``benchmarks/gpu_check.sh``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from lipsync.assets import ROOT

GPU_DIR = ROOT / ".gpu"
MAX_MB = 60
# Wheels on PyPI for manylinux x86_64 / cp312 (or pure Python).
BINARY = ["diffusers==0.42.1", "hydra-core==1.3.8", "omegaconf==2.3.0", "av==18.1.0", "more-itertools",
          "importlib-metadata", "litdata==0.2.76", "boto3", "botocore", "s3transfer", "jmespath"]  # obstore: optional in litdata
# Only an sdist on PyPI: built here into pure-Python wheels.
SOURCE = ["antlr4-python3-runtime==4.9.3", "openai-whisper==20250625"]
# DeepSpeed (4.8 MB more; --no-deepspeed leaves it out): built without its JIT ops (DS_BUILD_OPS=0; ZeRO-2
# with torch's AdamW needs none), its imports the CUDA image lacks, pydantic with the exact compiled core it
# pins. The CUDA image has DeepSpeed's other needs (ninja, msgpack, py-cpuinfo, psutil, einops, nvidia-ml-py).
DEEPSPEED = "deepspeed==0.19.8"
DEEPSPEED_WITH_DEPS = ["pydantic>=2", "hjson"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "-q", "--disable-pip-version-check"], check=True)


def trim_botocore(folder: Path) -> None:
    """Rewrite the botocore wheel without ``botocore/data/<service>/`` except s3 and sts."""
    (wheel,) = folder.glob("botocore-*.whl")
    with tempfile.TemporaryDirectory() as tmp:
        trimmed = Path(tmp) / wheel.name
        with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(trimmed, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                parts = item.filename.split("/")
                if parts[:2] == ["botocore", "data"] and len(parts) > 3 and parts[2] not in ("s3", "sts"):
                    continue
                dst.writestr(item, src.read(item))
        shutil.move(trimmed, wheel)


def wheels(folder: Path, deepspeed: bool = True) -> float:
    """Download and build the wheels into ``folder``; returns its size in MB."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    pip("download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
        *platforms, "-d", str(folder), *BINARY)
    pip("wheel", "--no-deps", "-w", str(folder), *SOURCE)
    if deepspeed:
        pip("download", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", *platforms,
            "-d", str(folder), *DEEPSPEED_WITH_DEPS)
        for extra in folder.glob("typing_extensions-*.whl"):  # the CUDA image has it; one version only
            extra.unlink()
        os.environ["DS_BUILD_OPS"] = "0"
        pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(folder), DEEPSPEED)
    trim_botocore(folder)
    mb = sum(f.stat().st_size for f in folder.glob("*.whl")) / 1e6
    if mb > MAX_MB:
        raise SystemExit(f"gpu_prep: error: {folder} holds {mb:.0f} MB of wheels, over the {MAX_MB} MB limit")
    return mb


def video(folder: Path, seconds: float = 10.0, size: int = 256, index: int = 0) -> Path:
    """A synthetic-world talking face with its landmarks file (lipsync.synth): ``synth_{index:05d}.mp4``."""
    from lipsync.synth.corpus import synth_sample, write_sample

    folder.mkdir(parents=True, exist_ok=True)
    return write_sample(synth_sample(seed=7, index=index, seconds=seconds, size=size), folder, seed=7)


SHOWCASE_IDENTITIES = 28


def showcase_shards(folder: Path, identities: int = SHOWCASE_IDENTITIES) -> Path:
    """Render the first ``identities`` of ``make demo``'s training world (seed 0; the held-out pairs are seed
    1000) and curate them like ``make demo`` (conf/demo.yaml), at 32 px crops. Runs skip finished videos."""
    from omegaconf import OmegaConf

    from lipsync.synth.corpus import render_corpus

    corpus = folder / "corpus"
    render_corpus(corpus, identities, 8.0, 128, seed=0, workers=2)
    demo = OmegaConf.load(ROOT / "conf" / "demo.yaml")
    overrides = [o for o in OmegaConf.to_container(demo.prepare_overrides, resolve=False)
                 if not o.startswith(("crop.resolution=", "+encoders="))]
    whisper = ROOT / "assets" / "whisper-tiny.en.pt"
    encoders = ("+encoders={_target_: lipsync.prepare.curate.Encoders, _partial_: true, audio: {_target_: "
                f"lipsync.models.audio.WhisperAudioEncoder.from_checkpoint, path: {whisper}}}}}")
    subprocess.run([sys.executable, "-m", "lipsync.prepare", f"input={corpus}", f"output={folder}", "progress=false",
                    "crop.resolution=32", *overrides, encoders], check=True)
    shutil.rmtree(folder / "staging", ignore_errors=True)
    return folder / "shards"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels-only", action="store_true")
    parser.add_argument("--no-deepspeed", action="store_true", help="leave DeepSpeed's 4.8 MB of wheels out")
    parser.add_argument("--showcase-only", metavar="FOLDER", default=None,
                        help="only the showcase shards, into FOLDER (the CPU stage 4 of models/showcase: "
                             "--showcase-only outputs/showcase/stage4 --identities 320)")
    parser.add_argument("--identities", type=int, default=SHOWCASE_IDENTITIES,
                        help=f"showcase identities (default {SHOWCASE_IDENTITIES}: what fits one device call)")
    args = parser.parse_args()
    if args.showcase_only:
        print(f"gpu_prep: showcase shards {showcase_shards(Path(args.showcase_only), args.identities)}")
        return
    mb = wheels(GPU_DIR / "wheels", not args.no_deepspeed)
    print(f"gpu_prep: {len(list((GPU_DIR / 'wheels').glob('*.whl')))} wheels, {mb:.1f} MB in {GPU_DIR / 'wheels'}")
    if not args.wheels_only:
        print(f"gpu_prep: input videos {video(GPU_DIR / 'video')}, {video(GPU_DIR / 'video', 2.0, index=1)}")
        print(f"gpu_prep: showcase shards {showcase_shards(GPU_DIR / 'showcase', args.identities)}")


if __name__ == "__main__":
    main()
