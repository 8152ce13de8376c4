"""The mouth opening a soundtrack implies, from the sound alone (for ``options.face=speaker``).

``speaker`` asks which face's mouth moves with the source's own sound. Loudness implies little about a
real mouth: on the realfaces corpus's tuning clips the mouth opening correlated with the loudness at
r = 0.08 (mean over clips), and with this predictor's output at 0.32 (each clip predicted by a fit that
never saw it, both curves detrended; ``bench_results/mouth_from_audio.json``). The predictor is a ridge
regression (closed form) from frozen Whisper tiny.en features to the opening of
:func:`lipsync.data.face_tracks.mouth_opening`, z-scored per clip:

- features: the encoder's block 3 of 4 (``WHISPER_LAYER``: it predicted better than the encoder's output,
  0.32 vs 0.28), the two 20 ms steps under each 25 fps frame averaged, for the frame and one either side
  (``CONTEXT``), so ``(2 * CONTEXT + 1) * 384`` numbers per frame; any video rate reads the steps under
  its own frames (:func:`lipsync.models.audio.audio_windows`);
- the weights ship beside this file (``mouth_from_audio.npz``), fitted by
  ``benchmarks/train_mouth_from_audio.py`` on the tuning people of the realfaces corpus only (the split's
  held-out people never).

The output is on the z-scored scale (mean 0, unit variance over a clip); only its shape over time matters
to ``speaker``, which correlates it with each face's measured opening.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from lipsync.media import MODEL_FPS, atomic_path
from lipsync.models.audio import WhisperAudioEncoder, audio_windows
from lipsync.models.whisper_convert import ensure_whisper_tiny_en

WHISPER_LAYER = -2  # block 3 of tiny.en's 4 (index into [block_1, block_2, block_3, ln_post(block_4)])
CONTEXT = 1  # frames either side of each frame
WEIGHTS = Path(__file__).with_name("mouth_from_audio.npz")


@dataclass(frozen=True)
class MouthFromAudio:
    """A fitted ridge map from :func:`frame_features` to the z-scored mouth opening.

    Attributes:
        mean: (D,) feature means over the training frames.
        scale: (D,) their standard deviations (features are standardised before the weights apply).
        weights: (D,) the ridge weights.
        trained_on: names of the training clips (for the record).
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    trained_on: tuple[str, ...] = field(default=())

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """``(N, D)`` frame features -> ``(N,)`` expected opening (z-scored scale)."""
        return ((features - self.mean) / self.scale) @ self.weights

    @classmethod
    def fit(cls, features: Sequence[np.ndarray], openings: Sequence[np.ndarray], alpha: float = 10.0,
            names: Sequence[str] = ()) -> "MouthFromAudio":
        """Ridge regression, closed form: ``w = (X'X + alpha * n * I)^-1 X'y`` on standardised features.

        Args:
            features: per clip ``(N_i, D)``.
            openings: per clip ``(N_i,)`` measured openings (NaN where no face: those frames are left out);
                each clip is z-scored first, so a wide mouth and a narrow one weigh alike.
            alpha: ridge strength per frame (10 was best of 3, 10, 30 in leave-one-clip-out fits).
            names: the clips' names, kept in :attr:`trained_on`.
        """
        y = np.concatenate([(o - np.nanmean(o)) / (np.nanstd(o) + 1e-9) for o in openings])
        x = np.concatenate(features).astype(np.float64)
        keep = np.isfinite(y)
        x, y = x[keep], y[keep]
        mean, scale = x.mean(0), x.std(0) + 1e-6
        xs = (x - mean) / scale
        weights = np.linalg.solve(xs.T @ xs + alpha * len(y) * np.eye(x.shape[1]), xs.T @ y)
        return cls(mean, scale, weights, tuple(names))

    def save(self, path: str | os.PathLike = WEIGHTS) -> Path:
        """Write the weights (float32) atomically."""
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, mean=self.mean.astype(np.float32), scale=self.scale.astype(np.float32),
                     weights=self.weights.astype(np.float32), trained_on=np.array(self.trained_on))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike = WEIGHTS) -> "MouthFromAudio":
        """Read what :meth:`save` wrote."""
        with np.load(path) as z:
            return cls(z["mean"], z["scale"], z["weights"], tuple(str(n) for n in z["trained_on"]))


@functools.lru_cache(maxsize=1)
def _encoder() -> WhisperAudioEncoder:
    return WhisperAudioEncoder.from_checkpoint(ensure_whisper_tiny_en(), layers=(WHISPER_LAYER,))


def frame_features(wave: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """``(num_frames, (2 * CONTEXT + 1) * 384)`` Whisper features of a 16 kHz mono ``wave`` per video frame:
    for the frame and ``CONTEXT`` frames either side, the mean of the encoder steps under it (zeros past
    the ends)."""
    with torch.no_grad():
        steps = _encoder()(np.asarray(wave, np.float32).reshape(-1))[0]
    windows = audio_windows(steps, np.arange(num_frames), fps, m=CONTEXT, model_fps=MODEL_FPS)
    per_frame = windows.reshape(num_frames, 2 * CONTEXT + 1, -1, windows.shape[-1]).mean(2)
    return per_frame.reshape(num_frames, -1).numpy().astype(np.float64)


@functools.lru_cache(maxsize=1)
def shipped() -> MouthFromAudio:
    """The predictor shipped beside this module."""
    return MouthFromAudio.load(WEIGHTS)


def expected_opening(wave: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """``(num_frames,)`` the mouth opening ``wave`` (16 kHz mono) implies per video frame (z-scored scale)."""
    return shipped()(frame_features(wave, fps, num_frames))
