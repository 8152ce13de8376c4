"""Samplers that know only a denoiser callable ``D(x, sigma) -> x0`` (k-diffusion style)."""

from lipsync.sampling.guidance import GuidedDenoiser
from lipsync.sampling.samplers import karras_sigmas, sample_euler, sample_heun

__all__ = ["GuidedDenoiser", "karras_sigmas", "sample_euler", "sample_heun"]
