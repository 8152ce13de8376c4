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


class DSMLoss:
    """E[ w(sigma) || D(z + sigma n; sigma, c) - z ||^2 ],  w = 1 / c_out(sigma)^2."""

    def __init__(self, sigma_sampler: LogNormalSigma) -> None:
        self.sigma_sampler = sigma_sampler

    def __call__(self, denoiser: Denoiser, z: Tensor, cond: Mapping[str, Any],
                 generator: torch.Generator | None = None) -> Tensor:
        """Per-sample loss (B,) for clean latents ``z`` (B, T, C, h, w); the caller takes the mean."""
        sigma = self.sigma_sampler(z.shape[0], z.device, generator).to(z.dtype)
        n = torch.randn(z.shape, device=z.device, dtype=z.dtype, generator=generator)
        D = denoiser(z + append_dims(sigma, z.ndim) * n, sigma, cond)
        per_sample = (D.float() - z.float()).pow(2).flatten(1).mean(1)
        return loss_weight(denoiser.precond, sigma.float()) * per_sample
