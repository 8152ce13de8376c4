"""Per-frame reconstruction metrics: PSNR, SSIM (torchmetrics' map) and LPIPS (torchmetrics' LPIPS network).

All take pairs of frames ``(N, 3, H, W)`` float in [0, 1] (generated, reference) and return one value per
frame; the evaluation averages frames within a video, then videos (each video counts once).

LPIPS weights, both local: the AlexNet backbone from torchvision's own file
(``alexnet-owt-7be5be79.pth``, what ``torchvision.models.alexnet(weights="DEFAULT")`` caches under
``$TORCH_HOME/hub/checkpoints``) and LPIPS v0.1's linear layers, which torchmetrics ships in its wheel.
torchmetrics' public LPIPS class would download the backbone; we build the same network with a random
backbone and copy the local weights in.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np
import torch
import torchmetrics.functional.image.lpips
import torchvision
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchmetrics.functional.image.lpips import _NoTrainLpips

from lipsync.models.weights import require_file

# LPIPS v0.1 AlexNet linear layers as torchmetrics ships them (richzhang/PerceptualSimilarity's file)
SHIPPED_LINEAR = Path(torchmetrics.functional.image.lpips.__file__).parent / "lpips_models" / "alex.pth"
PSNR_CAP_DB = 100.0  # identical frames have infinite PSNR; capped so averages and JSON stay finite


def psnr(generated: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per frame, ``10 log10(1 / MSE)`` for [0, 1] images, capped at 100: (N, 3, H, W) -> (N,)."""
    values = peak_signal_noise_ratio(generated, reference, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return values.clamp(max=PSNR_CAP_DB)


SSIM_KINDS = ("skimage", "torchmetrics")
SSIM_BORDER = 5  # Gaussian window 11 (sigma 1.5, truncated at 3.5 sigma): 5 px where it leaves the image


def ssim(generated: torch.Tensor, reference: torch.Tensor, kind: str = "skimage") -> torch.Tensor:
    """SSIM per frame (Wang et al. 2004: Gaussian window 11, sigma 1.5, K 0.01, 0.03): (N, 3, H, W) -> (N,).

    Both kinds compute the same SSIM map over the three channels; they differ only at the border:

    - ``skimage``: scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
      use_sample_covariance=False, data_range=1, channel_axis=-1)``, the setting its docs give for
      matching Wang et al.: the map's 5-pixel border (where the window leaves the image) is dropped.
    - ``torchmetrics``: ``structural_similarity_index_measure``: the border, computed on reflect-padded
      pixels, is averaged in. Up to ~0.007 apart on 256 px face crops, the size of Table 1's gaps.
    """
    if kind not in SSIM_KINDS:
        raise ValueError(f"ssim.kind must be one of {SSIM_KINDS}, got {kind!r}")
    if kind == "torchmetrics":
        return structural_similarity_index_measure(generated, reference, data_range=1.0, reduction="none")
    _, full = structural_similarity_index_measure(generated, reference, data_range=1.0, reduction="none",
                                                  return_full_image=True)
    b = SSIM_BORDER
    return full[..., b:-b, b:-b].mean(dim=(1, 2, 3))


def build_lpips(backbone: str | os.PathLike | None, linear: str | os.PathLike | None = None,
                backbone_key: str = "lpips.backbone", linear_key: str = "lpips.linear") -> torch.nn.Module:
    """LPIPS (AlexNet, v0.1) from local files, in eval mode with frozen weights.

    Args:
        backbone: torchvision AlexNet state dict (``features.*`` keys are used; ``classifier.*`` ignored).
        linear: LPIPS linear-layer state dict (``lin0.model.1.weight`` ...); None = torchmetrics' v0.1 copy.
        backbone_key, linear_key: config keys named in the error when a file is missing.

    Raises:
        MissingWeights: a file is absent.
        ValueError: the backbone file has no AlexNet ``features`` weights.
    """
    backbone = require_file(backbone, backbone_key, "AlexNet (LPIPS backbone)")
    linear = require_file(linear or SHIPPED_LINEAR, linear_key, "LPIPS linear layers")
    net = _NoTrainLpips(net="alex", pretrained=False, pnet_rand=True)  # nothing loaded, nothing downloaded
    _load_linear(net, linear)
    features = _alexnet_features(backbone)
    for slice_ in (net.net.slice1, net.net.slice2, net.net.slice3, net.net.slice4, net.net.slice5):
        for index, layer in slice_.named_children():  # the slices keep torchvision's layer indices
            layer.load_state_dict(features[int(index)].state_dict())
    return net.eval()


def _load_linear(net: torch.nn.Module, path: os.PathLike) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    expected = {k for k in net.state_dict() if re.match(r"lin\d", k)}  # "lins.N" are aliases of "linN"
    if set(state) != expected:
        raise ValueError(f"{path} is not an LPIPS AlexNet linear-layer file: expected keys "
                         f"{sorted(expected)[:2]}..., got {sorted(state)[:2]}...")
    net.load_state_dict(state, strict=False)


def _alexnet_features(path: os.PathLike) -> torch.nn.Sequential:
    state = torch.load(path, map_location="cpu", weights_only=True)
    wanted = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    if not wanted:
        raise ValueError(f"{path} holds no AlexNet 'features.*' weights (expected torchvision's state dict)")
    features = torchvision.models.alexnet(weights=None).features
    features.load_state_dict(wanted)
    return features


@torch.no_grad()
def lpips(net: torch.nn.Module, generated: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """LPIPS distance per frame: (N, 3, H, W) in [0, 1] -> (N,)."""
    return net(generated, reference, normalize=True).flatten()


# --- edit-region metrics on uint8 frames (the sampling sweep, benchmarks/bench_sampling.py) ------------
def _region_crops(frames: np.ndarray, regions: np.ndarray, size: int) -> np.ndarray:
    """(T, size, size, 3) float [0, 1]: each frame's ``regions[t]`` box (x0, y0, x1, y1, exclusive) resized."""
    out = []
    for f, (x0, y0, x1, y1) in zip(frames, np.asarray(regions, np.int64)):
        crop = f[max(y0, 0):max(y1, y0 + 1), max(x0, 0):max(x1, x0 + 1)]
        out.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(out).astype(np.float32) / 255.0


def region_ssim(generated: np.ndarray, truth: np.ndarray, regions: np.ndarray, size: int = 32) -> np.ndarray:
    """SSIM (Wang et al. 2004) per frame inside each frame's edit region, resized to ``size``: (T,).

    Args:
        generated, truth: (T, H, W, 3) uint8 frames (the dub and what it should have drawn).
        regions: (T, 4) int boxes x0, y0, x1, y1 (exclusive) in frame pixels, e.g. the pipeline's
            ``paste_region``: only the pixels the edit may change are compared.
    """
    g, t = (torch.from_numpy(_region_crops(v, regions, size)).permute(0, 3, 1, 2) for v in (generated, truth))
    return ssim(g, t).numpy()


def seam_ratio(frames: np.ndarray, regions: np.ndarray, boundary: np.ndarray, size: int = 32) -> float:
    """Temporal change across segment boundaries relative to inside segments, in the edit region.

    ``d_t`` = mean |frame t+1 - frame t| over frame t's region (both frames cut with the same box);
    returns mean d over transitions with ``boundary[t]`` true (t -> t+1 changes which segments made the
    frame) divided by the mean over the others. About 1: seams are invisible; a visible seam is a jump
    that only the boundary transitions have.
    """
    crops = np.stack([_region_crops(frames[t:t + 2], np.repeat(regions[t:t + 1], 2, 0), size)
                      for t in range(len(frames) - 1)])
    d = np.abs(crops[:, 1] - crops[:, 0]).mean(axis=(1, 2, 3))
    boundary = np.asarray(boundary, bool)[: len(d)]
    if not boundary.any() or boundary.all():
        return float("nan")
    return float(d[boundary].mean() / max(d[~boundary].mean(), 1e-12))
