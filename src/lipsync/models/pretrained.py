"""Loading Stable Video Diffusion weights from a diffusers-format folder (SPEC section 2, issue 2).

The folder is ``stable-video-diffusion-img2vid(-xt)`` as diffusers saves it: ``unet/`` and ``vae/``, each
with ``config.json`` and ``diffusion_pytorch_model[.fp16].safetensors`` (or ``.bin``, or sharded with an
``.index.json``). Every SVD UNet weight must land in :class:`LipSyncNet`; only the new audio and
ID-Guider layers may be missing, and nothing in the checkpoint may go unused.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
from diffusers.models.model_loading_utils import load_state_dict
from torch import Tensor

from lipsync.models.net import LipSyncNet, build_id_guider_for
from lipsync.models.vae import SVDVAE

log = logging.getLogger(__name__)

CONFIG_KEY = "model.pretrained"
WEIGHT_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.bin",
)
INDEX_NAMES = tuple(f"{name}.index.json" for name in WEIGHT_NAMES if name.endswith(".safetensors"))


class PretrainedNotFoundError(FileNotFoundError):
    """A pretrained folder or weight file is missing; the message is one line naming it and the config key."""


@dataclass(frozen=True)
class LoadReport:
    """Which of our state-dict keys came from the checkpoint.

    Attributes:
        loaded: number of tensors copied from the checkpoint.
        missing: our keys the checkpoint did not provide (must be only the new layers).
        unexpected: checkpoint keys we have no place for (must be none).
    """

    loaded: int
    missing: list[str]
    unexpected: list[str]


def _missing(path: Path, what: str) -> PretrainedNotFoundError:
    return PretrainedNotFoundError(
        f"SVD {what} not found: {path} (set {CONFIG_KEY}= to a diffusers stable-video-diffusion-img2vid(-xt) "
        "folder with unet/ and vae/)"
    )


def _component(path: str | Path, name: str) -> Path:
    folder = Path(path).expanduser() / name
    if not (folder / "config.json").is_file():
        raise _missing(folder / "config.json", f"{name} config")
    return folder


def read_weights(folder: Path) -> dict[str, Tensor]:
    """The state dict saved in a diffusers component folder (single file or sharded)."""
    for name in INDEX_NAMES:
        if (folder / name).is_file():
            shards = sorted(set(json.loads((folder / name).read_text())["weight_map"].values()))
            state: dict[str, Tensor] = {}
            for shard in shards:
                if not (folder / shard).is_file():
                    raise _missing(folder / shard, "weight shard")
                state.update(load_state_dict(str(folder / shard)))
            return state
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return load_state_dict(str(folder / name))
    raise _missing(folder / WEIGHT_NAMES[0], "weights")


def load_unet_weights(net: LipSyncNet, path: str | Path) -> LoadReport:
    """Copy SVD's UNet weights from ``path/unet`` into ``net.unet``; every one must land.

    Raises:
        PretrainedNotFoundError: the folder or weight file is missing.
        ValueError: a checkpoint key has no place in the net, a shape differs, or an SVD key is missing.
    """
    state = read_weights(_component(path, "unet"))
    ours = net.unet.state_dict()
    unexpected = sorted(set(state) - set(ours))
    wrong = [f"{k}: checkpoint {tuple(v.shape)} vs net {tuple(ours[k].shape)}"
             for k, v in state.items() if k in ours and v.shape != ours[k].shape]
    if unexpected or wrong:
        raise ValueError(f"SVD checkpoint at {path} does not fit the net: unexpected keys {unexpected[:5]} "
                         f"({len(unexpected)}), shape mismatches {wrong[:3]} ({len(wrong)}); "
                         "check the model widths")
    net.unet.load_state_dict(state, strict=False)
    missing = sorted(f"unet.{k}" for k in set(ours) - set(state)) + [
        k for k in net.state_dict() if not k.startswith("unet.")
    ]
    svd_missing = [k for k in missing if k.startswith("unet.")]
    if svd_missing:
        raise ValueError(f"SVD checkpoint at {path} lacks {len(svd_missing)} UNet weights, "
                         f"e.g. {svd_missing[:3]}")
    report = LoadReport(loaded=len(state), missing=missing, unexpected=unexpected)
    log.info("loaded %d SVD UNet tensors from %s; %d new-layer tensors start from init (audio attention, "
             "ID-Guider)", report.loaded, path, len(missing))
    return report


def load_svd_vae(path: str | Path, chunk: int = 8) -> SVDVAE:
    """SVD's frozen VAE from ``path/vae`` (strict: every weight must land)."""
    folder = _component(path, "vae")
    vae = AutoencoderKLTemporalDecoder.from_config(AutoencoderKLTemporalDecoder.load_config(folder))
    vae.load_state_dict(read_weights(folder), strict=True)
    return SVDVAE(vae, chunk=chunk)


def load_svd(path: str | Path, id_pixel_channels: int = 80, vae_chunk: int = 8,
             **net_kwargs: Any) -> tuple[LipSyncNet, SVDVAE]:
    """Build :class:`LipSyncNet` from SVD's UNet config and weights, and SVD's VAE, from a diffusers folder.

    Args:
        path: the ``stable-video-diffusion-img2vid(-xt)`` folder (config key ``model.pretrained``).
        id_pixel_channels: ID-Guider pixel-downsampler width (80 = the paper's 98 M at full size).
        vae_chunk: frames per VAE call.
        net_kwargs: the rest of :class:`LipSyncNet`'s arguments (audio_dim, audio_width, fps, ...).

    Returns:
        ``(net, vae)``; ``net.load_report`` is the :class:`LoadReport` (only new layers missing).
    """
    unet_dir = _component(path, "unet")
    vae = load_svd_vae(path, vae_chunk)
    unet_cls = UNetSpatioTemporalConditionModel
    unet = unet_cls.from_config(unet_cls.load_config(unet_dir))
    id_guider = build_id_guider_for(unet, vae.downsample_factor, id_pixel_channels)
    net = LipSyncNet(unet, id_guider, **net_kwargs)
    net.load_report = load_unet_weights(net, path)
    return net, vae


def load_pretrained_net(net: LipSyncNet, path: str | Path | None) -> LipSyncNet:
    """Hydra-friendly: load SVD's UNet weights into a config-built ``net`` if ``path`` is set."""
    if path:
        net.load_report = load_unet_weights(net, path)
    return net

