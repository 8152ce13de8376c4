"""Where on the frame each metric looks: face boxes tracked on the reference video, and the crops.

Every pair is cropped with the boxes of the *reference* video, so generated and reference crops are
pixel-aligned (self-reconstruction keeps the head where it was). Two regions:

- ``face``: a face backend of :mod:`lipsync.data.faces` per frame (mediapipe by default, whose models
  ship in the wheel; ``landmarks-file`` for the synthetic world's true boxes), frames without a face
  filled by linear interpolation, then syncnet_python's median filter (13 frames) on centre and size.
  Metric crop: a square of ``scale`` x the box side around the box
  centre, resized to ``size`` (default 256); SyncNet crop: syncnet_python's crop at 224.
- ``full``: the whole frame, resized to ``size`` (metrics) or 224 (SyncNet): for videos that are already
  face crops (HDTF as its download script cuts it, the synthetic world).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lipsync.data.faces import FaceBackend, MediaPipeFaces
from lipsync.models.syncnet import smooth_boxes, syncnet_crop
from lipsync.media import iter_frames

def fill_gaps(boxes: np.ndarray) -> np.ndarray:
    """Linear interpolation over frames without a box (NaN rows), held constant past the ends: (N, 4)."""
    ok = ~np.isnan(boxes).any(axis=1)
    t = np.arange(len(boxes))
    return np.stack([np.interp(t, t[ok], boxes[ok, i]) for i in range(4)], axis=1)


def square_crop(frame: np.ndarray, box: np.ndarray, scale: float, size: int) -> np.ndarray:
    """Square of side ``scale * max(w, h)`` centred on ``box``, black outside the frame -> (size, size, 3)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = scale * max(box[2] - box[0], box[3] - box[1]) / 2
    # an affine warp crops, pads and resizes in one interpolation
    s = size / (2 * half)
    warp = np.array([[s, 0, (half - cx) * s], [0, s, (half - cy) * s]], np.float32)
    return cv2.warpAffine(frame, warp, (size, size), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def sync_track_rejection(detections: np.ndarray | None, min_track: int, min_face_size: float,
                         num_failed_det: int = 25) -> str | None:
    """Why syncnet_python would score no face track of this video, or None when it would score one.

    syncnet_python's ``track_shot``: detections at most ``num_failed_det`` frames apart form one track;
    a track counts when it holds more than ``min_track`` detections and its mean box side
    (``max(mean width, mean height)``, frame pixels) exceeds ``min_face_size``. The longest run of our
    per-frame detections stands for its track (one face per frame: no IoU split between faces).

    Args:
        detections: (N, 4) boxes, NaN rows where no face was found; None = whole-frame region (no filter).
    """
    if detections is None or (min_track <= 0 and min_face_size <= 0):
        return None
    frames = np.flatnonzero(~np.isnan(detections).any(axis=1))
    runs = np.split(frames, np.flatnonzero(np.diff(frames) > num_failed_det) + 1) if len(frames) else []
    longest = max(runs, key=len, default=np.empty(0, np.int64))
    if len(longest) <= min_track:
        return (f"no face track of more than {min_track} detections (longest {len(longest)}): "
                "syncnet_python's min_track filter")
    box = detections[longest]
    side = max(np.mean(box[:, 2] - box[:, 0]), np.mean(box[:, 3] - box[:, 1]))
    if side <= min_face_size:
        return f"face {side:.0f} px, not above {min_face_size:g} px: syncnet_python's min_face_size filter"
    return None


@dataclass
class Region:
    """Crops for the metrics (``size`` px) and for SyncNet (224 px), from boxes tracked on the reference.

    Args:
        mode: ``face`` (detected face boxes) or ``full`` (whole frame).
        size: side of the square crop that FID, FVD, SSIM, PSNR and LPIPS see.
        scale: metric crop side relative to the face box side (``face`` mode).
        faces: the face backend for ``face`` mode.
    """

    mode: str = "face"
    size: int = 256
    scale: float = 1.5
    faces: FaceBackend = field(default_factory=MediaPipeFaces)
    sync_size: int = 224
    sync_crop_scale: float = 0.4

    def __post_init__(self) -> None:
        if self.mode not in ("face", "full"):
            raise ValueError(f"region.mode must be 'face' or 'full', got {self.mode!r}")

    def track(self, path: str | os.PathLike,
              num_frames: int) -> tuple[np.ndarray | None, str, np.ndarray | None]:
        """Smoothed boxes (num_frames, 4) for ``face`` mode (None for ``full``), a note for the report, and
        the raw detections (num_frames, 4; NaN rows where no face was found) for the SyncNet track filter."""
        if self.mode == "full":
            return None, "full frame", None
        track = self.faces.track(Path(path), enumerate(iter_frames(path, stop=num_frames)))
        boxes = track.boxes.astype(np.float64)
        found_count = int(track.found.sum())
        if found_count == 0:
            return None, "no face detected: full frame used", boxes
        return smooth_boxes(fill_gaps(boxes)), f"face found in {found_count}/{num_frames} frames", boxes

    def metric_crop(self, frame: np.ndarray, box: np.ndarray | None) -> np.ndarray:
        """The crop FID, FVD, SSIM, PSNR and LPIPS see: (H, W, 3) -> (size, size, 3) uint8."""
        if box is None:
            return cv2.resize(frame, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return square_crop(frame, box, self.scale, self.size)

    def sync_crop(self, frame: np.ndarray, box: np.ndarray | None) -> np.ndarray:
        """The crop SyncNet sees: (H, W, 3) -> (224, 224, 3) uint8."""
        if box is None:
            return cv2.resize(frame, (self.sync_size, self.sync_size), interpolation=cv2.INTER_AREA)
        return syncnet_crop(frame, box, self.sync_crop_scale, self.sync_size)
