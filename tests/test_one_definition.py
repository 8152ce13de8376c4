"""One definition of each model size and crop: every place that states one must agree with ``conf/``.

The inference presets are composed from ``conf/`` (so they cannot drift); what is checked here are the
places that cannot be composed: Python defaults (``build_net``, ``IDGuider``, ``CropSpec``,
``AdaptiveMask``, ``LipSyncNet``), SVD-xt's widths and VAE in :mod:`lipsync.models.svd_xt`, and what a
converted training run of the same experiment records.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from lipsync.cli import config_dir, config_file
from lipsync.data.masks import AdaptiveMask
from lipsync.infer.loading import pipeline_config_from_training
from lipsync.infer.presets import full_config, tiny_config
from lipsync.media import MODEL_FPS
from lipsync.models.audio import WHISPER_DIMS
from lipsync.models.id_guider import IDGuider
from lipsync.models.net import LipSyncNet, build_id_guider_for, build_net, build_unet
from lipsync.models.svd_xt import SVD_XT_HEADS, SVD_XT_VAE, SVD_XT_WIDTHS
from lipsync.prepare.crop import CropSpec
from lipsync.summary import svd_vae_full

TRAINING_ONLY = {"gradient_checkpointing"}  # a memory switch of the training run, not the architecture


def defaults(fn: Any) -> dict[str, Any]:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}


def converted(*overrides: str) -> dict[str, Any]:
    """The pipeline config ``convert`` makes from a training run of ``conf/train.yaml`` + ``overrides``."""
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = "unused"  # a Hydra run-time value
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return pipeline_config_from_training("run.ckpt", checkpoint={"config": resolved})


def architecture(net: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in net.items() if k not in TRAINING_ONLY}


def test_svd_xt_sizes_agree_everywhere() -> None:
    net = config_file("model/sayanything").net.net
    assert tuple(net.block_out_channels) == SVD_XT_WIDTHS
    assert tuple(net.num_attention_heads) == SVD_XT_HEADS
    assert defaults(build_net)["block_out_channels"] == SVD_XT_WIDTHS
    assert defaults(build_net)["num_attention_heads"] == SVD_XT_HEADS
    assert defaults(build_unet)["block_out_channels"] == SVD_XT_WIDTHS
    assert defaults(IDGuider)["block_out_channels"] == SVD_XT_WIDTHS
    vae = full_config()["components"]["vae"]["vae"]
    assert {k: v for k, v in vae.items() if k != "_target_"} == SVD_XT_VAE
    built = dict(svd_vae_full().vae.config)  # the summary's SVD VAE, built from the same dict
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in built.items() if k in SVD_XT_VAE} == SVD_XT_VAE


def test_build_net_passes_the_unet_and_guider_defaults_through_unchanged() -> None:
    # build_net restates build_unet's and build_id_guider_for's keyword defaults in its own signature (so
    # Hydra and the summary read them there); every one must be the callee's, or a UNet built through
    # build_net would differ from one built directly
    net, unet, guider = defaults(build_net), defaults(build_unet), defaults(build_id_guider_for)
    shared = set(net) & set(unet)
    assert shared >= {"block_out_channels", "layers_per_block", "num_attention_heads", "cross_attention_dim",
                      "cross_attn_levels", "latent_channels", "attention_levels"}
    assert {k: net[k] for k in shared} == {k: unet[k] for k in shared}
    assert (net["vae_downsample_factor"], net["id_pixel_channels"]) == (
        guider["downsample_factor"], guider["pixel_channels"])


@pytest.mark.parametrize("name", ["full", "tiny"])
def test_presets_equal_what_convert_records_for_the_same_experiment(name: str) -> None:
    preset = full_config() if name == "full" else tiny_config()
    run = converted(f"experiment={name}")["components"]
    net = dict(preset["components"]["net"])
    if name == "tiny":
        net["audio_dim"] = run["net"]["audio_dim"]  # the preset's 1-layer Whisper is narrower, by design
    assert architecture(net) == architecture(run["net"])
    for part in ("precond", "mask"):
        assert preset["components"][part] == run[part], part
    crop = dict(preset["components"]["crop"], resolution=run["crop"]["resolution"])
    assert crop == run["crop"]  # the training size decides the resolution, prepare the rest
    assert preset["preprocess"] == converted(f"experiment={name}")["preprocess"]


def test_python_defaults_equal_conf() -> None:
    crop = OmegaConf.to_container(config_file("prepare").crop)
    assert {k: v for k, v in crop.items() if k != "_target_"} == defaults(CropSpec)
    mask = OmegaConf.to_container(config_file("mask/adaptive"))
    assert {k: v for k, v in mask.items() if k != "_target_"} == defaults(AdaptiveMask)
    net = config_file("model/sayanything").net.net
    for key, value in defaults(LipSyncNet).items():
        if key in net and key != "attention_backend":  # conf picks SDPA kernels; "auto" = PyTorch picks
            assert net[key] == value, key


def test_one_clock_and_one_whisper() -> None:
    assert config_file("prepare").fps == MODEL_FPS
    assert config_file("model/sayanything").net.net.fps == MODEL_FPS == defaults(LipSyncNet)["fps"]
    assert full_config()["preprocess"]["model_fps"] == MODEL_FPS
    assert full_config()["components"]["audio_encoder"]["dims"] == vars(WHISPER_DIMS["tiny.en"])


# Config values that deliberately differ from the Python default (a training run's choice, not a repeat).
CHOSEN_IN_CONF = {
    ("callbacks/ema.yaml", "decay"),  # the paper's EMA; the callback's default suits short runs
    ("data/shards.yaml", "batch_size"), ("data/shards.yaml", "num_workers"),  # a training run's loader
    ("data/shards.yaml", "audio_encoder"),  # features computed on the fly from the packaged Whisper
    ("evaluate.yaml", "faces"),  # a config node for the factory default
    ("prepare.yaml", "mesh_every"),  # prepare meshes every other frame (curation), infer every frame
}
DELTA_FILES = ("experiment/", "debug/", "model/tiny.yaml")  # files that exist to change values


def _callable(target: str) -> Any:
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError:  # Class.classmethod
        module, _, owner = module.rpartition(".")
        return getattr(getattr(importlib.import_module(module), owner), name)


def _stated_defaults(node: Any, file: str) -> list[tuple[str, str, Any, Any]]:
    """(file, key, config value, Python default) of every lipsync ``_target_`` node under ``node``."""
    found = []
    if isinstance(node, dict):
        target = node.get("_target_")
        if isinstance(target, str) and target.startswith("lipsync."):
            python = defaults(_callable(target))
            found += [(file, k, v, list(python[k]) if isinstance(python[k], tuple) else python[k])
                      for k, v in node.items() if k in python and not (isinstance(v, str) and "${" in v)]
        found += [f for v in node.values() for f in _stated_defaults(v, file)]
    elif isinstance(node, list):
        found += [f for v in node for f in _stated_defaults(v, file)]
    return found


def test_no_python_default_disagrees_with_a_config_that_states_it() -> None:
    """Every ``_target_`` in ``conf/`` (not the delta files): a key the config states and the Python
    callable defaults holds the same value in both, unless listed in :data:`CHOSEN_IN_CONF`."""
    conf = config_dir()
    files = {str(p.relative_to(conf)): p for p in sorted(conf.rglob("*.yaml"))}
    stated = [f for name, path in files.items() if not name.startswith(DELTA_FILES)
              for f in _stated_defaults(OmegaConf.to_container(OmegaConf.load(path)), name)]
    assert len(stated) > 50  # the walk reaches the nodes (net, crop, mask, loss, data, faces, callbacks)
    differ = {(file, key): (value, default) for file, key, value, default in stated if value != default}
    assert set(differ) == CHOSEN_IN_CONF, {k: v for k, v in differ.items() if k not in CHOSEN_IN_CONF}
