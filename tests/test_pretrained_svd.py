"""Loading SVD from a diffusers folder, and step-0 equivalence with SVD as diffusers computes it.

The test writes a tiny SVD-format folder (tiny ``UNetSpatioTemporalConditionModel`` + tiny
``AutoencoderKLTemporalDecoder``, ``save_pretrained``), loads it with :func:`load_svd`, and checks that our
denoiser D(x; sigma, c) equals diffusers' EulerDiscreteScheduler (v-prediction, Karras sigmas) +
UNet forward with zero image embedding + ``step().pred_original_sample``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel

from lipsync.models.denoiser import Denoiser
from lipsync.models.precond import SVDPrecond
from lipsync.models.pretrained import PretrainedNotFoundError, load_svd, load_unet_weights
from lipsync.models.net import build_net
from lipsync.models.vae import SpaceToDepthVAE, SVDVAE

B, T, H = 1, 3, 16  # latent size H; pixels 2H with the tiny 2-level VAE
CROSS = 32


def tiny_unet() -> UNetSpatioTemporalConditionModel:
    torch.manual_seed(0)
    return UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=CROSS,
        num_attention_heads=(2, 4),
        addition_time_embed_dim=32,
        projection_class_embeddings_input_dim=96,
        in_channels=8,
        out_channels=4,
        layers_per_block=2,
        num_frames=T,
    )


def tiny_vae() -> AutoencoderKLTemporalDecoder:
    torch.manual_seed(1)
    return AutoencoderKLTemporalDecoder(block_out_channels=(32, 64), latent_channels=4, layers_per_block=1,
                                        down_block_types=("DownEncoderBlock2D",) * 2)


@pytest.fixture(scope="module")
def svd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("svd-tiny")
    tiny_unet().save_pretrained(root / "unet")
    tiny_vae().save_pretrained(root / "vae")
    return root


@pytest.fixture(scope="module")
def loaded(svd_dir: Path):
    net, vae = load_svd(svd_dir, id_pixel_channels=16, audio_dim=24, audio_width=32)
    return net.eval(), vae


def test_every_svd_weight_lands(loaded, svd_dir: Path) -> None:
    net, _ = loaded
    report = net.load_report
    assert report.unexpected == []
    assert report.missing, "the new layers should be reported as not from the checkpoint"
    new_layers = ("audio_proj.", "audio_down.", "audio_up.", "id_guider.")
    assert all(k.startswith(new_layers) for k in report.missing)
    saved = UNetSpatioTemporalConditionModel.from_pretrained(svd_dir / "unet").state_dict()
    assert report.loaded == len(saved) == len(net.unet.state_dict())
    for k, v in saved.items():
        assert torch.equal(net.unet.state_dict()[k], v), k


@pytest.mark.parametrize("index", [0, 3, 6, 9])
def test_step0_denoiser_equals_diffusers_svd(loaded, index: int) -> None:
    net, vae = loaded
    g = torch.Generator().manual_seed(index)
    x = torch.randn(B, T, 4, H, H, generator=g) * 3
    z_m = vae.encode(torch.rand(B, T, 3, 2 * H, 2 * H, generator=g) * 2 - 1)
    ref = torch.rand(B, 3, 2 * H, 2 * H, generator=g) * 2 - 1
    cond = {"concat": z_m, "audio": torch.randn(B, T, 10, 24, generator=g),
            "id": net.encode_reference(ref, torch.ones(B, 1, 2 * H, 2 * H))}

    # SVD's scheduler config (stable-video-diffusion-img2vid-xt/scheduler/scheduler_config.json)
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   prediction_type="v_prediction", use_karras_sigmas=True, sigma_min=0.002,
                                   sigma_max=700.0, timestep_type="continuous", steps_offset=1,
                                   timestep_spacing="leading", interpolation_type="linear")
    sched.set_timesteps(10)
    t, sigma = sched.timesteps[index], sched.sigmas[index]
    with torch.no_grad():
        unet_in = torch.cat([sched.scale_model_input(x, t), z_m], dim=2)
        added = torch.tensor([[25 - 1, 127, 0.02]])  # fps - 1, motion bucket, noise augmentation
        v = net.unet(unet_in, t, torch.zeros(B, 1, CROSS), added).sample
        want = sched.step(v, t, x).pred_original_sample
        got = Denoiser(net, SVDPrecond())(x, sigma, cond)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert want.abs().mean() > 0.1


def test_missing_folder_names_path_and_config_key(tmp_path: Path) -> None:
    with pytest.raises(PretrainedNotFoundError, match=r"model\.pretrained") as err:
        load_svd(tmp_path / "nowhere")
    assert "nowhere" in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "unet").mkdir()
    tiny_unet().save_config(tmp_path / "unet")
    net = build_net((32, 64), 2, (2, 4), CROSS, latent_channels=4)
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model"):
        load_unet_weights(net, tmp_path)


def test_wrong_width_checkpoint_is_refused(svd_dir: Path) -> None:
    net = build_net((32, 64), 1, (2, 4), CROSS, latent_channels=4)  # one layer per block: SVD keys left over
    with pytest.raises(ValueError, match="unexpected keys"):
        load_unet_weights(net, svd_dir)


@torch.no_grad()
def test_svd_vae_matches_diffusers_and_chunks(loaded) -> None:
    _, vae = loaded
    assert isinstance(vae, SVDVAE) and (vae.latent_channels, vae.downsample_factor) == (4, 2)
    video = torch.rand(2, T, 3, 2 * H, 2 * H) * 2 - 1
    z = vae.encode(video)
    want = vae.vae.encode(video.flatten(0, 1)).latent_dist.mode() * 0.18215
    torch.testing.assert_close(z, want.reshape(2, T, 4, H, H))
    out = vae.decode(z, chunk=T)
    torch.testing.assert_close(out[1], vae.vae.decode(z[1] / 0.18215, num_frames=T).sample)
    assert vae.decode(z, chunk=2).shape == video.shape
    assert not any(p.requires_grad for p in vae.parameters()) and not vae.train().vae.training


def test_space_to_depth_is_exactly_invertible() -> None:
    codec = SpaceToDepthVAE(factor=4, latent_scale=0.5)
    video = torch.rand(2, 3, 3, 16, 24) * 2 - 1
    z = codec.encode(video)
    assert z.shape == (2, 3, 48, 4, 6) and codec.latent_channels == 48
    assert torch.equal(codec.decode(z), video)
    # pixel (y, x) of colour c lands in channel c*f^2 + (y%f)*f + x%f of latent cell (y//f, x//f)
    assert z[0, 0, 1 * 16 + 2 * 4 + 3, 1, 2] == video[0, 0, 1, 6, 11] * 0.5
    with pytest.raises(ValueError, match="divisible"):
        codec.encode(video[..., :15, :])
