"""Self-reconstruction quality inside the edit mask: a video dubbed with its *own* audio, against itself.

The paper's reconstruction numbers (SSIM, PSNR, FID; SPEC section 7) at the frame's own resolution and
only where the model paints: the training mask rectangle of every frame, found exactly as the pipeline
finds it (the same face track, crop squares and mask, :mod:`lipsync.infer.plan`), mapped to frame pixels.

- **PSNR**: ``10 log10(1 / MSE)`` over the pixels inside the rectangle (pixel centres, as the mask is
  rasterised), per frame, [0, 1] images;
- **SSIM**: the SSIM map of the whole frame (Wang et al. 2004: Gaussian window 11, sigma 1.5; torchmetrics)
  averaged over the same pixels, so every window sees the real surroundings of the rectangle;
- **FID**: torchmetrics' Fréchet distance with the shipped Inception (:func:`lipsync.evaluate.fid.build_fid`)
  over the model's crop squares cut at frame resolution: generated frames against the source frames.

Per video, frames are averaged; over videos, videos are averaged (each counts once), as in
:mod:`lipsync.evaluate.score`. :func:`resolution_ceiling` is the best an ``r``-pixel model can score: the
source crop resampled to ``r`` px and pasted back with the pipeline's own paste (its mask rectangle).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.image.fid import FrechetInceptionDistance

from lipsync import media
from lipsync.data.faces import FaceBackend, crop_square
from lipsync.data.masks import MaskSpec, render_masks
from lipsync.evaluate.frame_metrics import PSNR_CAP_DB
from lipsync.infer.options import InferenceOptions
from lipsync.infer.paste import crop_to_frame, paste_crop
from lipsync.infer.plan import crop_boxes, mask_boxes, track_faces
from lipsync.prepare.crop import CropSpec


@dataclass(frozen=True)
class EditRegion:
    """Where a pipeline edits each frame of a video, in frame pixels.

    Attributes:
        crops: (N, 4) the model's square crop per frame (x0, y0, x1, y1; may leave the frame).
        masks: (N, 4) the training mask rectangle per frame, cut to the crop square (only that is edited).
    """

    crops: np.ndarray
    masks: np.ndarray


def edit_region(video: str | os.PathLike, num_frames: int, faces: FaceBackend, crop: CropSpec, mask: MaskSpec,
                max_gap: int = 8) -> EditRegion:
    """The crop squares and mask rectangles (frame pixels) a pipeline with ``crop`` and ``mask`` uses on
    the first ``num_frames`` frames of ``video`` (output frame i = source frame i: a self-reconstruction)."""
    fps = float(media.probe(video).fps)
    track, _ = track_faces(Path(video), fps, num_frames, faces, max_gap, progress=False)  # one face: the largest
    crops, _ = crop_boxes(track, crop)
    index = np.arange(num_frames)
    in_crop = mask_boxes(track, crops, index, crop, mask)
    squares = crops[index].astype(np.float64)
    frame_boxes = np.stack([crop_to_frame(box, sq, int(crop.resolution)) for box, sq in zip(in_crop, squares)])
    # the pipeline pastes only inside the crop square: a mask reaching past it (cheeks) is cut there
    inside = np.concatenate([np.maximum(frame_boxes[:, :2], squares[:, :2]),
                             np.minimum(frame_boxes[:, 2:], squares[:, 2:])], axis=1)
    return EditRegion(squares, inside)


def _to_float(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1] (float64 convolutions are ~100x slower on CPU)."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


def masked_psnr(generated: np.ndarray, reference: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """PSNR in dB per frame over the pixels where ``masks`` is 1, capped at 100 dB.

    Args:
        generated, reference: (N, H, W, 3) uint8.
        masks: (N, H, W) {0, 1}; a frame needs at least one pixel.
    """
    g, r = _to_float(generated), _to_float(reference)
    m = torch.from_numpy(np.asarray(masks, np.float32))[:, None]
    count = 3 * m.sum(dim=(1, 2, 3))
    if (count == 0).any():
        raise ValueError("masked_psnr: a frame has an empty mask region")
    mse = ((g - r).double() ** 2 * m).sum(dim=(1, 2, 3)) / count
    psnr = 10 * torch.log10(1.0 / mse.clamp(min=1e-20))
    return psnr.clamp(max=PSNR_CAP_DB).numpy()


def masked_ssim(generated: np.ndarray, reference: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """SSIM per frame: the full frame's SSIM map (Gaussian 11, sigma 1.5), averaged over the mask pixels
    and the three channels. Same arguments as :func:`masked_psnr`."""
    g, r = _to_float(generated), _to_float(reference)
    m = torch.from_numpy(np.asarray(masks, np.float32))[:, None]
    if (m.sum(dim=(1, 2, 3)) == 0).any():
        raise ValueError("masked_ssim: a frame has an empty mask region")
    _, ssim_map = structural_similarity_index_measure(g, r, data_range=1.0, reduction="none",
                                                      return_full_image=True)
    return ((ssim_map * m).sum(dim=(1, 2, 3)) / (3 * m.sum(dim=(1, 2, 3)))).numpy()


def crop_side(region: EditRegion) -> int:
    """The crop squares' mean side in frame pixels: FID sees each crop at the frame's own resolution."""
    return max(8, int(round(float(np.mean(region.crops[:, 2] - region.crops[:, 0])))))


def fid_crops(frames: np.ndarray, region: EditRegion, stride: int = 1) -> torch.Tensor:
    """Every ``stride``-th frame's crop square at frame resolution: (M, 3, S, S) uint8 for the Inception."""
    side = crop_side(region)
    crops = [crop_square(frames[i], region.crops[i], side) for i in range(0, len(frames), stride)]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


@dataclass
class VideoQuality:
    """Per-video self-reconstruction scores (frame means)."""

    video: str
    frames: int
    ssim: float
    psnr: float


class ReconstructionScorer:
    """SSIM/PSNR per video inside the mask, FID over all videos scored since :meth:`fid` was last read.

    Args:
        fid: a torchmetrics FID metric (:func:`lipsync.evaluate.fid.build_fid`); None skips FID.
        fid_stride: every Nth frame into FID.
    """

    def __init__(self, fid: FrechetInceptionDistance | None, fid_stride: int = 1) -> None:
        self.metric, self.stride = fid, int(fid_stride)

    def __call__(self, name: str, generated: np.ndarray, reference: np.ndarray, region: EditRegion,
                 real: bool = True) -> VideoQuality:
        """Score frames (N, H, W, 3) uint8 against the reference's first N frames; ``real=False`` adds
        only the generated side to FID (a metric built with ``reset_real_features=False`` keeps the
        reference side of earlier rows)."""
        n = min(len(generated), len(reference), len(region.masks))
        gen, ref = generated[:n], reference[:n]
        masks = render_masks(region.masks[:n], *ref.shape[1:3])[:, 0]
        if self.metric is not None:
            if real:
                self.metric.update(fid_crops(ref, _first(region, n), self.stride), real=True)
            self.metric.update(fid_crops(gen, _first(region, n), self.stride), real=False)
        return VideoQuality(name, n, float(masked_ssim(gen, ref, masks).mean()),
                            float(masked_psnr(gen, ref, masks).mean()))

    def fid(self) -> tuple[float | None, int]:
        """(FID over the videos scored since the last call, frames per side); resets the metric."""
        if self.metric is None:
            return None, 0
        n = int(self.metric.fake_features_num_samples)
        value = float(self.metric.compute()) if n >= 2 else None
        self.metric.reset()
        return value, n


def _first(region: EditRegion, n: int) -> EditRegion:
    return EditRegion(region.crops[:n], region.masks[:n])


def resolution_ceiling(frames: np.ndarray, region: EditRegion, resolution: int,
                       options: InferenceOptions | None = None) -> np.ndarray:
    """What a perfect ``resolution``-px model would return: each frame's crop square resampled to
    ``resolution`` px (:func:`crop_square`, as the pipeline crops) and pasted back exactly as the pipeline
    pastes (its mask rectangle, dilated and feathered by ``options``' ``paste_dilate`` / ``paste_feather``;
    bilinear up). Frames (N, H, W, 3) uint8 -> the same shape."""
    opts = options or InferenceOptions()
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        small = crop_square(frame, region.crops[i], resolution)
        out[i] = paste_crop(frame, small, region.crops[i], region.masks[i], None, resolution, opts.paste_blend,
                            opts.paste_dilate, opts.paste_feather).frame
    return out


def summarize(scores: Sequence[VideoQuality], fid: float | None, fid_frames: int) -> dict:
    """Means over videos (each counts once) and the FID; the per-video rows under ``videos``."""
    return {"ssim": float(np.mean([s.ssim for s in scores])), "psnr": float(np.mean([s.psnr for s in scores])),
            "fid": fid, "fid_frames": fid_frames, "frames": int(sum(s.frames for s in scores)),
            "videos": [vars(s) for s in scores]}


def read_first(video: str | os.PathLike, num_frames: int | None = None) -> np.ndarray:
    """The first ``num_frames`` frames of a video (all when None): (N, H, W, 3) uint8."""
    return media.read_frames(video, stop=num_frames)
