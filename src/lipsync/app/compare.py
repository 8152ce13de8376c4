"""The side-by-side view: the length-matched source on the left, the lip-synced result on the right.

The source is matched to the result's length with the same index map the pipeline uses (truncated, or
played forward and backward), so both panels show the same moment. Panels are scaled down to a web-view
height, and the source panels wait in a disk-backed array in the job folder, so memory stays flat however
long the video is (the backward playback needs random access to source frames).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lipsync import media
from lipsync.infer.lengths import source_indices


def panel_size(width: int, height: int, max_height: int) -> tuple[int, int]:
    """``(width, height)`` of a panel: the frame scaled to at most ``max_height`` rows, both even (H.264)."""
    scale = min(1.0, max_height / height)
    w, h = max(2, round(width * scale)), max(2, round(height * scale))
    return w + w % 2, h + h % 2


def _fit(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3)`` uint8 frame resized to ``size = (w, h)`` (area filter when shrinking)."""
    if (frame.shape[1], frame.shape[0]) == size:
        return frame
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _source_panels(source: Path, count: int, size: tuple[int, int], scratch: Path) -> np.ndarray:
    """The first ``count`` source frames as panels, ``(count, h, w, 3)`` uint8 in a memory-mapped file."""
    panels = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.uint8, shape=(count, size[1], size[0], 3))
    for i, frame in enumerate(media.iter_frames(source, stop=count)):
        panels[i] = _fit(frame, size)
    return panels


def side_by_side(source: str | Path, result: str | Path, audio: str | Path, output: str | Path,
                 max_height: int = 360) -> Path:
    """Write ``source | result`` as one mp4 carrying the driving audio; returns ``output``.

    Args:
        source: the video the user uploaded (any length).
        result: the lip-synced video (the length of the driving audio).
        audio: the driving audio file, muxed unchanged. (Decoding the result's AAC track instead would add
            the encoder's priming and padding samples, making the view up to ~0.1 s longer.)
        output: mp4 path, written atomically; a scratch file is kept beside it while it is built.
        max_height: height of each panel in pixels at most.
    """
    src, res = media.probe(source), media.probe(result)
    index = source_indices(src.num_frames, res.num_frames)
    left = panel_size(src.width, src.height, max_height)
    right = panel_size(res.width, res.height, left[1])
    right = (right[0], left[1])  # same height even if the result's aspect differs
    wave, rate = media.read_audio(audio, sample_rate=None, mono=False)
    scratch = Path(output).with_suffix(".source-panels.npy")
    try:
        panels = _source_panels(Path(source), int(index.max()) + 1, left, scratch)
        width = left[0] + right[0]
        with media.VideoWriter(output, res.fps, width, left[1], audio=wave, audio_rate=rate) as out:
            for i, frame in enumerate(media.iter_frames(result)):
                j = index[min(i, len(index) - 1)]
                out.write(np.hstack([panels[min(j, len(panels) - 1)], _fit(frame, right)]))
    finally:
        scratch.unlink(missing_ok=True)
    return Path(output)
