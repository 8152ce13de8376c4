"""The speed switches of issue 29 change the speed, not the numbers: SDPA kernel choice, channels-last
convolutions, cached latents. Each is compared with the plain path on a tiny net with the same weights."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from lipsync.data.batch import LATENTS, MASKED_LATENTS, VIDEO
from lipsync.data.random_clips import RandomClipDataModule, RandomClips
from lipsync.models.net import LipSyncNet, build_net, sdpa_backends

B, T, S = 2, 3, 32
TINY = dict(block_out_channels=(32, 64), layers_per_block=1, num_attention_heads=(2, 4), cross_attention_dim=32,
            cross_attn_levels=2, latent_channels=4, vae_downsample_factor=4, id_pixel_channels=16, audio_dim=24,
            audio_width=32)


def _net(**kwargs) -> LipSyncNet:
    torch.manual_seed(0)
    net = build_net(**TINY, **kwargs)
    with torch.no_grad():  # the new layers' zero-initialised outputs would hide the attention
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def _inputs(net: LipSyncNet) -> tuple[torch.Tensor, torch.Tensor, dict]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, 4, S // 4, S // 4, generator=g)
    ref = net.encode_reference(torch.rand(B, 3, S, S, generator=g) * 2 - 1, torch.ones(B, 1, S, S))
    cond = {"concat": torch.randn(x.shape, generator=g), "audio": torch.randn(B, T, 10, 24, generator=g), "id": ref}
    return x, torch.tensor([0.3, -0.2]), cond


def _out(net: LipSyncNet, bf16: bool = False) -> torch.Tensor:
    x, c_noise, cond = _inputs(net)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return net(x, c_noise, cond).float()


def _assert_same(make: Callable[[], LipSyncNet], make_ref: Callable[[], LipSyncNet]) -> None:
    """fp32: equal up to summation order. bf16 autocast: no further from the reference's bf16 output than
    bf16 rounding itself moves it (the reference's own bf16 vs fp32 distance, times 2)."""
    net, ref_net = make(), make_ref()
    ref = _out(ref_net)
    torch.testing.assert_close(_out(net), ref, atol=1e-5, rtol=1e-4)
    ref_bf16 = _out(ref_net, bf16=True)
    rounding = (ref_bf16 - ref).abs().mean()
    assert 0 < (_out(net, bf16=True) - ref_bf16).abs().mean() <= 2 * rounding
    assert ref.abs().mean() > 20 * rounding  # the comparison is of real outputs, not of noise or zeros


def _sdpa_ops(net: LipSyncNet) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _out(net)
    return {e.key for e in prof.key_averages() if "scaled_dot_product" in e.key}


def test_attention_backend_is_the_kernel_that_runs() -> None:
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in _sdpa_ops(_net(attention_backend="flash"))
    math_ops = _sdpa_ops(_net(attention_backend="math"))
    assert not any("flash" in op for op in math_ops) and math_ops  # the unfused path, not a fused kernel


@pytest.mark.parametrize("choice", ["auto", "flash", ["flash", "efficient"]])
def test_attention_backends_give_the_same_numbers(choice: str | list[str]) -> None:
    _assert_same(lambda: _net(attention_backend=choice), lambda: _net(attention_backend="math"))


def test_attention_backend_holds_in_the_checkpointed_backward() -> None:
    grads = []
    for choice in ("math", "flash"):
        net = _net(attention_backend=choice, gradient_checkpointing=True).train()
        x, c_noise, cond = _inputs(net)
        net(x, c_noise, cond).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4)


def test_unknown_attention_backend_is_refused() -> None:
    assert sdpa_backends("auto") is None
    with pytest.raises(ValueError, match="attention_backend must be 'auto' or names of"):
        sdpa_backends(["flash", "fastest"])


def test_channels_last_gives_the_same_numbers() -> None:
    plain, nhwc = _net(), build_net(**TINY, channels_last=True).eval()
    nhwc.load_state_dict(plain.state_dict())  # as a checkpoint loads: copied into the NHWC layout
    conv = nhwc.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    _assert_same(lambda: nhwc, lambda: plain)


def test_random_clips_carry_cached_latents_at_the_vae_size() -> None:
    clip = RandomClips(2, num_frames=3, size=32, latent_shape=(48, 4))[1]
    assert clip[LATENTS].shape == clip[MASKED_LATENTS].shape == (3, 48, 8, 8)
    assert LATENTS not in RandomClips(2, num_frames=3, size=32)[1]
    batch = next(iter(RandomClipDataModule(num_clips=2, num_frames=2, size=16, batch_size=2, cached_latents=True,
                                           latent_channels=4, latent_downsample=8).train_dataloader()))
    assert batch[LATENTS].shape == (2, 2, 4, 2, 2) and batch[VIDEO].shape == (2, 2, 3, 16, 16)
    with pytest.raises(ValueError, match="latent_shape"):
        RandomClips(2, num_frames=3, size=30, latent_shape=(4, 8))
