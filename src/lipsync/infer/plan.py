"""Phases 1-3 of a call: read the inputs, track the faces, plan every output frame (no pixels kept).

Each phase is a function that takes what it needs and returns what it made; the results are frozen.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from lipsync.data.faces import FaceBackend
from lipsync.data.masks import MaskSpec
from lipsync.infer.face_choice import FaceChoice, FaceSelection, ShotDecision, choose_face
from lipsync.infer.frames import scan
from lipsync.infer.lengths import num_output_frames, source_indices
from lipsync.infer.options import InferenceOptions
from lipsync.infer.silence import silent_frames
from lipsync.infer.tracking import FaceTrackSummary, edit_weights, hold_nearest
from lipsync.media import MODEL_SAMPLE_RATE, MediaError, VideoInfo, probe, read_audio
from lipsync.prepare.crop import CropSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inputs:
    """Phase 1: the probed video, the driving audio twice, and the source frame of every output frame."""

    info: VideoInfo
    native: np.ndarray  # (C, samples) at native_rate: carried to the output as is
    native_rate: int
    wave: np.ndarray  # 16 kHz mono: the model's input
    source_index: np.ndarray  # (N,) by the container's frame count; plan_frames corrects it if optimistic


@dataclass(frozen=True)
class FramePlan:
    """Phases 2-3: per-output-frame decisions made before generation (all small arrays, no pixels)."""

    info: VideoInfo
    source_index: np.ndarray  # (N,)
    pts: np.ndarray  # (num source frames scanned,)
    crops: np.ndarray  # (N, 4) square crop in frame pixels
    mask_boxes: np.ndarray  # (N, 4) edit rectangle in crop pixels
    face_boxes: np.ndarray  # (N, 4) face box in frame pixels (held over face-less frames)
    weights: np.ndarray  # (N,) edit weight
    silent: np.ndarray  # (N,) bool
    reference: int  # output frame index of the reference, -1 if none
    face_decisions: tuple[ShotDecision, ...] = ()  # the face dubbed in each shot, and why

    @property
    def num_frames(self) -> int:
        return len(self.source_index)

    @property
    def editable(self) -> bool:
        """A reference face exists and some frame is edited at all."""
        return self.reference >= 0 and bool(self.weights.max() > 0)

    @property
    def reference_source(self) -> int:
        """Source index of the reference frame (-1 when no frame had a face)."""
        return int(self.source_index[self.reference]) if self.reference >= 0 else -1


def read_inputs(video: str | os.PathLike, audio: str | os.PathLike, junction: float) -> Inputs:
    """Phase 1: probe ``video``, decode ``audio`` at its own rate and at 16 kHz mono, map the frames."""
    info = probe(video)
    if info.num_frames < 1:
        raise MediaError(f"{video}: holds no video frames")
    native, native_rate = read_audio(audio, sample_rate=None, mono=False)
    if native.shape[-1] == 0:
        raise MediaError(f"{audio}: audio stream holds no samples")
    wave, _ = read_audio(audio, sample_rate=MODEL_SAMPLE_RATE, mono=True)
    n_out = num_output_frames(native.shape[-1], native_rate, float(info.fps))
    src = source_indices(info.num_frames, n_out, junction)
    return Inputs(info=info, native=native, native_rate=native_rate, wave=wave, source_index=src)


def plan_frames(
    inputs: Inputs, faces: FaceBackend, crop: CropSpec, mask: MaskSpec, opts: InferenceOptions
) -> FramePlan:
    """Phases 2-3: faces of the used source frames, crops, masks, edit weights, the seeded reference."""
    info, src = inputs.info, inputs.source_index
    selection, pts = scan_faces(info.path, float(info.fps), int(src.max()) + 1, faces, opts.progress,
                                opts.face)
    track = selection.summary.filled(opts.max_gap)
    if len(pts) < int(src.max()) + 1:  # the container's frame count was optimistic: map onto what decodes
        log.warning("%s: decoded %d frames, the container promised %d", info.path, len(pts), info.num_frames)
        src = source_indices(len(pts), len(src), opts.junction)
    silent = silent_frames(inputs.wave, MODEL_SAMPLE_RATE, float(info.fps), len(src),
                           opts.silence_threshold_db, min_duration=opts.silence_min_duration)
    editable = track.found[src] & ~(silent if opts.silence == "keep" else np.zeros_like(silent))
    crops, face_boxes = crop_boxes(track, crop)
    return FramePlan(
        info=info, source_index=src, pts=pts, crops=crops[src],
        mask_boxes=mask_boxes(track, crops, src, crop, mask), face_boxes=face_boxes[src],
        weights=edit_weights(editable, opts.fade), silent=silent,
        reference=choose_reference(track.detected[src], opts.seed), face_decisions=tuple(selection.decisions),
    )


def choose_reference(detected: np.ndarray, seed: int) -> int:
    """SPEC 6: the reference is a random (seeded) output frame with a detected face; -1 if none."""
    candidates = np.flatnonzero(detected)
    return int(np.random.default_rng(seed).choice(candidates)) if candidates.size else -1


def track_faces(
    path: Path, fps: float, used: int, faces: FaceBackend, max_gap: int, progress: bool,
    face: str | int | FaceChoice = "largest",
) -> tuple[FaceTrackSummary, np.ndarray]:
    """The chosen face of source frames ``[0, used)`` (:func:`scan_faces`), gaps up to ``max_gap`` filled
    within a stretch of one face; also every frame's timestamp, for seeking later."""
    selection, pts = scan_faces(path, fps, used, faces, progress, face)
    return selection.summary.filled(max_gap), pts


def scan_faces(
    path: Path, fps: float, used: int, faces: FaceBackend, progress: bool,
    face: str | int | FaceChoice = "largest",
) -> tuple[FaceSelection, np.ndarray]:
    """Every face of source frames ``[0, used)`` and the one chosen per shot (``face``,
    :mod:`.face_choice`) in one decoding pass (frames past the audio are never decoded), and every frame's
    timestamp. ``fps`` is the video's frame rate (``speaker`` reads the source's soundtrack at it)."""
    pts: list[int] = []

    def frames() -> Iterator[np.ndarray]:
        with tqdm(total=used, desc="faces", unit="frame", disable=not progress, leave=False) as bar:
            for p, frame in scan(path, used):
                pts.append(-1 if p is None else int(p))
                bar.update()
                yield frame

    selection = choose_face(frames(), faces, path, fps, face)
    return selection, np.array(pts, dtype=np.int64)


def crop_boxes(track: FaceTrackSummary, crop: CropSpec) -> tuple[np.ndarray, np.ndarray]:
    """Training crop squares and face boxes per source frame, smoothed within runs of faces (never across
    a cut or a change of the chosen face); face-less frames hold the nearest."""
    found = track.found
    if not found.any():
        h = np.full((len(found), 4), np.nan, np.float32)
        return np.tile(np.array([0, 0, 1, 1], np.float32), (len(found), 1)), h
    crops = np.full((len(found), 4), np.nan, np.float32)
    for start, stop in track.runs():
        crops[start:stop] = crop.boxes(track.boxes[start:stop])
    return hold_nearest(crops, found), hold_nearest(track.boxes, found)


def mask_boxes(
    track: FaceTrackSummary, crops: np.ndarray, src: np.ndarray, crop: CropSpec, mask: MaskSpec
) -> np.ndarray:
    """The training mask's rectangles in crop pixels, over the output frames in order, ``(N, 4)``."""
    found = track.found
    if not found.any():
        return np.zeros((len(src), 4), np.float32)
    landmarks = hold_nearest(track.landmarks, found)[src]
    in_crop = crop.to_crop(landmarks, crops[src])
    size = int(crop.resolution)
    return np.asarray(mask.boxes(in_crop, track.layout, size, size), dtype=np.float32)
