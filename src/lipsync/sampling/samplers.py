"""Noise schedule and ODE samplers (Karras et al. 2022, EDM)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

DenoiseFn = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[int, Tensor, Tensor], None]


SVD_SIGMA_MIN, SVD_SIGMA_MAX = 0.002, 700.0  # SVD's Karras schedule ends (sgm's EDM discretization)


def karras_sigmas(n: int, sigma_min: float = SVD_SIGMA_MIN, sigma_max: float = SVD_SIGMA_MAX,
                  rho: float = 7.0, device: torch.device | str = "cpu") -> Tensor:
    """EDM eq. 5: n noise levels from sigma_max down to sigma_min, then a final 0 (n + 1 values).

    Defaults are SVD's (sigma_min 0.002, sigma_max 700).
    """
    if n < 1:
        raise ValueError(f"need at least 1 step, got {n}")
    ramp = torch.linspace(0, 1, n, device=device, dtype=torch.float64)
    inv_rho = 1.0 / rho
    sigmas = (sigma_max**inv_rho + ramp * (sigma_min**inv_rho - sigma_max**inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


def _to_d(x: Tensor, sigma: Tensor, denoised: Tensor) -> Tensor:
    """dx/dsigma of the probability-flow ODE (EDM eq. 3 with sigma(t) = t)."""
    return (x - denoised) / sigma


def sample_euler(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, callback: Callback | None = None) -> Tensor:
    """Euler steps of the probability-flow ODE (EDM Algorithm 2 without the Heun correction)."""
    for i in range(len(sigmas) - 1):
        denoised = denoise(x, sigmas[i])
        x = x + _to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
        if callback is not None:
            callback(i, x, denoised)
    return x


def sample_heun(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, callback: Callback | None = None) -> Tensor:
    """EDM Algorithm 2 (deterministic, S_churn = 0): Euler step plus 2nd-order correction except at sigma=0."""
    for i in range(len(sigmas) - 1):
        denoised = denoise(x, sigmas[i])
        d = _to_d(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        x_next = x + d * dt
        if sigmas[i + 1] > 0:
            d_next = _to_d(x_next, sigmas[i + 1], denoise(x_next, sigmas[i + 1]))
            x_next = x + 0.5 * (d + d_next) * dt
        x = x_next
        if callback is not None:
            callback(i, x, denoised)
    return x
