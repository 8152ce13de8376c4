"""The batch contract: the one place that says what a training/inference batch holds.

Every stage that makes or reads a batch imports these names. Shapes use B = batch, T = frames,
H, W = training resolution (320 for the paper), A = audio tokens per frame (2 * (2m + 1), 10 for m = 2),
D = audio feature width (384 for Whisper tiny, 1280 for large).

| key            | shape              | dtype / range                                   |
|----------------|--------------------|-------------------------------------------------|
| video          | (B, T, 3, H, W)    | float, RGB in [-1, 1]                           |
| mask           | (B, T, 1, H, W)    | float, 1 inside the edit rectangle, 0 outside   |
| masked_video   | (B, T, 3, H, W)    | float, video * (1 - mask)                       |
| ref            | (B, 3, H, W)       | float, RGB in [-1, 1], a frame of the source video |
| ref_mask       | (B, 1, H, W)       | float, the mask of that reference frame         |
| audio_feats    | (B, T, A, D)       | float, per-frame window of audio-encoder steps  |
| key            | list[str] (B)      | sample identity "<video_id>/<clip>/<start>"     |

Optional cached encodings (issue: cached features), equal to what the frozen encoders compute:

| latents        | (B, T, C, h, w)    | VAE latents of video, already scaled            |
| masked_latents | (B, T, C, h, w)    | VAE latents of masked_video, already scaled     |
"""

from __future__ import annotations

from typing import Mapping

import torch

VIDEO = "video"
MASK = "mask"
MASKED_VIDEO = "masked_video"
REF = "ref"
REF_MASK = "ref_mask"
AUDIO_FEATS = "audio_feats"
KEY = "key"
LATENTS = "latents"
MASKED_LATENTS = "masked_latents"

REQUIRED_KEYS = (VIDEO, MASK, MASKED_VIDEO, REF, REF_MASK, AUDIO_FEATS)


# The pixel range pair: frames are [0, 255] (uint8 on disk, float after decoding), the model sees [-1, 1].
def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """``[0, 255]`` pixels (any dtype) -> float ``[-1, 1]``, the range of ``video`` and ``ref``."""
    return pixels.float().div(127.5).sub(1)


def to_pixel_range(video: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` model output -> ``[0, 255]`` (clamped first; same dtype, not rounded)."""
    return video.clamp(-1, 1).add(1).mul(127.5)


def validate_batch(batch: Mapping[str, object]) -> None:
    """Raise a ValueError naming the first key whose presence or shape breaks the contract."""
    missing = [k for k in REQUIRED_KEYS if k not in batch]
    if missing:
        raise ValueError(f"batch is missing keys {missing}; expected {list(REQUIRED_KEYS)}")
    video = batch[VIDEO]
    if not isinstance(video, torch.Tensor) or video.ndim != 5 or video.shape[2] != 3:
        raise ValueError(f"batch['video'] must be (B, T, 3, H, W), got {getattr(video, 'shape', type(video))}")
    b, t, _, h, w = video.shape
    expected = {
        MASK: (b, t, 1, h, w),
        MASKED_VIDEO: (b, t, 3, h, w),
        REF: (b, 3, h, w),
        REF_MASK: (b, 1, h, w),
    }
    for key, shape in expected.items():
        got = tuple(batch[key].shape)  # type: ignore[union-attr]
        if got != shape:
            raise ValueError(f"batch['{key}'] must be {shape} to match video {tuple(video.shape)}, got {got}")
    feats = batch[AUDIO_FEATS]
    if feats.ndim != 4 or tuple(feats.shape[:2]) != (b, t):  # type: ignore[union-attr]
        raise ValueError(f"batch['audio_feats'] must be (B={b}, T={t}, A, D), got {tuple(feats.shape)}")  # type: ignore[union-attr]
