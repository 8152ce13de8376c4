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

SilencePolicy = Literal["none", "keep", "close"]
POLICIES = ("none", "keep", "close")


def frame_levels_db(
    wave: np.ndarray, rate: int, fps: float, num_frames: int, window_s: float = 0.08
) -> np.ndarray:
    """RMS level in dBFS of the audio around each video frame, ``(num_frames,)``.

    Frame ``t`` is centred at ``(t + 0.5) / fps``; the window spans ``window_s`` seconds (beyond the end
    of the audio counts as silence).
    """
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    power = np.concatenate([[0.0], np.cumsum(wave * wave)])  # prefix sums: O(1) per window
    centre = (np.arange(num_frames) + 0.5) / fps
    half = window_s / 2
    lo = np.clip(np.round((centre - half) * rate).astype(np.int64), 0, len(wave))
    hi = np.clip(np.round((centre + half) * rate).astype(np.int64), 0, len(wave))
    n = max(1, int(round(window_s * rate)))
    mean_power = (power[hi] - power[lo]) / n
    return 10.0 * np.log10(np.maximum(mean_power, 1e-12))


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
