"""Model summary on the meta device: the paper's full-size parameter counts, FLOPs, memory estimates."""

from __future__ import annotations

import torch

from lipsync.models.net import build_net
from lipsync.summary import build_components, count, flops, net_inputs, parameter_rows, saved_activation_bytes, summary


def test_full_size_parameter_counts_on_meta() -> None:
    rows = dict(parameter_rows(build_components(builtin=True)))
    assert rows["UNet (SVD, from the checkpoint)"] == 1_524_623_082  # SVD-xt's UNet, exactly
    assert abs(rows["ID-Guider (new)"] - 98e6) / 98e6 < 0.05  # the paper's "98M"
    assert 0 < rows["audio attention (new)"] < 0.05 * rows["UNet (SVD, from the checkpoint)"]
    assert rows["denoiser total"] == sum(rows[k] for k in list(rows)[:3])
    assert abs(rows["VAE (frozen)"] - 97.7e6) < 0.1e6  # SVD's AutoencoderKLTemporalDecoder
    assert rows["audio encoder (Whisper, frozen)"] == 7_632_384  # Whisper tiny encoder


def test_flop_counter_on_meta_matches_closed_form() -> None:
    with torch.device("meta"):
        conv, x = torch.nn.Conv2d(8, 16, 3, padding=1), torch.empty(2, 8, 10, 10)
    assert flops(lambda: conv(x)) == 2 * (2 * 16 * 10 * 10) * (8 * 9)  # 2 FLOP per MAC


def test_activation_estimate_checkpointing_saves_memory() -> None:
    with torch.device("meta"):
        net = build_net((32, 64), 1, (2, 4), 32, cross_attn_levels=2, audio_dim=24, audio_width=32).to("meta")
    plain, ckpt = saved_activation_bytes(net, frames=4, latent=16)
    assert 0 < ckpt < plain
    assert net._call.__func__ is type(net)._call  # instrumentation removed
    assert next(net.parameters()).dtype == torch.float32


def test_summary_report_prints_every_component() -> None:
    text = summary(frames=2, size=64, memory=False, builtin=True)
    for needle in ("1,524,623,082", "ID-Guider", "audio attention", "VAE", "Whisper", "TFLOP"):
        assert needle in text
    c = build_components(builtin=True)
    x, _, cond = net_inputs(c.net, 16, 40)
    assert count(c.net.unet) == 1_524_623_082 and x.shape == (1, 16, 4, 40, 40) and cond["audio"].shape[-1] == 384
