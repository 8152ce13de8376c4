"""Face tracks: one box and one landmark set per frame, from a detector or from a file.

Every backend answers two questions: ``track(source, frames) -> FaceTrack``, for each (source frame
index, RGB frame) it is given, the largest face's box and landmarks, or NaN when there is none (an
optional ``on_face`` callback hears each face as soon as the backend knows it); and
``detect_all(source, frames) -> list[list[Face]]``, every face of every frame, which
:mod:`lipsync.data.face_tracks` links into one track per person.

Backends (picked by ``_target_`` in ``conf/prepare.yaml``, key ``faces``):

- :class:`MediaPipeFaces` (default; its models ship inside the ``mediapipe`` wheel): the full-range
  BlazeFace detector (``model_selection=1``, finds small faces) on the whole frame, then the 478-point
  face mesh on a square crop around that face. Between detections the crop follows the previous frame's
  landmarks, so the detector runs only every ``detect_every`` frames or after the face was lost.
- :class:`InsightFaceFaces`: InsightFace's ``FaceAnalysis`` (SCRFD detector and the 106-point 2-D
  landmarks, or the 68-point 3-D ones) from a model pack on disk (``buffalo_l``); a missing pack is one
  clear error naming the folder and the config key.
- :class:`LandmarksFileFaces`: true landmarks stored beside a video (the synthetic world writes them).

Landmarks file format (``<video>.landmarks.npz``, e.g. ``talk.mp4.landmarks.npz`` beside ``talk.mp4``):

============== ============= ==================================================================
key            shape / type  meaning
============== ============= ==================================================================
landmarks      (N, K, 2) f4  pixel coordinates (x right, y down, origin at the top-left corner of
                             the video's own frame, its stored resolution); N = number of frames
                             the file decodes to, in decode order; a NaN row = no face in that frame;
               (N, F, K, 2)  or several people: F face slots per frame (a slot is one person
                             throughout the file; NaN where that person is not in the frame)
boxes          (N, 4) f4     face box x0, y0, x1, y1 in the same pixels; NaN where no face
               (N, F, 4)     (several people: one box per slot)
kind           str           a layout named in :data:`LAYOUTS` (``"mediapipe478"``, ``"ibug68"``) ...
mouth_idx      (M,) int      ... or, instead of ``kind``, the indices of the lip points, and
lower_face_idx (L,) int      the points whose bounding box is the lower face (nose base, chin,
                             both cheeks); the mask rectangle is the box of mouth and lower face
============== ============= ==================================================================

:meth:`FaceTrack.save` writes exactly the one-face format and :meth:`FaceTrack.load` reads it (the
largest face of each frame when the file holds several); :func:`load_all_faces` reads every slot.
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import cv2
import numpy as np

from lipsync.media import MediaError, atomic_path
from lipsync.terminal import quiet_native

# --- landmark layouts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LandmarkLayout:
    """Which landmark indices are the lips and which span the lower face (SPEC section 3).

    Attributes:
        kind: layout name stored in landmark files ("custom" when given by index arrays).
        mouth_idx: (M,) indices of the lip points.
        lower_face_idx: (L,) indices whose bounding box runs from the nose base to the chin and from
            cheek to cheek; the adaptive mask is the box of these and the lips, plus padding.
    """

    kind: str
    mouth_idx: np.ndarray
    lower_face_idx: np.ndarray

    def __post_init__(self) -> None:
        for name in ("mouth_idx", "lower_face_idx"):
            idx = np.asarray(getattr(self, name), dtype=np.int64)
            if idx.ndim != 1 or idx.size == 0:
                raise ValueError(f"layout {self.kind!r}: {name} must be a non-empty 1-D index array, got {idx.shape}")
            object.__setattr__(self, name, idx)

    @property
    def num_points(self) -> int:
        """Smallest K a landmark array must have for this layout."""
        return int(max(self.mouth_idx.max(), self.lower_face_idx.max())) + 1


# MediaPipe face mesh (478 points with iris refinement): the 40 lip points of FACEMESH_LIPS; the lower
# face is the nose base (subnasale 2, 94; alar bases 98, 327), the chin (152 menton, 148/377, 176/400)
# and the cheeks along the jaw at mouth height (132/361, 58/288, 172/397).
MEDIAPIPE_478 = LandmarkLayout(
    "mediapipe478",
    mouth_idx=np.array([0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185,
                        191, 267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409,
                        415]),
    lower_face_idx=np.array([2, 94, 98, 327, 152, 148, 377, 176, 400, 132, 361, 58, 288, 172, 397]),
)

# iBUG 300-W 68 points (dlib, InsightFace 1k3d68, FAN): jaw 0-16, nose base 31-35, lips 48-67.
IBUG_68 = LandmarkLayout(
    "ibug68",
    mouth_idx=np.arange(48, 68),
    lower_face_idx=np.array([3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 31, 32, 33, 34, 35]),
)

# InsightFace 2d106det (``landmark_2d_106``; 2d106det.onnx in buffalo_l), by its point mark-up: face
# contour 0-32 (0 the chin, 1-16 and 17-32 up the two sides), lips 52-71. The lower face here is the chin
# and the lower half of each side; the mark-up names no nose-base points, so the mask's top is the upper
# lip plus the mask's own padding (the iBUG and MediaPipe layouts reach up to the nose base). No buffalo_l
# weights ship with this project: the indices are the mark-up's, not checked on that model's output.
INSIGHTFACE_106 = LandmarkLayout(
    "insightface106",
    mouth_idx=np.arange(52, 72),
    lower_face_idx=np.concatenate([np.arange(0, 10), np.arange(17, 26)]),
)

LAYOUTS: dict[str, LandmarkLayout] = {layout.kind: layout for layout in (MEDIAPIPE_478, IBUG_68, INSIGHTFACE_106)}


def get_layout(kind: str) -> LandmarkLayout:
    """The layout registered under ``kind``; ValueError naming the known ones otherwise."""
    if kind not in LAYOUTS:
        raise ValueError(f"unknown landmark layout {kind!r}; known: {sorted(LAYOUTS)} "
                         "(or store mouth_idx and lower_face_idx arrays instead of kind)")
    return LAYOUTS[kind]


# --- per-frame faces and whole tracks -------------------------------------------------------------


@dataclass(frozen=True)
class Face:
    """One detected face: ``box`` (4,) x0, y0, x1, y1 and ``landmarks`` (K, 2), both in frame pixels."""

    box: np.ndarray
    landmarks: np.ndarray


@dataclass
class FaceTrack:
    """The largest face of every frame of one video.

    Attributes:
        boxes: (N, 4) float32 x0, y0, x1, y1 in pixels; NaN rows where no face was found.
        landmarks: (N, K, 2) float32 pixel coordinates; NaN rows where no face was found.
        layout: which landmark indices are lips and lower face.
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    layout: LandmarkLayout

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32)
        n = len(self.boxes)
        if self.landmarks.ndim != 3 or self.landmarks.shape[0] != n or self.landmarks.shape[2] != 2:
            raise ValueError(f"landmarks must be (N={n}, K, 2) to match boxes {self.boxes.shape}, "
                             f"got {self.landmarks.shape}")
        if n and self.landmarks.shape[1] < self.layout.num_points:
            raise ValueError(f"layout {self.layout.kind!r} indexes {self.layout.num_points} points but the "
                             f"landmarks have K={self.landmarks.shape[1]}")

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def found(self) -> np.ndarray:
        """(N,) bool: a face was found in that frame."""
        return ~np.isnan(self.boxes).any(axis=1)

    @classmethod
    def from_faces(cls, faces: list[Face | None], layout: LandmarkLayout, num_points: int) -> "FaceTrack":
        """Stack per-frame results, NaN rows for ``None``."""
        boxes = np.full((len(faces), 4), np.nan, np.float32)
        landmarks = np.full((len(faces), num_points, 2), np.nan, np.float32)
        for i, face in enumerate(faces):
            if face is not None:
                boxes[i], landmarks[i] = face.box, face.landmarks
        return cls(boxes, landmarks, layout)

    def take(self, rows: np.ndarray | slice) -> "FaceTrack":
        """The sub-track of the given frame rows."""
        return FaceTrack(self.boxes[rows], self.landmarks[rows], self.layout)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the landmarks-file format of the module docstring, atomically."""
        arrays: dict[str, np.ndarray] = {"landmarks": self.landmarks, "boxes": self.boxes}
        if self.layout.kind in LAYOUTS:
            arrays["kind"] = np.array(self.layout.kind)
        else:
            arrays["mouth_idx"], arrays["lower_face_idx"] = self.layout.mouth_idx, self.layout.lower_face_idx
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FaceTrack":
        """Read a landmarks file (format in the module docstring); of several faces, the largest per frame."""
        boxes, landmarks, layout = load_all_faces(path)
        area = np.nan_to_num((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]), nan=-1.0)
        pick = np.argmax(area, axis=1)
        rows = np.arange(len(boxes))
        return cls(boxes[rows, pick], landmarks[rows, pick], layout)


def landmarks_file(video: str | os.PathLike) -> Path:
    """Where the true landmarks of ``video`` are stored: ``<video>.landmarks.npz`` beside it."""
    return Path(f"{video}.landmarks.npz")


# --- backends -------------------------------------------------------------------------------------

FaceCallback = Callable[[Face | None], None]  # told each frame's face as soon as a backend knows it


class FaceBackend(ABC):
    """Finds faces per frame; subclasses implement :meth:`track` (largest) and :meth:`detect_all`."""

    @abstractmethod
    def detect_all(self, source: Path, frames: Iterable[tuple[int, np.ndarray]]) -> list[list[Face]]:
        """Every face of every given frame (same arguments as :meth:`track`), in no particular order."""

    @abstractmethod
    def track(self, source: Path, frames: Iterable[tuple[int, np.ndarray]],
              on_face: FaceCallback | None = None) -> FaceTrack:
        """Face of every given frame.

        Args:
            source: the video file the frames come from.
            frames: ``(source_frame_index, rgb uint8 (H, W, 3))`` in time order (a frame may repeat when
                the caller resampled to a higher rate).
            on_face: called with each frame's face (None: no face), in frame order, as soon as the
                backend knows it, so a caller can use it while the frame is still at hand (prepare keeps
                only a patch around the face). MediaPipe and InsightFace call it before reading the next
                frame (MediaPipe's ``mesh_every``-skipped frames once the next meshed frame brackets
                them); the landmarks file once every frame was given.

        Returns:
            A track with one row per given frame.
        """


def _largest(boxes: list[np.ndarray]) -> np.ndarray | None:
    if not boxes:
        return None
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))


def square_around(box: np.ndarray, scale: float) -> np.ndarray:
    """Square x0, y0, x1, y1 centred on ``box`` with side ``scale * max(width, height)``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = scale * max(box[2] - box[0], box[3] - box[1]) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half], dtype=np.float32)


def crop_square(frame: np.ndarray, region: np.ndarray, size: int) -> np.ndarray:
    """Resample the square ``region`` (x0, y0, x1, y1; may leave the frame) to ``(size, size, 3)``.

    Outside the frame is black, so a face at the border keeps its place in the crop.
    """
    scale = size / float(region[2] - region[0])
    affine = np.array([[scale, 0, -region[0] * scale], [0, scale, -region[1] * scale]], dtype=np.float32)
    # INTER_AREA-like quality for strong downscaling: pre-shrink with a pyramid step first.
    while scale < 0.5:
        frame = cv2.pyrDown(frame)
        affine[:, :2] *= 2
        scale *= 2
    return cv2.warpAffine(frame, affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


class MediaPipeFaces(FaceBackend):
    """Full-range BlazeFace detector, then the 478-point face mesh on a crop around the face.

    Args:
        min_detection_confidence: detector score threshold.
        min_tracking_confidence: face mesh presence threshold (below it the face counts as lost).
        detect_every: rerun the detector every this many frames (a larger face entering the shot is
            then picked up; the face mesh follows the face in between).
        crop_scale: side of the mesh crop relative to the face box (the mesh wants some margin).
        mesh_size: pixels of the square crop given to the mesh (its model runs at 192).
        mesh_every: run the mesh on every this-many frames and interpolate the landmarks linearly in
            between. The mesh is most of the curation cost; on carphone, 2 moves the mask rectangle by
            about 1 px (mean) on a 320 px crop and doubles tracking speed. 1 = every frame.
    """

    layout = MEDIAPIPE_478

    def __init__(self, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 detect_every: int = 10, crop_scale: float = 1.6, mesh_size: int = 192, mesh_every: int = 1) -> None:
        if detect_every < 1 or mesh_every < 1:
            raise ValueError(f"detect_every and mesh_every must be >= 1, got {detect_every}, {mesh_every}")
        self.min_detection_confidence = min_detection_confidence
        self.min_tracking_confidence = min_tracking_confidence
        self.detect_every = detect_every
        self.crop_scale = crop_scale
        self.mesh_size = mesh_size
        self.mesh_every = mesh_every

    def track(self, source: Path, frames: Iterable[tuple[int, np.ndarray]],
              on_face: FaceCallback | None = None) -> FaceTrack:
        with self._graphs(static=False) as (detector, mesh):  # new graphs per video: the mesh tracks
            faces = _announced(_interpolate_skipped(self._faces(detector, mesh, frames)), on_face)
        return FaceTrack.from_faces(faces, self.layout, 478)

    def detect_all(self, source: Path, frames: Iterable[tuple[int, np.ndarray]]) -> list[list[Face]]:
        """The detector on every frame, then the mesh on a crop around each face it found.

        The mesh graph runs in still-image mode: with several faces per frame there is no single face
        for its own tracker to follow. A detection the mesh rejects (not a face) is dropped.
        """
        with self._graphs(static=True) as (detector, mesh):
            out = []
            for _, frame in frames:
                meshed = (self._mesh(mesh, frame, box) for box in self._detect_all(detector, frame))
                out.append([face for face in meshed if face is not None])
            return out

    @contextlib.contextmanager
    def _graphs(self, static: bool) -> Iterator[tuple[Any, Any]]:
        """MediaPipe's detector and face mesh graphs (``static``: the mesh in still-image mode, without
        its tracker). Their absl and TensorFlow Lite log lines go to descriptor 2 whatever
        ``GLOG_minloglevel`` says; in a command :func:`lipsync.terminal.quiet_native` drops them."""
        os.environ.setdefault("GLOG_minloglevel", "2")  # older mediapipe's glog INFO/WARNING lines
        from mediapipe.python.solutions import face_detection, face_mesh

        confidence = self.min_detection_confidence
        tracking = {} if static else {"min_tracking_confidence": self.min_tracking_confidence}
        with quiet_native(), face_detection.FaceDetection(model_selection=1,
                                                          min_detection_confidence=confidence) as detector, \
                face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1, refine_landmarks=True,
                                   min_detection_confidence=confidence, **tracking) as mesh:
            yield detector, mesh

    def _faces(self, detector, mesh, frames: Iterable[tuple[int, np.ndarray]]) -> Iterator[Face | None | object]:
        previous: np.ndarray | None = None  # the last face box, where the mesh crop goes next
        for i, (_, frame) in enumerate(frames):
            if previous is not None and i % self.mesh_every:
                yield _SKIPPED
                continue
            if previous is None or i % self.detect_every == 0:
                detected = self._detect(detector, frame)
                previous = detected if detected is not None else previous
            face = None if previous is None else self._mesh(mesh, frame, previous)
            previous = None if face is None else face.box
            yield face

    def _detect(self, detector, frame: np.ndarray) -> np.ndarray | None:
        return _largest(self._detect_all(detector, frame))

    @staticmethod
    def _detect_all(detector, frame: np.ndarray) -> list[np.ndarray]:
        """Face boxes in frame pixels. The full-range detector misses a face that fills the frame (a
        224 px VoxCeleb2 face crop: 0 of 12 frames found, all 12 once the frame is padded to twice its
        side), so a frame where it finds none is looked at again with a black border of half its side."""
        boxes = _detections(detector, frame)
        if boxes:
            return boxes
        pad = max(frame.shape[:2]) // 2
        padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)))
        return [box - pad for box in _detections(detector, padded)]

    def _mesh(self, mesh, frame: np.ndarray, box: np.ndarray) -> Face | None:
        region = square_around(box, self.crop_scale)
        result = mesh.process(crop_square(frame, region, self.mesh_size))
        if not result.multi_face_landmarks:
            return None
        pts = np.array([(p.x, p.y) for p in result.multi_face_landmarks[0].landmark], dtype=np.float32)
        pts = pts * (region[2] - region[0]) + region[:2]
        return Face(np.concatenate([pts.min(0), pts.max(0)]), pts)


_SKIPPED = object()  # a frame the mesh did not look at (mesh_every > 1)


def _detections(detector, frame: np.ndarray) -> list[np.ndarray]:
    """MediaPipe's detections as (4,) x0, y0, x1, y1 boxes in ``frame``'s pixels."""
    result = detector.process(frame)
    h, w = frame.shape[:2]
    boxes = []
    for det in result.detections or []:
        r = det.location_data.relative_bounding_box
        boxes.append(np.array([r.xmin * w, r.ymin * h, (r.xmin + r.width) * w, (r.ymin + r.height) * h]))
    return boxes


def _announced(faces: Iterable[Face | None], on_face: FaceCallback | None) -> list[Face | None]:
    """Collect ``faces``, handing each to ``on_face`` as soon as it arrives."""
    out = []
    for face in faces:
        out.append(face)
        if on_face is not None:
            on_face(face)
    return out


def _interpolate_skipped(faces: Iterable) -> Iterator[Face | None]:
    """Replace skipped frames by linear interpolation between the looked-at frames around them; frames
    skipped at the very end repeat the last one; None when a side has no face (the gap filler decides).
    Streams: each skipped run is yielded as soon as the looked-at frame after it arrives."""
    last: Face | None = None
    skipped = 0
    for face in faces:
        if face is _SKIPPED:
            skipped += 1
            continue
        for k in range(1, skipped + 1):
            w = k / (skipped + 1)
            yield None if last is None or face is None else \
                Face((1 - w) * last.box + w * face.box, (1 - w) * last.landmarks + w * face.landmarks)
        yield face
        last, skipped = face, 0
    yield from [last] * skipped


class InsightFaceFaces(FaceBackend):
    """InsightFace's ``FaceAnalysis``: its detector and one landmark model, from a model pack on disk.

    Args:
        root: the InsightFace home holding ``models/<model_pack>/`` (its default is ``~/.insightface``).
        model_pack: pack name, e.g. ``buffalo_l`` (holds ``det_10g.onnx``, ``2d106det.onnx`` and
            ``1k3d68.onnx``); any folder of ONNX files that ``FaceAnalysis`` recognises by their
            input and output shapes works the same.
        det_size: detector input size in pixels.
        landmarks: ``landmark_2d_106`` (layout :data:`INSIGHTFACE_106`) or ``landmark_3d_68``
            (:data:`IBUG_68`, x and y of the 3-D points).
    """

    LANDMARK_LAYOUTS = {"landmark_2d_106": INSIGHTFACE_106, "landmark_3d_68": IBUG_68}

    def __init__(self, root: str = "~/.insightface", model_pack: str = "buffalo_l", det_size: int = 640,
                 landmarks: str = "landmark_2d_106") -> None:
        if landmarks not in self.LANDMARK_LAYOUTS:
            raise ValueError(f"landmarks must be one of {sorted(self.LANDMARK_LAYOUTS)}, got {landmarks!r}")
        self.root = Path(root).expanduser()
        self.model_pack = model_pack
        self.det_size = det_size
        self.landmarks = landmarks
        self.layout = self.LANDMARK_LAYOUTS[landmarks]
        pack = self.root / "models" / model_pack
        if not pack.is_dir() or not any(pack.glob("*.onnx")):
            raise FileNotFoundError(f"InsightFace model pack not found at {pack} (no *.onnx); put the "
                                    f"'{model_pack}' pack there or set faces.root / faces.model_pack in "
                                    "conf/prepare.yaml (or use faces=mediapipe)")
        try:
            from insightface.app import FaceAnalysis
        except ImportError:
            raise ImportError("the InsightFace backend needs `pip install -c constraints.txt onnx onnxruntime` "
                              "and `pip install --no-deps insightface` (or use faces=mediapipe)") from None
        self._app = FaceAnalysis(name=model_pack, root=str(self.root), allowed_modules=["detection", landmarks],
                                 providers=["CPUExecutionProvider"])
        if landmarks not in self._app.models:
            raise FileNotFoundError(f"{pack}: no {landmarks} model among {sorted(self._app.models)}; set "
                                    f"faces.landmarks to one the pack holds")
        self._app.prepare(ctx_id=-1, det_size=(det_size, det_size))

    def track(self, source: Path, frames: Iterable[tuple[int, np.ndarray]],
              on_face: FaceCallback | None = None) -> FaceTrack:
        faces = _announced((self._largest_face(frame) for _, frame in frames), on_face)
        return FaceTrack.from_faces(faces, self.layout, self.layout.num_points)

    def detect_all(self, source: Path, frames: Iterable[tuple[int, np.ndarray]]) -> list[list[Face]]:
        return [self._faces(frame) for _, frame in frames]

    def _largest_face(self, frame: np.ndarray) -> Face | None:
        return max(self._faces(frame), key=lambda f: _area(f.box), default=None)

    def _faces(self, frame: np.ndarray) -> list[Face]:
        found = self._app.get(np.ascontiguousarray(frame[:, :, ::-1]))  # InsightFace wants BGR
        return [Face(np.asarray(f.bbox[:4], np.float32), np.asarray(f[self.landmarks], np.float32)[:, :2])
                for f in found]


def _area(box: np.ndarray) -> float:
    return float((box[2] - box[0]) * (box[3] - box[1]))


class LandmarksFileFaces(FaceBackend):
    """Reads the true landmarks stored beside the video (``<video>.landmarks.npz``, format above).

    ``layout`` is the last file's (known once :meth:`detect_all` has read it).
    """

    layout: LandmarkLayout | None = None

    def track(self, source: Path, frames: Iterable[tuple[int, np.ndarray]],
              on_face: FaceCallback | None = None) -> FaceTrack:
        path, rows = self._check(source, frames)
        track = FaceTrack.load(path).take(rows)
        found = zip(track.boxes, track.landmarks, track.found)
        _announced((Face(box, lm) if ok else None for box, lm, ok in found), on_face)
        return track

    def detect_all(self, source: Path, frames: Iterable[tuple[int, np.ndarray]]) -> list[list[Face]]:
        path, rows = self._check(source, frames)
        boxes, landmarks, self.layout = load_all_faces(path)
        return [[Face(b, lm) for b, lm in zip(boxes[r], landmarks[r]) if not np.isnan(b).any()] for r in rows]

    @staticmethod
    def _check(source: Path, frames: Iterable[tuple[int, np.ndarray]]) -> tuple[Path, np.ndarray]:
        """The file's path and the requested rows; a missing file or too few rows is a MediaError."""
        path = landmarks_file(source)
        if not path.exists():
            raise MediaError(f"{source}: no landmarks file {path.name} beside it (faces=landmarks-file)")
        rows = np.array([index for index, _ in frames], dtype=np.int64)
        with np.load(path, allow_pickle=False) as data:
            stored = len(data["boxes"])
        if rows.size and rows.max() >= stored:
            raise MediaError(f"{path}: holds {stored} frames but the video decodes to at least {rows.max() + 1}")
        return path, rows


def load_all_faces(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, LandmarkLayout]:
    """Every face slot of a landmarks file: boxes ``(N, F, 4)``, landmarks ``(N, F, K, 2)``, layout
    (F = 1 for a one-face file)."""
    with np.load(path, allow_pickle=False) as data:
        boxes, landmarks = np.asarray(data["boxes"], np.float32), np.asarray(data["landmarks"], np.float32)
        layout = _stored_layout(data, path)
    if boxes.ndim == 2:
        boxes, landmarks = boxes[:, None], landmarks[:, None]
    return boxes, landmarks, layout


def _stored_layout(data, path: str | os.PathLike) -> LandmarkLayout:
    if "kind" in data:
        return get_layout(str(data["kind"]))
    if "mouth_idx" in data and "lower_face_idx" in data:
        return LandmarkLayout("custom", data["mouth_idx"], data["lower_face_idx"])
    raise ValueError(f"{path}: landmarks file needs 'kind' or both 'mouth_idx' and 'lower_face_idx'")
