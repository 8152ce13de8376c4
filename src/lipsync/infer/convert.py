"""Turn a training checkpoint into a pipeline folder (``save_pretrained`` format).

    python -m lipsync.infer.convert lightning_logs/RUN/checkpoints/last.ckpt OUT_DIR [--train-config CFG]

The component configs come from the run's resolved config, which ``lipsync.train`` stores in every
checkpoint (``checkpoint["config"]``), else from ``--train-config`` or ``<run>/.hydra/config.yaml``:
``model.net`` (without its SVD-loading wrapper: the trained weights replace SVD's), ``sampling``'s
noise range and guidance (sigma_min/sigma_max/cfg_scale, the inference defaults),
``model.precond``, ``model.vae``, ``mask``, ``data.audio_encoder`` (else the packaged Whisper tiny), and
the crop the training frames were cut with: ``data.crop``, else the spec ``prepare`` stored beside the
shards (``data.shards``), else prepare's defaults at the training clip size (``data.size``). The
weights come from the checkpoint's ``state_dict`` (the EMA weights when the EMA callback ran), read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Mapping

from lipsync.assets import ROOT
from lipsync.infer.checkpoint import CheckpointError, find_training_config

DEFAULT_AUDIO_ENCODER = {
    "_target_": "lipsync.models.audio.WhisperAudioEncoder.from_checkpoint",
    "path": str(ROOT / "assets" / "whisper-tiny.en.pt"),
}
DEFAULT_CROP = {
    "_target_": "lipsync.prepare.crop.CropSpec",
    "resolution": 320,
    "scale": 1.5,
    "shift_y": 0.0,
    "alpha": 0.2,
}
NET_WRAPPER = "lipsync.models.pretrained.load_pretrained_net"


def _load_yaml(path: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:  # the training config's own resolvers (per_device_batch) register on import
        import lipsync.train  # noqa: F401
    except ImportError:
        pass
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
    from lipsync.data.shards import read_shard_meta

    folder = _local(shard_dir)
    if folder is None or not folder.is_dir():
        return None
    return (read_shard_meta(folder) or {}).get("crop")


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
    crop = dict(data.get("crop") or _shards_crop(data.get("shards"))
                or {**DEFAULT_CROP, "resolution": int(data.get("size", DEFAULT_CROP["resolution"]))})
    components = {
        "net": net,
        "precond": _node(cfg, "model.precond", cfg_path),
        "vae": _node(cfg, "model.vae", cfg_path),
        "mask": _node(cfg, "mask", cfg_path),
        "crop": crop,
        "audio_encoder": _audio_encoder(data),
    }
    preprocess = {"audio_context": int(data.get("audio_context", 2)), "model_fps": int(net.get("fps", 25))}
    config = {"components": components, "preprocess": preprocess}
    sampling = {k: float(v) for k, v in (cfg.get("sampling") or {}).items()
                if k in ("sigma_min", "sigma_max", "cfg_scale")}
    if sampling:  # the noise range the net was trained for and its guidance: inference defaults
        config["sampling"] = sampling
    return config


def convert(
    ckpt: str | os.PathLike, out: str | os.PathLike, train_config: str | os.PathLike | None = None
) -> Path:
    """Load a training checkpoint as a pipeline and write it with ``save_pretrained``."""
    from lipsync.infer.pipeline import LipSyncPipeline

    pipe = LipSyncPipeline.from_pretrained(ckpt, train_config=train_config, generated_faces=None)
    return pipe.save_pretrained(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--train-config", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        print(convert(args.ckpt, args.out, args.train_config))
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
