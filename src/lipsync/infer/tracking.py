"""Face tracking for inference: per-frame faces, gaps, smoothed crop boxes and edit weights (Appendix B).

1. :func:`detect_faces` runs a face backend over the source frames in chunks and keeps only what later
   phases need (the face box and the landmarks of the mask's points), so memory is a few hundred bytes
   per frame, never frames. :func:`track_all_faces` does the same for every face of every frame and
   links them into one track per person, cut at shot changes (:mod:`lipsync.data.face_tracks`);
   :mod:`.face_choice` then picks the face to dub.
2. :meth:`FaceTrackSummary.filled` fills short face-less gaps from context (the detector blinked), the
   same way training masks are filled (:func:`lipsync.data.masks.fill_gaps`); longer gaps stay face-less.
3. The crop squares are the training crop's (``lipsync.prepare.crop.CropSpec``: face box expanded by
   its scale, smoothed forward and backward), computed within each run of faces (:func:`runs`);
   face-less frames hold the nearest crop (:func:`hold_nearest`; their result is never shown).
4. :func:`edit_weights` turns "this frame may be edited" into a weight that fades in and out over a
   few frames around face-less stretches, so a pass-through frame never meets an edited one abruptly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from scipy.ndimage import distance_transform_edt

from lipsync.data.face_tracks import FaceCollector, FaceTracker, FaceTracks, ShotCuts
from lipsync.data.faces import FaceBackend, LandmarkLayout
from lipsync.data.masks import fill_gaps


def subset_layout(layout: LandmarkLayout) -> tuple[np.ndarray, LandmarkLayout]:
    """Keep only the lip and lower-face points: ``(indices into the full set, the layout re-indexed)``.

    The mask depends on no other landmark, so storing this subset per frame is lossless for the mask.
    """
    keep = np.union1d(layout.mouth_idx, layout.lower_face_idx)
    remap = {int(old): new for new, old in enumerate(keep)}
    sub = LandmarkLayout(
        layout.kind if layout.kind != "custom" else "custom",
        np.array([remap[int(i)] for i in layout.mouth_idx]),
        np.array([remap[int(i)] for i in layout.lower_face_idx]),
    )
    return keep, sub


@dataclass
class FaceTrackSummary:
    """What inference keeps of a face track, per source frame.

    Attributes:
        boxes: (N, 4) face boxes x0, y0, x1, y1 in frame pixels; NaN where no face.
        landmarks: (N, P, 2) lip and lower-face landmarks in frame pixels; NaN where no face.
        layout: the re-indexed layout of those P points.
        detected: (N,) bool, the backend itself found a face (not filled from context).
        starts: first frames of the stretches that show another face than the frame before (a cut, or
            the chosen person changes); gaps are filled and crops smoothed only within a stretch.
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    layout: LandmarkLayout
    detected: np.ndarray
    starts: tuple[int, ...] = ()

    @property
    def found(self) -> np.ndarray:
        """(N,) bool: the frame has a face box (detected or filled)."""
        return ~np.isnan(self.boxes).any(axis=1)

    def stretches(self) -> list[tuple[int, int]]:
        """``[start, stop)`` frame ranges that each show one face (split at :attr:`starts`)."""
        edges = [0, *sorted(s for s in set(self.starts) if 0 < s < len(self.boxes)), len(self.boxes)]
        return list(zip(edges[:-1], edges[1:]))

    def runs(self) -> list[tuple[int, int]]:
        """Runs of frames with a face, never across a stretch boundary."""
        return [(a + i, a + j) for a, b in self.stretches() for i, j in runs(self.found[a:b])]

    def filled(self, max_gap: int) -> "FaceTrackSummary":
        """Fill face-less runs of at most ``max_gap`` frames from the frames around them (in a stretch)."""
        boxes, landmarks = self.boxes.copy(), self.landmarks.copy()
        for a, b in self.stretches():
            boxes[a:b], _ = fill_gaps(self.boxes[a:b], max_gap)
            landmarks[a:b], _ = fill_gaps(self.landmarks[a:b], max_gap)
        both = ~np.isnan(boxes).any(axis=1) & ~np.isnan(landmarks.reshape(len(boxes), -1)).any(axis=1)
        boxes[~both], landmarks[~both] = np.nan, np.nan
        return FaceTrackSummary(boxes, landmarks, self.layout, self.detected.copy(), self.starts)


def _chunks(frames: Iterable[np.ndarray], size: int) -> Iterator[list[tuple[int, np.ndarray]]]:
    chunk: list[tuple[int, np.ndarray]] = []
    for i, frame in enumerate(frames):
        chunk.append((i, frame))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def detect_faces(
    frames: Iterable[np.ndarray], backend: FaceBackend, source: Path, chunk: int = 256
) -> FaceTrackSummary:
    """Largest face of every frame, reduced to boxes and mask landmarks, ``chunk`` frames at a time.

    Args:
        frames: RGB uint8 ``(H, W, 3)`` frames in order (a stream: at most ``chunk`` are held).
        backend: a :class:`~lipsync.data.faces.FaceBackend`.
        source: the video file the frames come from (the landmarks-file backend reads beside it).
        chunk: frames per backend call.
    """
    boxes, landmarks, detected, keep, layout = [], [], [], None, None
    for part in _chunks(frames, chunk):
        track = backend.track(source, part)
        if keep is None:
            keep, layout = subset_layout(track.layout)
        boxes.append(track.boxes)
        landmarks.append(track.landmarks[:, keep])
        detected.append(track.found)
    if keep is None or layout is None:
        raise ValueError(f"{source}: no video frames to track")
    return FaceTrackSummary(
        np.concatenate(boxes), np.concatenate(landmarks), layout, np.concatenate(detected)
    )


def track_all_faces(
    frames: Iterable[np.ndarray], backend: FaceBackend, source: Path, chunk: int = 64,
    tracker: FaceTracker | None = None, cuts: ShotCuts | None = None,
) -> FaceTracks:
    """Every face of every frame, linked into tracks, ``chunk`` frames at a time.

    Only the box and the mask's landmark points of each face are kept (a few hundred bytes per face);
    shot cuts are found on the same pass, so the video is decoded once.

    Args:
        frames: RGB uint8 ``(H, W, 3)`` frames in order (a stream: at most ``chunk`` are held).
        backend: a :class:`~lipsync.data.faces.FaceBackend`.
        source: the video file the frames come from.
        chunk: frames per backend call.
        tracker: the linking rules (:class:`~lipsync.data.face_tracks.FaceTracker` defaults when None).
        cuts: the shot-cut detector (defaults when None).
    """
    collector = FaceCollector(backend, source, subset_layout, chunk, tracker, cuts)
    for i, frame in enumerate(frames):
        collector.push(i, frame)
    return collector.result()


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open ``[start, stop)`` runs where ``mask`` is True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def hold_nearest(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill invalid rows with the nearest valid row (ties go to the earlier one)."""
    if valid.all():
        return values
    idx = np.flatnonzero(valid)
    t = np.arange(len(values))
    pos = np.searchsorted(idx, t)
    before = idx[np.clip(pos - 1, 0, len(idx) - 1)]
    after = idx[np.clip(pos, 0, len(idx) - 1)]
    nearest = np.where(np.abs(t - before) <= np.abs(after - t), before, after)
    return values[nearest]


def edit_weights(editable: np.ndarray, fade: int) -> np.ndarray:
    """Per-frame weight of the edit in the output, ``(N,)`` in [0, 1].

    0 on frames that must pass through, rising linearly over ``fade`` frames away from them:
    ``w_t = min(1, d_t / (fade + 1))`` with ``d_t`` the distance in frames to the nearest
    non-editable frame (1 everywhere when every frame is editable).
    """
    editable = np.asarray(editable, dtype=bool)
    if editable.all():
        return np.ones(len(editable), dtype=np.float32)
    if not editable.any():
        return np.zeros(len(editable), dtype=np.float32)
    distance = distance_transform_edt(editable)
    return np.minimum(1.0, distance / (fade + 1)).astype(np.float32)
