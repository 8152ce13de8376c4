"""Noise schedule and ODE samplers (Karras et al. 2022, EDM; Lu et al. 2022, DPM-Solver++).

Every sampler is ``sample_x(denoise, x, sigmas, callback)`` with ``denoise(x, sigma) -> x0`` (k-diffusion's
convention): it integrates the probability-flow ODE ``dx/dsigma = (x - D(x; sigma)) / sigma`` from
``sigmas[0]`` to ``sigmas[-1]`` (0) and knows nothing of the network, guidance or conditions.

Cost in denoiser calls (NFE) for ``n`` steps ending at 0: Euler and DPM-Solver++(2M) ``n``; Heun ``2n - 1``
(no correction on the last step, whose end is sigma = 0).

``sample_consistency`` is not an ODE solver: it samples a distilled consistency student (Song et al. 2023)
in ``len(sigmas) - 1`` passes on the levels its folder records (:func:`consistency_sigmas`).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

DenoiseFn = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[int, Tensor, Tensor], None]
NoiseSampler = Callable[[int], Tensor]
Sampler = Callable[..., Tensor]


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


def euler_step(x: Tensor, denoised: Tensor, sigma: Tensor, sigma_next: Tensor) -> Tensor:
    """x at ``sigma_next`` after one Euler step of the probability-flow ODE from ``sigma`` (EDM Algorithm 2,
    line 5); the levels are scalars or broadcast against x (per-sample levels (B, 1, ...) in distillation)."""
    return x + _to_d(x, sigma, denoised) * (sigma_next - sigma)


def sample_euler(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, callback: Callback | None = None) -> Tensor:
    """Euler steps of the probability-flow ODE (EDM Algorithm 2 without the Heun correction)."""
    for i in range(len(sigmas) - 1):
        denoised = denoise(x, sigmas[i])
        x = euler_step(x, denoised, sigmas[i], sigmas[i + 1])
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


def sample_dpmpp_2m(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, callback: Callback | None = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) on the EDM ODE; k-diffusion's ``sample_dpmpp_2m``.

    With alpha = 1 (EDM's variance-exploding x) the first-order DPM-Solver++ step is exactly Euler's,
    ``x' = (s'/s) x + (1 - s'/s) D``; the second order replaces D by its linear extrapolation in
    ``lambda = -log sigma`` from the previous step's D. The first step has no history and the last (to
    sigma = 0) is first order, as in k-diffusion and diffusers' ``EDMDPMSolverMultistepScheduler``.
    """
    old_denoised: Tensor | None = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        d = denoised
        if old_denoised is not None and sigma_next > 0:
            r = torch.log(sigmas[i - 1] / sigma) / torch.log(sigma / sigma_next)  # h_{i-1} / h_i in lambda
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        ratio = sigma_next / sigma
        x = ratio * x + (1 - ratio) * d
        old_denoised = denoised
        if callback is not None:
            callback(i, x, denoised)
    return x


def sample_consistency(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, callback: Callback | None = None,
                       noise_sampler: NoiseSampler | None = None) -> Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1): the student's estimate at
    ``sigmas[0]``, then for each later level before the final 0 the estimate re-noised to it and denoised.

    ``len(sigmas) - 1`` denoiser calls; returns the last estimate. The re-noise is ``x0 + sigma * n``: EDM's
    data sit at sigma = 0 (Algorithm 1's ``sqrt(sigma^2 - eps^2)`` is for data at ``eps``).
    ``noise_sampler(i)`` gives the standard normal ``n`` of the i-th call (i >= 1); default ``randn_like``.
    """
    denoised = denoise(x, sigmas[0])
    if callback is not None:
        callback(0, x, denoised)
    for i in range(1, len(sigmas) - 1):
        noise = noise_sampler(i) if noise_sampler is not None else torch.randn_like(x)
        x = denoised + sigmas[i] * noise
        denoised = denoise(x, sigmas[i])
        if callback is not None:
            callback(i, x, denoised)
    return denoised


def consistency_sigmas(levels: Sequence[float], passes: int, device: torch.device | str = "cpu") -> Tensor:
    """The schedule of a ``passes``-pass consistency sample: the first ``passes`` of a student's recorded
    noise levels, then 0 (the samplers' convention: n calls = n + 1 values)."""
    if not 1 <= passes <= len(levels):
        raise ValueError(f"the student records {len(levels)} pass levels {list(levels)}; "
                         f"cannot take {passes} passes")
    return torch.tensor([*levels[:passes], 0.0], device=device)


def evaluation_sigmas(sampler: str, sigmas: Tensor) -> list[float]:
    """The noise levels at which ``sampler`` calls the denoiser on schedule ``sigmas`` (a dry run on a
    scalar; length = the NFE: ``n`` for Euler and DPM-Solver++(2M), ``2n - 1`` for Heun)."""
    seen: list[float] = []

    def record(x: Tensor, sigma: Tensor) -> Tensor:
        seen.append(float(sigma))
        return torch.zeros_like(x)

    get_sampler(sampler)(record, torch.ones(1, dtype=sigmas.dtype), sigmas)
    return seen


# The names users pick (``options.sampler``); each value is a plain function above.
SAMPLERS: dict[str, Sampler] = {"euler": sample_euler, "heun": sample_heun, "dpmpp_2m": sample_dpmpp_2m,
                                "consistency": sample_consistency}
CONSISTENCY = "consistency"  # the student's sampler: its levels are the folder's, not Karras sigmas


def get_sampler(name: str) -> Sampler:
    """The sampler called ``name``; a ValueError lists the known ones."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; known: {sorted(SAMPLERS)}")
    return SAMPLERS[name]
