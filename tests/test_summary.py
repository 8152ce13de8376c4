"""Model summary on the meta device: the paper's full-size parameter counts, FLOPs, memory estimates."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf
from whisper.model import AudioEncoder

from lipsync.models.net import build_net
from lipsync.models.vae import SpaceToDepthVAE
from lipsync.summary import (Components, audio_tokens, flops, meta_components, net_inputs, parameter_rows,
                             saved_activation_bytes, summary, unet_flops)


def tiny_components() -> Components:
    with torch.device("meta"):
        net = build_net((32, 64), 1, (2, 4), 32, cross_attn_levels=2, latent_channels=12,
                        vae_downsample_factor=2, audio_dim=24, audio_width=32)
        whisper = AudioEncoder(n_mels=80, n_ctx=1500, n_state=32, n_head=2, n_layer=1)
    return Components(net.to("meta"), SpaceToDepthVAE(2), whisper.to("meta"), "tiny test")


def test_full_size_parameter_counts_and_unet_flops_on_meta() -> None:
    c = meta_components(["experiment=full"])
    assert (c.frames, c.size, c.audio_tokens) == (16, 320, 10)  # the paper's clip; 2 (2m + 1) at m = 2
    rows = dict(parameter_rows(c))
    assert rows["UNet (SVD, from the checkpoint)"] == 1_524_623_082  # SVD-xt's UNet, exactly
    assert abs(rows["ID-Guider (new)"] - 98e6) / 98e6 < 0.05  # the paper's "98M"
    assert 0 < rows["audio attention (new)"] < 0.05 * rows["UNet (SVD, from the checkpoint)"]
    assert rows["denoiser total"] == sum(rows[k] for k in list(rows)[:3])
    assert abs(rows["VAE (frozen)"] - 97.7e6) < 0.1e6  # SVD's AutoencoderKLTemporalDecoder
    assert rows["audio encoder (Whisper, frozen)"] == 7_632_384  # Whisper tiny encoder
    x, c_noise, cond = net_inputs(c.net, 16, 40, c.audio_tokens)  # 16 frames at 320 px
    assert abs(unet_flops(c.net, x, cond["concat"], c_noise) / 1e12 - 7.47) < 0.05


def test_audio_tokens_follow_the_data_config() -> None:
    assert audio_tokens(OmegaConf.create({"audio_context": 3})) == 14  # shards: 2 steps/frame x (2m + 1)
    assert audio_tokens(OmegaConf.create({"audio_tokens": 6, "audio_context": 3})) == 6  # random clips


def test_flop_counter_on_meta_matches_closed_form() -> None:
    with torch.device("meta"):
        conv, x = torch.nn.Conv2d(8, 16, 3, padding=1), torch.empty(2, 8, 10, 10)
    assert flops(lambda: conv(x)) == 2 * (2 * 16 * 10 * 10) * (8 * 9)  # 2 FLOP per MAC


def test_activation_estimate_checkpointing_saves_memory() -> None:
    net = tiny_components().net
    plain, ckpt = saved_activation_bytes(net, frames=4, latent=16, tokens=10)
    assert 0 < ckpt < plain
    assert net._call.__func__ is type(net)._call  # instrumentation removed
    assert next(net.parameters()).dtype == torch.float32


def test_summary_report_prints_every_component() -> None:
    text = summary(frames=4, size=32, components=tiny_components())
    for needle in ("UNet", "ID-Guider", "audio attention", "VAE", "Whisper", "TFLOP", "ESTIMATES", "GiB"):
        assert needle in text
