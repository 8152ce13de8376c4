"""Consistency distillation of a trained model into a 1-2 pass student with its guidance folded in (issue 28).

    pick a step of the teacher's schedule  ->  noise the clip to its upper level  ->  one guided Euler step
    of the frozen teacher  ->  the target network's estimate there  ->  the student matches it from above

Method: consistency distillation (Song et al. 2023, "Consistency Models", eq. 7 and Algorithm 2) in the
form Latent Consistency Models use for a guided teacher (Luo et al. 2023, eq. 9): the teacher's ODE step
is guided, so the student learns the guided trajectory and samples without an unconditional pass. Chosen
over progressive distillation (Salimans & Ho 2022; Meng et al. 2023 for guided models), which needs
log2(15) ~ 4 sequential rounds, each a full training run, to reach one pass, and over distribution matching
(DMD, Yin et al. 2024), which trains a second "fake score" network beside the student (twice the memory and
a second optimiser). Here one run fine-tunes one network; the teacher's step is the Euler step of its own
15-step schedule (the paper preset's), so the student learns to jump along exactly the trajectory the
teacher is dubbed with.

The student is the teacher's network under the teacher's preconditioning, initialised from its weights:
the consistency boundary condition f(x, sigma_min) = x holds to c_out(sigma_min) = 0.002 under SVD's
(and EDM's) c_skip / c_out, so a converted student is an ordinary pipeline folder; only its sampler
differs (:func:`lipsync.sampling.sample_consistency`, preset ``student``).

Randomness of a step (schedule step, noise) comes from the per-step generators of
:class:`~lipsync.training.system.LipSyncSystem`, so a resumed run draws what an uninterrupted run would.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from lipsync.assets import ROOT
from lipsync.data.batch import validate_batch
from lipsync.models.conditions import Cond, ConditionDropout
from lipsync.models.denoiser import Denoiser
from lipsync.models.loss import DSMLoss
from lipsync.models.precond import EDMPrecond, append_dims
from lipsync.sampling import GuidedDenoiser, consistency_sigmas, karras_sigmas, sample_consistency
from lipsync.sampling.samplers import euler_step
from lipsync.terminal import one_line
from lipsync.training.checkpoint_io import read_net_weights
from lipsync.training.system import LipSyncSystem, OptimizerFactory, SchedulerFactory

DenoiseFn = Callable[[Tensor, Tensor], Tensor]


def pseudo_huber(a: Tensor, b: Tensor, c: float) -> Tensor:
    """Per-sample distance (B,): ``sqrt(mean((a - b)^2) + c^2) - c`` (Song & Dhariwal 2023, iCT, eq. 7,
    with the squared norm taken as a mean so ``c`` is in data units); ``c = 0`` gives mean squared error."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1)
    return mse if c == 0 else (mse + c**2).sqrt() - c


class ConsistencyDistillation:
    """The consistency distillation loss on the teacher's Karras schedule (Song et al. 2023, eq. 7).

    For a clean clip ``z``: a step n of the schedule sigma_0 > ... > sigma_{N-1} (uniform), ``x = z +
    sigma_n * eps``, the guided teacher's Euler step ``x' = x + (sigma_{n+1} - sigma_n) (x - D_teacher(x)) /
    sigma_n``, and the loss ``d(D_student(x, sigma_n), D_target(x', sigma_{n+1}))``, no gradient through the
    target.

    Args:
        num_scales: N, the levels of the teacher's schedule (its paper preset samples 15 Euler steps).
        sigma_min, sigma_max: the schedule's ends (the teacher's sampling range).
        rho: Karras' rho.
        huber_c: pseudo-Huber constant of :func:`pseudo_huber` (iCT's 0.00054 per dimension, data in
            [-1, 1]); 0 = mean squared error.
    """

    def __init__(self, num_scales: int = 15, sigma_min: float = 0.002, sigma_max: float = 20.0,
                 rho: float = 7.0, huber_c: float = 0.00054) -> None:
        if num_scales < 2 or not 0 < sigma_min < sigma_max or huber_c < 0:
            raise ValueError(f"need num_scales >= 2, 0 < sigma_min < sigma_max and huber_c >= 0; got "
                             f"{num_scales}, {sigma_min}, {sigma_max}, {huber_c}")
        self.sigmas = karras_sigmas(num_scales, sigma_min, sigma_max, rho)[:-1]  # (N,) descending, no final 0
        self.huber_c = float(huber_c)

    def pair(self, z: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(x (B, ...) noised to sigma_n, sigma_n (B,), sigma_{n+1} (B,)) for a uniform step n per sample."""
        n = torch.randint(0, len(self.sigmas) - 1, (z.shape[0],), generator=generator, device=z.device)
        sigmas = self.sigmas.to(z.device)
        sigma, sigma_next = sigmas[n].to(z.dtype), sigmas[n + 1].to(z.dtype)
        eps = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        return z + append_dims(sigma, z.ndim) * eps, sigma, sigma_next

    @torch.no_grad()
    def target(self, teacher: DenoiseFn, target: DenoiseFn, x: Tensor, sigma: Tensor,
               sigma_next: Tensor) -> Tensor:
        """``D_target(x', sigma_next)`` at the guided teacher's Euler step ``x'`` from ``(x, sigma)``."""
        s, s_next = append_dims(sigma, x.ndim), append_dims(sigma_next, x.ndim)
        x_next = euler_step(x, teacher(x, sigma), s, s_next)
        return target(x_next, sigma_next)

    def __call__(self, student: DenoiseFn, teacher: DenoiseFn, target: DenoiseFn, z: Tensor,
                 generator: torch.Generator | None = None) -> Tensor:
        """Per-sample loss (B,) for clean latents ``z`` (B, T, C, h, w); the caller takes the mean."""
        x, sigma, sigma_next = self.pair(z, generator)
        y = self.target(teacher, target, x, sigma, sigma_next)
        return pseudo_huber(student(x, sigma), y, self.huber_c)


def local_path(path: str | os.PathLike) -> Path:
    """A configured path as given, else relative to the repository root (``models/showcase``)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or p.exists() else ROOT / p


class DistillSystem(LipSyncSystem):
    """A student distilled from a frozen teacher by :class:`ConsistencyDistillation`, beside
    :class:`LipSyncSystem` (whose parts it takes: the student's net, preconditioning, VAE, optimizer).

    The teacher is the same network with the weights of ``teacher`` (a pipeline folder or a training
    checkpoint); the student starts from them. The target is an EMA of the student with decay
    ``target_decay`` (LCM's 0.95; 0 = the student itself without gradient, as iCT found best), kept in the
    checkpoint so a resumed run continues it. Validation reports the student's DSM loss (``loss``), as the
    diffusion system does, and samples videos with the student's passes.

    Args:
        net, precond, vae, optimizer, scheduler, seed, pretrained, val_sigmas: as :class:`LipSyncSystem`.
        loss: the DSM loss of validation (the student's single-step denoising, a diagnostic).
        distillation: the training loss.
        teacher: the teacher's pipeline folder or ``.ckpt`` (relative paths from the repository root).
        teacher_scale: the guidance scale folded into the student (the teacher's recorded ``cfg_scale``).
        target_decay: EMA decay of the target network.
        sample_sigmas: the student's pass levels (``sampling.student_sigmas``), for validation videos.
        dropout: unused (the student learns the fully conditioned, guided trajectory); None.
    """

    def __init__(self, net: nn.Module, precond: EDMPrecond, loss: DSMLoss, vae: nn.Module,
                 optimizer: OptimizerFactory, distillation: ConsistencyDistillation, teacher: str,
                 teacher_scale: float = 2.0, target_decay: float = 0.95,
                 sample_sigmas: Sequence[float] = (20.0, 0.82), scheduler: SchedulerFactory | None = None,
                 seed: int = 0, pretrained: str | None = None,
                 val_sigmas: Sequence[float] = (0.05, 0.3, 1.0, 3.0, 20.0),
                 dropout: ConditionDropout | None = None) -> None:
        if not 0 <= target_decay < 1:
            raise ValueError(f"target_decay must be in [0, 1), got {target_decay}")
        super().__init__(net, precond, loss, dropout, vae, optimizer,  # type: ignore[arg-type]
                         scheduler, seed, pretrained, val_sigmas)
        self.save_hyperparameters({**self.hparams, "teacher": str(teacher),
                                   "teacher_scale": float(teacher_scale), "target_decay": float(target_decay),
                                   "sample_sigmas": [float(s) for s in sample_sigmas]})
        weights = read_net_weights(local_path(teacher), "model.teacher")
        self.teacher = Denoiser(copy.deepcopy(net), precond).requires_grad_(False).eval()
        try:
            self.teacher.net.load_state_dict(weights, strict=True)
        except RuntimeError as err:
            raise ValueError(f"model.teacher: {teacher} holds another network than model.net "
                             f"({one_line(err, last=True)})") from None
        self.denoiser.net.load_state_dict(weights)  # the student starts as the teacher
        self.target = (Denoiser(copy.deepcopy(self.denoiser.net), precond).requires_grad_(False)
                       if target_decay > 0 else None)
        self.distillation, self.teacher_scale, self.target_decay = distillation, teacher_scale, target_decay
        self.sample_sigmas = [float(s) for s in sample_sigmas]

    def train(self, mode: bool = True) -> DistillSystem:
        """Switch modes, keeping the frozen VAE and teacher in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """One consistency distillation step: encode, the three networks' conditions, loss, log."""
        validate_batch(batch)
        g = self.step_generator("train", self.current_epoch, batch_idx)
        z = self.latents(batch)
        cond = self.conditions(batch)
        with torch.no_grad():
            teacher_cond = self.conditions(batch, self.teacher.net)
            teacher = GuidedDenoiser(self.teacher, teacher_cond, self.teacher_scale)
            target_net = self.target if self.target is not None else self.denoiser
            target_cond = self.conditions(batch, self.target.net) if self.target is not None else cond
        loss = self.distillation(lambda x, s: self.denoiser(x, s, cond), teacher,
                                 lambda x, s: target_net(x, s, target_cond), z, generator=g).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=z.shape[0])
        return loss

    @torch.no_grad()
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Move the target towards the student after each optimizer step: ``target = mu target + (1 - mu)
        student`` (Song et al. 2023, Algorithm 2)."""
        if self.target is None:
            return
        for t, s in zip(self.target.net.parameters(), self.denoiser.net.parameters()):
            t.lerp_(s, 1 - self.target_decay)

    @torch.no_grad()
    def generate(self, batch: Mapping[str, Any], num_steps: int = 2, cfg_scale: float = 1.0, seed: int = 0,
                 sigma_min: float = 0.002, sigma_max: float = 20.0) -> Tensor:
        """Sample clips with the student's first ``num_steps`` passes (validation videos); ``cfg_scale``
        1 runs no unconditional pass; the levels are ``sample_sigmas`` (``sigma_min``/``max`` unused).

        Returns:
            (B, T, 3, H, W) decoded video, about [-1, 1].
        """
        cond = self.conditions(batch)
        sigmas = consistency_sigmas(self.sample_sigmas, min(num_steps, len(self.sample_sigmas)), self.device)
        g = torch.Generator(device=self.device).manual_seed(seed)
        z_m = cond["concat"]
        x = sigmas[0] * torch.randn(z_m.shape, generator=g, device=self.device, dtype=z_m.dtype)
        noise = lambda i: torch.randn(z_m.shape, generator=g, device=self.device,  # noqa: E731
                                      dtype=z_m.dtype)
        guided = GuidedDenoiser(self.denoiser, cond, scale=cfg_scale)
        z = sample_consistency(guided, x, sigmas, noise_sampler=noise)
        return self.vae.decode(z)
