"""Pipeline checkpoints: ``save_pretrained`` / ``from_pretrained`` folders; training-checkpoint loading.

A pipeline folder holds two files:

- ``config.json``: how to build each component, as Hydra ``_target_`` nodes (the training config's own
  grammar), plus the preprocessing the model was trained with (crop scale, resolution, audio context);
- ``model.safetensors``: every component's weights under ``<component>.`` prefixes.

Loading never executes code from the files: weights come from safetensors, and a component is built
only by a ``_target_`` in :data:`ALLOWED_TARGETS` (the component builders, named one by one), so a
crafted config cannot call ``os.system`` or any other function. Lightning ``.ckpt`` files are
pickles: they are read with ``torch.load(weights_only=True)``, which rebuilds tensors and plain
containers only; the few data-only classes a training checkpoint may hold in its hyper-parameters are
allowed by exact name (:data:`SAFE_CHECKPOINT_GLOBALS`), and anything else (``posix.system``,
``builtins.eval``...) is refused with a :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from hydra.utils import instantiate
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from lipsync.media import atomic_path
from lipsync.models.audio import WhisperAudioEncoder
from lipsync.models.vae import SpaceToDepthVAE, SVDVAE
from lipsync.terminal import one_line

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "lipsync-pipeline"
FORMAT_VERSION = 1
# The only callables a config may name: component builders that construct modules and touch no file
# (from_checkpoint and load_svd_vae read weights through torch.load(weights_only=True) / safetensors).
ALLOWED_TARGETS = frozenset({
    "lipsync.models.net.build_net",
    "lipsync.models.audio.WhisperAudioEncoder.from_packaged",
    "lipsync.models.net.build_unet",
    "lipsync.models.net.latent_id_guider_for",
    "lipsync.models.net.LipSyncNet",
    "lipsync.models.id_guider.IDGuider",
    "lipsync.models.vae.SpaceToDepthVAE",
    "lipsync.models.vae.SVDVAE",
    "lipsync.models.pretrained.load_svd_vae",
    "lipsync.models.audio.WhisperAudioEncoder.from_dims",
    "lipsync.models.audio.WhisperAudioEncoder.from_checkpoint",
    "lipsync.models.precond.SVDPrecond",
    "lipsync.models.precond.EDMPrecond",
    "lipsync.data.masks.AdaptiveMask",
    "lipsync.data.masks.FixedMask",
    "lipsync.prepare.crop.CropSpec",
    "diffusers.AutoencoderKLTemporalDecoder",
    "diffusers.UNetSpatioTemporalConditionModel",
})
COMPONENTS = ("net", "vae", "audio_encoder", "precond", "mask", "crop")
WEIGHTED = ("net", "vae", "audio_encoder")

# Globals a LipSyncSystem checkpoint needs besides tensors (hyper-parameters, RNG states). Each is a
# plain data holder: rebuilding it stores fields, it opens no file and calls nothing it is handed.
SAFE_CHECKPOINT_GLOBALS = (
    "functools.partial",
    "numpy.core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.dtypes.UInt32DType",
    "numpy.dtypes.Float64DType",
    "numpy.dtypes.Int64DType",
    "torch.optim.adamw.AdamW",
    "torch.optim.adam.Adam",
    "lipsync.models.precond.SVDPrecond",
    "lipsync.models.precond.EDMPrecond",
    "lipsync.models.loss.DSMLoss",
    "lipsync.models.loss.LogNormalSigma",
    "lipsync.models.conditions.ConditionDropout",
)


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, inconsistent or unsafe (the message is one line)."""


# --- configs --------------------------------------------------------------------------------------


def check_targets(node: Any, where: str = "config") -> None:
    """Refuse any ``_target_`` outside :data:`ALLOWED_TARGETS`, anywhere in a nested config."""
    if isinstance(node, Mapping):
        target = node.get("_target_")
        if target is not None and target not in ALLOWED_TARGETS:
            raise CheckpointError(
                f"{where}: refused _target_ {target!r}; a pipeline config may only name the component "
                "builders in lipsync.infer.checkpoint.ALLOWED_TARGETS"
            )
        for key, value in node.items():
            check_targets(value, f"{where}.{key}")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            check_targets(value, f"{where}[{i}]")


def build_component(node: Mapping[str, Any], name: str) -> Any:
    """Instantiate one component config (after :func:`check_targets`)."""
    check_targets(node, name)
    try:
        return instantiate(dict(node), _convert_="all")
    except Exception as err:  # Hydra wraps every failure in its own exception types
        raise CheckpointError(f"cannot build component {name!r} from its config: {_one_line(err)}") from None


def _one_line(err: BaseException) -> str:
    """The exception's type and the last line of its message (the cause, in Hydra's and torch's)."""
    return f"{type(err).__name__}: {one_line(err, last=True)}"


# --- pipeline folders -----------------------------------------------------------------------------


def save_folder(
    directory: str | os.PathLike, config: Mapping[str, Any], modules: Mapping[str, nn.Module]
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (weights first, config last, each atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state: dict[str, Tensor] = {}
    for name, module in modules.items():
        for key, tensor in module.state_dict().items():
            state[f"{name}.{key}"] = tensor.detach().contiguous().cpu()
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    payload = {"format": FORMAT, "version": FORMAT_VERSION, **config}
    with atomic_path(directory / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False))
    return directory


def read_config(directory: Path) -> dict[str, Any]:
    """The pipeline config of a folder, validated (format, components present, targets allowed)."""
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(
            f"{directory}: no {CONFIG_NAME} (not a lipsync pipeline folder; make one with "
            "save_pretrained or convert a training checkpoint)"
        )
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err.__class__.__name__})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f'{path}: not a {FORMAT} config (missing "format": "{FORMAT}")')
    missing = [c for c in COMPONENTS if c not in config.get("components", {})]
    if missing:
        raise CheckpointError(f"{path}: components {missing} are missing")
    check_targets(config["components"], f"{path.name}:components")
    return config


def read_weights(path: Path) -> dict[str, Tensor]:
    """All tensors of a safetensors file (no code can run: safetensors holds only a header and bytes)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file is missing")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({_one_line(err)})") from None


def load_component_weights(module: nn.Module, state: Mapping[str, Tensor], name: str, source: Path) -> None:
    """Load the ``<name>.`` tensors of ``state`` into ``module``; every key must match exactly."""
    prefix = f"{name}."
    own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(own))
    unexpected = sorted(set(own) - set(expected))
    wrong = [k for k in set(own) & set(expected) if own[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{source}: {name} weights do not fit its config: {len(missing)} missing "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}), "
            f"{len(wrong)} of wrong shape (e.g. {wrong[:2]})"
        )
    module.load_state_dict(own, strict=True)


# --- training checkpoints -------------------------------------------------------------------------


def _locate(name: str) -> Any:
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def load_torch_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``torch.save`` file with ``weights_only=True``; refuse anything that could run code.

    Raises:
        CheckpointError: missing, unreadable, or needing a global outside :data:`SAFE_CHECKPOINT_GLOBALS`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_one_line(err)})") from None
    refused = [g for g in needed if g not in SAFE_CHECKPOINT_GLOBALS]
    if refused:
        raise CheckpointError(
            f"{path}: refused: unpickling it would call {refused[0]!r}, which can run code "
            f"(only tensors and plain data load); re-save its state_dict on a trusted machine"
        )
    allowed = [obj for obj in (_locate(g) for g in needed) if obj is not None]
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_one_line(err)})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: holds a {type(checkpoint).__name__}, not a checkpoint dict")
    return checkpoint


def training_state(checkpoint: Mapping[str, Any], path: Path) -> dict[str, Tensor]:
    """Pipeline-keyed weights (``net.``, ``vae.``) from a LipSyncSystem checkpoint.

    The system stores the raw network under ``denoiser.net.`` and the frozen VAE under ``vae.``. With
    the EMA callback on, Lightning's ``EMAWeightAveraging`` already saved the averaged weights as the
    ``state_dict`` (the live ones go to ``current_model_state``), so the state_dict is what inference wants.
    """
    state = checkpoint.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: no state_dict (not a Lightning checkpoint of the training system)")
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("denoiser.net."):
            out["net." + key[len("denoiser.net.") :]] = value
        elif key.startswith("vae."):
            out[key] = value
    if not any(k.startswith("net.") for k in out):
        raise CheckpointError(
            f"{path}: state_dict has no 'denoiser.net.' weights (not a LipSyncSystem checkpoint)"
        )
    return out


def find_training_config(ckpt: Path) -> Path | None:
    """The Hydra config of the run a checkpoint belongs to: ``<run>/.hydra/config.yaml`` above it."""
    for folder in (ckpt.parent, ckpt.parent.parent):
        candidate = folder / ".hydra" / "config.yaml"
        if candidate.is_file():
            return candidate
    return None


# --- self-describing component nodes ---------------------------------------------------------------


def describe_vae(vae: nn.Module) -> dict[str, Any]:
    """A ``_target_`` node rebuilding ``vae`` without any file (the weights come from the safetensors).

    SVD's VAE is described by its diffusers config (no path to the SVD folder is needed to load it back).
    """
    if isinstance(vae, SpaceToDepthVAE):
        return {
            "_target_": "lipsync.models.vae.SpaceToDepthVAE",
            "factor": vae.downsample_factor,
            "latent_scale": vae.latent_scale,
        }
    if isinstance(vae, SVDVAE):
        inner = {k: _plain(v) for k, v in vae.vae.config.items() if not k.startswith("_")}
        return {
            "_target_": "lipsync.models.vae.SVDVAE",
            "chunk": vae.chunk,
            "vae": {"_target_": "diffusers.AutoencoderKLTemporalDecoder", **inner},
        }
    raise CheckpointError(
        f"cannot describe a {type(vae).__name__} VAE for save_pretrained "
        "(supported: SVDVAE, SpaceToDepthVAE)"
    )


# Component nodes that load their own weights (the pipeline's safetensors holds none for them).
SELF_LOADING = ("lipsync.models.audio.WhisperAudioEncoder.from_packaged",
                "lipsync.models.audio.WhisperAudioEncoder.from_checkpoint")


def loads_own_weights(node: Mapping[str, Any]) -> bool:
    """Whether a component node brings its weights itself (a packaged or file-backed Whisper)."""
    return node.get("_target_") in SELF_LOADING


def describe_packaged_audio_encoder(encoder: nn.Module) -> dict[str, Any]:
    """A node that rebuilds ``encoder`` from the packaged Whisper tiny.en asset, pinned by its weights' hash.

    Raises:
        CheckpointError: ``encoder`` is not the packaged Whisper (then it must be embedded).
    """
    packaged = WhisperAudioEncoder.from_packaged()
    if encoder.weights_sha256() != packaged.weights_sha256():
        raise CheckpointError("the audio encoder's weights are not the packaged Whisper tiny.en: save it embedded")
    return {"_target_": SELF_LOADING[0], "sha256": packaged.weights_sha256(), "layers": list(encoder.layers),
            "combine": encoder.combine, "chunk_batch": encoder.chunk_batch}


def describe_audio_encoder(encoder: nn.Module) -> dict[str, Any]:
    """A ``_target_`` node rebuilding a ``WhisperAudioEncoder`` from its dims (no Whisper file needed)."""
    enc = encoder.encoder
    ctx, state = enc.positional_embedding.shape
    dims = {
        "n_mels": enc.conv1.in_channels,
        "n_audio_ctx": int(ctx),
        "n_audio_state": int(state),
        "n_audio_head": int(enc.blocks[0].attn.n_head),
        "n_audio_layer": len(enc.blocks),
        # the text decoder is not part of the encoder; ModelDimensions still asks for its sizes
        "n_vocab": 1,
        "n_text_ctx": 1,
        "n_text_state": 1,
        "n_text_head": 1,
        "n_text_layer": 1,
    }
    return {
        "_target_": "lipsync.models.audio.WhisperAudioEncoder.from_dims",
        "dims": dims,
        "layers": list(encoder.layers),
        "combine": encoder.combine,
        "chunk_batch": encoder.chunk_batch,
    }


def _plain(value: Any) -> Any:
    """JSON-friendly copy of a config value (tuples become lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
