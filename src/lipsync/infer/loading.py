"""Loading and saving pipelines (``from_pretrained`` / ``save_pretrained``), on the safe formats of
:mod:`lipsync.infer.checkpoint`: a pipeline folder, or a training checkpoint converted on the fly.

A training checkpoint's pipeline config (:func:`pipeline_config_from_training`) comes from the run's
resolved config, which ``lipsync.train`` stores in every checkpoint (``checkpoint["config"]``), else from ``train_config`` or ``<run>/.hydra/config.yaml``: ``model.net``
(without its SVD-loading wrapper: the trained weights replace SVD's), ``sampling``'s noise range and
guidance (sigma_min/sigma_max/cfg_scale, the inference defaults; a distilled student's
``student_sigmas`` too), ``model.precond``, ``model.vae``, ``mask``, ``data.audio_encoder`` (else the
packaged Whisper tiny), and the crop the training frames were cut with: ``data.crop``, else the spec
``prepare`` stored beside the shards (``data.shards``), else prepare's defaults at the training clip size
(``data.size``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import Tensor, nn

from lipsync.assets import ROOT
from lipsync.cli import register_resolvers
from lipsync.data.shards import read_shard_meta
from lipsync.infer import checkpoint as ckpt_io
from lipsync.infer.checkpoint import CheckpointError, find_training_config
from lipsync.infer.presets import crop_defaults
from lipsync.media import MODEL_FPS

DEFAULT_AUDIO_ENCODER = {
    "_target_": "lipsync.models.audio.WhisperAudioEncoder.from_checkpoint",
    "path": str(ROOT / "assets" / "whisper-tiny.en.pt"),
}
NET_WRAPPER = "lipsync.models.pretrained.load_pretrained_net"


def _load_yaml(path: Path) -> dict[str, Any]:
    register_resolvers()  # the training config's own (per_device_batch)
    try:
        container = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (OmegaConfBaseException, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot read the training config ({type(err).__name__})") from None
    if not isinstance(container, dict):
        raise CheckpointError(f"{path}: the training config is not a mapping")
    return container


def _node(cfg: Mapping[str, Any], dotted: str, path: Path) -> Any:
    node: Any = cfg
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            raise CheckpointError(f"{path}: the training config has no '{dotted}'")
        node = node[key]
    return node


def _local(path: Any) -> Path | None:
    """A config path as this process can open it: as given, else relative to the repository root."""
    if not path or "://" in str(path):
        return None
    p = Path(str(path)).expanduser()
    return p if p.is_absolute() or p.exists() else ROOT / p


def _shards_crop(shard_dir: Any) -> dict[str, Any] | None:
    """The crop spec ``prepare`` recorded beside the training shards (how the training frames were cut)."""
    folder = _local(shard_dir)
    if folder is None or not folder.is_dir():
        return None
    return (read_shard_meta(folder) or {}).get("crop")


def _default_crop(size: Any) -> dict[str, Any]:
    """prepare's crop (``conf/prepare.yaml``) at the training clip size, when the run recorded no crop."""
    crop = crop_defaults()
    return {**crop, "resolution": int(size if size is not None else crop["resolution"])}


def _audio_encoder(data: Mapping[str, Any]) -> dict[str, Any]:
    """The data config's encoder built eagerly (it may be a ``_partial_`` factory), its path resolved."""
    node = {k: v for k, v in (data.get("audio_encoder") or DEFAULT_AUDIO_ENCODER).items() if k != "_partial_"}
    if "path" in node:
        node["path"] = str(_local(node["path"]) or node["path"])
    return node


def _training_config(ckpt: Path, checkpoint: Mapping[str, Any] | None,
                     train_config: str | os.PathLike | None) -> tuple[dict[str, Any], Path]:
    if train_config:
        return _load_yaml(Path(train_config)), Path(train_config)
    if checkpoint is not None and isinstance(checkpoint.get("config"), Mapping):
        return dict(checkpoint["config"]), ckpt  # resolved at training time by lipsync.train
    found = find_training_config(ckpt)
    if found is None:
        raise CheckpointError(f"{ckpt}: holds no run config and no .hydra/config.yaml is beside it; "
                              "pass train_config=PATH")
    return _load_yaml(found), found


def pipeline_config_from_training(
    ckpt: str | os.PathLike,
    train_config: str | os.PathLike | None = None,
    checkpoint: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The pipeline config (components + preprocess) of the run that wrote ``ckpt`` (already loaded as
    ``checkpoint`` when given)."""
    cfg, cfg_path = _training_config(Path(ckpt), checkpoint, train_config)
    net = _node(cfg, "model.net", cfg_path)
    if net.get("_target_") == NET_WRAPPER:
        net = net["net"]  # the wrapper loads SVD's weights first; the trained ones replace them anyway
    data = cfg.get("data") or {}
    crop = dict(data.get("crop") or _shards_crop(data.get("shards")) or _default_crop(data.get("size")))
    components = {
        "net": net,
        "precond": _node(cfg, "model.precond", cfg_path),
        "vae": _node(cfg, "model.vae", cfg_path),
        "mask": _node(cfg, "mask", cfg_path),
        "crop": crop,
        "audio_encoder": _audio_encoder(data),
    }
    preprocess = {"audio_context": int(data.get("audio_context", 2)),
                  "model_fps": int(net.get("fps", MODEL_FPS))}
    config = {"components": components, "preprocess": preprocess}
    node = cfg.get("sampling") or {}
    sampling: dict[str, Any] = {k: float(v) for k, v in node.items()
                                if k in ("sigma_min", "sigma_max", "cfg_scale")}
    if node.get("student_sigmas"):  # a distilled student (experiment=distill): its passes' noise levels
        sampling["student_sigmas"] = [float(v) for v in node["student_sigmas"]]
    if sampling:  # the noise range the net was trained for and its guidance: inference defaults
        config["sampling"] = sampling
    return config


@dataclass(frozen=True)
class Pretrained:
    """What :func:`read_pretrained` found: the pipeline config, the weights, which components they fill."""

    config: dict[str, Any]
    state: dict[str, Tensor]
    source: Path
    weighted: tuple[str, ...]  # components whose weights come from ``state``


def read_pretrained(path: str | os.PathLike, train_config: str | os.PathLike | None = None) -> Pretrained:
    """A :func:`save_pretrained` folder, or a training ``.ckpt`` (its config from the run, see the module).

    Raises:
        CheckpointError: missing, unreadable, inconsistent, or unsafe (a pickle that would run code).
    """
    path = Path(path)
    if path.is_dir():
        config = ckpt_io.read_config(path)
        source = path / ckpt_io.WEIGHTS_NAME
        weighted = tuple(n for n in ckpt_io.WEIGHTED if not ckpt_io.loads_own_weights(config["components"][n]))
        return Pretrained(config, ckpt_io.read_weights(source), source, weighted)
    if path.is_file():
        checkpoint = ckpt_io.load_torch_checkpoint(path)
        config = pipeline_config_from_training(path, train_config, checkpoint)
        # the audio encoder is not trained: it keeps the weights its own config loads
        weighted = tuple(n for n in ckpt_io.WEIGHTED if n != "audio_encoder")
        return Pretrained(config, ckpt_io.training_state(checkpoint, path), path, weighted)
    raise CheckpointError(f"{path}: no such checkpoint (a save_pretrained folder or a training .ckpt)")


def load_weights(modules: Mapping[str, nn.Module], pretrained: Pretrained) -> None:
    """Fill each weighted component from the pretrained state; every key must match exactly."""
    for name in pretrained.weighted:
        ckpt_io.load_component_weights(modules[name], pretrained.state, name, pretrained.source)


def save_pretrained(
    directory: str | os.PathLike, config: Mapping[str, Any], modules: Mapping[str, nn.Module],
    audio_encoder: str = "embed",
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` of a pipeline; the VAE and audio encoder nodes are
    rewritten from the modules themselves, so the folder loads without any other file.

    ``audio_encoder="packaged"`` stores a reference to the packaged Whisper tiny.en (pinned by the hash
    of its weights) instead of its 32 MB of tensors: for small models that ship inside the repository.
    """
    if audio_encoder not in ("embed", "packaged"):
        raise ValueError(f"audio_encoder must be 'embed' or 'packaged', got {audio_encoder!r}")
    describe = ckpt_io.describe_packaged_audio_encoder if audio_encoder == "packaged" else ckpt_io.describe_audio_encoder
    config = dict(config)
    config["components"] = {
        **config["components"],
        "vae": ckpt_io.describe_vae(modules["vae"]),
        "audio_encoder": describe(modules["audio_encoder"]),
    }
    weighted = [n for n in ckpt_io.WEIGHTED if not ckpt_io.loads_own_weights(config["components"][n])]
    return ckpt_io.save_folder(directory, config, {name: modules[name] for name in weighted})


def build_components(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every component of a pipeline config, built from its ``_target_`` node (random weights)."""
    return {name: ckpt_io.build_component(config["components"][name], name) for name in ckpt_io.COMPONENTS}


def check_audio_width(net: nn.Module, audio_encoder: nn.Module) -> None:
    """The net must have been trained on features as wide as the encoder's."""
    want = getattr(getattr(net, "audio_proj", None), "in_features", None)
    have = getattr(audio_encoder, "dim", None)
    if want is not None and have is not None and want != have:
        raise CheckpointError(
            f"the audio encoder gives {have}-d features but the net was trained on {want}-d ones "
            "(components.audio_encoder does not match components.net.audio_dim)"
        )
