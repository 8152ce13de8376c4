"""Samplers that know only a denoiser callable ``D(x, sigma) -> x0`` (k-diffusion style)."""

from lipsync.sampling.guidance import GuidedDenoiser
from lipsync.sampling.samplers import (
    SAMPLERS,
    get_sampler,
    karras_sigmas,
    sample_dpmpp_2m,
    sample_euler,
    sample_heun,
    step_evaluations,
)

__all__ = [
    "GuidedDenoiser",
    "SAMPLERS",
    "get_sampler",
    "karras_sigmas",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_heun",
    "step_evaluations",
]
