"""LipSyncNet at tiny width: shapes, new pathways exact no-ops at init, and working once trained."""

from __future__ import annotations

import pytest
import torch

from lipsync.models.audio_attention import AudioCrossAttention
from lipsync.models.id_guider import LatentIDGuider
from lipsync.models.net import LipSyncNet, build_net, latent_id_guider_for

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
def test_attention_at_the_low_resolution_level_only() -> None:
    """attention_levels=[1]: transformers and audio layers at the 8x8 level only; audio still used per frame."""
    net = tiny_net(cross_attn_levels=None, attention_levels=[1])
    cfg = net.unet.config
    assert cfg.down_block_types == ("DownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal")
    assert cfg.up_block_types == ("CrossAttnUpBlockSpatioTemporal", "UpBlockSpatioTemporal")
    assert [len(a) for a in net.audio_down] == [0, 1] and [len(a) for a in net.audio_up] == [2, 0]
    x, c_noise, cond = inputs()
    cond["id"] = reference(net)
    assert [tuple(f.shape) for f in cond["id"]] == [(B, 32, 8, 8), (B, 64, 4, 4)]
    out = net(x, c_noise, cond)
    perturb_(audio_outs(net))
    audio = cond["audio"].clone()
    audio[:, -1] = torch.randn_like(audio[:, -1])
    changed = (net(x, c_noise, cond) - net(x, c_noise, {**cond, "audio": audio})).abs().amax((0, 2, 3, 4))
    assert changed[-1] > 1e-3  # frame T-1's own audio moves it (not frame 0's tokens, diffusers' repeat)
    assert out.shape == (B, T, C, 8, 8)
    with pytest.raises(ValueError, match="not both"):
        tiny_net(cross_attn_levels=2, attention_levels=[1])
    with pytest.raises(ValueError, match="must index"):
        tiny_net(cross_attn_levels=None, attention_levels=[2])


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


# --- Table 3's identity ablations: no ID-Guider, VAE Feature, Video Fusion -----------------------------
def tiny_encoder() -> torch.nn.Module:
    """A fixed stand-in for the VAE encoder at the tiny net's factor 2: 2x2 average pool, 1x1 conv 3 -> C."""
    torch.manual_seed(5)
    conv = torch.nn.Conv2d(3, C, 1).requires_grad_(False)

    class Encode(torch.nn.Module):
        def forward(self, video: torch.Tensor) -> torch.Tensor:  # (B, T, 3, H, W) -> (B, T, C, H/2, W/2)
            return conv(torch.nn.functional.avg_pool2d(video.flatten(0, 1), 2)).unflatten(0, video.shape[:2])

    return Encode()


def clip(seed: int = 4, h: int = 16) -> dict[str, torch.Tensor]:
    """Pixel inputs of LipSyncNet.conditions: masked video, mask, reference, its mask, audio."""
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(B, T, 3, h, h, generator=g) * 2 - 1
    mask = torch.zeros(B, T, 1, h, h)
    mask[..., h // 2:, :] = 1
    ref = torch.rand(B, 3, h, h, generator=g) * 2 - 1
    return {"masked_video": video * (1 - mask), "mask": mask, "ref": ref, "ref_mask": mask[:, 0],
            "audio": torch.randn(B, T, A, D, generator=g)}


@torch.no_grad()
def test_paper_conditions_are_masked_latents_and_one_reference_feature() -> None:
    net, encode, px = tiny_net(), tiny_encoder(), clip()
    cond = net.conditions(encode, **px)
    assert torch.equal(cond["concat"], encode(px["masked_video"]))
    for got, want in zip(cond["id"], net.encode_reference(px["ref"], px["ref_mask"])):
        torch.testing.assert_close(got, want)
    assert [tuple(f.shape) for f in cond["id"]] == [(B, 32, 8, 8), (B, 64, 4, 4)]
    cached = torch.randn(B, T, C, 8, 8)
    assert net.conditions(encode, **px, z_m=cached)["concat"] is cached


@torch.no_grad()
def test_no_id_guider_output_does_not_depend_on_the_reference() -> None:
    net, full, encode = tiny_net(id_guider=False), tiny_net(), tiny_encoder()
    assert net.id_guider is None
    def count(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    assert count(full) - count(net) == count(full.id_guider)
    perturb_(audio_outs(net))
    x, c_noise, _ = inputs()
    px, other = clip(), clip(seed=9)
    assert net.encode_reference(px["ref"], px["ref_mask"]) is None
    cond = net.conditions(encode, **px)
    assert cond["id"] is None and torch.equal(cond["concat"], encode(px["masked_video"]))
    out = net(x, c_noise, cond)
    moved = net(x, c_noise, net.conditions(encode, **{**px, "ref": other["ref"],
                                                     "ref_mask": other["ref_mask"]}))
    assert torch.equal(out, moved)
    with pytest.raises(ValueError, match="no ID-Guider"):
        net(x, c_noise, {**cond, "id": reference(full)})


@torch.no_grad()
def test_vae_feature_guider_reads_the_reference_latent_not_pixels() -> None:
    net, encode, px = tiny_net(id_guider=latent_id_guider_for), tiny_encoder(), clip()
    guider = net.id_guider
    assert isinstance(guider, LatentIDGuider) and guider.takes_latents
    assert not hasattr(guider, "pixel_downsampler") and guider.latent_stem.in_channels == C + 1
    perturb_(guider.out_projs)
    cond = net.conditions(encode, **px)
    latent = encode(px["ref"][:, None])[:, 0]
    assert [tuple(f.shape) for f in cond["id"]] == [(B, 32, 8, 8), (B, 64, 4, 4)]
    for got, want in zip(cond["id"], guider(latent, px["ref_mask"])):
        torch.testing.assert_close(got, want)
    # the mask enters averaged over each latent cell: an edge through the cells of row 3 gives 0.5 there,
    # the same as a mask that is 0.5 on those pixels
    mask = torch.zeros(B, 1, 16, 16)
    mask[..., 7:, :] = 1
    blurred = mask.clone()
    blurred[..., 6:8, :] = 0.5
    for a, b in zip(guider(latent, mask), guider(latent, blurred)):
        torch.testing.assert_close(a, b)
    assert (guider(latent, mask)[0] - guider(latent, 1 - mask)[0]).abs().max() > 1e-4
    x, c_noise, _ = inputs()
    other = net.conditions(encode, **{**px, "ref": clip(seed=9)["ref"]})
    assert (net(x, c_noise, cond) - net(x, c_noise, other)).abs().max() > 1e-4
    with pytest.raises(ValueError, match="ref_latent"):
        guider(px["ref"], px["ref_mask"])  # pixels where the latent belongs


@torch.no_grad()
def test_video_fusion_concats_the_reference_latent_and_guides_each_masked_frame() -> None:
    net, encode, px = tiny_net(video_fusion=True), tiny_encoder(), clip()
    perturb_(net.id_guider.out_projs)
    cond = net.conditions(encode, **px)
    ref_latent = encode(px["ref"][:, None])[:, 0]
    assert cond["concat"].shape == (B, T, C, 8, 8)
    assert all(torch.equal(cond["concat"][:, t], ref_latent) for t in range(T))
    # per frame: the ID-Guider of masked frame t, (B, T, C_l, h_l, w_l)
    assert [tuple(f.shape) for f in cond["id"]] == [(B, T, 32, 8, 8), (B, T, 64, 4, 4)]
    for t in (0, T - 1):
        for got, want in zip(cond["id"], net.encode_reference(px["masked_video"][:, t], px["mask"][:, t])):
            torch.testing.assert_close(got[:, t], want)
    # the masked video no longer reaches the concat; only its frame 2 changes -> only frame 2's features
    video = px["masked_video"].clone()
    video[:, 2] = -video[:, 2]
    changed = net.conditions(encode, **{**px, "masked_video": video})
    assert torch.equal(changed["concat"], cond["concat"])
    delta = (changed["id"][0] - cond["id"][0]).abs().flatten(2).amax(2)  # (B, T)
    assert torch.all(delta[:, 2] > 1e-4) and torch.all(delta[:, [0, 1, 3]] == 0)
    # per-frame features are added to their own frame: T copies of one feature == that feature shared
    x, c_noise, _ = inputs()
    shared = reference(net)
    per_frame = [f[:, None].expand(-1, T, -1, -1, -1) for f in shared]
    base = {"concat": cond["concat"], "audio": px["audio"]}
    torch.testing.assert_close(net(x, c_noise, {**base, "id": per_frame}),
                               net(x, c_noise, {**base, "id": shared}))
    out = net(x, c_noise, cond)
    assert out.shape == x.shape
    assert (out - net(x, c_noise, {**cond, "id": per_frame})).abs().max() > 1e-4


def test_keep_unmasked_returns_the_known_latents_outside_the_mask() -> None:
    """Known-region blending: D = z_m wherever the mask is 0 (no loss, no gradient there), the net's
    estimate inside, and a latent cell touched by the mask counts as masked."""
    from lipsync.models.denoiser import Denoiser
    from lipsync.models.net import latent_mask
    from lipsync.models.precond import SVDPrecond

    net = tiny_net(keep_unmasked=True, latent_channels=12)  # space-to-depth by 2 of RGB
    perturb_(audio_outs(net))
    h = w = 8
    g = torch.Generator().manual_seed(0)
    video = torch.rand(B, T, 3, 2 * h, 2 * w, generator=g) * 2 - 1
    mask = torch.zeros(B, T, 1, 2 * h, 2 * w)
    mask[..., 9:14, 5:11] = 1  # pixel rows 9-13, cols 5-10 -> latent rows 4-6, cols 2-5
    encode = lambda v: torch.nn.functional.pixel_unshuffle(v.flatten(0, 1), 2).unflatten(0, v.shape[:2])
    ref = torch.rand(B, 3, 2 * h, 2 * w, generator=g) * 2 - 1
    cond = net.conditions(encode, video * (1 - mask), mask, ref, mask[:, 0], torch.randn(B, T, A, D, generator=g))
    expected = torch.zeros(h, w)
    expected[4:7, 2:6] = 1
    assert torch.equal(1 - cond["keep"][0, 0, 0], expected)
    assert torch.equal(latent_mask(mask, (h, w))[0, 0, 0], expected)
    den = Denoiser(net, SVDPrecond())
    x = torch.randn(B, T, 12, h, w, generator=g)
    out = den(x, torch.tensor([0.5, 2.0]), cond)
    outside = cond["keep"].expand_as(out) == 1
    assert torch.equal(out[outside], cond["concat"][outside])
    plain = Denoiser(tiny_net(latent_channels=12), SVDPrecond())
    plain.load_state_dict(den.state_dict())
    free = plain(x, torch.tensor([0.5, 2.0]), {k: v for k, v in cond.items() if k != "keep"})
    assert torch.allclose(out[~outside], free[~outside])
    with pytest.raises(ValueError, match="video fusion"):
        tiny_net(keep_unmasked=True, video_fusion=True)
