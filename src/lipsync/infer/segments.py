"""Segmented generation: 16-frame windows that share 4 frames with their neighbour (paper Appendix B).

Three pieces, all independent of the model:

- :func:`plan_segments` cuts ``[0, N)`` into windows of ``length`` frames stepping by ``length - overlap``;
  the last window is shifted back so it ends at ``N`` and keeps the full length the model was trained on
  (it then shares more than ``overlap`` frames with the one before).
- :func:`frame_noise` draws the initial noise *per output frame*, from a generator seeded by
  ``(seed, frame index)``. A frame shared by two windows therefore starts both of its ODE solves from
  the same noise; with the deterministic sampler and the same audio window, the two estimates differ
  only through their temporal context, so the cross-fade below blends two close images instead of two
  unrelated mouths (no ghosting). It also makes the result independent of how the video is cut.
- :class:`OverlapBlender` cross-fades each window with the previous one over their shared frames
  (linear weights) and releases frames as soon as no later window can touch them, so only one window of
  results is ever held.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Segment:
    """Output frames ``[start, stop)``; ``shared`` of them (at its start) also belong to the previous one."""

    start: int
    stop: int
    shared: int

    def __len__(self) -> int:
        return self.stop - self.start


def plan_segments(num_frames: int, length: int = 16, overlap: int = 4) -> list[Segment]:
    """Windows covering ``[0, num_frames)`` (paper: 16 frames, 4 overlapping).

    A video shorter than ``length`` is one window of its own length.
    """
    if length < 1 or not 0 <= overlap < length:
        raise ValueError(
            f"segment length must be >= 1 and overlap in [0, length), got {length} and {overlap}"
        )
    if num_frames < 1:
        raise ValueError(f"need at least one frame, got {num_frames}")
    if num_frames <= length:
        return [Segment(0, num_frames, 0)]
    stride = length - overlap
    starts = list(range(0, num_frames - length, stride)) + [num_frames - length]
    segments, prev_stop = [], 0
    for start in starts:
        segments.append(Segment(start, start + length, max(0, prev_stop - start)))
        prev_stop = start + length
    return segments


def segment_boundaries(segments: list[Segment], num_frames: int) -> np.ndarray:
    """(num_frames - 1,) bool: transition t -> t + 1 changes the set of windows that made the frame.

    With no overlap that is each window's first frame; with overlap, both ends of every cross-fade.
    """
    member = np.zeros((num_frames, len(segments)), bool)
    for k, seg in enumerate(segments):
        member[seg.start:seg.stop, k] = True
    return (member[1:] != member[:-1]).any(axis=1)


def blend_weights(shared: int) -> np.ndarray:
    """Weight of the *newer* window on each of ``shared`` frames: ``(k + 1) / (shared + 1)``, rising linearly.

    The older window gets ``1 - w``; neither weight is ever 0 or 1 inside the overlap, so both
    estimates contribute and the ramp continues the full-weight frames on each side.
    """
    return (np.arange(shared, dtype=np.float32) + 1) / (shared + 1)


def frame_noise(
    seed: int,
    frames: range | list[int],
    shape: tuple[int, ...],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal noise ``(len(frames), *shape)`` for output frames, one seeded draw per frame."""
    noise = []
    for t in frames:
        # (seed, t) -> one 63-bit seed: distinct for every frame of every seed in practice.
        g = torch.Generator().manual_seed((seed * 1_000_003 + int(t)) % (2**63 - 1))
        noise.append(torch.randn(shape, generator=g, dtype=torch.float32))
    return torch.stack(noise).to(device=device, dtype=dtype)


class OverlapBlender:
    """Cross-fades consecutive windows over their shared frames and releases finished frames.

    Results are arrays ``(len(segment), ...)`` (crops of the segment's frames) or ``None`` for a window
    that was not generated (no frame of it is edited, so nothing of it needs blending).
    """

    def __init__(self) -> None:
        self._carry: np.ndarray | None = None  # results of the previous window not yet released
        self._carry_start = 0

    def push(
        self, segment: Segment, result: np.ndarray | None, next_start: int | None
    ) -> tuple[int, int, np.ndarray | None]:
        """Add one window's results; return ``(start, stop, frames)`` that are final now.

        Args:
            segment: the window the results belong to (windows must come in order).
            result: ``(len(segment), ...)`` float results or ``None``.
            next_start: start of the following window, ``None`` for the last one.

        Returns:
            The released frame range ``[start, stop)`` and its blended results (``None`` when the
            range has no generated result).
        """
        if result is not None and len(result) != len(segment):
            raise ValueError(f"segment {segment} has {len(segment)} frames but {len(result)} results")
        blended = self._blend(segment, result)
        release_stop = segment.stop if next_start is None else next_start
        n = release_stop - segment.start
        self._carry = None if blended is None else blended[n:]
        self._carry_start = release_stop
        return segment.start, release_stop, None if blended is None else blended[:n]

    def _blend(self, segment: Segment, result: np.ndarray | None) -> np.ndarray | None:
        if result is None or self._carry is None or segment.shared == 0:
            return result
        if self._carry_start != segment.start or len(self._carry) != segment.shared:
            raise ValueError(
                f"segment {segment} does not continue the previous one (carry starts at "
                f"{self._carry_start} with {len(self._carry)} frames)"
            )
        w = blend_weights(segment.shared).reshape(-1, *([1] * (result.ndim - 1)))
        out = result.astype(np.float32, copy=True)
        out[: segment.shared] = w * result[: segment.shared] + (1 - w) * self._carry
        return out
