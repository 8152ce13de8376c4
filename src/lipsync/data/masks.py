"""The edit mask (SPEC section 3): a smoothed rectangle over lips and lower face, from stored landmarks.

Masks are a pure function of the landmarks kept in the shards, computed when a clip is loaded, so a
new mask variant needs no re-curation. Variants are sibling classes picked by ``conf/mask/*.yaml``:

- ``adaptive`` (default): :class:`AdaptiveMask` over the lips and the lower-face muscles (nose base to
  below the chin, cheek to cheek) plus padding, coordinates smoothed over time;
- ``steady``: the same rectangle with ``size: steady``: it follows the head but keeps one width and
  height per sequence (the widest opening's), so its bottom edge no longer drops with the chin as the
  mouth opens (a per-frame box hands the network the mouth opening of the *source* video, whatever the
  audio says: motion leakage through the mask itself);
- ``unsmoothed``: the same rectangle with ``alpha = 1`` (no temporal smoothing);
- ``lips``: a small rectangle over the lips only (``points: mouth``), for the leakage benchmark;
- ``fixed``: :class:`FixedMask`, one large rectangle in crop coordinates (the "w/o Mask" ablation).

Always rectangles, never lip-shaped masks: the mask outline must not leak the mouth shape.
Boxes are ``x0, y0, x1, y1`` in pixels of the image the landmarks live in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal, Sequence

import numpy as np

from lipsync.data.faces import LandmarkLayout


def _missing_runs(found: np.ndarray) -> list[tuple[int, int]]:
    """Half-open ``[start, stop)`` runs where ``found`` is False."""
    edges = np.diff(np.concatenate([[0], (~found).astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def fill_gaps(values: np.ndarray, max_gap: int = 8) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Fill runs of at most ``max_gap`` face-less frames from context (SPEC section 3/4).

    Inner runs are interpolated linearly between the frames on both sides; a run at the start or end
    repeats its one neighbour. Longer runs stay NaN and are reported.

    Args:
        values: (N, ...) per-frame values (boxes or landmarks); a row with any NaN is face-less.
        max_gap: longest run of face-less frames that is filled.

    Returns:
        The filled copy (N, ...) and the ``[start, stop)`` frame runs longer than ``max_gap`` (or with
        no face on either side), which are left NaN.
    """
    filled = np.array(values, dtype=np.float32, copy=True)
    n = len(filled)
    found = ~np.isnan(filled.reshape(n, -1)).any(axis=1)
    unfilled = []
    for start, stop in _missing_runs(found):
        if stop - start > max_gap or (start == 0 and stop == n):
            unfilled.append((start, stop))
        elif start == 0:
            filled[start:stop] = filled[stop]
        elif stop == n:
            filled[start:stop] = filled[start - 1]
        else:
            w = (np.arange(start, stop) - (start - 1)) / (stop - (start - 1))
            w = w.reshape(-1, *([1] * (filled.ndim - 1)))
            filled[start:stop] = (1 - w) * filled[start - 1] + w * filled[stop]
    return filled, unfilled


def smooth_boxes(boxes: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential smoothing of box coordinates, SPEC section 3: ``b~_t = alpha*b_t + (1-alpha)*b~_(t-1)``.

    ``b~_0 = b_0``; a NaN row passes through and restarts the filter after it.

    Args:
        boxes: (N, 4) x0, y0, x1, y1.
        alpha: weight of the current frame in (0, 1]; 1 means no smoothing.

    Returns:
        (N, 4) smoothed boxes.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    boxes = np.asarray(boxes, dtype=np.float64)
    out = np.empty_like(boxes)
    previous = None
    for t, b in enumerate(boxes):
        previous = b if previous is None or np.isnan(previous).any() else alpha * b + (1 - alpha) * previous
        out[t] = previous
    return out.astype(np.float32)


def landmark_boxes(landmarks: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(N, 4) bounding boxes of the landmark points ``idx`` of each frame ((N, K, 2) in); NaN stays NaN."""
    pts = np.asarray(landmarks, dtype=np.float32)[:, idx]
    return np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1)


def pad_boxes(boxes: np.ndarray, pad_x: float, pad_top: float, pad_bottom: float) -> np.ndarray:
    """Grow boxes by fractions of their own width (each side) and height (top, bottom)."""
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    grow = np.concatenate([-pad_x * w, -pad_top * h, pad_x * w, pad_bottom * h], axis=1)
    return boxes + grow


def render_masks(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterise rectangles: 1 where a pixel centre lies inside ``[x0, x1) x [y0, y1)``.

    Args:
        boxes: (N, 4) pixel boxes; NaN rows are refused (they mean an unfilled face-less gap).
        height, width: mask size.

    Returns:
        (N, 1, height, width) float32 masks in {0, 1}.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    bad = np.flatnonzero(np.isnan(boxes).any(axis=1))
    if bad.size:
        raise ValueError(f"no mask box for frames {bad[:8].tolist()} (face-less for longer than the gap limit); "
                         "prepare cuts clips there, so these landmarks did not come from a prepared clip")
    xs = np.arange(width, dtype=np.float32) + 0.5
    ys = np.arange(height, dtype=np.float32) + 0.5
    inside_x = (xs >= boxes[:, 0:1]) & (xs < boxes[:, 2:3])  # (N, W)
    inside_y = (ys >= boxes[:, 1:2]) & (ys < boxes[:, 3:4])  # (N, H)
    return (inside_y[:, :, None] & inside_x[:, None, :]).astype(np.float32)[:, None]


class MaskSpec(ABC):
    """A mask variant: landmarks of consecutive frames -> one rectangle per frame.

    ``size_from`` (optional, (M, K, 2)) are the landmarks of the sequence the frames belong to, for
    variants whose rectangle size is a property of the whole sequence (``AdaptiveMask(size="steady")``):
    a training sample's reference frame is masked with its video's rectangle size, as at inference.
    """

    @abstractmethod
    def boxes(self, landmarks: np.ndarray, layout: LandmarkLayout, height: int, width: int,
              size_from: np.ndarray | None = None) -> np.ndarray:
        """(N, 4) mask rectangles for landmarks (N, K, 2) of an image of ``height x width`` pixels."""

    def __call__(self, landmarks: np.ndarray, layout: LandmarkLayout, height: int, width: int,
                 size_from: np.ndarray | None = None) -> np.ndarray:
        """(N, 1, height, width) float32 masks of consecutive frames."""
        return render_masks(self.boxes(landmarks, layout, height, width, size_from), height, width)


class AdaptiveMask(MaskSpec):
    """Rectangle over lips and lower face plus padding, temporally smoothed (SPEC section 3).

    Args:
        alpha: smoothing weight of the current frame, ``b~_t = alpha*b_t + (1-alpha)*b~_(t-1)``;
            smaller is steadier, larger follows the face more closely; 1 disables smoothing.
        pad_x: padding left and right, as a fraction of the rectangle's width.
        pad_top: padding above (towards the nose), fraction of its height.
        pad_bottom: padding below the chin, fraction of its height.
        max_gap: face-less frames filled from context (longer gaps are an error at render time).
        points: "lower_face" (lips, nose base, chin, cheeks) or "mouth" (lips only: the small mask).
        size: "frame" (each frame's own padded box, the paper's) or "steady": each frame keeps its box's
            top edge (the nose base, which the jaw does not move) and horizontal centre, but the width and
            height are the ``size_quantile`` of the unpadded boxes' sizes over the sequence, padded after.
            The jaw drops as the mouth opens, so a per-frame box grows with the opening and its edge tells
            the network how far the *source* mouth is open; a steady box covers the widest opening and
            tells it nothing.
        size_quantile: which quantile of the sequence's widths and heights a steady box takes (1 = the
            largest: the chin stays inside the mask at the widest opening).
    """

    def __init__(self, alpha: float = 0.5, pad_x: float = 0.1, pad_top: float = 0.05, pad_bottom: float = 0.15,
                 max_gap: int = 8, points: Literal["lower_face", "mouth"] = "lower_face",
                 size: Literal["frame", "steady"] = "frame", size_quantile: float = 1.0) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"mask alpha must be in (0, 1], got {alpha}")
        if points not in ("lower_face", "mouth"):
            raise ValueError(f"mask points must be 'lower_face' or 'mouth', got {points!r}")
        if size not in ("frame", "steady"):
            raise ValueError(f"mask size must be 'frame' or 'steady', got {size!r}")
        if not 0.0 <= size_quantile <= 1.0:
            raise ValueError(f"mask size_quantile must be in [0, 1], got {size_quantile}")
        self.alpha, self.max_gap, self.points = alpha, max_gap, points
        self.pad_x, self.pad_top, self.pad_bottom = pad_x, pad_top, pad_bottom
        self.size, self.size_quantile = size, size_quantile

    def point_indices(self, layout: LandmarkLayout) -> np.ndarray:
        """The landmark indices whose bounding box is the unpadded rectangle."""
        if self.points == "mouth":
            return layout.mouth_idx
        return np.union1d(layout.mouth_idx, layout.lower_face_idx)

    def raw(self, landmarks: np.ndarray, layout: LandmarkLayout) -> np.ndarray:
        """(N, 4) per-frame boxes of the landmark points, short face-less gaps filled, unpadded."""
        return fill_gaps(landmark_boxes(landmarks, self.point_indices(layout)), self.max_gap)[0]

    def boxes(self, landmarks: np.ndarray, layout: LandmarkLayout, height: int, width: int,
              size_from: np.ndarray | None = None) -> np.ndarray:
        raw = self.raw(landmarks, layout)
        if self.size == "frame":
            return smooth_boxes(pad_boxes(raw, self.pad_x, self.pad_top, self.pad_bottom), self.alpha)
        sizes = raw if size_from is None else self.raw(size_from, layout)
        sizes = sizes[~np.isnan(sizes).any(axis=1)]
        if not len(sizes):  # nothing to size by: NaN boxes, refused at render time like the per-frame ones
            return raw
        w = float(np.quantile(sizes[:, 2] - sizes[:, 0], self.size_quantile))
        h = float(np.quantile(sizes[:, 3] - sizes[:, 1], self.size_quantile))
        # Anchors that the jaw does not move: the top edge (nose base) and the horizontal centre.
        anchors = smooth_boxes(np.stack([(raw[:, 0] + raw[:, 2]) / 2, raw[:, 1]] * 2, axis=1), self.alpha)
        cx, top = anchors[:, 0], anchors[:, 1]
        steady = np.stack([cx - w / 2, top, cx + w / 2, top + h], axis=1)
        return pad_boxes(steady, self.pad_x, self.pad_top, self.pad_bottom).astype(np.float32)

    def __repr__(self) -> str:
        steady = f", size='steady', size_quantile={self.size_quantile}" if self.size == "steady" else ""
        return (f"AdaptiveMask(alpha={self.alpha}, pad=({self.pad_x}, {self.pad_top}, {self.pad_bottom}), "
                f"points={self.points!r}{steady})")


class FixedMask(MaskSpec):
    """The same large rectangle in every frame, ignoring landmarks (the "w/o Mask" ablation, Table 3).

    Args:
        box: x0, y0, x1, y1 as fractions of the image width and height.
    """

    def __init__(self, box: Sequence[float] = (0.05, 0.4, 0.95, 1.0)) -> None:
        box = tuple(float(v) for v in box)
        if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
            raise ValueError(f"fixed mask box must be x0 < x1, y0 < y1 fractions in [0, 1], got {box}")
        self.box = box

    def boxes(self, landmarks: np.ndarray, layout: LandmarkLayout, height: int, width: int,
              size_from: np.ndarray | None = None) -> np.ndarray:
        scale = np.array([width, height, width, height], dtype=np.float32)
        return np.tile(np.array(self.box, dtype=np.float32) * scale, (len(landmarks), 1))

    def __repr__(self) -> str:
        return f"FixedMask(box={self.box})"
