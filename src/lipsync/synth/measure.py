"""Mouth opening read from the pixels of the synthetic world, and the sync / leak scores built on it.

The measurement knows nothing about any model: in a region of the face box where the lips always are
(an ellipse, in box-relative coordinates, see :data:`MOUTH_REGION`), it counts pixels that are as dark
as the mouth interior or as white and grey as the teeth, with soft thresholds so blur and codec noise
change the count smoothly, and divides by the box area. The renderer paints the interior and teeth in
fixed colours and keeps skin and lips far brighter and more saturated
(:mod:`lipsync.synth.render`), so the visible open area is what is counted. A constant maps the area
to the renderer's opening scale, so curves can be plotted against the truth.

Scores (SPEC section 9; the paper's lip-sync and "motion leakage", section 3.2), each a Pearson
correlation over the T frames of one video at zero lag, in [-1, 1], and 0 when either curve is constant
(a still mouth carries no timing information):

- ``sync``: measured opening vs the opening the renderer would draw for the driving audio B
  (:func:`lipsync.synth.speech.mouth_opening_from_audio`); high = lips follow B.
- ``leak``: measured opening vs the source video A's own opening; high = the output copies A's mouth.
"""

from __future__ import annotations

import os

import numpy as np

from lipsync.synth.speech import mouth_opening_from_audio

# Ellipse (centre x, centre y, radius x, radius y) relative to the face box (0..1 across, 0..1 down).
# Over the renderer's identities, poses and openings the lips span x 0.26-0.73 and y 0.60-0.89 of the box.
MOUTH_REGION = (0.5, 0.75, 0.29, 0.2)
# Band of the box used for the skin reference (cheeks and nose, above the lips).
SKIN_BAND = (0.2, 0.45, 0.8, 0.6)
# Soft thresholds (membership 1 -> 0 across threshold +- width): blur and codec noise move counts smoothly.
DARK_MAX_LUMA = (55.0, 12.0)  # interior luma is ~20; skin is kept >= 85 and lips >= ~0.8 of it
DARK_SKIN_RATIO = 0.55  # never call "dark" what is more than 55% of the skin's luma
TEETH_MIN_LUMA = (170.0, 25.0)  # teeth luma ~244
TEETH_MAX_CHROMA = (55.0, 10.0)  # max(R,G,B) - min(R,G,B): teeth ~10 (up to ~50 after H.264), skin >= 65
# Open area / box area -> renderer opening units (least-squares slope over random rendered frames).
AREA_TO_OPENING = 21.0


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
    if not np.isfinite(boxes).all() or (boxes[:, 2] <= boxes[:, 0]).any() or (boxes[:, 3] <= boxes[:, 1]).any():
        raise ValueError("boxes must be finite with x1 > x0 and y1 > y0 (fill face-less frames first)")
    return frames, boxes


def _ramp(x: np.ndarray, threshold: tuple[float, float], below: bool) -> np.ndarray:
    """Soft membership: 1 well below (or above) ``centre``, 0 well past it, linear over +- ``width``."""
    centre, width = threshold
    t = (centre + width - x) / (2 * width) if below else (x - centre + width) / (2 * width)
    return np.clip(t, 0.0, 1.0)


def _box_grid(shape: tuple[int, int], box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box-relative coordinates (rx, ry) of every pixel centre of an (H, W) frame."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    return (xs - box[0]) / (box[2] - box[0]), (ys - box[1]) / (box[3] - box[1])


def _open_area(frame: np.ndarray, box: np.ndarray) -> float:
    """Open-mouth area of one frame (dark interior + teeth, soft counts) as a fraction of the box area."""
    rx, ry = _box_grid(frame.shape[:2], box)
    cx, cy, ax, ay = MOUTH_REGION
    region = ((rx - cx) / ax) ** 2 + ((ry - cy) / ay) ** 2 <= 1.0
    x0, y0, x1, y1 = SKIN_BAND
    band = (rx >= x0) & (rx <= x1) & (ry >= y0) & (ry <= y1)
    rgb = frame.astype(np.float64)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    chroma = rgb.max(-1) - rgb.min(-1)
    skin = float(np.median(luma[band])) if band.any() else 255.0
    dark_luma = (min(DARK_MAX_LUMA[0], DARK_SKIN_RATIO * skin), DARK_MAX_LUMA[1])
    dark = _ramp(luma[region], dark_luma, below=True)
    teeth = _ramp(luma[region], TEETH_MIN_LUMA, below=False) * _ramp(chroma[region], TEETH_MAX_CHROMA, below=True)
    box_area = (box[2] - box[0]) * (box[3] - box[1])
    return float(np.maximum(dark, teeth).sum() / box_area)


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


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two (T,) curves; 0.0 when either is constant (no timing to compare)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"need two curves of equal length >= 2, got {a.shape} and {b.shape}")
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 1e-12 else 0.0


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
                  path: str | os.PathLike, fps: float = 25.0, title: str = "mouth opening") -> None:
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

    from lipsync.media import atomic_path

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
