"""Match the video's length to the driving audio (paper Appendix B, SPEC section 6).

The output has exactly as many frames as the audio lasts at the source frame rate. A longer video is
truncated; a shorter one is played forward, then backward, then forward again ("ping-pong"). At each
turn the playback would reverse in a single frame (velocity +1 to -1), which reads as a jolt; the
turns are rounded so the playback decelerates, stops and accelerates back over ``junction`` frames
(a Huber-rounded triangle wave). Everything here is an index map: no frame is decoded.
"""

from __future__ import annotations

import numpy as np


def num_output_frames(audio_samples: int, audio_rate: int, fps: float) -> int:
    """Frames of the output video: the audio's duration at the source frame rate, to the nearest frame."""
    if audio_samples <= 0:
        raise ValueError(f"the driving audio holds no samples ({audio_samples}); give a non-empty audio file")
    return max(1, int(round(audio_samples * float(fps) / audio_rate)))


def _soft_abs(u: np.ndarray, k: float) -> np.ndarray:
    """|u| with its corner replaced by a parabola over |u| < k (C1-continuous, value k/2 at 0)."""
    a = np.abs(u)
    return np.where(a < k, u * u / (2 * k) + k / 2, a)


def source_positions(num_source: int, num_output: int, junction: float = 4.0) -> np.ndarray:
    """Continuous source position of every output frame, ``(num_output,)`` float in ``[0, num_source - 1]``.

    Forward playback is the identity; beyond the source's end the position follows a triangle wave of
    period ``2 (num_source - 1)`` whose turns (every corner except the start) are rounded over
    ``junction`` frames on each side (rounded down to an even number).
    """
    if num_source < 1 or num_output < 1:
        raise ValueError(f"need at least one source and one output frame, got {num_source} and {num_output}")
    i = np.arange(num_output, dtype=np.float64)
    period = num_source - 1
    if num_output <= num_source or period == 0:
        return np.minimum(i, period)
    # An even k puts the turn's apex (k/2 frames short of the end) on a whole frame, so rounding the
    # positions never shows a one-frame blip (x, x+1, x) at the top of the curve.
    k = float(2 * int(min(junction, period / 2) // 2))
    corner = np.round(i / period)  # index of the nearest turn (0 = the start, which is not a junction)
    u = i - corner * period  # signed distance to that turn
    top = corner % 2 == 1  # odd turns are at the last frame, even turns at the first
    dist = _soft_abs(u, k) if k > 0 else np.abs(u)
    dist = np.where(corner == 0, np.abs(u), dist)
    return np.where(top, period - dist, dist)


def source_indices(num_source: int, num_output: int, junction: float = 4.0) -> np.ndarray:
    """Source frame index of every output frame, ``(num_output,)`` int64 (positions rounded)."""
    return np.rint(source_positions(num_source, num_output, junction)).astype(np.int64)
