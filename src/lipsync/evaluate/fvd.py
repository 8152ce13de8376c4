"""FVD (Unterthiner et al. 2018) over face-crop clips, with the I3D network from a local TorchScript file.

The I3D is the Kinetics-400 TorchScript that StyleGAN-V published (``i3d_torchscript.pt``), called as
StyleGAN-V calls it: ``detector(clips, rescale=True, resize=True, return_features=True)`` on float clips
``(N, 3, T, H, W)`` holding [0, 255] values; the detector rescales to [-1, 1] and resizes to 224x224
itself, and returns the 400-d pre-softmax features.

``fvd.input=latentsync`` reproduces LatentSync's ``eval/fvd.py`` instead: clips in [0, 1] (``x / 255``)
with ``rescale=False, resize=False``, so the I3D sees [0, 1] where it was trained on [-1, 1], at the
crop's own size (LatentSync's is 224).

Which clips are scored (``fvd.start``, ``fvd.stride``, ``fvd.clips_per_video`` in
``conf/evaluate.yaml``) and the covariance divisor (``fvd.ddof``) are protocol choices made in
:mod:`lipsync.evaluate.score` and :mod:`lipsync.evaluate.frechet`; the network call is the same.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from lipsync.models.weights import require_file

INPUTS = ("stylegan_v", "latentsync")


class TorchScriptI3D(nn.Module):
    """StyleGAN-V's I3D TorchScript: uint8 clips (N, 3, T, H, W) -> Kinetics-400 features (N, 400)."""

    def __init__(self, path: str | os.PathLike, clip_len: int = 16, convention: str = "stylegan_v") -> None:
        super().__init__()
        if convention not in INPUTS:
            raise ValueError(f"fvd.input must be one of {INPUTS}, got {convention!r}")
        self.convention = convention
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.detector = torch.jit.load(str(path), map_location="cpu").eval()
        # torchmetrics sizes its running sums from this; one probe clip finds it for any detector (without
        # the detector's own resize, the probe must be of the I3D's input size)
        side = 64 if convention == "stylegan_v" else 224
        self.num_features = int(self(torch.zeros(2, 3, clip_len, side, side, dtype=torch.uint8)).shape[-1])

    @torch.no_grad()
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if self.convention == "latentsync":  # [0, 1] in, no rescale, no resize: as LatentSync calls it
            features = self.detector(clips.float() / 255, rescale=False, resize=False, return_features=True)
        else:
            features = self.detector(clips.float(), rescale=True, resize=True, return_features=True)
        if features.ndim != 2:
            raise ValueError(f"I3D returned features of shape {tuple(features.shape)}, expected (N, D)")
        return features


def build_fvd(weights: str | os.PathLike | None, clip_len: int = 16, convention: str = "stylegan_v",
              config_key: str = "fvd.weights") -> FrechetInceptionDistance:
    """A Frechet-distance metric over I3D features: ``update(clips uint8 (N, 3, T, H, W), real=bool)``.

    Raises:
        MissingWeights: the file is absent (message names ``config_key``).
    """
    path = require_file(weights, config_key, "I3D (FVD)")
    return FrechetInceptionDistance(feature=TorchScriptI3D(path, clip_len, convention))
