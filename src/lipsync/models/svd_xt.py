"""stable-video-diffusion-img2vid-xt's architecture: the one place its sizes are written in code.

``conf/model/sayanything.yaml`` states the same UNet widths and heads for Hydra (a YAML file cannot import
them); ``tests/test_one_definition.py`` fails if the two disagree.
"""

from __future__ import annotations

from typing import Any

# unet/config.json: block_out_channels and num_attention_heads of the four down (and up) levels
SVD_XT_WIDTHS = (320, 640, 1280, 1280)
SVD_XT_HEADS = (5, 10, 20, 20)

# vae/config.json: the AutoencoderKLTemporalDecoder (frozen; latents scaled by scaling_factor)
SVD_XT_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 768,
    "scaling_factor": 0.18215,
    "force_upcast": True,
}
