"""What the app offers from the local disk: checkpoints to choose from and example (video, audio) pairs.

The shipped models are offered first: the showcase model (``models/showcase``, the default choice; the
synthetic world) and the real-face model (``models/realface``, real talking heads).

Both lists are read from the file system each time the page loads, so a model that ``make demo`` or a
training run writes while the app is up shows up on the next reload without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lipsync import assets
from lipsync.infer import checkpoint

SHIPPED_MODEL = assets.ROOT / "models" / "showcase"  # the committed showcase model (README): the default
REALFACE_MODEL = assets.ROOT / "models" / "realface"  # the committed real-face model (models/realface/README.md)
SHIPPED_MODELS = (SHIPPED_MODEL, REALFACE_MODEL)
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
AUDIO_SUFFIXES = (".wav", ".m4a", ".mp3", ".flac", ".ogg", ".aac")


@dataclass(frozen=True)
class Example:
    """One ready-made job on the page: a face video and the speech that should drive it."""

    name: str
    video: Path
    audio: Path


def is_pipeline_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a valid ``save_pretrained`` pipeline config (weights are checked on load)."""
    try:
        checkpoint.read_config(folder)
    except checkpoint.CheckpointError:
        return False
    return True


def find_checkpoints(root: Path) -> dict[str, Path]:
    """Every ``save_pretrained`` pipeline folder under ``root``, keyed by its path relative to ``root``.

    Other ``config.json`` files (the Whisper asset, Hugging Face folders) are skipped by their format
    field. Folders are listed newest first, so the model just trained is the default choice.

    Args:
        root: folder scanned recursively (e.g. ``outputs/``); a missing folder means no checkpoints.
    """
    if not root.is_dir():
        return {}
    folders = [p.parent for p in root.rglob(checkpoint.CONFIG_NAME) if is_pipeline_folder(p.parent)]
    folders.sort(key=lambda d: (-(d / checkpoint.CONFIG_NAME).stat().st_mtime, str(d)))
    return {(str(d.relative_to(root)) if d != root else d.name): d for d in folders}


def _audio_beside(video: Path) -> Path | None:
    """The driving audio stored next to a video under the same stem (``clip.mp4`` + ``clip.wav``)."""
    for suffix in AUDIO_SUFFIXES:
        candidate = video.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def demo_examples(demo_dir: Path) -> list[Example]:
    """Pairs the demo left on disk: each video under ``demo_dir`` with a same-stem audio file beside it."""
    if not demo_dir.is_dir():
        return []
    videos = sorted(p for p in demo_dir.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    pairs = [(v, _audio_beside(v)) for v in videos]
    return [Example(f"demo: {v.relative_to(demo_dir).with_suffix('')}", v, a) for v, a in pairs
            if a is not None]


def packaged_example(assets_dir: Path = assets.DEFAULT_DIR) -> list[Example]:
    """The real talking-face clip and real speech that ship with the package (empty if not unpacked)."""
    try:
        video = assets.asset_path("carphone_pristine.mp4", assets_dir)
        audio = assets.asset_path("sample.wav", assets_dir)
    except FileNotFoundError:
        return []
    return [Example("real: carphone + pyannote speech", video, audio)]


def find_examples(demo_dir: Path, assets_dir: Path = assets.DEFAULT_DIR) -> list[Example]:
    """The packaged real example first, then whatever the demo has written."""
    return packaged_example(assets_dir) + demo_examples(demo_dir)
