"""Silence in the driving audio, and what to do with the mouth there (SPEC section 6, ANCHORS).

Every tool users have keeps the lips moving through pauses; the paper itself names long silences as a
limitation (Appendix C). Here a frame is *silent* when the audio around it is quiet, relative to the
speech level of the same track, for at least ``min_duration`` seconds (short gaps between words are
speech). Policies:

- ``"none"``: generate as usual.
- ``"keep"``: keep the original mouth: the edit weight is 0 on silent frames (faded in and out like a
  face-less stretch), so the source frames pass through.
- ``"close"``: the model hears true digital silence there: the 16 kHz copy fed to the audio encoder is
  zeroed on silent frames (room noise and breaths no longer drive the lips). The output audio is
  never touched.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from lipsync.infer.tracking import runs
from lipsync.media import frame_levels_db  # noqa: F401  (the level a frame's silence is judged by)

SilencePolicy = Literal["none", "keep", "close"]
POLICIES = ("none", "keep", "close")


def silent_frames(
    wave: np.ndarray,
    rate: int,
    fps: float,
    num_frames: int,
    threshold_db: float = -35.0,
    floor_db: float = -60.0,
    min_duration: float = 0.3,
) -> np.ndarray:
    """Which video frames fall in silence, ``(num_frames,)`` bool.

    A frame is quiet when its level is ``threshold_db`` below the track's speech level (the 95th
    percentile of frame levels) or under the absolute ``floor_db``; only runs of quiet frames lasting
    at least ``min_duration`` seconds count as silence.
    """
    if threshold_db >= 0:
        raise ValueError(
            f"silence threshold_db is relative to the speech level and must be < 0, got {threshold_db}"
        )
    levels = frame_levels_db(wave, rate, fps, num_frames)
    speech = np.percentile(levels, 95)
    quiet = (levels < speech + threshold_db) | (levels < floor_db)
    silent = np.zeros(num_frames, dtype=bool)
    min_frames = max(1, int(np.ceil(min_duration * fps)))
    for start, stop in runs(quiet):
        if stop - start >= min_frames:
            silent[start:stop] = True
    return silent


def mute_frames(wave: np.ndarray, rate: int, fps: float, silent: np.ndarray) -> np.ndarray:
    """A copy of ``wave`` with the samples of silent frames set to 0 (the model's input for "close")."""
    out = np.array(wave, dtype=np.float32, copy=True)
    for start, stop in runs(silent):
        out[int(round(start * rate / fps)) : int(round(stop * rate / fps))] = 0.0
    return out


def check_policy(policy: str) -> SilencePolicy:
    """``policy`` if it names a silence policy, else a ValueError listing them."""
    if policy not in POLICIES:
        raise ValueError(f"silence policy must be one of {POLICIES}, got {policy!r}")
    return policy  # type: ignore[return-value]
