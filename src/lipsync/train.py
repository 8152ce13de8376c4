"""Train SayAnything: ``python -m lipsync.train experiment=tiny`` (Hydra; configs in ``conf/``).

    python -m lipsync.train experiment=tiny                      # CPU, tiny width
    python -m lipsync.train experiment=full model.pretrained=/weights/stable-video-diffusion-img2vid-xt
    python -m lipsync.train -m experiment=full,ablation_wo_cfg hydra/launcher=slurm   # sweep on SLURM
    python -m lipsync.train experiment=full debug=smoke          # any experiment, one CPU step

Runs live in ``lightning_logs/<name>/`` (TensorBoard events, ``checkpoints/``, the composed config).
Running the same command again resumes from ``checkpoints/last.ckpt`` (``ckpt_path=last``, the
default); ``ckpt_path=null`` starts afresh, ``ckpt_path=FILE`` resumes from a given checkpoint.
``init_from=PATH`` starts a fresh run from the network weights of a pipeline folder or a Lightning
checkpoint (fine-tuning: new optimizer, step 0); a resumed run's checkpoint takes precedence.
A second training on a run folder in use is refused (one line naming the folder and the process).

The config directory is found as every entry point finds it (:func:`lipsync.cli.config_dir`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from lipsync.cli import config_dir, hydra_main, register_resolvers  # noqa: F401 (config_dir: as always)
from lipsync.terminal import one_line
from lipsync.training.checkpoint_io import read_net_weights
from lipsync.training.run_lock import is_first_process, run_lock

log = logging.getLogger(__name__)

# Exit status after a SIGTERM checkpoint (128 + 15, what a shell reports), so SLURM/submitit requeue.
PREEMPTED_EXIT = 143


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
    register_resolvers()  # the run config is resolved below (a caller may have composed it without an app)
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    system: L.LightningModule = instantiate(cfg.model)
    callbacks: list[Callback] = instantiate_all(cfg.get("callbacks"))
    callbacks.append(RunConfig(OmegaConf.to_container(cfg, resolve=True)))  # type: ignore[arg-type]
    loggers: list[Logger] = instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, system, trainer


def init_weights(system: L.LightningModule, path: str) -> int:
    """Load the network weights of a pipeline folder (``model.safetensors``, ``net.*``) or a Lightning
    checkpoint (``state_dict``, ``denoiser.net.*``) into ``system``; returns how many tensors were loaded.

    Raises:
        ValueError: the file is missing, or its network does not match the configured one (one line).
    """
    file = Path(path) / "model.safetensors" if Path(path).is_dir() else Path(path)
    weights = {f"denoiser.net.{k}": v for k, v in read_net_weights(path).items()}
    own = {k for k in system.state_dict() if k.startswith("denoiser.net.")}
    if set(weights) != own:
        missing, extra = sorted(own - set(weights)), sorted(set(weights) - own)
        raise ValueError(f"init_from: {file} holds a different network ({len(missing)} tensors missing, "
                         f"e.g. {missing[:1]}; {len(extra)} unexpected, e.g. {extra[:1]})")
    try:
        system.load_state_dict(weights, strict=False)
    except RuntimeError as err:
        raise ValueError(f"init_from: {file}: {one_line(err, last=True)}") from None
    return len(weights)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the system; returns the final logged metrics (for Hydra sweeps and tests).

    Raises:
        RunFolderInUse: another live training holds the run folder (:mod:`lipsync.training.run_lock`).
    """
    folder = cfg.get("paths", {}).get("output_dir")
    with run_lock(folder) if folder and is_first_process() else contextlib.nullcontext():
        return _fit(cfg)


def _fit(cfg: DictConfig) -> dict[str, float]:
    if cfg.get("torch_threads"):
        torch.set_num_threads(cfg.torch_threads)
    L.seed_everything(cfg.seed, workers=True)
    datamodule, system, trainer = build(cfg)
    if cfg.get("init_from"):
        n = init_weights(system, cfg.init_from)
        log.info("initialised %d network tensors from %s", n, cfg.init_from)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    try:
        trainer.fit(system, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except SIGTERMException:
        log.warning("SIGTERM at global step %d; run the same command to resume", trainer.global_step)
        sys.exit(PREEMPTED_EXIT)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra_main("train", "lipsync-train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the final ``train/loss`` (a sweep's objective). A configuration or data
    mistake (missing shards or weights, too few clips for a batch) is one line and exit status 1."""
    return train(cfg).get("train/loss")


if __name__ == "__main__":
    main()
