"""Training callbacks: fault handling and tracking (issue 7). The system itself knows none of this.

- :class:`NonFiniteLossGuard`: a NaN/inf loss stops training *before* backward, naming step and batch keys.
- :class:`StopCheckpoint`: ``last.ckpt`` when training stops: SIGTERM (preemption) or the end of training.
- :class:`ValidationVideoLogger`: samples a short clip at validation and logs the video, a mask overlay
  and a mouth crop to TensorBoard (and an mp4 beside the logs).
- :func:`clips_in_batch`: batch size for Lightning's ``ThroughputMonitor`` (clips/s).
- :func:`warmup_ema_multi_avg_fn`: torch's foreach EMA update with a warm-up of the decay, so a short run's
  average is not dominated by its first, random weights.

EMA, periodic checkpoints, learning rate and throughput use Lightning's own callbacks
(``WeightAveraging`` with torch's foreach EMA, ``ModelCheckpoint``, ``LearningRateMonitor``,
``ThroughputMonitor``), configured in ``conf/callbacks/``; checkpoint files are written atomically by
:class:`~lipsync.training.checkpoint_io.AtomicCheckpointIO`.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from PIL import Image
from torch import Tensor

from lipsync.data.batch import KEY, MASK, VIDEO, to_pixel_range
from lipsync.media import MODEL_FPS, write_video
from lipsync.sampling.samplers import SVD_SIGMA_MAX, SVD_SIGMA_MIN

log = logging.getLogger(__name__)


def ema_decay(decay: float, num_averaged: int, warmup: bool = True) -> float:
    """The EMA decay of update number ``num_averaged + 1``: ``min(decay, (1 + n) / (10 + n))`` with warm-up
    (diffusers' ``EMAModel``, after Karras et al.), else ``decay``.

    Without it, a constant decay of 0.999 leaves 0.999 ** 1000 = 37 % of the average on the weights of the
    first step after 1,000 steps: a short run's EMA is then a blend with the random initialisation.
    """
    return min(decay, (1 + num_averaged) / (10 + num_averaged)) if warmup else decay


def warmup_ema_multi_avg_fn(decay: float = 0.999, warmup: bool = True) -> Callable[..., None]:
    """A ``multi_avg_fn`` for :class:`torch.optim.swa_utils.AveragedModel` (Lightning's ``WeightAveraging``):
    torch's foreach EMA update (``get_ema_multi_avg_fn``) with the decay of :func:`ema_decay`."""

    @torch.no_grad()
    def update(ema_params: list[Tensor], current_params: list[Tensor], num_averaged: Tensor | int) -> None:
        d = ema_decay(decay, int(num_averaged), warmup)
        # AveragedModel copies the weights at the first update (num_averaged 0); later ones land here.
        if torch.is_floating_point(ema_params[0]) or torch.is_complex(ema_params[0]):
            torch._foreach_lerp_(ema_params, current_params, 1 - d)
        else:
            for ema, cur in zip(ema_params, current_params):
                ema.copy_(ema * d + cur * (1 - d))

    return update


def clips_in_batch(batch: Mapping[str, Any]) -> int:
    """Clips in a batch-contract batch (``ThroughputMonitor``'s ``batch_size_fn``)."""
    return int(batch[VIDEO].shape[0])


# --- NaN / inf --------------------------------------------------------------------------------------
class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss (or gradient); the message names the step and the batch."""


class NonFiniteLossGuard(Callback):
    """Stop on a non-finite loss before it reaches the weights, reporting the global step and batch keys.

    The loss is checked in ``on_before_backward`` (so no NaN gradient is ever applied) and, with
    ``check_grads``, the gradient norm in ``on_before_optimizer_step`` (bf16 overflow in backward).
    Under DDP the decision is reduced over ranks so every rank stops together instead of hanging.

    Args:
        check_grads: also check that the total gradient norm is finite before each optimizer step.
    """

    def __init__(self, check_grads: bool = True) -> None:
        self.check_grads = check_grads
        self._keys: list[str] = []
        self._batch_idx = -1

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._keys = list(batch.get(KEY, [])) if isinstance(batch, Mapping) else []
        self._batch_idx = batch_idx

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        loss = loss.detach()
        self._stop_if(trainer, not bool(torch.isfinite(loss).all()), f"loss {loss.float().item()}")

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if not self.check_grads:
            return
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        self._stop_if(trainer, not bool(torch.isfinite(norm)), f"gradient norm {norm.item()}")

    def _stop_if(self, trainer: L.Trainer, bad: bool, what: str) -> None:
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        message = (f"non-finite {what} at global step {trainer.global_step} (epoch {trainer.current_epoch}, "
                   f"batch {self._batch_idx}) on rank {trainer.global_rank}; batch keys: {self._keys}")
        if not bad:
            message = f"another rank hit a non-finite value at global step {trainer.global_step}; stopping"
        log.error(message)
        raise NonFiniteLossError(message)


# --- the checkpoint when training stops --------------------------------------------------------------
class StopCheckpoint(Callback):
    """Write ``last.ckpt`` whenever training stops, so no step is lost and the same command resumes there.

    - SIGTERM (cluster preemption): Lightning turns it into a ``SIGTERMException`` raised after the current
      batch, on every rank; this callback saves in ``on_exception`` (a collective save: all ranks take part).
    - The normal end (``max_steps``, ``max_time``) between two periodic checkpoints: saved in
      ``on_train_end``, before the EMA callback copies the average into the live weights (it is listed
      after this one), so a later resume continues the raw weights.

    The file is ``ModelCheckpoint``'s ``last.ckpt``, the one ``ckpt_path=last`` resumes from.

    Args:
        dirpath: where to write when the trainer has no ``ModelCheckpoint`` (default: ``<root>/checkpoints``).
    """

    def __init__(self, dirpath: str | None = None) -> None:
        self.dirpath = dirpath
        self.saved_path: Path | None = None

    def checkpoint_path(self, trainer: L.Trainer) -> Path:
        """``<ModelCheckpoint dir>/last.ckpt``."""
        cb = trainer.checkpoint_callback
        if isinstance(cb, ModelCheckpoint) and cb.dirpath is not None:
            return Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
        return Path(self.dirpath or Path(trainer.default_root_dir) / "checkpoints") / "last.ckpt"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            self.save(trainer, "SIGTERM")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        cb = trainer.checkpoint_callback
        already = isinstance(cb, ModelCheckpoint) and cb._last_global_step_saved == trainer.global_step
        if not trainer.fast_dev_run and trainer.global_step > 0 and not already:
            self.save(trainer, "end of training")

    def save(self, trainer: L.Trainer, why: str) -> None:
        path = self.checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        self.saved_path = path
        log.warning("%s: saved %s at global step %d", why, path, trainer.global_step)


# --- validation videos ------------------------------------------------------------------------------
def to_uint8(video: Tensor) -> np.ndarray:
    """(..., 3, H, W) in [-1, 1] -> (..., H, W, 3) uint8."""
    frames = to_pixel_range(video.detach().float()).round().to(torch.uint8)
    return frames.movedim(-3, -1).cpu().numpy()


def mask_overlay(video: Tensor, mask: Tensor, alpha: float = 0.4) -> Tensor:
    """Tint the edit region red: video (T, 3, H, W) in [-1, 1], mask (T, 1, H, W) -> (T, 3, H, W)."""
    red = torch.tensor([1.0, -1.0, -1.0], device=video.device).view(1, 3, 1, 1)
    return video + alpha * mask * (red - video)


def mouth_crop(video: Tensor, mask: Tensor) -> Tensor:
    """Crop (T, 3, H, W) to the bounding box of the mask over all frames, resized back to (T, 3, H, W)."""
    ys, xs = torch.nonzero(mask.amax(dim=(0, 1)) > 0.5, as_tuple=True)
    if ys.numel() == 0:
        return video
    crop = video[..., int(ys.min()):int(ys.max()) + 1, int(xs.min()):int(xs.max()) + 1]
    return torch.nn.functional.interpolate(crop.float(), size=video.shape[-2:], mode="nearest")


def gif_bytes(frames: np.ndarray, fps: float) -> bytes:
    """Encode (T, H, W, 3) uint8 frames as a looping GIF (TensorBoard shows GIF image summaries as video)."""
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps),
                   loop=0)
    return buf.getvalue()


def add_gif(logger: TensorBoardLogger, tag: str, frames: np.ndarray, step: int, fps: float) -> None:
    """Write (T, H, W, 3) uint8 frames as an animated image summary (``add_video`` without moviepy)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    t, h, w, c = frames.shape
    image = Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=gif_bytes(frames, fps))
    # SummaryWriter.add_video would do exactly this, but needs moviepy 1.x for the GIF encoding.
    summary = Summary(value=[Summary.Value(tag=tag, image=image)])
    logger.experiment._get_file_writer().add_summary(summary, step)


class ValidationVideoLogger(Callback):
    """Sample the first validation clips (EMA weights when EMA is on) and log what they look like.

    Panels, each a clip per row and generated | ground truth side by side:
    ``val/sample`` (whole frame), ``val/mask_overlay`` (edit region tinted red), ``val/mouth_crop``
    (the mask's bounding box, enlarged). Also writes ``samples/step_XXXXXXX.mp4`` in the log dir.

    Args:
        num_steps: Euler steps on Karras sigmas (paper: 15).
        cfg_scale: classifier-free guidance scale (paper: 3.0; 1.0 = no guidance).
        sigma_min, sigma_max: ends of the Karras schedule (SVD's 0.002 and 700; inside the range the
            model is trained on).
        max_clips: clips sampled per validation.
        fps: frame rate of the logged video (the data's, 25 in the paper).
        seed: seed of the initial noise (fixed, so samples are comparable over training).
        every_n_validations: sample only every n-th validation (sampling costs num_steps x passes).
    """

    def __init__(self, num_steps: int = 15, cfg_scale: float = 3.0, max_clips: int = 2,
                 fps: float = MODEL_FPS, seed: int = 0, every_n_validations: int = 1,
                 sigma_min: float = SVD_SIGMA_MIN, sigma_max: float = SVD_SIGMA_MAX) -> None:
        self.num_steps, self.cfg_scale, self.max_clips = num_steps, cfg_scale, max_clips
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.fps, self.seed, self.every_n_validations = fps, seed, every_n_validations
        self._validations = 0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validations += 1

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if (self._validations - 1) % self.every_n_validations:
            return
        clips = {k: v[: self.max_clips] for k, v in batch.items()}
        with trainer.precision_plugin.forward_context():
            generated = pl_module.generate(clips, self.num_steps, self.cfg_scale, self.seed,
                                           self.sigma_min, self.sigma_max)
        self.log_panels(trainer, generated, clips[VIDEO], clips[MASK])

    def log_panels(self, trainer: L.Trainer, generated: Tensor, truth: Tensor, mask: Tensor) -> None:
        """Build the three panels from (B, T, 3, H, W) videos and (B, T, 1, H, W) masks and log them."""
        def panel(fn: Any) -> np.ndarray:
            rows = [torch.cat([fn(g, m), fn(t, m)], dim=-1) for g, t, m in zip(generated, truth, mask)]
            return to_uint8(torch.cat(rows, dim=-2))  # (T, B*H, 2W, 3)

        panels = {"val/sample": panel(lambda v, m: v), "val/mask_overlay": panel(mask_overlay),
                  "val/mouth_crop": panel(mouth_crop)}
        step = trainer.global_step
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for tag, frames in panels.items():
                    add_gif(logger, tag, frames, step, self.fps)
        if trainer.log_dir is not None:
            path = Path(trainer.log_dir) / "samples" / f"step_{step:07d}.mp4"
            write_video(path, panels["val/sample"], self.fps)
