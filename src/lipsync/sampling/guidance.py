"""Classifier-free guidance with the training condition structure (SPEC section 6), optionally limited to a
sigma interval (Kynkaanniemi et al. 2024, "Applying guidance in a limited interval improves sample and
distribution quality in diffusion models")."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from lipsync.models.conditions import audio_free_conditions, cat_conditions, null_conditions

Denoiser = Callable[[Tensor, Tensor, Mapping[str, Any]], Tensor]


class GuidedDenoiser:
    """Turns ``D(x, sigma, cond)`` into a guided ``D(x, sigma)`` for the samplers.

    One scale (default): ``D_u + scale * (D_c - D_u)``, with the unconditional pass = reference and
    audio dropped, as in training. Two scales (``audio_scale`` set): passes uncond, reference-only and
    full, ``D_u + scale * (D_ref - D_u) + audio_scale * (D_c - D_ref)``. All passes go through the
    network as one batch; ``scale == 1`` without ``audio_scale`` skips guidance (one pass).

    ``interval = (lo, hi)`` guides only where ``lo < sigma <= hi`` (Kynkaanniemi et al. 2024, eq. 5);
    elsewhere the conditional pass runs alone, so a step there costs one pass instead of two (or three).
    ``passes`` counts the network passes made so far per sample (the NFE that FLOPs are counted from).
    """

    def __init__(self, denoiser: Denoiser, cond: Mapping[str, Any], scale: float = 3.0,
                 audio_scale: float | None = None,
                 interval: tuple[float, float] = (0.0, math.inf)) -> None:
        lo, hi = (float(v) for v in interval)
        if not 0 <= lo < hi:
            raise ValueError(f"guidance interval must satisfy 0 <= lo < hi, got ({lo}, {hi})")
        self.denoiser = denoiser
        self.scale = scale
        self.audio_scale = audio_scale
        self.interval = (lo, hi)
        self.cond = dict(cond)
        self.passes = 0
        if audio_scale is not None:
            passes = [null_conditions(cond), audio_free_conditions(cond), dict(cond)]
        elif scale != 1.0:
            passes = [null_conditions(cond), dict(cond)]
        else:
            passes = [dict(cond)]
        self.num_passes = len(passes)
        self.batched_cond = cat_conditions(passes) if len(passes) > 1 else passes[0]

    def guides_at(self, sigma: float) -> bool:
        """Whether a call at noise level ``sigma`` runs the guidance passes."""
        return self.num_passes > 1 and self.interval[0] < sigma <= self.interval[1]

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        b = x.shape[0]
        guided = self.guides_at(float(torch.as_tensor(sigma).reshape(-1)[0]))  # one level per call
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(b)
        if not guided:
            self.passes += 1
            return self.denoiser(x, sigma, self.cond)
        self.passes += self.num_passes
        out = self.denoiser(x.repeat(self.num_passes, *([1] * (x.ndim - 1))), sigma.repeat(self.num_passes),
                            self.batched_cond).split(b)
        if self.num_passes == 2:
            uncond, full = out
            return uncond + self.scale * (full - uncond)
        uncond, ref_only, full = out
        return uncond + self.scale * (ref_only - uncond) + self.audio_scale * (full - ref_only)  # type: ignore[operator]


def network_passes(sigmas: list[float], guided_passes: int = 2,
                   interval: tuple[float, float] = (0.0, math.inf)) -> int:
    """Network passes per sample for denoiser calls at ``sigmas`` (e.g. ``evaluation_sigmas``):
    ``guided_passes`` inside ``interval`` (lo, hi], one outside; what :class:`GuidedDenoiser` counts."""
    lo, hi = interval
    return sum(guided_passes if guided_passes > 1 and lo < s <= hi else 1 for s in sigmas)
