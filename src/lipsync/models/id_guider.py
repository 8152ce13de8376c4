"""ID-Guider: the identity encoder of SayAnything (paper section 3.3, SPEC section 2).

Reference frame + mask indicator (pixel space) -> pure conv downsampler to latent resolution ->
SVD's down path with its temporal and attention parts removed: at each of SVD's three cross-attention
levels (320, 640, 1280) two 2D ResBlocks and a 2x downsampler, no timestep -> one residual per UNet
down level (the fourth, 1280 at 1/8 latent size, is the last downsampler's output). No up path, no
temporal layers and no timestep input, so it is computed once per sample, not once per denoising step.

Parameter count at full size (diffusers ``ResnetBlock2D``/``Downsample2D`` without time embedding):
ResBlocks + downsamplers 88.6 M (SPEC section 2), zero-initialised 1x1 output projections 3.8 M, pixel
downsampler 5.4 M (``pixel_channels=80``) = 97.8 M, the paper's "98M".

:class:`LatentIDGuider` is Table 3's "VAE Feature" ablation: the same pyramid fed with the reference's VAE
latent (+ the mask averaged down to latent size) through one conv, instead of pixels through the pixel
downsampler.
"""

from __future__ import annotations

import math
from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D
from torch import Tensor, nn

from lipsync.models.svd_xt import SVD_XT_WIDTHS


def zero_module(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` so the pathway it closes is an exact no-op at init."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class PixelDownsampler(nn.Sequential):
    """Pure convolutional downsampler from pixels to latent resolution (paper section 3.3).

    ``conv3x3(in -> c0)``, then per factor of two ``conv3x3(c_i -> c_i), conv3x3 stride 2 (c_i -> c_{i+1})``
    with SiLU between, widths doubling from ``base_channels``; a final ``conv3x3`` to ``out_channels``.

    Args:
        in_channels: 4 = RGB + mask indicator.
        out_channels: the UNet's first width (320 for SVD).
        factor: pixel -> latent downsample factor (the VAE's: 8 for SVD); a power of two.
        base_channels: width of the first stage.
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int, base_channels: int) -> None:
        stages = int(round(math.log2(factor))) if factor >= 1 else -1
        if factor < 1 or 2**stages != factor:
            raise ValueError(f"ID-Guider downsample factor must be a power of two (the VAE's), got {factor}")
        widths = [base_channels * 2**i for i in range(stages + 1)]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1), nn.SiLU()]
        for c, c_next in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c, c, 3, padding=1), nn.SiLU(),
                       nn.Conv2d(c, c_next, 3, padding=1, stride=2), nn.SiLU()]
        layers.append(nn.Conv2d(widths[-1], out_channels, 3, padding=1))
        super().__init__(*layers)


class IDGuiderBase(nn.Module):
    """The ID-Guider's pyramid, shared by its input variants: stem output -> one residual per UNet down level.

    Subclasses build ``self.stem`` (input -> ``block_out_channels[0]`` at latent resolution) and define
    ``forward``.

    Args:
        block_out_channels: widths of the UNet down levels it feeds, SVD-xt's (:data:`SVD_XT_WIDTHS`).
        res_levels: how many leading levels hold ResBlocks (SVD's three cross-attention levels); the
            remaining level (at most one) gets the last downsampler's output only.
        layers_per_block: 2D ResBlocks per level (SVD's 2).

    Every output ends in a zero-initialised 1x1 conv, so adding the features to the UNet is an exact
    no-op at init and the loaded SVD is unchanged at step 0.
    """

    #: True when the input is the reference's VAE latent rather than its pixels (the caller encodes).
    takes_latents: ClassVar[bool] = False

    def __init__(self, block_out_channels: Sequence[int], res_levels: int, layers_per_block: int) -> None:
        super().__init__()
        widths = tuple(block_out_channels)
        if not 1 <= res_levels <= len(widths) <= res_levels + 1:
            raise ValueError(f"res_levels={res_levels} must be len(block_out_channels)={len(widths)} "
                             "or one less")
        in_widths = widths[:1] + widths[:-1]
        self.levels = nn.ModuleList(
            _res_level(c_in, c, layers_per_block) for c_in, c in zip(in_widths, widths[:res_levels])
        )
        # SVD's 2x conv downsampler keeps the width (the next level's first ResBlock widens); only the
        # hop into the ResBlock-free last level has to widen itself.
        self.downsamplers = nn.ModuleList(
            Downsample2D(c, use_conv=True, out_channels=widths[i + 1] if i + 1 == res_levels else c,
                         padding=1, name="op")
            for i, c in enumerate(widths[:-1])
        )
        self.out_projs = nn.ModuleList(zero_module(nn.Conv2d(c, c, 1)) for c in widths)

    @property
    def block_out_channels(self) -> tuple[int, ...]:
        return tuple(p.out_channels for p in self.out_projs)

    def pyramid(self, h: Tensor) -> list[Tensor]:
        """(B, C_0, h, w) stem output -> per level l: (B, C_l, h / 2^l, w / 2^l)."""
        feats = []
        for i, proj in enumerate(self.out_projs):
            if i > 0:
                h = self.downsamplers[i - 1](h)
            for resnet in self.levels[i] if i < len(self.levels) else ():
                h = resnet(h, None)  # no timestep: temb=None
            feats.append(proj(h))
        return feats

    def _check_divisible(self, x: Tensor, factor: int, what: str) -> None:
        f = factor * 2 ** (len(self.out_projs) - 1)
        if x.shape[-1] % f or x.shape[-2] % f:
            vae = f"VAE factor {factor} x " if factor > 1 else ""
            raise ValueError(f"{what} size {tuple(x.shape[-2:])} must be divisible by {f} "
                             f"({vae}2^(levels-1))")


class IDGuider(IDGuiderBase):
    """Identity encoder: ``(I_ref, M_ref) -> [(B, C_l, H / f / 2^l, W / f / 2^l) per UNet down level l]``.

    Args:
        block_out_channels: widths of the UNet down levels it feeds, SVD-xt's (:data:`SVD_XT_WIDTHS`).
        res_levels: how many leading levels hold ResBlocks (SVD's three cross-attention levels).
        layers_per_block: 2D ResBlocks per level (SVD's 2).
        downsample_factor: pixel -> latent factor f, the VAE's (8 for SVD).
        pixel_channels: first width of the pixel downsampler (80 puts the full model at the paper's 98 M).
        in_channels: 3 (RGB) + 1 (mask indicator).
    """

    def __init__(
        self,
        block_out_channels: Sequence[int] = SVD_XT_WIDTHS,
        res_levels: int = 3,
        layers_per_block: int = 2,
        downsample_factor: int = 8,
        pixel_channels: int = 80,
        in_channels: int = 4,
    ) -> None:
        super().__init__(block_out_channels, res_levels, layers_per_block)
        self.downsample_factor = downsample_factor
        self.pixel_downsampler = PixelDownsampler(in_channels, self.block_out_channels[0], downsample_factor,
                                                  pixel_channels)

    def forward(self, ref: Tensor, ref_mask: Tensor) -> list[Tensor]:
        """Encode the reference frame.

        Args:
            ref: (B, 3, H, W) reference frame, RGB in [-1, 1].
            ref_mask: (B, 1, H, W) its lip mask (1 inside the edit rectangle).

        Returns:
            Per UNet down level l: (B, C_l, H / f / 2^l, W / f / 2^l) residual features.
        """
        self._check(ref, ref_mask)
        return self.pyramid(self.pixel_downsampler(torch.cat([ref, ref_mask.to(ref.dtype)], dim=1)))

    def _check(self, ref: Tensor, ref_mask: Tensor) -> None:
        if ref.ndim != 4 or ref.shape[1] != 3:
            raise ValueError(f"ref must be (B, 3, H, W) RGB in [-1, 1], got {tuple(ref.shape)}")
        if ref_mask.shape != (ref.shape[0], 1, *ref.shape[2:]):
            raise ValueError(f"ref_mask must be (B, 1, H, W) = {(ref.shape[0], 1, *ref.shape[2:])}, "
                             f"got {tuple(ref_mask.shape)}")
        self._check_divisible(ref, self.downsample_factor, "reference")


class LatentIDGuider(IDGuiderBase):
    """Table 3's "VAE Feature" ablation: ``(E(I_ref), M_ref) -> [(B, C_l, h / 2^l, w / 2^l) per level l]``.

    The reference arrives already VAE-encoded (the caller runs the frozen VAE: ``takes_latents``); the mask
    is averaged down to the latent grid (each cell's masked fraction) and concatenated as one more channel;
    one 3x3 conv (like the UNet's ``conv_in``) replaces the pixel downsampler. The pyramid is the paper's.

    Args:
        block_out_channels: widths of the UNet down levels it feeds.
        res_levels: how many leading levels hold ResBlocks.
        layers_per_block: 2D ResBlocks per level.
        latent_channels: the VAE's latent channels C (4 for SVD).
    """

    takes_latents: ClassVar[bool] = True

    def __init__(
        self,
        block_out_channels: Sequence[int] = SVD_XT_WIDTHS,
        res_levels: int = 3,
        layers_per_block: int = 2,
        latent_channels: int = 4,
    ) -> None:
        super().__init__(block_out_channels, res_levels, layers_per_block)
        self.latent_channels = latent_channels
        self.latent_stem = nn.Conv2d(latent_channels + 1, self.block_out_channels[0], 3, padding=1)

    def forward(self, ref_latent: Tensor, ref_mask: Tensor) -> list[Tensor]:
        """Encode the reference's VAE latent.

        Args:
            ref_latent: (B, C, h, w) scaled VAE latent of the reference frame.
            ref_mask: (B, 1, H, W) its lip mask in pixels, H and W multiples of h and w.

        Returns:
            Per UNet down level l: (B, C_l, h / 2^l, w / 2^l) residual features.
        """
        self._check(ref_latent, ref_mask)
        mask = F.interpolate(ref_mask.to(ref_latent.dtype), size=ref_latent.shape[-2:], mode="area")
        return self.pyramid(self.latent_stem(torch.cat([ref_latent, mask], dim=1)))

    def _check(self, ref_latent: Tensor, ref_mask: Tensor) -> None:
        c = self.latent_channels
        if ref_latent.ndim != 4 or ref_latent.shape[1] != c:
            raise ValueError(f"ref_latent must be (B, {c}, h, w) VAE latents, got {tuple(ref_latent.shape)}")
        b, _, h, w = ref_latent.shape
        if (ref_mask.ndim != 4 or ref_mask.shape[:2] != (b, 1) or ref_mask.shape[2] % h
                or ref_mask.shape[3] % w):
            raise ValueError(f"ref_mask must be (B={b}, 1, H, W) with H, W multiples of the latent's "
                             f"{(h, w)}, got {tuple(ref_mask.shape)}")
        self._check_divisible(ref_latent, 1, "reference latent")


def _res_level(c_in: int, c: int, n: int) -> nn.ModuleList:
    """``n`` diffusers 2D ResBlocks with no time embedding (``temb_channels=None``); the first widens."""
    return nn.ModuleList(
        ResnetBlock2D(in_channels=c_in if i == 0 else c, out_channels=c, temb_channels=None) for i in range(n)
    )
