"""Several faces through a video: one track per person, shot cuts, smoothed boxes, mouth openings.

1. :class:`ShotCuts` finds cuts between shots as the frames stream by (PySceneDetect's content
   detector on a small copy of each frame).
2. :class:`FaceTracker` links each frame's faces (any backend's ``detect_all``) to tracks: the Hungarian
   assignment on box IoU with each track's last box. A track unseen for a while stays open for
   ``max_lost`` frames and takes a face back only when it is clearly the same one (IoU at least
   ``reid_iou`` with its last box and a similar size); a cut closes every track, so a new shot starts
   new tracks.
3. :class:`FaceCollector` runs a backend's ``detect_all`` on a stream of frames a chunk at a time,
   keeping only the landmark points asked for, and feeds the cut detector on the same pass.
4. :class:`FaceTracks` holds the result as arrays (track ``m`` in frame ``n``: ``boxes[n, m]``, NaN
   where absent) with per-track smoothing, shots, and the mouth opening per frame
   (:func:`mouth_opening`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import linear_sum_assignment

from lipsync.data.faces import Face, FaceBackend, LandmarkLayout

# --- shot cuts --------------------------------------------------------------------------------------


class ShotCuts:
    """Cuts between shots, one frame at a time (PySceneDetect ``ContentDetector``).

    Args:
        threshold: the detector's content-change threshold (its default, 27, on 0-255 HSV + edges).
        min_shot: frames a shot lasts at least (shorter flashes are merged).
        width: frames are shrunk to this width first (the detector's own default downscale).
    """

    def __init__(self, threshold: float = 27.0, min_shot: int = 8, width: int = 160) -> None:
        from scenedetect.detectors import ContentDetector

        self._detector = ContentDetector(threshold=threshold, min_scene_len=min_shot)
        self.width = width
        self.cuts: list[int] = []  # first frame of every shot after the first
        self._count = 0

    def push(self, frame: np.ndarray) -> None:
        """Feed the next RGB frame."""
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (self.width, max(1, round(h * self.width / w))), interpolation=cv2.INTER_AREA)
        self.cuts += [c for c in self._detector.process_frame(self._count, small[:, :, ::-1]) if c > 0]
        self._count += 1


def shot_ids(num_frames: int, cuts: list[int]) -> np.ndarray:
    """(N,) int: which shot each frame belongs to (0 before the first cut)."""
    return np.searchsorted(np.asarray(sorted(set(cuts)), dtype=np.int64), np.arange(num_frames), side="right")


# --- linking faces into tracks ----------------------------------------------------------------------


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (A, 4) with every box in ``b`` (B, 4): (A, B)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


@dataclass
class _Open:
    track: int
    box: np.ndarray
    last: int  # frame it was last seen in


@dataclass
class FaceTracker:
    """Links per-frame faces into tracks (see the module docstring).

    Args:
        iou_min: a face continues a track seen in the previous frame when their IoU is at least this.
        reid_iou: ... and a track unseen for longer only when the IoU is at least this ...
        reid_size: ... and the box sides differ by less than this factor.
        max_lost: frames an unseen track stays open (2 s at 25 fps).
    """

    iou_min: float = 0.3
    reid_iou: float = 0.5
    reid_size: float = 1.3
    max_lost: int = 50
    _open: list[_Open] = field(default_factory=list)
    _count: int = 0
    _frame: int = 0

    def cut(self) -> None:
        """A new shot starts at the next frame: no face after it continues a track before it."""
        self._open = []

    def push(self, faces: list[Face]) -> list[int]:
        """Track id of each face of the next frame (new ids for faces no open track takes)."""
        n = self._frame
        self._open = [t for t in self._open if n - t.last <= self.max_lost]
        ids = [-1] * len(faces)
        if faces and self._open:
            boxes = np.stack([f.box for f in faces])
            iou = box_iou(np.stack([t.box for t in self._open]), boxes)
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if self._takes(self._open[r], faces[c].box, iou[r, c]):
                    ids[c] = self._open[r].track
                    self._open[r].box, self._open[r].last = faces[c].box, n
        for c, face in enumerate(faces):
            if ids[c] < 0:
                ids[c] = self._count
                self._open.append(_Open(self._count, face.box, n))
                self._count += 1
        self._frame += 1
        return ids

    def _takes(self, track: _Open, box: np.ndarray, iou: float) -> bool:
        if self._frame - track.last == 1:
            return iou >= self.iou_min
        side = lambda b: max(float(b[2] - b[0]), float(b[3] - b[1]), 1e-9)
        ratio = side(box) / side(track.box)
        return iou >= self.reid_iou and 1 / self.reid_size < ratio < self.reid_size


# --- the result -------------------------------------------------------------------------------------


def mouth_opening(landmarks: np.ndarray, layout: LandmarkLayout) -> np.ndarray:
    """How open the mouth is, from the lip points alone: their height over their width, ``(...,)``.

    Any layout works: the lips' bounding box grows taller and narrower as the jaw drops. The box is
    taken along the mouth's own axis (corner to corner), so a tilted head reads the same. NaN where the
    landmarks are NaN.

    Args:
        landmarks: ``(..., K, 2)`` points indexed by ``layout``.
    """
    lips = np.asarray(landmarks, np.float64)[..., layout.mouth_idx, :]
    centred = lips - lips.mean(axis=-2, keepdims=True)
    left = np.take_along_axis(centred, np.argmin(centred[..., :1], axis=-2)[..., None], axis=-2)[..., 0, :]
    right = np.take_along_axis(centred, np.argmax(centred[..., :1], axis=-2)[..., None], axis=-2)[..., 0, :]
    axis = right - left
    axis = axis / np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-9)
    along = (centred * axis[..., None, :]).sum(-1)
    across = centred[..., 1] * axis[..., None, 0] - centred[..., 0] * axis[..., None, 1]
    width = along.max(-1) - along.min(-1)
    return (across.max(-1) - across.min(-1)) / np.maximum(width, 1e-9)


@dataclass
class FaceTracks:
    """Every face track of a video.

    Attributes:
        boxes: (N, M, 4) float32 box of track m in frame n, x0, y0, x1, y1 pixels; NaN where absent.
        landmarks: (N, M, P, 2) float32 points of ``layout`` (NaN where absent).
        layout: the landmark layout of those P points.
        cuts: first frame of every shot after the first.
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    layout: LandmarkLayout
    cuts: list[int]

    @property
    def num_frames(self) -> int:
        return self.boxes.shape[0]

    @property
    def num_tracks(self) -> int:
        return self.boxes.shape[1]

    @property
    def present(self) -> np.ndarray:
        """(N, M) bool: track m has a face in frame n."""
        return ~np.isnan(self.boxes).any(axis=-1)

    @property
    def shots(self) -> np.ndarray:
        """(N,) shot index per frame."""
        return shot_ids(self.num_frames, self.cuts)

    def areas(self) -> np.ndarray:
        """(N, M) box areas in pixels, 0 where absent."""
        b = np.nan_to_num(self.boxes)
        return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])

    def openings(self) -> np.ndarray:
        """(N, M) mouth opening (:func:`mouth_opening`); NaN where absent."""
        return mouth_opening(self.landmarks, self.layout)

    def smoothed_boxes(self, sigma: float = 1.5) -> np.ndarray:
        """Boxes smoothed over time within each run of presence of each track (Gaussian, ``sigma``
        frames; a run is never smoothed across a gap or a cut, as tracks never span a cut)."""
        out = self.boxes.copy()
        for m in range(self.num_tracks):
            for start, stop in _runs(self.present[:, m]):
                out[start:stop, m] = gaussian_filter1d(self.boxes[start:stop, m], sigma, axis=0, mode="nearest")
        return out

    def summary(self) -> list[dict]:
        """One small dict per track (for manifests): id, first and last frame, frames seen, shot,
        median box."""
        rows = []
        shots = self.shots
        for m in range(self.num_tracks):
            seen = np.flatnonzero(self.present[:, m])
            if seen.size == 0:
                continue
            box = np.median(self.boxes[seen, m], axis=0)
            rows.append({"track": m, "first": int(seen[0]), "last": int(seen[-1]), "frames": int(seen.size),
                         "shot": int(shots[seen[0]]), "median_box": [round(float(v), 1) for v in box]})
        return rows

    @classmethod
    def link(cls, faces: list[list[Face]], layout: LandmarkLayout, cuts: list[int],
             tracker: FaceTracker | None = None, keep: np.ndarray | None = None) -> "FaceTracks":
        """Link per-frame faces into tracks.

        Args:
            faces: every face of every frame.
            layout: landmark layout of ``Face.landmarks`` after ``keep``.
            cuts: first frames of new shots.
            tracker: linking rules (defaults when None).
            keep: indices of the landmark points to store (all when None).
        """
        tracker = tracker or FaceTracker()
        cut_set = set(cuts)
        ids = []
        for n, frame_faces in enumerate(faces):
            if n in cut_set:
                tracker.cut()
            ids.append(tracker.push(frame_faces))
        num_tracks = 1 + max((i for frame_ids in ids for i in frame_ids), default=-1)
        points = _num_points(faces, keep, layout)
        boxes = np.full((len(faces), num_tracks, 4), np.nan, np.float32)
        landmarks = np.full((len(faces), num_tracks, points, 2), np.nan, np.float32)
        for n, (frame_faces, frame_ids) in enumerate(zip(faces, ids)):
            for face, m in zip(frame_faces, frame_ids):
                boxes[n, m] = face.box
                landmarks[n, m] = face.landmarks if keep is None else face.landmarks[keep]
        return cls(boxes, landmarks, layout, sorted(cut_set))


def _num_points(faces: list[list[Face]], keep: np.ndarray | None, layout: LandmarkLayout) -> int:
    if keep is not None:
        return len(keep)
    return next((len(f.landmarks) for frame in faces for f in frame), layout.num_points)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def mouth_points(layout: LandmarkLayout) -> tuple[np.ndarray, LandmarkLayout]:
    """Keep only the lip points (enough for :func:`mouth_opening`): indices and the re-indexed layout."""
    n = len(layout.mouth_idx)
    return layout.mouth_idx, LandmarkLayout(layout.kind, np.arange(n), np.arange(n))


class FaceCollector:
    """Every face of a stream of frames, linked into tracks at the end (one decoding pass).

    Args:
        backend: the face backend (its ``detect_all`` runs once per ``chunk`` frames).
        source: the video the frames come from.
        points: ``layout -> (indices to keep, their layout)``; all points when None.
        chunk: frames held before the backend runs on them.
        tracker, cuts: the linking rules and the cut detector (defaults when None).
    """

    def __init__(self, backend: FaceBackend, source, points=None, chunk: int = 64,
                 tracker: FaceTracker | None = None, cuts: ShotCuts | None = None) -> None:
        self.backend, self.source, self.points, self.chunk = backend, source, points, chunk
        self.tracker, self.cuts = tracker or FaceTracker(), cuts or ShotCuts()
        self._held: list[tuple[int, np.ndarray]] = []
        self._faces: list[list[Face]] = []
        self._layout: LandmarkLayout | None = None

    def push(self, index: int, frame: np.ndarray) -> None:
        """The next RGB frame (``index``: its source frame number, as backends take it)."""
        self.cuts.push(frame)
        self._held.append((index, frame))
        if len(self._held) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self._held:
            return
        found = self.backend.detect_all(self.source, self._held)
        keep, self._layout = (self.points or _all_points)(self.backend.layout)  # a landmarks file knows it now
        self._faces += [[Face(np.asarray(f.box, np.float32), np.asarray(f.landmarks, np.float32)[keep])
                         for f in fs] for fs in found]
        self._held = []

    def result(self) -> FaceTracks:
        """Link everything pushed so far (ValueError when no frame was pushed)."""
        self._flush()
        if self._layout is None:
            raise ValueError(f"{self.source}: no video frames to track")
        return FaceTracks.link(self._faces, self._layout, self.cuts.cuts, self.tracker)


def _all_points(layout: LandmarkLayout) -> tuple[slice, LandmarkLayout]:
    return slice(None), layout
