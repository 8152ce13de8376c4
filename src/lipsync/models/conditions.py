"""Condition routing and condition dropout (SPEC section 2), in one place.

Conditions travel as a role-keyed dict (sgm style):

| role     | value                                         | dropped by          |
|----------|-----------------------------------------------|---------------------|
| "concat" | masked-video latents z_m (B, T, C, h, w)      | never               |
| "audio"  | audio-encoder windows (B, T, A, D)            | audio or reference  |
| "id"     | ID-Guider features, one (B, C_l, h_l, w_l) per level, or None | reference |
| "keep"   | 1 - lip mask at latent size (B, T, 1, h, w); only with ``keep_unmasked`` | never |

Dropping is done by explicit null values (zeros) with ``torch.where``; nothing is mutated, so the
training dropout and the sampler's unconditional pass use the very same function.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

Cond = dict[str, Any]


def _zero_where(x: Tensor, drop: Tensor) -> Tensor:
    """Zero the samples of ``x`` (B, ...) where ``drop`` (B,) is True."""
    keep = (~drop).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
    return x * keep


def drop_conditions(cond: Mapping[str, Any], drop_ref: Tensor, drop_audio: Tensor) -> Cond:
    """Return a new cond dict with the reference (ID) and audio conditions nulled per sample.

    Args:
        cond: role-keyed conditions (see module docstring).
        drop_ref: (B,) bool, null the ID-Guider features of these samples (implies ``drop_audio``).
        drop_audio: (B,) bool, null the audio features of these samples.
    """
    drop_audio = drop_audio | drop_ref  # SPEC: dropping the reference always drops the audio too
    out = dict(cond)
    out["audio"] = _zero_where(cond["audio"], drop_audio)
    if cond.get("id") is not None:
        out["id"] = [_zero_where(f, drop_ref) for f in cond["id"]]
    return out


def null_conditions(cond: Mapping[str, Any]) -> Cond:
    """The unconditional pass of classifier-free guidance: reference and audio dropped, z_m kept."""
    b = cond["concat"].shape[0]
    every = torch.ones(b, dtype=torch.bool, device=cond["concat"].device)
    return drop_conditions(cond, every, every)


def audio_free_conditions(cond: Mapping[str, Any]) -> Cond:
    """Reference kept, audio dropped: the middle pass of two-scale (reference/audio) guidance."""
    b = cond["concat"].shape[0]
    device = cond["concat"].device
    return drop_conditions(cond, torch.zeros(b, dtype=torch.bool, device=device),
                           torch.ones(b, dtype=torch.bool, device=device))


def cat_conditions(conds: list[Mapping[str, Any]]) -> Cond:
    """Concatenate several cond dicts along the batch dim (so CFG passes run as one UNet batch)."""
    out: Cond = {}
    for key in conds[0]:
        values = [c[key] for c in conds]
        if values[0] is None:
            out[key] = None
        elif isinstance(values[0], (list, tuple)):
            out[key] = [torch.cat(level) for level in zip(*values)]
        else:
            out[key] = torch.cat(values)
    return out


class ConditionDropout:
    """Training-time condition dropout (SPEC section 2): reference p_ref, audio p_audio, nested.

    One uniform draw u per sample: the reference is dropped when u < p_ref and the audio when
    u < p_audio. With p_audio >= p_ref this gives exactly the paper's structure: a fraction p_ref of
    samples lose both, p_audio - p_ref lose only the audio, and the marginal audio rate is p_audio.
    """

    def __init__(self, p_ref: float = 0.05, p_audio: float = 0.15) -> None:
        for name, p in (("p_ref", p_ref), ("p_audio", p_audio)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if p_audio < p_ref:
            raise ValueError(f"p_audio ({p_audio}) must be >= p_ref ({p_ref}): dropping the reference drops audio")
        self.p_ref = p_ref
        self.p_audio = p_audio

    def sample(self, batch_size: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw (drop_ref, drop_audio), each (B,) bool."""
        u = torch.rand(batch_size, device=device, generator=generator)
        return u < self.p_ref, u < self.p_audio

    def __call__(self, cond: Mapping[str, Any], generator: torch.Generator | None = None) -> Cond:
        drop_ref, drop_audio = self.sample(cond["concat"].shape[0], cond["concat"].device, generator)
        return drop_conditions(cond, drop_ref, drop_audio)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p_ref={self.p_ref}, p_audio={self.p_audio})"
