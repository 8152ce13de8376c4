"""The denoiser D(x; sigma, c): a raw network wrapped by a preconditioning (SPEC section 2)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from lipsync.models.precond import EDMPrecond, append_dims


class Denoiser(nn.Module):
    """``D(x; sigma, c) = c_skip * x + c_out * F(c_in * x, c_noise, c)``.

    When the conditions carry ``"keep"`` (B, T, 1, h, w) in [0, 1] (a net built with ``keep_unmasked``),
    the estimate is blended with the known latents: ``keep * z_m + (1 - keep) * D`` with ``z_m`` =
    ``cond["concat"]``.

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
        D = p.c_skip(s) * x + p.c_out(s) * F.to(x.dtype)
        keep = cond.get("keep")
        if keep is None:
            return D
        return torch.lerp(D, cond["concat"].to(D.dtype), keep.to(D.dtype))
