"""Face patches kept while tracking, so the kept clips are cropped without decoding the video twice.

The crop boxes are final only once the whole video is tracked (clips cut, gaps filled, boxes smoothed
forwards and backwards), so cropping used to decode the video a second time. Instead, while the
tracker reads a frame, :class:`FacePatches` keeps the square around the face it last reported,
``margin`` times the crop square, at most ``max_side`` px (a larger one is shrunk): a frame costs at
most ``3 * max_side**2`` bytes whatever the source resolution (691 200 for 320 px crops, where
max_side is 480), and a budget caps the total. :meth:`FacePatches.crop` cuts a final box from its
frame's patch; a patch kept at full size gives the same pixels as the whole frame. It returns None when
the patch does not hold the box (a jump the tracker had not reported yet, a frame past the budget, a
backend that reports faces only at the end); the caller decodes those frames again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from lipsync.data.faces import crop_square
from lipsync.prepare.crop import CropSpec

ALIGN = 8  # patch corners on multiples of 2**3: crop_square's first pyramid steps keep the frame's grid


@dataclass(frozen=True)
class Patch:
    """The frame square ``x0, y0, x0 + side, y0 + side`` (black outside the frame, as in the crops),
    resampled by ``scale`` (<= 1) to ``bgr`` (size, size, 3) uint8 in OpenCV's channel order."""

    bgr: np.ndarray
    x0: int
    y0: int
    scale: float

    def to_patch(self, box: np.ndarray) -> np.ndarray:
        """Frame pixel coordinates x0, y0, x1, y1 -> this patch's (``crop_square``'s mapping)."""
        corner = np.array([self.x0, self.y0, self.x0, self.y0], np.float64)
        return ((np.asarray(box, np.float64) - corner) * self.scale).astype(np.float32)

    def holds(self, region: np.ndarray, resolution: int) -> bool:
        """Whether cropping ``region`` (patch pixels) to ``resolution`` px reads only pixels that match the
        frame's: bilinear reads one pixel past the box; each pyramid step crop_square takes first widens
        that and changes the pixels near the patch border."""
        levels, scale = 0, resolution / float(region[2] - region[0])
        while scale < 0.5:
            levels, scale = levels + 1, scale * 2
        pad = 3 * 2 ** levels + 1
        return bool(region.min() >= pad and region.max() <= len(self.bgr) - 1 - pad)


class FacePatches:
    """Per-frame patches around the latest reported face (module docstring).

    Args:
        crop: the crop the patches serve.
        margin: patch side / side of the crop square around the reported face: room for the box
            smoothing, the frame lag of the report and head motion (carphone at 25 fps with
            ``mesh_every=2`` needs at most 1.17).
        max_side: largest patch kept, px (None: 1.5 x the crop resolution); larger ones are shrunk.
        budget_bytes: most bytes kept; later frames are not kept (they are cropped by a second pass).

    Attributes:
        face: the latest face box (x0, y0, x1, y1) the tracker reported; set it from ``on_face``.
    """

    def __init__(self, crop: CropSpec, margin: float = 1.3, max_side: int | None = None,
                 budget_bytes: int = 1 << 30) -> None:
        if margin < 1:
            raise ValueError(f"margin must be >= 1 (the patch must hold the crop square), got {margin}")
        self.crop_spec = crop
        self.margin = margin
        self.max_side = max_side or math.ceil(1.5 * crop.resolution)
        self.budget_bytes = budget_bytes
        self.face: np.ndarray | None = None
        self.nbytes = 0
        self._patches: dict[int, Patch] = {}

    def __len__(self) -> int:
        return len(self._patches)

    def add(self, row: int, frame: np.ndarray) -> None:
        """Keep the patch of RGB ``frame`` (output row ``row``) around :attr:`face`; nothing before the
        first face or once the budget is spent."""
        if self.face is None or self.nbytes + 3 * self.max_side ** 2 > self.budget_bytes:
            return
        square = self.crop_spec.squares(self.face[None])[0]
        cx, cy = (square[0] + square[2]) / 2, (square[1] + square[3]) / 2
        half = self.margin * (square[2] - square[0]) / 2
        x0, y0 = math.floor((cx - half) / ALIGN) * ALIGN, math.floor((cy - half) / ALIGN) * ALIGN
        side = math.ceil(max(cx + half - x0, cy + half - y0))
        if side <= self.max_side:
            patch = Patch(_cut(frame, x0, y0, side), x0, y0, 1.0)
        else:
            region = np.array([x0, y0, x0 + side, y0 + side], np.float32)
            patch = Patch(cv2.cvtColor(crop_square(frame, region, self.max_side), cv2.COLOR_RGB2BGR),
                          x0, y0, self.max_side / side)
        self._patches[row] = patch
        self.nbytes += patch.bgr.nbytes

    def crop(self, row: int, box: np.ndarray) -> np.ndarray | None:
        """``crop_spec.crop(frame, box)`` from the patch of ``row``: (resolution, resolution, 3) uint8 RGB,
        or None when no patch of that frame holds ``box``.

        The RGB crop is a view of a BGR array, so ``shards.encode_jpeg`` (which wants BGR) copies nothing.
        """
        patch = self._patches.get(row)
        if patch is None:
            return None
        region = patch.to_patch(box)
        if not patch.holds(region, self.crop_spec.resolution):
            return None
        return self.crop_spec.crop(patch.bgr, region)[:, :, ::-1]


def _cut(frame: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """The BGR copy of RGB ``frame[y0:y0 + side, x0:x0 + side]``, black where that leaves the frame."""
    h, w = frame.shape[:2]
    a, b, c, d = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if c <= a or d <= b:
        return np.zeros((side, side, 3), np.uint8)
    bgr = cv2.cvtColor(frame[b:d, a:c], cv2.COLOR_RGB2BGR)  # a copy: a view would keep the whole frame alive
    if (c - a, d - b) == (side, side):
        return bgr
    return cv2.copyMakeBorder(bgr, b - y0, y0 + side - d, a - x0, x0 + side - c, cv2.BORDER_CONSTANT, value=0)
