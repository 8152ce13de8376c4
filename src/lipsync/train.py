"""Train SayAnything: ``python -m lipsync.train experiment=tiny`` (Hydra; configs in ``conf/``).

    python -m lipsync.train experiment=tiny                      # CPU, tiny width
    python -m lipsync.train experiment=full model.pretrained=/weights/stable-video-diffusion-img2vid-xt
    python -m lipsync.train -m experiment=full,ablation_wo_cfg hydra/launcher=slurm   # sweep on SLURM
    python -m lipsync.train experiment=full debug=smoke          # any experiment, one CPU step

Runs live in ``lightning_logs/<name>/`` (TensorBoard events, ``checkpoints/``, the composed config).
Running the same command again resumes from ``checkpoints/last.ckpt`` (``ckpt_path=last``, the
default); ``ckpt_path=null`` starts afresh, ``ckpt_path=FILE`` resumes from a given checkpoint.

The config directory is found in this order: ``$LIPSYNC_CONF``, ``conf/`` inside the installed package,
``conf/`` at the root of a source checkout.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from lipsync.cli import user_errors

log = logging.getLogger(__name__)

CONF_ENV = "LIPSYNC_CONF"
# Exit status after a SIGTERM checkpoint (128 + 15, what a shell reports), so SLURM/submitit requeue.
PREEMPTED_EXIT = 143


def config_dir() -> Path:
    """The Hydra config directory: ``$LIPSYNC_CONF``, else the packaged ``conf/``, else the checkout's."""
    if os.environ.get(CONF_ENV):
        path = Path(os.environ[CONF_ENV]).expanduser().resolve()
        if not (path / "train.yaml").is_file():
            raise FileNotFoundError(f"${CONF_ENV}={path} has no train.yaml; point it at lipsync's conf/")
        return path
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no lipsync conf/train.yaml next to {here} or in the checkout; set ${CONF_ENV}")


def per_device_batch(global_batch: int, devices: Any, num_nodes: int = 1, accumulate: int = 1) -> int:
    """Per-process batch that keeps the global batch (paper: 16) for any cluster shape."""
    if not isinstance(devices, int):
        raise ValueError(f"global_batch_size needs an integer trainer.devices, got {devices!r}")
    parts = devices * num_nodes * accumulate
    if global_batch % parts:
        raise ValueError(f"global batch {global_batch} is not divisible by devices {devices} x nodes "
                         f"{num_nodes} x accumulate_grad_batches {accumulate} = {parts}; change one of them")
    return global_batch // parts


if not OmegaConf.has_resolver("per_device_batch"):
    OmegaConf.register_new_resolver("per_device_batch", per_device_batch)


class RunConfig(Callback):
    """Store the resolved run config in every checkpoint (``checkpoint["config"]``), so inference and
    evaluation can rebuild exactly the network that was trained."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["config"] = self.config


def instantiate_all(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` node of a keyed group (callbacks, loggers); null entries are off."""
    if not cfg:
        return []
    return [instantiate(node) for node in cfg.values() if node is not None and "_target_" in node]


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer]:
    """Data, system and trainer from a composed ``train.yaml`` config."""
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    system: L.LightningModule = instantiate(cfg.model)
    callbacks: list[Callback] = instantiate_all(cfg.get("callbacks"))
    callbacks.append(RunConfig(OmegaConf.to_container(cfg, resolve=True)))  # type: ignore[arg-type]
    loggers: list[Logger] = instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, system, trainer


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the system; returns the final logged metrics (for Hydra sweeps and tests)."""
    if cfg.get("torch_threads"):
        torch.set_num_threads(cfg.torch_threads)
    L.seed_everything(cfg.seed, workers=True)
    datamodule, system, trainer = build(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    try:
        trainer.fit(system, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except SIGTERMException:
        log.warning("SIGTERM at global step %d; run the same command to resume", trainer.global_step)
        sys.exit(PREEMPTED_EXIT)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the final ``train/loss`` (a sweep's objective). A configuration or data
    mistake (missing shards or weights, too few clips for a batch) is one line and exit status 1."""
    with user_errors("lipsync-train"):
        metrics = train(cfg)
    return metrics.get("train/loss")


if __name__ == "__main__":
    main()
