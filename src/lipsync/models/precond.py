"""Network preconditioning: how the raw net F is wrapped into the denoiser D (SPEC section 2).

D(x; sigma, c) = c_skip(sigma) * x + c_out(sigma) * F(c_in(sigma) * x, c_noise(sigma), c)
"""

from __future__ import annotations


import torch
from torch import Tensor


class EDMPrecond:
    """Standard EDM scaling (Karras et al. 2022, Table 1), for from-scratch runs; sigma_data = 0.5."""

    def __init__(self, sigma_data: float = 0.5) -> None:
        self.sigma_data = sigma_data

    # EDM Table 1: c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)
    def c_skip(self, sigma: Tensor) -> Tensor:
        return self.sigma_data**2 / (sigma**2 + self.sigma_data**2)

    # EDM Table 1: c_out = sigma * sigma_data / sqrt(sigma^2 + sigma_data^2)
    def c_out(self, sigma: Tensor) -> Tensor:
        return sigma * self.sigma_data / (sigma**2 + self.sigma_data**2).sqrt()

    # EDM Table 1: c_in = 1 / sqrt(sigma^2 + sigma_data^2)
    def c_in(self, sigma: Tensor) -> Tensor:
        return (sigma**2 + self.sigma_data**2).rsqrt()

    # EDM Table 1: c_noise = ln(sigma) / 4
    def c_noise(self, sigma: Tensor) -> Tensor:
        return 0.25 * sigma.log()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma_data={self.sigma_data})"


class SVDPrecond(EDMPrecond):
    """SVD's scaling: v-parameterisation inside EDM with sigma_data = 1 (sgm `VScalingWithEDMcNoise`).

    This is the scaling SVD's weights were trained with; anything else makes them denoise garbage.
    c_skip = 1/(s^2+1), c_out = -s/sqrt(s^2+1), c_in = 1/sqrt(s^2+1), c_noise = ln(s)/4.
    """

    def __init__(self) -> None:
        super().__init__(sigma_data=1.0)

    # v-prediction: D = x/(s^2+1) - s/sqrt(s^2+1) * v  (the minus sign is the v convention)
    def c_out(self, sigma: Tensor) -> Tensor:
        return -sigma / (sigma**2 + 1.0).sqrt()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def append_dims(x: Tensor, ndim: int) -> Tensor:
    """Append singleton dims to a per-sample tensor (B,) so it broadcasts against (B, ...) of ``ndim``."""
    if x.ndim > ndim:
        raise ValueError(f"cannot broadcast a {x.ndim}-d tensor to {ndim} dims")
    return x.reshape(*x.shape, *([1] * (ndim - x.ndim)))


def loss_weight(precond: EDMPrecond, sigma: Tensor) -> Tensor:
    """w(sigma) = 1 / c_out(sigma)^2 (SPEC section 2; EDM's lambda for sigma_data = 0.5)."""
    return precond.c_out(sigma).pow(-2)


