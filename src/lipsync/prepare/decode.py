"""Decode any container FFmpeg reads onto the model's clock: 25 fps video, 16 kHz mono audio.

Both streams are mapped by presentation timestamps, not by frame or sample counts: output frame ``k``
shows the source frame whose timestamp is nearest to ``t0 + k / fps`` (variable frame rates and
29.97 fps sources stay in step), and audio sample ``s`` is the sound at ``t0 + s / sample_rate`` with
``t0`` the first video frame's time (an audio stream that starts later or earlier is shifted to match).
"""

from __future__ import annotations

import os
from typing import Iterator

import av
import numpy as np

from lipsync.media import MODEL_FPS, MediaError, _open


def resampled_frames(
    path: str | os.PathLike, fps: float = MODEL_FPS
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(source_index, source_time, rgb uint8 (H, W, 3))`` for each output frame at ``fps``.

    A source frame is repeated when the source is slower and skipped (never converted) when faster.

    Raises:
        MediaError: unreadable file, no video stream, or a decoding error mid-stream (names the frame).
    """
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or fps)
        k, t0, held = 0, None, None  # held = (index, time, frame) waiting for the next timestamp
        index = -1
        try:
            for index, frame in enumerate(container.decode(stream)):
                t = float(frame.time) if frame.time is not None else index / rate
                if held is None:
                    t0 = t
                else:
                    k = yield from _emit(held, t0, k, fps, until=(held[1] + t) / 2)
                held = (index, t, frame)
        except av.error.FFmpegError as err:  # type: ignore[attr-defined]
            raise MediaError(f"{path}: video stream is corrupt at frame {index + 1} ({err.__class__.__name__})"
                             ) from None
        if held is None:
            raise MediaError(f"{path}: no video frames decoded")
        yield from _emit(held, t0, k, fps, until=held[1] + 0.5 / rate)


def _emit(held: tuple, t0: float, k: int, fps: float, until: float) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield the held frame for every output time before ``until``; return the next output index."""
    index, t, frame = held
    image = None
    while t0 + k / fps < until - 1e-9:
        if image is None:
            image = frame.to_ndarray(format="rgb24")
        yield index, t, image
        k += 1
    return k


def read_audio_aligned(path: str | os.PathLike, t0: float, num_samples: int,
                       sample_rate: int = 16_000) -> np.ndarray:
    """Mono float32 ``(num_samples,)`` audio at ``sample_rate``, sample 0 at time ``t0`` (s).

    Audio before ``t0`` is dropped; silence pads where the audio starts late or ends early.

    Raises:
        MediaError: no audio stream, or a corrupt one.
    """
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{path}: has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks, start = [], None
        try:
            for frame in container.decode(stream):
                if start is None and frame.time is not None:
                    start = float(frame.time)
                chunks.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(frame))
        except av.error.FFmpegError as err:  # type: ignore[attr-defined]
            raise MediaError(f"{path}: audio stream is corrupt ({err.__class__.__name__})") from None
        chunks.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(None))
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise MediaError(f"{path}: audio stream holds no samples")
    audio = np.concatenate(chunks).astype(np.float32)
    shift = int(round(((start if start is not None else t0) - t0) * sample_rate))
    audio = np.concatenate([np.zeros(shift, np.float32), audio]) if shift > 0 else audio[-shift:]
    out = np.zeros(num_samples, np.float32)
    out[:min(num_samples, len(audio))] = audio[:num_samples]
    return out
