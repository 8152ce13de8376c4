"""The denoiser D(x; sigma, c): a raw network wrapped by a preconditioning (SPEC section 2)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from lipsync.models.precond import EDMPrecond, append_dims


class Denoiser(nn.Module):
    """``D(x; sigma, c) = c_skip * x + c_out * F(c_in * x, c_noise, c)``.

    Args:
        net: raw network ``F(x_in (B, T, C, h, w), c_noise (B,), cond) -> (B, T, C, h, w)``.
        precond: an :class:`EDMPrecond` (or its SVD sibling) giving c_skip, c_out, c_in, c_noise.
    """

    def __init__(self, net: nn.Module, precond: EDMPrecond) -> None:
        super().__init__()
        self.net = net
        self.precond = precond

    def forward(self, x: Tensor, sigma: Tensor, cond: Mapping[str, Any]) -> Tensor:
        """Denoise ``x`` (B, T, C, h, w) at noise level ``sigma`` (B,) or scalar; returns the clean estimate."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        s = append_dims(sigma, x.ndim)
        p = self.precond
        F = self.net(p.c_in(s) * x, p.c_noise(sigma), cond)
        return p.c_skip(s) * x + p.c_out(s) * F.to(x.dtype)
