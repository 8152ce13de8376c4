"""Issue 28's student: the consistency sampler and the distillation target in closed form, DistillSystem at
tiny width (guided teacher, frozen; the loss falls; the target follows the student), and the training
command's recorded config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from safetensors.torch import save_file

from _shipped_model import compose_command, without_run_settings
from lipsync.infer.loading import pipeline_config_from_training
from lipsync.sampling import (consistency_sigmas, evaluation_sigmas, karras_sigmas, network_passes,
                              sample_consistency)
from lipsync.training.distill import ConsistencyDistillation, DistillSystem, pseudo_huber
from test_configs import compose_train
from test_system import batch_of

ROOT = Path(__file__).resolve().parents[1]
SHOWCASE = ROOT / "models" / "showcase"
# The student's training command (conf/experiment/distill.yaml's header; a later session trains it).
COMMAND = ["experiment=distill", "torch_threads=1"]
# experiment=tiny at 16 px, 2 frames, space-to-depth factor 2 (tests/test_resume.py's tiny run).
TINY = ["experiment=tiny", "data.size=16", "data.num_frames=2", "data.batch_size=2", "data.num_clips=2",
        "model.vae.factor=2", "model.net.net.latent_channels=12", "model.net.net.vae_downsample_factor=2",
        "trainer.limit_val_batches=0", "callbacks.progress=null", "callbacks.video=null", "torch_threads=1"]
SIGMA_D = 0.5  # the closed-form data: every latent element ~ N(0, SIGMA_D^2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gaussian_D(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The exact denoiser of N(0, SIGMA_D^2) data: E[z | x] = SIGMA_D^2 / (SIGMA_D^2 + sigma^2) x."""
    s = torch.as_tensor(sigma).reshape(-1, *([1] * (x.ndim - 1)))
    return SIGMA_D**2 / (SIGMA_D**2 + s**2) * x


def gaussian_f(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Its exact consistency function: the probability-flow ODE from (x, sigma) to sigma = 0 scales x by
    SIGMA_D / sqrt(SIGMA_D^2 + sigma^2)."""
    s = torch.as_tensor(sigma).reshape(-1, *([1] * (x.ndim - 1)))
    return SIGMA_D / (SIGMA_D**2 + s**2).sqrt() * x


# --- the sampler ------------------------------------------------------------------------------------------
def test_one_pass_is_the_estimate_at_sigma_max_and_two_passes_renoise_it_once() -> None:
    calls: list[tuple[float, torch.Tensor]] = []

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        calls.append((float(sigma), x.clone()))
        return 0.5 * x + float(sigma)

    x, n = torch.randn(1, 2, 3, 4, 4), torch.randn(1, 2, 3, 4, 4)
    one = sample_consistency(denoise, x, consistency_sigmas([20.0, 0.82], 1))
    assert torch.equal(one, 0.5 * x + 20.0) and [s for s, _ in calls] == [20.0]
    calls.clear()
    two = sample_consistency(denoise, x, consistency_sigmas([20.0, 0.82], 2), noise_sampler=lambda i: n)
    assert [s for s, _ in calls] == pytest.approx([20.0, 0.82])
    renoised = (0.5 * x + 20.0) + 0.82 * n  # D(x, 20) re-noised to 0.82
    torch.testing.assert_close(calls[1][1], renoised)
    torch.testing.assert_close(two, 0.5 * renoised + 0.82)
    # NFE = passes, none guided (the student's guidance scale is 1): what FLOP counting reads.
    levels = evaluation_sigmas("consistency", consistency_sigmas([20.0, 0.82], 2))
    assert levels == pytest.approx([20.0, 0.82]) and network_passes(levels, guided_passes=1) == 2
    with pytest.raises(ValueError, match="records 2 pass levels"):
        consistency_sigmas([20.0, 0.82], 3)


# --- the distillation target --------------------------------------------------------------------------------
def test_the_pair_is_two_neighbouring_levels_of_the_teachers_schedule() -> None:
    cd = ConsistencyDistillation(num_scales=15, sigma_min=0.002, sigma_max=20.0)
    torch.testing.assert_close(cd.sigmas, karras_sigmas(15, 0.002, 20.0)[:-1])
    z = torch.randn(64, 1, 1, 2, 2)
    g = torch.Generator().manual_seed(0)
    x, sigma, sigma_next = cd.pair(z, g)
    index = [int((cd.sigmas - s).abs().argmin()) for s in sigma]
    assert torch.equal(sigma_next, cd.sigmas[[i + 1 for i in index]])
    assert set(index) <= set(range(14)) and len(set(index)) > 8  # uniform over the 14 steps
    g = torch.Generator().manual_seed(0)
    torch.randint(0, 14, (64,), generator=g)  # the draws pair() makes, in its order
    eps = torch.randn(z.shape, generator=g)
    torch.testing.assert_close(x, z + sigma.reshape(-1, 1, 1, 1, 1) * eps)


def test_the_target_is_the_target_network_at_the_teachers_euler_step() -> None:
    cd = ConsistencyDistillation()
    x = torch.randn(3, 2, 1, 2, 2)
    sigma, sigma_next = torch.tensor([20.0, 2.3998, 0.0201]), torch.tensor([13.7352, 1.4357, 0.0070])
    teacher = lambda x, s: 0.3 * x  # noqa: E731
    target = lambda x, s: x * s.reshape(-1, 1, 1, 1, 1)  # noqa: E731
    by_hand = []
    for i in range(3):  # EDM Algorithm 2 line 5: x' = x + (s' - s) (x - D(x)) / s
        x_next = x[i] + (sigma_next[i] - sigma[i]) * (x[i] - 0.3 * x[i]) / sigma[i]
        by_hand.append(x_next * sigma_next[i])
    torch.testing.assert_close(cd.target(teacher, target, x, sigma, sigma_next), torch.stack(by_hand))


def test_the_exact_consistency_function_is_what_the_loss_wants_on_gaussian_data() -> None:
    """On N(0, SIGMA_D^2) data with the exact teacher, the exact consistency function (student = target = f*)
    leaves only the Euler steps' error, which falls as h^4 (squared O(h^2) local error) with a finer grid; the
    teacher's own denoiser as a student is far from consistent (measured: 7.8e-5 vs 1.8e-3 at 15 levels,
    4.3e-6 at 30)."""
    z = SIGMA_D * torch.randn(256, 2, 1, 4, 4, generator=torch.Generator().manual_seed(1))

    def loss(student: Any, target: Any, num_scales: int = 15) -> float:
        cd = ConsistencyDistillation(num_scales=num_scales, huber_c=0.0)
        return float(cd(student, gaussian_D, target, z, torch.Generator().manual_seed(2)).mean())

    exact, denoiser = loss(gaussian_f, gaussian_f), loss(gaussian_D, gaussian_D)
    assert exact < denoiser / 10 and loss(gaussian_f, gaussian_f, num_scales=30) < exact / 8


def test_pseudo_huber_is_mse_at_zero_and_near_the_rms_error_beyond_c() -> None:
    a, b = torch.zeros(2, 4), torch.tensor([[0.1] * 4, [3.0] * 4])
    torch.testing.assert_close(pseudo_huber(a, b, 0.0), torch.tensor([0.01, 9.0]))
    torch.testing.assert_close(pseudo_huber(a, b, 0.01), torch.tensor([0.0101, 9.0001]).sqrt() - 0.01)
    assert float(pseudo_huber(a, b, 0.01)[1]) == pytest.approx(3.0, abs=0.011)


# --- DistillSystem at tiny width ----------------------------------------------------------------------------
def tiny_teacher(folder: Path, seed: int = 3) -> Path:
    """A pipeline folder (``model.safetensors``, ``net.*``) holding a seeded tiny network: the teacher."""
    torch.manual_seed(seed)
    net = instantiate(compose_train(TINY).model.net)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({f"net.{k}": v.contiguous() for k, v in net.state_dict().items()}, folder / "model.safetensors")
    return folder


def tiny_distill(teacher: Path, output_dir: Path | str = "unused", *overrides: str) -> DictConfig:
    """experiment=tiny with experiment=distill's model node (teacher, CFG 2, target EMA, 15-step grid)."""
    cfg = compose_train([*TINY, *overrides], output_dir)
    distill = compose_train(["experiment=distill"]).model
    with open_dict(cfg):
        cfg.model._target_, cfg.model.dropout = distill._target_, None
        for key in ("teacher_scale", "target_decay", "distillation"):
            cfg.model[key] = distill[key]
        cfg.model.teacher, cfg.model.sample_sigmas = str(teacher), [20.0, 0.82]
        cfg.sampling = {**cfg.sampling, "sigma_max": 20.0, "cfg_scale": 1.0, "student_sigmas": [20.0, 0.82]}
    return cfg


def test_the_student_starts_as_the_teacher_and_learns_with_the_guided_teacher_frozen(tmp_path: Path) -> None:
    """10 steps of experiment=distill's optimizer (AdamW 1e-4) on one batch with the draws of step 0 (schedule
    step and noise): the loss falls (measured 0.105 -> 0.08 in 8 steps; Adam's first step, +-lr on every
    weight, raises it once), the teacher is guided (one CFG batch per step) and stays as it was."""
    system: DistillSystem = instantiate(tiny_distill(tiny_teacher(tmp_path / "teacher")).model)
    weights = {k: v.clone() for k, v in system.teacher.net.state_dict().items()}
    assert all(torch.equal(a, b) for a, b in zip(weights.values(), system.denoiser.net.state_dict().values()))
    assert not any(p.requires_grad for p in system.teacher.parameters())
    batch, batch_sizes, losses = batch_of(n=2, frames=2), [], []
    hook = system.teacher.net.register_forward_pre_hook(lambda _, args: batch_sizes.append(args[0].shape[0]))
    optimizer = system.configure_optimizers()
    for _ in range(10):
        optimizer.zero_grad()
        loss = system.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        system.on_train_batch_end(None, batch, 0)
        losses.append(float(loss))
    hook.remove()
    with torch.no_grad():
        after = float(system.training_step(batch, 0))
    assert after < 0.85 * losses[0], f"distillation loss {losses} -> {after:.4f} on one batch"
    assert batch_sizes == [4] * 10  # CFG at scale 2: (uncond, cond) of the 2 clips in one batch per step
    assert all(torch.equal(weights[k], v) for k, v in system.teacher.net.state_dict().items())


def test_the_target_moves_towards_the_student_by_its_decay(tmp_path: Path) -> None:
    system: DistillSystem = instantiate(tiny_distill(tiny_teacher(tmp_path / "teacher")).model)
    target, student = next(system.target.net.parameters()), next(system.denoiser.net.parameters())
    with torch.no_grad():
        target.fill_(1.0), student.fill_(3.0)
    system.on_train_batch_end(None, None, 0)
    assert torch.allclose(target, torch.full_like(target, 0.95 * 1.0 + 0.05 * 3.0))
    ict: DistillSystem = instantiate(tiny_distill(tmp_path / "teacher", "unused").model, target_decay=0.0)
    assert ict.target is None  # the student itself, without gradient (iCT)


def test_a_teacher_of_another_network_is_one_line(tmp_path: Path) -> None:
    teacher = tiny_teacher(tmp_path / "teacher")
    cfg = tiny_distill(teacher, "unused", "model.net.net.block_out_channels=[32,32]")
    # (Hydra's instantiate wraps the ValueError; train's entry point prints it as one line)
    with pytest.raises(Exception, match="model.teacher: .* holds another network than model.net"):
        instantiate(cfg.model)
    with pytest.raises(Exception, match="model.teacher: .*missing.* does not exist"):
        instantiate(tiny_distill(tmp_path / "missing").model)


# --- the training command ---------------------------------------------------------------------------------
def test_the_distill_command_records_a_student_of_the_showcase(tmp_path: Path) -> None:
    """What convert will record for the command's run: the showcase's network, mask, preprocessing and sigma
    range, guidance 1 (folded in) and the student's pass levels; the teacher: the showcase at its own CFG."""
    composed = compose_command(COMMAND)
    path = tmp_path / "config.yaml"
    path.write_text(OmegaConf.to_yaml(composed))
    student = pipeline_config_from_training(tmp_path / "last.ckpt", train_config=path)
    showcase = json.loads((SHOWCASE / "config.json").read_text())
    for name in ("net", "precond", "mask"):
        assert student["components"][name] == without_run_settings(showcase["components"][name]), name
    assert student["preprocess"] == showcase["preprocess"]
    assert student["sampling"] == {"cfg_scale": 1.0, "sigma_min": 0.002, "sigma_max": 20.0,
                                   "student_sigmas": [20.0, 0.82]}
    model = composed["model"]
    assert model["teacher"] == "models/showcase"
    assert model["teacher_scale"] == showcase["sampling"]["cfg_scale"]
    assert model["distillation"]["sigma_max"] == showcase["sampling"]["sigma_max"]
    assert composed["data"]["shards"] == "outputs/showcase/stage4/shards" and composed["init_from"] is None
