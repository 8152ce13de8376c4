"""The side-by-side view: the length-matched source on the left, the lip-synced result(s) to its right.

The source is matched to the result's length with the same index map the pipeline uses (truncated, or
played forward and backward), so both panels show the same moment. Panels are scaled down to a web-view
height, and the source panels wait in a disk-backed array in the job folder, so memory stays flat however
long the video is (the backward playback needs random access to source frames).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

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


def label(panel: np.ndarray, text: str) -> np.ndarray:
    """``text`` in the panel's top-left corner, white on a dark band (in place; returns the panel)."""
    scale = max(0.3, panel.shape[0] / 360)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    panel[: h + base + 4, : w + 6] //= 3
    cv2.putText(panel, text, (3, h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def side_by_side(source: str | Path, result: str | Path | Sequence[str | Path], audio: str | Path,
                 output: str | Path, max_height: int = 360, labels: Sequence[str] | None = None) -> Path:
    """Write ``source | result [| result ...]`` as one mp4 carrying the driving audio; returns ``output``.

    Args:
        source: the video the user uploaded (any length).
        result: the lip-synced video (the length of the driving audio), or several (compared models):
            the view lasts as long as the shortest.
        audio: the driving audio file, muxed unchanged (cut to the view's length). (Decoding the result's
            AAC track instead would add the encoder's priming and padding samples, making the view up to
            ~0.1 s longer.)
        output: mp4 path, written atomically; a scratch file is kept beside it while it is built.
        max_height: height of each panel in pixels at most.
        labels: one caption per panel (source first), drawn in each panel's corner; None = none.
    """
    results = [Path(result)] if isinstance(result, (str, Path)) else [Path(r) for r in result]
    if labels is not None and len(labels) != len(results) + 1:
        raise ValueError(f"side_by_side: {len(labels)} labels for {len(results) + 1} panels")
    src, infos = media.probe(source), [media.probe(r) for r in results]
    count = min(info.num_frames for info in infos)
    index = source_indices(src.num_frames, count)
    left = panel_size(src.width, src.height, max_height)
    sizes = [(panel_size(i.width, i.height, left[1])[0], left[1]) for i in infos]  # same height for all
    wave, rate = media.read_audio(audio, sample_rate=None, mono=False)
    wave = wave[..., : int(round(count / infos[0].fps * rate))]
    scratch = Path(output).with_suffix(".source-panels.npy")
    captions = list(labels) if labels is not None else [None] * (len(results) + 1)
    try:
        panels = _source_panels(Path(source), int(index.max()) + 1, left, scratch)
        width = left[0] + sum(w for w, _ in sizes)
        streams = [media.iter_frames(r, stop=count) for r in results]
        with media.VideoWriter(output, infos[0].fps, width, left[1], audio=wave, audio_rate=rate) as out:
            for i, frames in enumerate(zip(*streams)):
                j = index[min(i, len(index) - 1)]
                row = [panels[min(j, len(panels) - 1)].copy(), *(_fit(f, s) for f, s in zip(frames, sizes))]
                row = [label(p, c) if c else p for p, c in zip(row, captions)]
                out.write(np.hstack(row))
    finally:
        scratch.unlink(missing_ok=True)
    return Path(output)
