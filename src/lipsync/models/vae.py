"""Video codecs between pixels and the latent space the denoiser works in (SPEC sections 2 and 9).

- :class:`SVDVAE`: SVD's ``AutoencoderKLTemporalDecoder`` (frozen), latents scaled by 0.18215.
- :class:`SpaceToDepthVAE`: a weight-free, exactly invertible pixel_unshuffle codec for the synthetic
  world. No pretrained VAE can be downloaded here, and training one would spend the CPU budget the
  denoiser needs; an exact codec also means every error the demo measures is the denoiser's own.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLTemporalDecoder
from torch import Tensor, nn


@runtime_checkable
class VideoVAE(Protocol):
    """What the training system and samplers need from a codec."""

    latent_channels: int
    downsample_factor: int

    def encode(self, video: Tensor) -> Tensor:
        """video (B, T, 3, H, W) in [-1, 1] -> scaled latents (B, T, C, H/f, W/f)."""
        ...

    def decode(self, latents: Tensor, chunk: int = ...) -> Tensor:
        """scaled latents (B, T, C, h, w) -> video (B, T, 3, h*f, w*f), about [-1, 1]."""
        ...


def _check_video(video: Tensor) -> None:
    if video.ndim != 5 or video.shape[2] != 3:
        raise ValueError(f"video must be (B, T, 3, H, W) in [-1, 1], got {tuple(video.shape)}")


def _check_latents(latents: Tensor, channels: int) -> None:
    if latents.ndim != 5 or latents.shape[2] != channels:
        raise ValueError(f"latents must be (B, T, {channels}, h, w), got {tuple(latents.shape)}")


class SVDVAE(nn.Module):
    """SVD's frozen VAE: 2D encoder, temporal decoder (SPEC section 2).

    Args:
        vae: a diffusers ``AutoencoderKLTemporalDecoder``; frozen and put in eval mode here.
        chunk: frames per encoder/decoder call, bounding memory (SVD's pipeline calls it decode_chunk_size).
    """

    def __init__(self, vae: AutoencoderKLTemporalDecoder, chunk: int = 8) -> None:
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        self.chunk = chunk
        self.scaling_factor = float(vae.config.scaling_factor)  # 0.18215 for SVD
        self.latent_channels = int(vae.config.latent_channels)
        self.downsample_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    def train(self, mode: bool = True) -> SVDVAE:
        """Stay in eval mode: the VAE is frozen, whatever the surrounding module does."""
        return super().train(False)

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """video (B, T, 3, H, W) in [-1, 1] -> z = mode(E(video)) * scaling_factor, (B, T, C, H/8, W/8)."""
        _check_video(video)
        frames = video.flatten(0, 1).to(self.vae.dtype)
        # The encoder is per frame, so chunking over all B*T frames is exact.
        z = torch.cat([self.vae.encode(c).latent_dist.mode() for c in frames.split(self.chunk)])
        return (z * self.scaling_factor).reshape(*video.shape[:2], *z.shape[1:]).to(video.dtype)

    @torch.no_grad()
    def decode(self, latents: Tensor, chunk: int | None = None) -> Tensor:
        """latents (B, T, C, h, w) -> video (B, T, 3, 8h, 8w), ``chunk`` frames per temporal-decoder call."""
        _check_latents(latents, self.latent_channels)
        chunk = chunk or self.chunk
        videos = []
        for clip in latents.to(self.vae.dtype) / self.scaling_factor:  # per video: chunks must not mix clips
            frames = [self.vae.decode(c, num_frames=c.shape[0]).sample for c in clip.split(chunk)]
            videos.append(torch.cat(frames))
        return torch.stack(videos).to(latents.dtype)


class SpaceToDepthVAE(nn.Module):
    """Exact, weight-free codec: ``z = latent_scale * pixel_unshuffle(video, factor)``.

    Args:
        factor: spatial downsample factor f; latents have ``3 * f^2`` channels.
        latent_scale: multiplies the latents so their spread suits the noise schedule (like SVD's 0.18215).
    """

    def __init__(self, factor: int = 4, latent_scale: float = 1.0) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        self.downsample_factor = factor
        self.latent_scale = latent_scale
        self.latent_channels = 3 * factor * factor

    def encode(self, video: Tensor) -> Tensor:
        """video (B, T, 3, H, W) in [-1, 1] -> (B, T, 3 f^2, H/f, W/f)."""
        _check_video(video)
        f = self.downsample_factor
        if video.shape[-1] % f or video.shape[-2] % f:
            raise ValueError(f"video size {tuple(video.shape[-2:])} must be divisible by factor {f}")
        return F.pixel_unshuffle(video, f) * self.latent_scale

    def decode(self, latents: Tensor, chunk: int | None = None) -> Tensor:
        """latents (B, T, 3 f^2, h, w) -> video (B, T, 3, f h, f w); exact inverse of :meth:`encode`."""
        _check_latents(latents, self.latent_channels)
        return F.pixel_shuffle(latents / self.latent_scale, self.downsample_factor)
