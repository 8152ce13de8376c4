"""Denoising score matching loss with log-normal sigma sampling (SPEC section 2, EDM eq. 2/8)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from lipsync.models.denoiser import Denoiser
from lipsync.models.precond import append_dims, loss_weight


class LogNormalSigma:
    """ln(sigma) ~ N(P_mean, P_std^2); SVD's high-resolution fine-tuning used P_mean=0.7, P_std=1.6."""

    def __init__(self, P_mean: float = 0.7, P_std: float = 1.6) -> None:
        if P_std <= 0:
            raise ValueError(f"P_std must be > 0, got {P_std}")
        self.P_mean = P_mean
        self.P_std = P_std

    def __call__(self, n: int, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> Tensor:
        """(n,) noise levels."""
        return (self.P_mean + self.P_std * torch.randn(n, device=device, generator=generator)).exp()


def motion_weights(z: Tensor, strength: float) -> Tensor:
    """Per-position loss weights (B, 1, 1, h, w) that grow with how much the clean clip moves there.

    ``1 + strength * s / mean(s)``, with ``s`` the standard deviation over the clip's frames (averaged over
    channels) and the mean taken per sample over the frame. In a tracked face crop the positions that
    move are the lips and the jaw, so the mouth weighs more than the still cheeks around it, by the same
    rule at any crop size; a still clip gets weight 1 everywhere. Not in the paper (its loss is uniform).
    """
    s = z.float().std(dim=1, keepdim=True).mean(dim=2, keepdim=True)          # (B, 1, 1, h, w)
    s = s / s.mean(dim=(-2, -1), keepdim=True).clamp_min(1e-8)
    return 1.0 + strength * s


class DSMLoss:
    """E[ w(sigma) || D(z + sigma n; sigma, c) - z ||^2 ],  w = 1 / c_out(sigma)^2.

    ``motion_weight > 0`` replaces the plain mean over positions by a mean weighted with
    :func:`motion_weights` (normalised so the weights average to 1 per sample): a lip-sync emphasis for
    small pixel-space models whose mouth is a few percent of the crop. 0 (default) is the paper's loss.
    """

    def __init__(self, sigma_sampler: LogNormalSigma, motion_weight: float = 0.0) -> None:
        if motion_weight < 0:
            raise ValueError(f"motion_weight must be >= 0, got {motion_weight}")
        self.sigma_sampler = sigma_sampler
        self.motion_weight = float(motion_weight)

    def __call__(self, denoiser: Denoiser, z: Tensor, cond: Mapping[str, Any],
                 generator: torch.Generator | None = None) -> Tensor:
        """Per-sample loss (B,) for clean latents ``z`` (B, T, C, h, w); the caller takes the mean."""
        sigma = self.sigma_sampler(z.shape[0], z.device, generator).to(z.dtype)
        n = torch.randn(z.shape, device=z.device, dtype=z.dtype, generator=generator)
        D = denoiser(z + append_dims(sigma, z.ndim) * n, sigma, cond)
        err = (D.float() - z.float()).pow(2)
        if self.motion_weight > 0 and z.shape[1] > 1:
            w = motion_weights(z, self.motion_weight)
            err = err * (w / w.mean(dim=(-2, -1), keepdim=True))
        per_sample = err.flatten(1).mean(1)
        return loss_weight(denoiser.precond, sigma.float()) * per_sample
