"""ID-Guider: the paper's structure and size, zero-initialised outputs, one feature per UNet down level."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.resnet import ResnetBlock2D

from lipsync.models.id_guider import IDGuider


def test_full_size_is_the_papers_98m_on_meta() -> None:
    with torch.device("meta"):
        guider = IDGuider()
    n = sum(p.numel() for p in guider.parameters())
    assert abs(n - 98e6) / 98e6 < 0.05, n
    # SPEC section 2: two ResBlocks + a downsampler per cross-attention level (320, 640, 1280) = 88.6 M
    core = sum(p.numel() for m in (guider.levels, guider.downsamplers) for p in m.parameters())
    assert round(core / 1e5) == 886


def test_structure_2d_resblocks_no_timestep_no_temporal_no_up() -> None:
    with torch.device("meta"):
        guider = IDGuider()
    resnets = [m for m in guider.modules() if isinstance(m, ResnetBlock2D)]
    assert [r.out_channels for r in resnets] == [320, 320, 640, 640, 1280, 1280]
    assert all(r.time_emb_proj is None for r in resnets)
    names = " ".join(type(m).__name__ for m in guider.modules()).lower()
    assert "temporal" not in names and "upsample" not in names and "attention" not in names
    assert guider.block_out_channels == (320, 640, 1280, 1280)


@torch.no_grad()
def test_outputs_zero_at_init_then_follow_the_reference() -> None:
    torch.manual_seed(0)
    guider = IDGuider((32, 64), res_levels=1, layers_per_block=2, downsample_factor=4, pixel_channels=8)
    ref, mask = torch.rand(2, 3, 32, 32) * 2 - 1, torch.zeros(2, 1, 32, 32)
    feats = guider(ref, mask)
    assert [tuple(f.shape) for f in feats] == [(2, 32, 8, 8), (2, 64, 4, 4)]
    assert all(torch.equal(f, torch.zeros_like(f)) for f in feats)
    for proj in guider.out_projs:
        torch.nn.init.normal_(proj.weight)
    a, b = guider(ref, mask), guider(ref, mask + 1)
    assert all((x - y).abs().max() > 1e-4 for x, y in zip(a, b)), "the mask indicator channel must matter"
    # samples are independent
    torch.testing.assert_close(guider(ref[:1], mask[:1])[0], a[0][:1], rtol=1e-4, atol=1e-4)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="power of two"):
        IDGuider((32,), res_levels=1, downsample_factor=6)
    guider = IDGuider((32, 64), res_levels=1, downsample_factor=2, pixel_channels=8)
    with pytest.raises(ValueError, match="ref_mask"):
        guider(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="divisible by 4"):
        guider(torch.zeros(1, 3, 10, 10), torch.zeros(1, 1, 10, 10))
