"""Paste the generated face crop back into the full frame (paper Appendix B, SPEC section 6).

The region is the union of the original frame's and the generated frame's face boxes. Two blends:

- ``feather`` (the paper's): each box dilated slightly (a generated jaw may open lower than the original
  one); the blend weight ``alpha`` is 1 deep inside that union and falls to 0 *at* its border over
  ``feather`` pixels (measured inward, by a distance transform).
- ``poisson`` (:func:`poisson_paste`): the generated gradients inside the edit region (undilated), the
  source's values on its border. A colour or brightness offset of the generated region, the visible box
  users complain of, cannot survive it.

Either way every pixel outside the region is the source pixel, bit for bit, and only the region's
bounding rectangle is warped and blended: the CPU cost is the face's size, not the frame's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np


def dilate_box(box: np.ndarray, ratio: float) -> np.ndarray:
    """Grow ``box`` (x0, y0, x1, y1) by ``ratio`` of its width and height on every side."""
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array(
        [box[0] - ratio * w, box[1] - ratio * h, box[2] + ratio * w, box[3] + ratio * h], dtype=np.float64
    )


def crop_to_frame(box: np.ndarray, crop: np.ndarray, size: int) -> np.ndarray:
    """Map a box from crop pixels (``size x size`` resampling of the square ``crop``) to frame pixels."""
    scale = (crop[2] - crop[0]) / size
    return np.asarray(box, dtype=np.float64) * scale + np.array([crop[0], crop[1], crop[0], crop[1]])


@dataclass(frozen=True)
class PasteResult:
    """A composited frame and where it may differ from the source.

    Attributes:
        frame: (H, W, 3) uint8.
        region: (4,) int x0, y0, x1, y1 (exclusive) bounding the pixels with alpha > 0; zeros if none.
    """

    frame: np.ndarray
    region: np.ndarray


def union_rect(boxes: Sequence[np.ndarray], height: int, width: int) -> tuple[int, int, int, int] | None:
    """Integer bounding rectangle of ``boxes`` clipped to the frame, or None when it is empty."""
    stacked = np.stack([np.asarray(b, dtype=np.float64) for b in boxes])
    x0 = max(0, int(np.floor(stacked[:, 0].min())))
    y0 = max(0, int(np.floor(stacked[:, 1].min())))
    x1 = min(width, int(np.ceil(stacked[:, 2].max())))
    y1 = min(height, int(np.ceil(stacked[:, 3].max())))
    return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)


def feathered_alpha(
    boxes: Sequence[np.ndarray],
    rect: tuple[int, int, int, int],
    feather: float,
    limit: np.ndarray | None = None,
) -> np.ndarray:
    """Blend weight over ``rect`` (x0, y0, x1, y1), ``(y1 - y0, x1 - x0)`` float32 in [0, 1].

    1 inside the union of ``boxes`` farther than ``feather`` pixels from its border, ramping (smoothstep)
    to 0 at the border, 0 outside. ``limit`` (a box) clips the union, e.g. to the generated crop.
    """
    x0, y0, x1, y1 = rect
    xs = np.arange(x0, x1, dtype=np.float64) + 0.5
    ys = np.arange(y0, y1, dtype=np.float64) + 0.5
    inside = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for b in boxes:
        inside |= ((ys >= b[1]) & (ys < b[3]))[:, None] & ((xs >= b[0]) & (xs < b[2]))[None, :]
    if limit is not None:
        inside &= ((ys >= limit[1]) & (ys < limit[3]))[:, None] & ((xs >= limit[0]) & (xs < limit[2]))[
            None, :
        ]
    if feather <= 0:
        return inside.astype(np.float32)
    # Distance (px) of each inside pixel to the nearest outside one; padding makes the rect edge outside.
    padded = np.pad(inside.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    t = np.clip(dist / feather, 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)  # smoothstep: no visible kink at either end


def warp_into(crop_image: np.ndarray, crop: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    """The ``(S, S, 3)`` crop (float or uint8, values in [0, 255]) resampled onto the frame rectangle
    ``rect`` (x0, y0, x1, y1): ``(y1 - y0, x1 - x0, 3)`` uint8, bilinear, edges replicated."""
    x0, y0, x1, y1 = rect
    scale = (crop[2] - crop[0]) / crop_image.shape[0]
    # crop pixel (u, v) lands at frame (crop0 + scale*u); shift by the rect's origin to warp into it only.
    to_rect = np.array([[scale, 0, crop[0] - x0], [0, scale, crop[1] - y0]], dtype=np.float64)
    image = crop_image if crop_image.dtype == np.uint8 else np.clip(np.rint(crop_image), 0, 255).astype(np.uint8)
    return cv2.warpAffine(np.ascontiguousarray(image), to_rect, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def paste_back(
    frame: np.ndarray,
    crop_image: np.ndarray,
    crop: np.ndarray,
    boxes: Sequence[np.ndarray],
    feather: float,
    weight: float = 1.0,
) -> PasteResult:
    """Composite ``crop_image`` into ``frame`` inside the feathered union of ``boxes``.

    Args:
        frame: (H, W, 3) uint8 source frame (not modified).
        crop_image: (S, S, 3) float or uint8 generated crop, pixel values in [0, 255].
        crop: (4,) the square (frame pixels) the crop was resampled from.
        boxes: already dilated boxes in frame pixels whose union is pasted.
        feather: width of the alpha ramp in frame pixels.
        weight: global edit weight of this frame in [0, 1] (0 returns the source frame unchanged).

    Returns:
        The composited frame and the rectangle where it can differ from ``frame``.
    """
    h, w = frame.shape[:2]
    rect = union_rect(boxes, h, w) if weight > 0 and len(boxes) else None
    if rect is None:
        return PasteResult(frame, np.zeros(4, dtype=np.int64))
    x0, y0, x1, y1 = rect
    alpha = feathered_alpha(boxes, rect, feather, limit=np.asarray(crop, dtype=np.float64)) * float(weight)
    warped = warp_into(crop_image, crop, rect)
    out = frame.copy()  # the source frame may be shown again (ping-pong): never paste into it
    # OpenCV's per-pixel blend (a*warped + (1-a)*src, rounded): where alpha is 0 it returns src exactly.
    src = np.ascontiguousarray(frame[y0:y1, x0:x1])
    out[y0:y1, x0:x1] = cv2.blendLinear(warped, src, alpha, 1.0 - alpha)
    return PasteResult(out, np.array(rect, dtype=np.int64))


def poisson_paste(
    frame: np.ndarray,
    crop_image: np.ndarray,
    crop: np.ndarray,
    boxes: Sequence[np.ndarray],
    weight: float = 1.0,
) -> PasteResult:
    """Composite ``crop_image`` into ``frame`` by Poisson blending (Perez et al. 2003, OpenCV's
    ``seamlessClone``): inside the union of ``boxes`` (clipped to the crop square) the result has the
    generated crop's gradients, on the union's border it takes the source frame's values. A brightness or
    colour offset of the generated region against the face around it (a visible box) is spread out to
    nothing; the generated detail (gradients) is kept.

    Same arguments as :func:`paste_back`, without the feather: ``boxes`` are the region's own boxes, not
    dilated (the border is where the source takes over, so there is no seam to hide). Pixels outside
    the union are the source's, bit for bit; ``weight`` < 1 mixes the blend with the source frame.
    """
    h, w = frame.shape[:2]
    rect = union_rect(boxes, h, w) if weight > 0 and len(boxes) else None
    if rect is None:
        return PasteResult(frame, np.zeros(4, dtype=np.int64))
    # Work on the rectangle grown by 2 px (the solver needs source pixels around the region).
    x0, y0, x1, y1 = max(0, rect[0] - 2), max(0, rect[1] - 2), min(w, rect[2] + 2), min(h, rect[3] + 2)
    inside = feathered_alpha(boxes, (x0, y0, x1, y1), 0.0, limit=np.asarray(crop, dtype=np.float64)) > 0
    inside[[0, -1], :] = False  # seamlessClone needs a 1 px frame of source around the region
    inside[:, [0, -1]] = False
    ys, xs = np.nonzero(inside)
    if len(ys) == 0:
        return PasteResult(frame, np.zeros(4, dtype=np.int64))
    warped = warp_into(crop_image, crop, (x0, y0, x1, y1))
    src = np.ascontiguousarray(frame[y0:y1, x0:x1])
    # seamlessClone places the mask's bounding box centred on ``center`` (integer halves): this centre
    # maps it onto itself, so source and generated stay registered.
    bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    center = (int(bx0 + (bx1 - bx0) // 2), int(by0 + (by1 - by0) // 2))
    blended = cv2.seamlessClone(warped, src, inside.astype(np.uint8) * 255, center, cv2.NORMAL_CLONE)
    if weight < 1.0:
        blended = cv2.addWeighted(blended, float(weight), src, 1.0 - float(weight), 0.0)
    out = frame.copy()  # the source frame may be shown again (ping-pong): never paste into it
    region = out[y0:y1, x0:x1]
    region[inside] = blended[inside]  # outside the region: the source, bit for bit
    return PasteResult(out, np.array([x0 + bx0, y0 + by0, x0 + bx1, y0 + by1], dtype=np.int64))


def paste_boxes(
    original: np.ndarray, generated: np.ndarray | None, crop: np.ndarray, size: int, dilate: float
) -> list[np.ndarray]:
    """The dilated boxes (frame pixels) whose union is pasted: the original frame's region, and the
    region found in the generated crop (crop pixels of the ``size`` x ``size`` crop) when there is one."""
    boxes = [dilate_box(original, dilate)]
    if generated is not None:
        boxes.append(dilate_box(crop_to_frame(generated, crop, size), dilate))
    return boxes


def feather_width(box: np.ndarray, fraction: float) -> float:
    """The alpha ramp: ``fraction`` of the box's shorter side, in pixels."""
    return fraction * float(min(box[2] - box[0], box[3] - box[1]))


PASTE_BLENDS = ("feather", "poisson")


def paste_crop(frame: np.ndarray, crop_image: np.ndarray, crop: np.ndarray, original: np.ndarray,
               generated: np.ndarray | None, size: int, blend: str = "feather", dilate: float = 0.1,
               feather: float = 0.15, weight: float = 1.0) -> PasteResult:
    """Paste a ``size`` px generated crop over the region ``original`` (frame pixels) (:data:`PASTE_BLENDS`):

    - ``poisson``: in ``original`` itself, the model's edit region. Its border is where the source takes
      over, so it must be the edit's own border: past it a model that keeps the unmasked pixels
      (``keep_unmasked``) returns the source resampled, and a region reaching there would keep the step
      between the two, colour offset included. ``generated`` is not used.
    - ``feather``: the union of ``original`` and ``generated`` (crop pixels, when given), each dilated by
      ``dilate``, with an inward ramp of ``feather`` times the first box's shorter side (the paper's).
    """
    if blend == "poisson":
        return poisson_paste(frame, crop_image, crop, [np.asarray(original, dtype=np.float64)], weight)
    if blend != "feather":
        raise ValueError(f"paste_blend must be one of {PASTE_BLENDS}, got {blend!r}")
    boxes = paste_boxes(original, generated, crop, size, dilate)
    return paste_back(frame, crop_image, crop, boxes, feather_width(boxes[0], feather), weight)
