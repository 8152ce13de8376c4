"""FVD (Unterthiner et al. 2018) over face-crop clips, with the I3D network from a local TorchScript file.

The I3D is the Kinetics-400 TorchScript that StyleGAN-V published (``i3d_torchscript.pt``), called as
StyleGAN-V calls it: ``detector(clips, rescale=True, resize=True, return_features=True)`` on float clips
``(N, 3, T, H, W)`` holding [0, 255] values; the detector rescales to [-1, 1] and resizes to 224x224
itself, and returns the 400-d pre-softmax features.

Sampling (unlike tools that score only each video's first 16 frames): every window of ``clip_len`` = 16
consecutive frames starting every ``stride`` frames (default 8, half overlap) of every video is one
sample, so the whole video counts and there are enough samples for a 400-d covariance. Videos shorter
than ``clip_len`` add no sample. The Frechet distance is torchmetrics' (same code path as FID).
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from lipsync.models.weights import require_file


class TorchScriptI3D(nn.Module):
    """StyleGAN-V's I3D TorchScript: uint8 clips (N, 3, T, H, W) -> Kinetics-400 features (N, 400)."""

    def __init__(self, path: str | os.PathLike, clip_len: int = 16) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.detector = torch.jit.load(str(path), map_location="cpu").eval()
        # torchmetrics sizes its running sums from this; one small probe clip finds it for any detector
        self.num_features = int(self(torch.zeros(2, 3, clip_len, 64, 64, dtype=torch.uint8)).shape[-1])

    @torch.no_grad()
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        features = self.detector(clips.float(), rescale=True, resize=True, return_features=True)
        if features.ndim != 2:
            raise ValueError(f"I3D returned features of shape {tuple(features.shape)}, expected (N, D)")
        return features


def build_fvd(weights: str | os.PathLike | None, clip_len: int = 16,
              config_key: str = "fvd.weights") -> FrechetInceptionDistance:
    """A Frechet-distance metric over I3D features: ``update(clips uint8 (N, 3, T, H, W), real=bool)``.

    Raises:
        MissingWeights: the file is absent (message names ``config_key``).
    """
    path = require_file(weights, config_key, "I3D (FVD)")
    return FrechetInceptionDistance(feature=TorchScriptI3D(path, clip_len))
