"""LipSyncNet at tiny width: shapes, new pathways exact no-ops at init, and working once trained."""

from __future__ import annotations

import pytest
import torch

from lipsync.models.audio_attention import AudioCrossAttention
from lipsync.models.net import LipSyncNet, build_net

B, T, C, A, D = 2, 4, 4, 10, 24


def tiny_net(**kwargs) -> LipSyncNet:
    torch.manual_seed(0)
    kw = dict(block_out_channels=(32, 64), layers_per_block=1, num_attention_heads=(2, 4),
              cross_attention_dim=32, cross_attn_levels=2, latent_channels=C, vae_downsample_factor=2,
              id_pixel_channels=16, audio_dim=D, audio_width=32)
    kw.update(kwargs)
    return build_net(**kw).eval()


def inputs(h: int = 8, w: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, dict]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, C, h, w, generator=g)
    cond = {"concat": torch.randn(B, T, C, h, w, generator=g), "audio": torch.randn(B, T, A, D, generator=g),
            "id": None}
    return x, torch.tensor([-0.3, 0.4]), cond


def reference(net: LipSyncNet, h: int = 8, w: int = 8, seed: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(B, 3, 2 * h, 2 * w, generator=g) * 2 - 1
    mask = torch.zeros(B, 1, 2 * h, 2 * w)
    mask[..., h:, :] = 1
    return net.encode_reference(ref, mask)


def perturb_(modules, scale: float = 0.5) -> None:
    """Give the zero-initialised output projections of the new layers random values (a 'trained' net)."""
    torch.manual_seed(3)
    with torch.no_grad():
        for m in modules:
            for p in m.parameters():
                p.add_(torch.randn_like(p) * scale)


def audio_outs(net: LipSyncNet):
    return [layer.attn.to_out for layers in (*net.audio_down, *net.audio_up) for layer in layers]


@pytest.fixture(scope="module")
def net() -> LipSyncNet:
    return tiny_net()


@torch.no_grad()
@pytest.mark.parametrize("hw", [(8, 8), (6, 10), (7, 7)])
def test_shapes_through_the_whole_net(net: LipSyncNet, hw: tuple[int, int]) -> None:
    x, c_noise, cond = inputs(*hw)
    if hw[0] % 2 == 0 and hw[1] % 2 == 0:
        cond["id"] = reference(net, *hw)
        assert [tuple(f.shape) for f in cond["id"]] == [(B, 32, *hw), (B, 64, hw[0] // 2, hw[1] // 2)]
    assert net(x, c_noise, cond).shape == (B, T, C, *hw)


@torch.no_grad()
def test_new_pathways_are_exact_noops_at_init_and_equal_diffusers(net: LipSyncNet) -> None:
    x, c_noise, cond = inputs()
    out = net(x, c_noise, cond)
    quiet = net(x, c_noise, {**cond, "audio": torch.zeros_like(cond["audio"]), "id": reference(net)})
    assert torch.equal(out, quiet)
    # the plain diffusers UNet, SVD's null image embedding (zeros) as encoder_hidden_states
    svd = net.unet(torch.cat([x, cond["concat"]], 2), c_noise, torch.zeros(B, 1, 32),
                   net.added_time_ids.expand(B, -1)).sample
    assert torch.equal(out, svd)


@torch.no_grad()
def test_trained_audio_changes_output_per_frame() -> None:
    net = tiny_net()
    perturb_(audio_outs(net))
    x, c_noise, cond = inputs()
    out = net(x, c_noise, cond)
    assert (out - net(x, c_noise, {**cond, "audio": torch.zeros_like(cond["audio"])})).abs().max() > 1e-3
    # Only the last frame's audio changes: if the net read frame 0's tokens (diffusers' repeat),
    # nothing would move.
    audio = cond["audio"].clone()
    audio[:, -1] = torch.randn_like(audio[:, -1])
    assert (out - net(x, c_noise, {**cond, "audio": audio})).abs().max() > 1e-3


@torch.no_grad()
def test_audio_attention_is_per_frame() -> None:
    torch.manual_seed(0)
    layer = AudioCrossAttention(32, 16, heads=2)
    perturb_([layer.attn.to_out])
    hidden, audio = torch.randn(T, 32, 4, 4), torch.randn(T, A, 16)
    out = layer(hidden, audio)
    audio2 = audio.clone()
    audio2[2] = torch.randn_like(audio2[2])
    changed = (layer(hidden, audio2) - out).abs().flatten(1).amax(1)
    assert changed[2] > 1e-3 and torch.all(changed[[0, 1, 3]] == 0)


@torch.no_grad()
def test_trained_id_guider_changes_output() -> None:
    net = tiny_net()
    perturb_(net.id_guider.out_projs)
    x, c_noise, cond = inputs()
    with_ref = net(x, c_noise, {**cond, "id": reference(net)})
    assert (with_ref - net(x, c_noise, cond)).abs().max() > 1e-3
    assert (with_ref - net(x, c_noise, {**cond, "id": reference(net, seed=7)})).abs().max() > 1e-4


def test_gradient_checkpointing_same_output_and_grads() -> None:
    outs = []
    for flag in (False, True):
        net = tiny_net(gradient_checkpointing=flag).train()
        perturb_(audio_outs(net))
        x, c_noise, cond = inputs()
        out = net(x, c_noise, cond)
        out.square().mean().backward()
        outs.append((out.detach(), net.audio_proj.weight.grad.clone(), net.unet.conv_in.weight.grad.clone()))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_svd_crossattn_variant_feeds_audio_to_svd_layers() -> None:
    net = tiny_net(audio_mode="svd_crossattn")
    assert not any(len(layers) for layers in (*net.audio_down, *net.audio_up))
    x, c_noise, cond = inputs()
    out = net(x, c_noise, cond)
    assert out.shape == x.shape
    assert (out - net(x, c_noise, {**cond, "audio": torch.zeros_like(cond["audio"])})).abs().max() > 1e-4


def test_bad_inputs_say_what_is_wrong(net: LipSyncNet) -> None:
    x, c_noise, cond = inputs()
    with pytest.raises(ValueError, match="audio"):
        net(x, c_noise, {**cond, "audio": None})
    with pytest.raises(ValueError, match=r"cond\['audio'\]"):
        net(x, c_noise, {**cond, "audio": cond["audio"][:, :2]})
    with pytest.raises(ValueError, match="concat"):
        net(x, c_noise, {**cond, "concat": cond["concat"][..., :4]})
    with pytest.raises(ValueError, match="ID-Guider levels"):
        net(x, c_noise, {**cond, "id": reference(net)[:1]})
    with pytest.raises(ValueError, match="x_in"):
        net(x[:, :, :3], c_noise, cond)
