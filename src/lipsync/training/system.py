"""The training system: a LightningModule assembled from built parts (STYLE point 4, SPEC sections 2 and 5).

    encode  ->  drop conditions  ->  denoising score matching loss  ->  log

Everything configurable arrives built (Hydra ``_target_``): the raw network, its preconditioning, the
loss, the condition dropout, the frozen VAE and the optimizer partial. EMA, checkpoint policy, NaN
detection and sample videos are callbacks (:mod:`lipsync.training.callbacks`).

Randomness of a step (noise, sigma, dropout) comes from a generator seeded by
``(seed, rank, epoch, batch_idx)``, not from the global RNG, so a resumed run draws exactly what an
uninterrupted run would have drawn, on every rank, whatever ran in between.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Callable, Iterable, Mapping, Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from lipsync.data.batch import (AUDIO_FEATS, LATENTS, MASK, MASKED_LATENTS, MASKED_VIDEO, REF, REF_MASK,
                                VIDEO, validate_batch)
from lipsync.models.conditions import Cond, ConditionDropout
from lipsync.models.denoiser import Denoiser
from lipsync.models.loss import DSMLoss
from lipsync.models.precond import EDMPrecond
from lipsync.sampling import GuidedDenoiser, karras_sigmas, sample_euler
from lipsync.sampling.samplers import SVD_SIGMA_MAX, SVD_SIGMA_MIN

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[[Optimizer], Any]


def derived_seed(*parts: object) -> int:
    """A 63-bit seed that is a stable function of ``parts`` (same value in every process and run)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class ConstantSigma:
    """A degenerate sigma sampler: every sample at noise level ``sigma`` (loss-vs-sigma diagnostics)."""

    def __init__(self, sigma: float) -> None:
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.sigma = sigma

    def __call__(self, n: int, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> Tensor:
        """(n,) copies of sigma."""
        return torch.full((n,), self.sigma, device=device)


class LipSyncSystem(L.LightningModule):
    """SayAnything training: DSM loss on a clip's VAE latents, conditioned on masked video, audio, identity.

    Args:
        net: raw network F (``LipSyncNet``): ``forward(x_in, c_noise, cond)`` and ``conditions`` (which
            assembles cond from a batch's pixels and the VAE).
        precond: the preconditioning (``SVDPrecond`` for SVD weights, ``EDMPrecond`` from scratch).
        loss: the DSM loss with its sigma distribution; returns a per-sample loss (B,).
        dropout: training-time condition dropout (reference 5 %, audio 15 %, nested).
        vae: frozen codec with ``encode(video (B, T, 3, H, W)) -> (B, T, C, h, w)`` and ``decode``.
        optimizer: partial optimizer, called with the trainable parameters (AdamW, lr 6e-5 in the paper).
        scheduler: optional partial LR scheduler, called with the optimizer, stepped every optimizer step.
        seed: base of the per-step generators.
        pretrained: the SVD folder the net and VAE configs loaded (provenance, kept in the checkpoint's
            hyperparameters; the loading itself happens in those configs).
        val_sigmas: fixed noise levels at which validation also reports the loss (loss-vs-sigma curve).
    """

    # Read by Lightning's ThroughputMonitor; None = FLOPs not counted (throughput still logged).
    flops_per_batch: int | None = None

    def __init__(
        self,
        net: nn.Module,
        precond: EDMPrecond,
        loss: DSMLoss,
        dropout: ConditionDropout,
        vae: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        seed: int = 0,
        pretrained: str | None = None,
        val_sigmas: Sequence[float] = (0.05, 0.3, 1.0, 3.0, 20.0),
    ) -> None:
        super().__init__()
        # Only plain values go into the hyperparameters, so checkpoints load with weights_only=True;
        # the parts themselves are recorded by the run's Hydra config (checkpoint["config"]).
        val_sigmas = [float(s) for s in val_sigmas]
        self.save_hyperparameters({"seed": seed, "pretrained": pretrained, "val_sigmas": val_sigmas})
        self.denoiser = Denoiser(net, precond)
        self.vae = vae.requires_grad_(False).eval()  # frozen: never optimised, never in train mode
        self.loss = loss
        self.dropout = dropout
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.seed = seed
        self.val_losses = {f"{s:g}": DSMLoss(ConstantSigma(s)) for s in val_sigmas}

    @property
    def net(self) -> nn.Module:
        """The raw network F inside the denoiser."""
        return self.denoiser.net

    def train(self, mode: bool = True) -> LipSyncSystem:
        """Switch modes, keeping the frozen VAE in eval mode."""
        super().train(mode)
        self.vae.eval()
        return self

    # --- the paper's training step ------------------------------------------------------------------
    def latents(self, batch: Mapping[str, Any]) -> Tensor:
        """Clean latents z = E(V), (B, T, C, h, w): cached in the batch or encoded by the frozen VAE."""
        cached = batch.get(LATENTS)
        return cached if cached is not None else self.vae.encode(batch[VIDEO])

    def conditions(self, batch: Mapping[str, Any], net: nn.Module | None = None) -> Cond:
        """The role-keyed conditions (SPEC section 2) of a batch, assembled by the net's identity pathway
        (``net``: another network's, e.g. a distillation teacher's with its own ID-Guider; default: this one).

        Paper: ``concat``: z_m = E(V * (1 - M)) (B, T, C, h, w), from the cache when the batch has it;
        ``audio``: (B, T, A, D) per-frame audio windows; ``id``: ID-Guider features of (I_ref, M_ref),
        once per sample. The Table 3 ablations (no ID-Guider, VAE Feature, Video Fusion) change what
        :meth:`lipsync.models.net.LipSyncNet.conditions` puts under ``concat`` and ``id``.
        """
        return (net or self.net).conditions(self.vae.encode, batch[MASKED_VIDEO], batch[MASK], batch[REF],
                                            batch[REF_MASK], batch[AUDIO_FEATS], batch.get(MASKED_LATENTS))

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """One DSM step: encode, drop conditions (reference/audio), loss, log."""
        validate_batch(batch)
        g = self.step_generator("train", self.current_epoch, batch_idx)
        z = self.latents(batch)
        cond = self.dropout(self.conditions(batch), generator=g)
        loss = self.loss(self.denoiser, z, cond, generator=g).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=z.shape[0])
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """Loss under the training sigma distribution and at fixed sigmas with fixed noise."""
        validate_batch(batch)
        z, cond, b = self.latents(batch), self.conditions(batch), batch[VIDEO].shape[0]
        loss = self.loss(self.denoiser, z, cond, generator=self.step_generator("val", batch_idx)).mean()
        self.log("val/loss", loss, prog_bar=True, batch_size=b, sync_dist=True)
        for name, fixed in self.val_losses.items():
            g = self.step_generator("val", batch_idx, name)
            at_sigma = fixed(self.denoiser, z, cond, generator=g).mean()
            self.log(f"val/loss_sigma={name}", at_sigma, batch_size=b, sync_dist=True)
        return loss

    # --- sampling (validation videos) ---------------------------------------------------------------
    @torch.no_grad()
    def generate(self, batch: Mapping[str, Any], num_steps: int = 15, cfg_scale: float = 3.0,
                 seed: int = 0, sigma_min: float = SVD_SIGMA_MIN, sigma_max: float = SVD_SIGMA_MAX) -> Tensor:
        """Sample clips for a batch's conditions: Euler on Karras sigmas with CFG (SPEC section 6).

        ``sigma_min``/``sigma_max`` bound the schedule (SVD's by default): a net trained from scratch
        must start inside the sigma range it was trained on (``sampling`` in the training config).

        Returns:
            (B, T, 3, H, W) decoded video, about [-1, 1].
        """
        cond = self.conditions(batch)
        sigmas = karras_sigmas(num_steps, sigma_min, sigma_max, device=self.device)
        g = torch.Generator(device=self.device).manual_seed(seed)
        z_m = cond["concat"]
        x = sigmas[0] * torch.randn(z_m.shape, generator=g, device=self.device, dtype=z_m.dtype)
        z = sample_euler(GuidedDenoiser(self.denoiser, cond, scale=cfg_scale), x, sigmas)
        return self.vae.decode(z)

    # --- optimisation ---------------------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer owns: the network's (the VAE is frozen and left out)."""
        return [p for p in self.denoiser.parameters() if p.requires_grad]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.trainable_parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- reproducibility ------------------------------------------------------------------------------
    def step_generator(self, *key: object) -> torch.Generator:
        """A generator on this module's device seeded by (seed, rank, *key): same draws after a resume."""
        seed = derived_seed(self.seed, self.global_rank, *key)
        return torch.Generator(device=self.device).manual_seed(seed)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the global RNG states too (anything outside the per-step generators, e.g. net dropout).

        Kept to tensors and plain values so the checkpoint still loads with ``weights_only=True``.
        """
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states is None:
            return
        torch.set_rng_state(states["torch"])
        kind, keys, pos, has_gauss, gauss = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(states["python"])
        if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])
