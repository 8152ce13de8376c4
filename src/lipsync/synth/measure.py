"""Mouth opening read from the pixels of the synthetic world, and the sync / leak scores built on it.

The measurement knows nothing about any model. The renderer (:mod:`lipsync.synth.render`) paints the
mouth interior very dark and the teeth white, and keeps skin and lips bright and saturated. So in a
region of the face box where the lips always are (an ellipse in box-relative coordinates,
:data:`MOUTH_REGION`), each pixel gets an "open" weight in [0, 1], the larger of

- darkness: how far its luma lies below 0.7 x the skin's luma, on a linear scale reaching 1 at the
  interior's luma;
- desaturation: how far its chroma (max - min of R, G, B) lies below 0.8 x the skin's chroma, reaching 1
  at the teeth's chroma (both the interior and the teeth are far greyer than skin and lips);

with the skin's luma and chroma taken as medians over the cheeks (:data:`SKIN_BAND`). Both weights are
linear in the mix of mouth and lip colour, so blur, resizing and JPEG/H.264 (which blurs chroma) move
the summed weight little: it stays the open area. That sum divided by the box area, times a constant,
is the opening on the renderer's scale (about 0 closed, about 1 wide open), so curves can be plotted
against the truth.

Scores (SPEC section 9; the paper's lip-sync and "motion leakage", section 3.2), each a Pearson
correlation over the T frames of one video at zero lag, in [-1, 1], and 0 when either curve is constant
(a still mouth carries no timing information). Chance level: two independent 8 s clips correlate with a
standard deviation of about 0.12, so judge a model over many clips (mean, or pooled frames).

- ``sync``: measured opening vs the opening the renderer would draw for the driving audio B
  (:func:`lipsync.synth.speech.mouth_opening_from_audio`); high = lips follow B.
- ``leak``: measured opening vs the source video A's own opening; high = the output copies A's mouth.
"""

from __future__ import annotations

import os

import numpy as np

from lipsync.media import MODEL_FPS, atomic_path
from lipsync.stats import pearson
from lipsync.synth.render import MOUTH_INTERIOR, TEETH
from lipsync.synth.speech import mouth_opening_from_audio

# Ellipse (centre x, centre y, radius x, radius y) relative to the face box (0..1 across, 0..1 down).
# Over the renderer's identities, poses and openings the lips span x 0.26-0.73 and y 0.60-0.89 of the box.
MOUTH_REGION = (0.5, 0.75, 0.29, 0.2)
# Band of the box used for the skin reference (cheeks and nose, above the lips).
SKIN_BAND = (0.2, 0.45, 0.8, 0.6)
DARK_SKIN_RATIO = 0.7  # darkness counts below 0.7 x skin luma (lips stay above it: >= ~0.8 x skin) ...
INTERIOR_LUMA = float(np.dot(MOUTH_INTERIOR, (0.299, 0.587, 0.114)))  # ... and is full at the interior's
GREY_SKIN_RATIO = 0.8  # desaturation counts below 0.8 x skin chroma (skin chroma >= 65, lips higher) ...
TEETH_CHROMA = max(TEETH) - min(TEETH)  # ... and is full at the teeth's
# Open area / box area -> renderer opening units (least-squares slope over random rendered frames).
AREA_TO_OPENING = 23.0


def _check(frames: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, H, W, 3) RGB, got {frames.dtype} {frames.shape}")
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.shape == (4,):  # one fixed box (e.g. the pipeline's crop) for every frame
        boxes = np.broadcast_to(boxes, (len(frames), 4))
    if boxes.shape != (len(frames), 4):
        raise ValueError(f"boxes must be (4,) or (N={len(frames)}, 4) x0, y0, x1, y1, got {boxes.shape}")
    empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if not np.isfinite(boxes).all() or empty.any():
        raise ValueError("boxes must be finite with x1 > x0 and y1 > y0 (fill face-less frames first)")
    return frames, boxes


def _below(x: np.ndarray, start: float, full: float) -> np.ndarray:
    """Linear weight: 0 at or above ``start``, rising to 1 at ``full`` (< start) and beyond."""
    return np.clip((start - x) / max(start - full, 1e-6), 0.0, 1.0)


def _window(shape: tuple[int, int], box: np.ndarray) -> tuple[slice, slice, np.ndarray, np.ndarray]:
    """The frame window holding the mouth region and the skin band, and its box-relative pixel coordinates.

    Returns:
        Row and column slices, and (rx, ry) of every pixel centre in the window (0..1 across the box).
    """
    cx, cy, ax, ay = MOUTH_REGION
    x0 = min(cx - ax, SKIN_BAND[0]) * (box[2] - box[0]) + box[0]
    x1 = max(cx + ax, SKIN_BAND[2]) * (box[2] - box[0]) + box[0]
    y0 = min(cy - ay, SKIN_BAND[1]) * (box[3] - box[1]) + box[1]
    y1 = max(cy + ay, SKIN_BAND[3]) * (box[3] - box[1]) + box[1]
    h, w = shape
    rows = slice(int(np.clip(np.floor(y0), 0, h)), int(np.clip(np.ceil(y1) + 1, 0, h)))
    cols = slice(int(np.clip(np.floor(x0), 0, w)), int(np.clip(np.ceil(x1) + 1, 0, w)))
    ys, xs = np.mgrid[rows, cols].astype(np.float64)
    return rows, cols, (xs - box[0]) / (box[2] - box[0]), (ys - box[1]) / (box[3] - box[1])


def _open_area(frame: np.ndarray, box: np.ndarray) -> float:
    """Open-mouth area of one frame (summed dark-or-grey weights) as a fraction of the box area."""
    rows, cols, rx, ry = _window(frame.shape[:2], box)
    cx, cy, ax, ay = MOUTH_REGION
    region = ((rx - cx) / ax) ** 2 + ((ry - cy) / ay) ** 2 <= 1.0
    x0, y0, x1, y1 = SKIN_BAND
    band = (rx >= x0) & (rx <= x1) & (ry >= y0) & (ry <= y1)
    rgb = frame[rows, cols].astype(np.float64)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    chroma = rgb.max(-1) - rgb.min(-1)
    if not band.any() or not region.any():
        return 0.0  # the box is (almost) outside the frame: nothing to see
    skin_luma, skin_chroma = float(np.median(luma[band])), float(np.median(chroma[band]))
    dark = _below(luma[region], DARK_SKIN_RATIO * skin_luma, INTERIOR_LUMA)
    grey = _below(chroma[region], GREY_SKIN_RATIO * skin_chroma, TEETH_CHROMA)
    box_area = (box[2] - box[0]) * (box[3] - box[1])
    return float(np.maximum(dark, grey).sum() / box_area)


def measure_opening(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mouth opening of each frame, measured from pixels alone.

    Args:
        frames: (N, H, W, 3) uint8 RGB frames of the synthetic world (any size; a single (H, W, 3) too).
        boxes: (N, 4) face boxes x0, y0, x1, y1 in those frames' pixels (the renderer's boxes, or the
            boxes mapped into a crop), or one (4,) box used for every frame.

    Returns:
        (N,) float64, on the renderer's opening scale (about 0 closed, about 1 wide open).
    """
    frames, boxes = _check(frames, boxes)
    return np.array([_open_area(f, b) for f, b in zip(frames, boxes)]) * AREA_TO_OPENING


def sync_score(generated_frames: np.ndarray, boxes: np.ndarray, driving_audio: np.ndarray) -> float:
    """Lip sync: Pearson correlation of the measured opening with the opening audio B drives.

    Args:
        generated_frames: (T, H, W, 3) uint8 frames of the result, at 25 fps.
        boxes: (T, 4) or (4,) face boxes in those frames.
        driving_audio: (samples,) 16 kHz mono audio aligned with frame 0 (zero-padded if short).

    Returns:
        corr(measured, mouth_opening_from_audio(driving_audio, T)) in [-1, 1].
    """
    measured = measure_opening(generated_frames, boxes)
    return pearson(measured, mouth_opening_from_audio(driving_audio, len(measured)))


def leak_score(generated_frames: np.ndarray, boxes: np.ndarray, source_opening: np.ndarray) -> float:
    """Motion leakage: Pearson correlation of the measured opening with the source video's own opening.

    Args:
        generated_frames: (T, H, W, 3) uint8 frames of the result.
        boxes: (T, 4) or (4,) face boxes in those frames.
        source_opening: (T,) the opening the source video A was rendered with (its landmarks file).
    """
    return pearson(measure_opening(generated_frames, boxes), source_opening)


def plot_openings(target: np.ndarray, result: np.ndarray, source: np.ndarray | None,
                  path: str | os.PathLike, fps: float = MODEL_FPS, title: str = "mouth opening") -> None:
    """Write a PNG of opening over time: target (from the driving audio), result, and source.

    Args:
        target: (T,) the opening the driving audio asks for.
        result: (T,) the opening measured on the generated video.
        source: (T,) the source video's own opening, or None.
        path: where the PNG goes (written atomically).
    """
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on training machines
    import matplotlib.pyplot as plt


    fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
    curves = [("target (driving audio)", target, "tab:green"), ("result (measured)", result, "tab:blue")]
    if source is not None:
        curves.append(("source (original mouth)", source, "tab:gray"))
    for label, curve, colour in curves:
        curve = np.asarray(curve, np.float64)
        ax.plot(np.arange(len(curve)) / fps, curve, label=label, color=colour, lw=1.5)
    ax.set(xlabel="time (s)", ylabel="opening", title=title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def boxes_in_crop(boxes: np.ndarray, regions: np.ndarray, size: int) -> np.ndarray:
    """Map face boxes from frame pixels into square crops resampled to ``size`` pixels.

    Args:
        boxes: (N, 4) or (4,) face boxes x0, y0, x1, y1 in the full frame.
        regions: (N, 4) or (4,) the square crop regions in the same frame (as
            ``lipsync.data.faces.crop_square`` takes them).
        size: the crop's side in pixels after resampling.

    Returns:
        Boxes in crop pixels, shaped like the broadcast of the inputs.
    """
    boxes, regions = np.asarray(boxes, np.float64), np.asarray(regions, np.float64)
    scale = size / (regions[..., 2:3] - regions[..., 0:1])
    origin = np.concatenate([regions[..., :2], regions[..., :2]], axis=-1)
    return (boxes - origin) * scale
