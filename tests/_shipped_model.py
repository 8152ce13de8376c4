"""What the shipped-model tests share: a training config composed as a command composes it, and the check
that a committed pipeline folder is what that command trains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from lipsync.cli import config_dir
from lipsync.infer.loading import pipeline_config_from_training


#: how a network runs, not what it is: kernel choices a later commit may add to the config without changing
#: a weight or an output beyond bf16 rounding (issue 29's switches); left out of the comparisons
RUN_SETTINGS = frozenset({"attention_backend", "channels_last"})


def without_run_settings(cfg: Any) -> Any:
    """``cfg`` (nested dicts and lists) without the :data:`RUN_SETTINGS` keys, at any depth."""
    if isinstance(cfg, dict):
        return {k: without_run_settings(v) for k, v in cfg.items() if k not in RUN_SETTINGS}
    if isinstance(cfg, list):
        return [without_run_settings(v) for v in cfg]
    return cfg


def compose_command(overrides: list[str]) -> dict:
    """``conf/train.yaml`` with ``overrides``, resolved (machine paths and run settings left out)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "paths.output_dir=unused"])
    return without_run_settings(OmegaConf.to_container(cfg, resolve=True))


def folder_config_and_expected(folder: Path, overrides: list[str], tmp_path: Path) -> tuple[dict, dict]:
    """(the folder's recorded config.json, the pipeline config the command's training config gives)."""
    recorded = json.loads((folder / "config.json").read_text())
    path = tmp_path / "config.yaml"
    path.write_text(OmegaConf.to_yaml(compose_command(overrides)))
    expected = pipeline_config_from_training(tmp_path / "last.ckpt", train_config=path)
    return without_run_settings(recorded), without_run_settings(expected)
