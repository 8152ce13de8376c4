"""Lip-sync metrics on real faces from the MediaPipe face mesh alone (no SyncNet, no weights to fetch).

The field's Sync-C/D needs SyncNet v2 weights; these need only the face mesh the project already ships:

- **opening**: the inner-lip gap (upper to lower inner lip at the centre and at both sides: mesh points
  13-14, 82-87, 312-317, mean) over the inter-ocular distance (outer eye corners 33-263), per frame.
  Dividing by the eyes rather than the mouth's width keeps a smile from reading as a closed mouth, and
  makes the value independent of the face's size in the frame;
- **LMD** (mouth landmark distance, Chen et al. 2018): the mean distance between the 40 lip points of the
  generated and the true frame, over the true frame's inter-ocular distance, averaged over frames. A
  self-reconstruction keeps the source's head pose, so no alignment is needed;
- **correlation**: Pearson's r of two opening series over the frames where both are measured (the lip
  sync scores of :mod:`lipsync.evaluate.realface` are such correlations).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lipsync import media
from lipsync.data.faces import MEDIAPIPE_478, FaceTrack, MediaPipeFaces

#: inner-lip point pairs (upper, lower) of the MediaPipe mesh: centre, left, right
INNER_LIP_PAIRS = np.array([[13, 14], [82, 87], [312, 317]])
#: outer eye corners of the MediaPipe mesh (the inter-ocular distance's ends)
EYE_CORNERS = np.array([33, 263])


def inter_ocular(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners: ``(..., 478, 2) -> (...)``."""
    p = np.asarray(landmarks, np.float64)
    return np.linalg.norm(p[..., EYE_CORNERS[0], :] - p[..., EYE_CORNERS[1], :], axis=-1)


def opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap over the inter-ocular distance: ``(..., 478, 2) -> (...)``; NaN where a frame has no
    face."""
    p = np.asarray(landmarks, np.float64)
    gap = np.linalg.norm(p[..., INNER_LIP_PAIRS[:, 0], :] - p[..., INNER_LIP_PAIRS[:, 1], :], axis=-1).mean(-1)
    return gap / np.maximum(inter_ocular(p), 1e-9)


def lmd(generated: np.ndarray, truth: np.ndarray) -> float:
    """Mouth landmark distance: mean lip-point distance over the true inter-ocular distance, averaged over
    the frames where both faces are found. ``(N, 478, 2)`` each (the shorter length is used)."""
    n = min(len(generated), len(truth))
    g, t = np.asarray(generated[:n], np.float64), np.asarray(truth[:n], np.float64)
    idx = MEDIAPIPE_478.mouth_idx
    per_frame = np.linalg.norm(g[:, idx] - t[:, idx], axis=-1).mean(-1) / np.maximum(inter_ocular(t), 1e-9)
    ok = np.isfinite(per_frame)
    return float(per_frame[ok].mean()) if ok.any() else float("nan")


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r over the first ``min(len)`` frames where both series are finite; NaN when fewer than 3
    such frames or a series is constant there."""
    n = min(len(a), len(b))
    a, b = np.asarray(a[:n], np.float64), np.asarray(b[:n], np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() == 0 or b[ok].std() == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def track_frames(frames: np.ndarray, faces: MediaPipeFaces | None = None) -> FaceTrack:
    """The face mesh of the largest face on every frame of ``(N, H, W, 3)`` uint8 (mesh on every frame)."""
    faces = faces or MediaPipeFaces(mesh_every=1)
    return faces.track(Path("frames"), enumerate(frames))


def track_video(path: str | os.PathLike, num_frames: int | None = None,
                faces: MediaPipeFaces | None = None) -> FaceTrack:
    """:func:`track_frames` on the first ``num_frames`` frames of a video (all when None)."""
    faces = faces or MediaPipeFaces(mesh_every=1)
    return faces.track(Path(path), enumerate(media.iter_frames(path, 0, num_frames)))
