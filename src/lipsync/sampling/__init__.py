"""Samplers that know only a denoiser callable ``D(x, sigma) -> x0`` (k-diffusion style)."""

from lipsync.sampling.guidance import GuidedDenoiser, network_passes
from lipsync.sampling.samplers import (
    SAMPLERS,
    consistency_sigmas,
    euler_step,
    evaluation_sigmas,
    get_sampler,
    karras_sigmas,
    sample_consistency,
    sample_dpmpp_2m,
    sample_euler,
    sample_heun,
)

__all__ = [
    "GuidedDenoiser",
    "SAMPLERS",
    "consistency_sigmas",
    "euler_step",
    "evaluation_sigmas",
    "get_sampler",
    "karras_sigmas",
    "network_passes",
    "sample_consistency",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_heun",
]
