"""The face-centred square crop each clip is stored at (training resolution, SPEC section 2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipsync.data.faces import crop_square, square_around
from lipsync.data.masks import smooth_boxes


@dataclass(frozen=True)
class CropSpec:
    """Where the crop goes and how large it is.

    Args:
        resolution: stored crop size in pixels (the training resolution; 320 in the paper).
        scale: crop side relative to the face box's longer side (room for head motion and the chin).
        shift_y: crop centre moved down by this fraction of the face size (more chin, less hair).
        alpha: smoothing of the crop square over time, run forwards and backwards so it does not lag.
    """

    resolution: int = 320
    scale: float = 1.5
    shift_y: float = 0.0
    alpha: float = 0.2

    def squares(self, face_boxes: np.ndarray) -> np.ndarray:
        """(N, 4) face boxes without NaN -> (N, 4) crop squares before smoothing, in the same pixels."""
        squares = np.stack([square_around(b, self.scale) for b in face_boxes])
        size = squares[:, 2:3] - squares[:, 0:1]
        squares[:, [1, 3]] += self.shift_y * size / self.scale
        return squares

    def boxes(self, face_boxes: np.ndarray) -> np.ndarray:
        """(N, 4) face boxes without NaN -> (N, 4) smoothed square crop boxes in the same pixels."""
        # Zero-phase smoothing: a causal filter would trail a moving head by ~1/alpha frames.
        forward = smooth_boxes(self.squares(face_boxes), self.alpha)
        return smooth_boxes(forward[::-1], self.alpha)[::-1].copy()

    def crop(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The square ``box`` of ``frame`` resampled to ``(resolution, resolution, 3)``."""
        return crop_square(frame, box, self.resolution)

    def to_crop(self, points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Map pixel points (N, P, 2) of the source frames into crop pixels, per frame box (N, 4)."""
        scale = self.resolution / (boxes[:, 2] - boxes[:, 0])
        return ((points - boxes[:, None, :2]) * scale[:, None, None]).astype(np.float32)
