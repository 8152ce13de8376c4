"""LipSyncSystem at tiny width: learns, keeps the VAE frozen, is reproducible, guards NaN, logs videos."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lipsync.data.batch import LATENTS, MASKED_LATENTS, MASKED_VIDEO, REF, REF_MASK, VIDEO
from lipsync.data.random_clips import RandomClipDataModule, RandomClips
from lipsync.media import probe
from lipsync.models.loss import DSMLoss
from lipsync.training.callbacks import NonFiniteLossError, NonFiniteLossGuard, ValidationVideoLogger
from lipsync.training.system import ConstantSigma, LipSyncSystem, derived_seed
from test_configs import compose_train

SIZE, FRAMES = 16, 4


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Single-threaded torch: far faster than 2 contended threads on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_system(*overrides: str) -> LipSyncSystem:
    """The experiment=tiny system exactly as configured (plus overrides)."""
    torch.manual_seed(0)
    return instantiate(compose_train(["experiment=tiny", *overrides]).model)


def batch_of(n: int = 2, seed: int = 0, frames: int = FRAMES) -> dict[str, Any]:
    clips = RandomClips(n, frames, SIZE, seed=seed, name="random-train")
    return torch.utils.data.default_collate([clips[i] for i in range(n)])


def trainer(tmp_path: Path, **kwargs: Any) -> L.Trainer:
    kw: dict[str, Any] = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                              enable_progress_bar=False, enable_model_summary=False,
                              default_root_dir=tmp_path, use_distributed_sampler=False,
                              num_sanity_val_steps=0, limit_val_batches=0)
    kw.update(kwargs)
    return L.Trainer(**kw)


def loss_at_sigma(system: LipSyncSystem, batch: dict[str, Any], sigma: float = 1.0, draws: int = 4) -> float:
    """DSM loss of the batch at one noise level, averaged over fixed noise draws, no condition dropout."""
    loss = DSMLoss(ConstantSigma(sigma))
    with torch.no_grad():
        z, cond = system.latents(batch), system.conditions(batch)
        gens = [torch.Generator().manual_seed(1000 + i) for i in range(draws)]
        return float(torch.stack([loss(system.denoiser, z, cond, generator=g).mean() for g in gens]).mean())


def test_tiny_model_overfits_one_batch(tmp_path: Path) -> None:
    """100 real training steps (fresh noise and sigma each step) on one batch of 2 clips of 2 frames.

    Measured at sigma = 2 (ln sigma = 0.7, SVD's P_mean) with fixed noise: at low sigma the masked region's
    DSM loss has a floor (the noise there is unpredictable unless z is memorised to within sigma), so the
    loss over the whole sigma range falls only ~2x in 100 steps, while at sigma = 2 it falls ~3.8x. The
    space-to-depth factor is 2 here (12 latent channels): 48 channels at factor 4 do not fit through width 32.
    """
    system = tiny_system("model.optimizer.lr=3e-3", "model.vae.factor=2", "model.net.net.latent_channels=12",
                         "model.net.net.vae_downsample_factor=2")
    # every batch holds the same 2 clips
    dm = RandomClipDataModule(num_clips=2, num_frames=2, size=SIZE, batch_size=2)
    batch = batch_of(n=2, frames=2)
    before = loss_at_sigma(system, batch, sigma=2.0)
    trainer(tmp_path, max_steps=100).fit(system, datamodule=dm)
    after = loss_at_sigma(system, batch, sigma=2.0)
    assert after < before / 3, f"loss at sigma=2: {before:.4f} -> {after:.4f} after 100 steps on one batch"


def test_vae_is_frozen_outside_the_optimizer_and_in_eval_mode(tmp_path: Path) -> None:
    from diffusers import AutoencoderKLTemporalDecoder

    from lipsync.models.vae import SVDVAE

    vae = SVDVAE(AutoencoderKLTemporalDecoder(down_block_types=("DownEncoderBlock2D",) * 2,
                                              block_out_channels=(32, 64), layers_per_block=1,
                                              latent_channels=4))
    system = tiny_system("model.net.net.latent_channels=4", "model.net.net.vae_downsample_factor=2")
    system = LipSyncSystem(system.net, system.denoiser.precond, system.loss, system.dropout, vae,
                           system.optimizer_factory)
    frozen = {k: v.clone() for k, v in vae.state_dict().items()}
    optimizer = system.configure_optimizers()
    owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not owned & {id(p) for p in vae.parameters()}
    assert owned == {id(p) for p in system.net.parameters()}
    system.train()
    assert system.net.training and not vae.training and not any(m.training for m in vae.modules())
    dm = RandomClipDataModule(num_clips=4, num_frames=2, size=SIZE, batch_size=2)
    trainer(tmp_path, max_steps=2).fit(system, datamodule=dm)
    assert all(torch.equal(frozen[k], v) for k, v in vae.state_dict().items())


def test_cached_latents_give_the_same_loss() -> None:
    system, batch = tiny_system(), batch_of()
    encode = system.vae.encode
    cached = dict(batch, **{LATENTS: encode(batch[VIDEO]), MASKED_LATENTS: encode(batch[MASKED_VIDEO])})
    # Replace the pixels the cache stands for: the loss must come from the cached latents alone.
    cached[VIDEO] = torch.zeros_like(batch[VIDEO])
    cached[MASKED_VIDEO] = torch.zeros_like(batch[MASKED_VIDEO])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    with torch.no_grad():
        fresh = system.loss(system.denoiser, system.latents(batch), system.conditions(batch), generator=g1)
        reused = system.loss(system.denoiser, system.latents(cached), system.conditions(cached), generator=g2)
    assert torch.equal(fresh, reused)


def test_step_randomness_is_a_function_of_seed_rank_and_step() -> None:
    system, batch = tiny_system(), batch_of()

    def loss(*key: object) -> torch.Tensor:
        g = system.step_generator(*key)
        with torch.no_grad():
            cond = system.dropout(system.conditions(batch), g)
            return system.loss(system.denoiser, system.latents(batch), cond, g)

    torch.manual_seed(123)  # the global RNG must not matter
    a = loss("train", 0, 5)
    torch.manual_seed(456)
    assert torch.equal(a, loss("train", 0, 5))
    assert not torch.equal(a, loss("train", 0, 6))
    assert derived_seed(0, 0, "train", 0, 5) != derived_seed(0, 1, "train", 0, 5)  # ranks draw differently


def test_validation_reports_loss_per_sigma_and_generate_is_seeded() -> None:
    system, batch = tiny_system("model.val_sigmas=[0.1,10.0]"), batch_of()
    assert set(system.val_losses) == {"0.1", "10"}
    video = system.generate(batch, num_steps=2, cfg_scale=3.0, seed=7)
    assert video.shape == batch[VIDEO].shape and torch.isfinite(video).all()
    assert torch.equal(video, system.generate(batch, num_steps=2, cfg_scale=3.0, seed=7))
    assert not torch.equal(video, system.generate(batch, num_steps=2, cfg_scale=3.0, seed=8))


# Table 3's identity ablations, as their experiment files set them (conf/experiment/ablation_*.yaml).
ID_ABLATIONS = {
    "no_id_guider": "model.net.net.id_guider=false",
    "vae_feature": ("model.net.net.id_guider="
                    "{_target_:lipsync.models.net.latent_id_guider_for,_partial_:true}"),
    "video_fusion": "model.net.net.video_fusion=true",
}


@pytest.mark.parametrize("ablation", sorted(ID_ABLATIONS))
def test_identity_ablations_route_conditions_and_train(ablation: str) -> None:
    """Each variant's conditions come from the real tiny VAE as SPEC section 7 says; a step trains it."""
    system, batch = tiny_system(ID_ABLATIONS[ablation]), batch_of()
    net, encode = system.net, system.vae.encode
    with torch.no_grad():
        cond, z_m = system.conditions(batch), encode(batch[MASKED_VIDEO])
        ref_latent = encode(batch[REF][:, None])
    if ablation == "no_id_guider":
        assert net.id_guider is None and cond["id"] is None and torch.equal(cond["concat"], z_m)
    elif ablation == "vae_feature":
        assert net.id_guider.takes_latents and torch.equal(cond["concat"], z_m)
        with torch.no_grad():
            want = net.id_guider(ref_latent[:, 0], batch[REF_MASK])
        assert all(torch.equal(a, b) for a, b in zip(cond["id"], want))
    else:
        assert torch.equal(cond["concat"], ref_latent.expand_as(z_m))
        assert cond["id"][0].shape[:2] == batch[VIDEO].shape[:2]  # one ID feature per frame
    system.train()
    loss = system.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    if net.id_guider is not None:  # the zero-initialised outputs are what the first step trains
        assert all(p.grad.abs().sum() > 0 for p in net.id_guider.out_projs.parameters())


class PoisonedClips(RandomClips):
    """Random clips with one NaN pixel in clip ``bad``: a real non-finite input, not a mocked loss."""

    bad = 1

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        if index == self.bad:
            item[VIDEO] = item[VIDEO].clone()
            item[VIDEO][0, 0, 0, 0] = float("nan")
        return item


def test_nan_loss_stops_before_backward_naming_step_and_keys(tmp_path: Path) -> None:
    system = tiny_system()
    dm = RandomClipDataModule(num_clips=4, num_frames=FRAMES, size=SIZE, batch_size=2)
    dm.train_set = PoisonedClips(4, FRAMES, SIZE, seed=0, name="random-train")
    weights = {k: v.clone() for k, v in system.state_dict().items()}
    with pytest.raises(NonFiniteLossError) as info:
        trainer(tmp_path, max_steps=4, callbacks=[NonFiniteLossGuard()]).fit(system, datamodule=dm)
    message = str(info.value)
    assert "global step" in message and "random-train/000001/0" in message
    step = int(message.split("global step ")[1].split()[0])
    if step == 0:  # the poisoned clip came first: no update may have been applied at all
        assert all(torch.equal(weights[k], v) for k, v in system.state_dict().items())
    assert all(torch.isfinite(v).all() for v in system.state_dict().values())


def test_validation_video_logger_writes_gifs_and_mp4(tmp_path: Path) -> None:
    system = tiny_system()
    logger = TensorBoardLogger(tmp_path, name="", version="")
    dm = RandomClipDataModule(num_frames=FRAMES, size=SIZE, val_clips=2, batch_size=2)
    videos = ValidationVideoLogger(num_steps=2, cfg_scale=3.0, max_clips=2, fps=25)
    trainer(tmp_path, logger=logger, callbacks=[videos], limit_val_batches=1).validate(system, datamodule=dm)
    logger.experiment.flush()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0}).Reload()
    for tag in ("val/sample", "val/mask_overlay", "val/mouth_crop"):
        image = events.Images(tag)[0]
        assert image.encoded_image_string[:6] == b"GIF89a"
        assert (image.height, image.width) == (2 * SIZE, 2 * SIZE)  # 2 clips stacked, generated | truth
    assert {"val/loss", "val/loss_sigma=1"} <= set(events.Tags()["scalars"])
    info = probe(tmp_path / "samples" / "step_0000000.mp4")
    assert info.num_frames == FRAMES and (info.width, info.height) == (2 * SIZE, 2 * SIZE)


# --- EMA warm-up and fine-tuning from weights ---------------------------------------------------------
def test_ema_decay_warms_up_and_matches_the_closed_form() -> None:
    from torch.optim.swa_utils import AveragedModel

    from lipsync.training.callbacks import ema_decay, warmup_ema_multi_avg_fn

    assert ema_decay(0.999, 0) == pytest.approx(0.1) and ema_decay(0.999, 90) == pytest.approx(0.91)
    assert ema_decay(0.999, 10**6) == 0.999 and ema_decay(0.999, 0, warmup=False) == 0.999
    # Weights w_k = k at update k (k = 1..n): the average is sum_k w_k * (1 - d_k) * prod_{j>k} d_j with
    # d_1 = 0 (the first update copies): here written out, against AveragedModel's own bookkeeping.
    model = torch.nn.Linear(1, 1, bias=False)
    avg = AveragedModel(model, multi_avg_fn=warmup_ema_multi_avg_fn(decay=0.9), use_buffers=True)
    n, want = 30, 0.0
    for k in range(1, n + 1):
        model.weight.data.fill_(float(k))
        avg.update_parameters(model)
        d = 0.0 if k == 1 else ema_decay(0.9, k - 1)
        want = d * want + (1 - d) * k
    assert avg.module.weight.item() == pytest.approx(want, rel=1e-6)
    # The first weights' share after n updates: prod d_j, not 0.9 ** (n - 1) as without warm-up.
    share = float(torch.tensor([ema_decay(0.9, j) for j in range(1, n)]).prod())
    assert share < 1e-6 < 0.9 ** (n - 1)


def test_init_from_loads_a_checkpoints_or_pipeline_folders_network_and_refuses_another(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from lipsync.train import init_weights

    donor = tiny_system()
    torch.manual_seed(1)
    for p in donor.denoiser.net.parameters():
        p.data.normal_()
    ckpt = tmp_path / "donor.ckpt"
    torch.save({"state_dict": donor.state_dict()}, ckpt)
    fresh = tiny_system()
    assert init_weights(fresh, str(ckpt)) == len(list(donor.denoiser.net.state_dict()))
    for (k, a), b in zip(donor.denoiser.net.state_dict().items(), fresh.denoiser.net.state_dict().values()):
        assert torch.equal(a, b), k
    # A pipeline folder: model.safetensors with the network under "net." (lipsync.infer.checkpoint's layout).
    folder = tmp_path / "pipeline"
    folder.mkdir()
    save_file({f"net.{k}": v.contiguous() for k, v in donor.denoiser.net.state_dict().items()},
              folder / "model.safetensors")
    fresh = tiny_system()
    init_weights(fresh, str(folder))
    assert all(torch.equal(a, b) for a, b in zip(donor.state_dict().values(), fresh.state_dict().values()))
    with pytest.raises(ValueError, match="init_from: .*missing.ckpt does not exist"):
        init_weights(fresh, str(tmp_path / "missing.ckpt"))
    other = tiny_system("model.net.net.block_out_channels=[32,32]")
    with pytest.raises(ValueError, match="different network"):
        init_weights(other, str(ckpt))
