"""Pipeline configs as data: the paper's full size (FLOP counting) and a tiny CPU size (tests, benchmarks).

Both are the ``config.json`` payload :meth:`LipSyncPipeline.from_config` builds from (random weights), and
both are composed from the files that define the model for training, never restated here:
``conf/model/sayanything.yaml`` (and ``conf/model/tiny.yaml`` on top of it) for the net,
``conf/mask/adaptive.yaml``, the crop of ``conf/prepare.yaml``, the audio context of
``conf/data/shards.yaml``; SVD-xt's VAE and Whisper tiny.en's dimensions from their one place in
:mod:`lipsync.models`. ``tests/test_one_definition.py`` checks that a converted training run of the same
config gives the same pipeline config.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from lipsync.cli import config_file
from lipsync.media import MODEL_FPS
from lipsync.models.audio import WHISPER_DIMS
from lipsync.models.svd_xt import SVD_XT_VAE


def _node(name: str, *keys: str) -> dict[str, Any]:
    """A node of one ``conf/`` file as a plain dict (``_node("model/tiny", "net", "net")``)."""
    node: Any = config_file(name)
    for key in keys:
        node = node[key]
    return OmegaConf.to_container(node, resolve=False)  # type: ignore[return-value]


def _whisper_dims(name: str = "tiny.en", **changes: int) -> dict[str, int]:
    return {**vars(WHISPER_DIMS[name]), **changes}


def crop_defaults() -> dict[str, Any]:
    """prepare's training crop (``conf/prepare.yaml`` key ``crop``: resolution, scale, shift, smoothing)."""
    return _node("prepare", "crop")


def full_config() -> dict[str, Any]:
    """The paper's model at full size (SVD-xt UNet, 320 px crops, Whisper tiny); build it on meta."""
    return {
        "components": {
            "net": _node("model/sayanything", "net", "net"),
            "vae": {"_target_": "lipsync.models.vae.SVDVAE", "chunk": _node("model/vae/svd")["chunk"],
                    "vae": {"_target_": "diffusers.AutoencoderKLTemporalDecoder", **SVD_XT_VAE}},
            "audio_encoder": {"_target_": "lipsync.models.audio.WhisperAudioEncoder.from_dims",
                              "dims": _whisper_dims()},
            "precond": _node("model/sayanything", "precond"),
            "mask": _node("mask/adaptive"),
            "crop": crop_defaults(),
        },
        "preprocess": {"audio_context": _node("data/shards")["audio_context"], "model_fps": MODEL_FPS},
    }


def tiny_config(resolution: int = 64, audio_state: int = 16) -> dict[str, Any]:
    """The same pipeline at CPU size (``conf/model/tiny.yaml``: UNet (32, 64), space-to-depth codec),
    a 1-layer Whisper of width ``audio_state``, crops of ``resolution`` px."""
    cfg = full_config()
    c = cfg["components"]
    c["net"].update(_node("model/tiny", "net", "net"), audio_dim=audio_state)
    c["vae"] = _node("model/vae/space_to_depth")
    c["audio_encoder"]["dims"] = _whisper_dims(n_audio_state=audio_state, n_audio_head=2, n_audio_layer=1)
    c["crop"]["resolution"] = resolution
    return cfg
