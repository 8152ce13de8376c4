"""Pipeline configs as data: the paper's full size (FLOP counting) and a tiny CPU size (tests, benchmarks).

Both are the ``config.json`` payload :meth:`LipSyncPipeline.from_config` builds from (random weights).
"""

from __future__ import annotations

import copy
from typing import Any

_WHISPER_TINY_EN = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 384,
    "n_audio_head": 6,
    "n_audio_layer": 4,
    "n_vocab": 51864,
    "n_text_ctx": 448,
    "n_text_state": 384,
    "n_text_head": 6,
    "n_text_layer": 4,
}

FULL: dict[str, Any] = {
    "components": {
        # SVD-xt's UNet, ID-Guider at the paper's 98 M, Whisper tiny features (conf/model/sayanything.yaml)
        "net": {
            "_target_": "lipsync.models.net.build_net",
            "block_out_channels": [320, 640, 1280, 1280],
            "layers_per_block": 2,
            "num_attention_heads": [5, 10, 20, 20],
            "cross_attention_dim": 1024,
            "latent_channels": 4,
            "vae_downsample_factor": 8,
            "id_pixel_channels": 80,
            "audio_dim": 384,
            "audio_width": 1024,
            "fps": 25,
        },
        "vae": {
            "_target_": "lipsync.models.vae.SVDVAE",
            "chunk": 8,
            # stable-video-diffusion-img2vid-xt/vae/config.json
            "vae": {
                "_target_": "diffusers.AutoencoderKLTemporalDecoder",
                "in_channels": 3,
                "out_channels": 3,
                "down_block_types": ["DownEncoderBlock2D"] * 4,
                "block_out_channels": [128, 256, 512, 512],
                "layers_per_block": 2,
                "latent_channels": 4,
                "sample_size": 768,
                "scaling_factor": 0.18215,
                "force_upcast": True,
            },
        },
        "audio_encoder": {
            "_target_": "lipsync.models.audio.WhisperAudioEncoder.from_dims",
            "dims": _WHISPER_TINY_EN,
        },
        "precond": {"_target_": "lipsync.models.precond.SVDPrecond"},
        "mask": {
            "_target_": "lipsync.data.masks.AdaptiveMask",
            "alpha": 0.5,
            "pad_x": 0.1,
            "pad_top": 0.05,
            "pad_bottom": 0.15,
            "max_gap": 8,
            "points": "lower_face",
        },
        "crop": {
            "_target_": "lipsync.prepare.crop.CropSpec",
            "resolution": 320,
            "scale": 1.5,
            "shift_y": 0.0,
            "alpha": 0.2,
        },
    },
    "preprocess": {"audio_context": 2, "model_fps": 25},
}


def full_config() -> dict[str, Any]:
    """The paper's model at full size (SVD-xt UNet, 320 px crops, Whisper tiny); build it on meta."""
    return copy.deepcopy(FULL)


def tiny_config(resolution: int = 64, audio_state: int = 16) -> dict[str, Any]:
    """The same pipeline at CPU size: UNet (32, 64), space-to-depth codec (factor 4), a 1-layer Whisper."""
    cfg = full_config()
    c = cfg["components"]
    c["net"].update(
        block_out_channels=[32, 64],
        layers_per_block=1,
        num_attention_heads=[2, 4],
        cross_attention_dim=32,
        cross_attn_levels=2,
        latent_channels=48,
        vae_downsample_factor=4,
        id_pixel_channels=16,
        audio_dim=audio_state,
        audio_width=32,
    )
    c["vae"] = {"_target_": "lipsync.models.vae.SpaceToDepthVAE", "factor": 4, "latent_scale": 1.0}
    c["audio_encoder"]["dims"] = {
        **_WHISPER_TINY_EN,
        "n_audio_state": audio_state,
        "n_audio_head": 2,
        "n_audio_layer": 1,
    }
    c["crop"]["resolution"] = resolution
    return cfg
