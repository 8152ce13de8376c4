"""Curation filters of the paper's Appendix A, each a small predicate with its threshold in config.

A filter returns ``None`` to keep its input, or a one-line reason string that goes into the manifest.
Cutting a track into coherent clips (face-less gaps, box jumps) is :func:`split_track`; it reports why
every cut happened.

Model-based hooks (:class:`QualityFilter`, :class:`SyncFilter`) run only when their weight file exists;
otherwise :meth:`skip_reason` says why they were skipped and the manifest records it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from lipsync.data.faces import FaceTrack
from lipsync.data.masks import fill_gaps
from lipsync.media import MODEL_FPS, frame_levels_db
from lipsync.models.syncnet import SyncNetScorer, load_syncnet, syncnet_crop


@dataclass(frozen=True)
class Clip:
    """A coherent stretch of one video: output frames ``[start, stop)`` on the 25 fps timeline.

    Attributes:
        start, stop: frame rows.
        cut: why the previous clip ended where this one begins (None for the first).
    """

    start: int
    stop: int
    cut: str | None = None

    def __len__(self) -> int:
        return self.stop - self.start


# --- whole-video predicates ------------------------------------------------------------------------


def face_size(boxes: np.ndarray) -> np.ndarray:
    """(N,) face size in pixels, ``sqrt(width * height)`` of each box (NaN where no face)."""
    return np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))


@dataclass(frozen=True)
class MinFaceSize:
    """Reject a video whose face is never larger than ``min_size`` pixels (``sqrt(w * h)`` of the box)."""

    min_size: float = 64.0

    def __call__(self, track: FaceTrack) -> str | None:
        if not track.found.any():
            return "no face found in any frame"
        largest = float(np.nanmax(face_size(track.boxes)))
        if largest <= self.min_size:
            return f"face never larger than {self.min_size:g} px (largest {largest:.0f} px)"
        return None


# --- cutting into coherent clips -------------------------------------------------------------------


def box_jump(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """How far a face box moved between two frames: centre shift relative to the face size, and
    ``|log|`` of the size ratio."""
    size_a, size_b = face_size(a[None])[0], face_size(b[None])[0]
    shift = np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2) / max(size_a, 1e-6)
    return float(shift), float(abs(np.log(max(size_b, 1e-6) / max(size_a, 1e-6))))


def split_track(track: FaceTrack, max_gap: int = 8, max_shift: float = 0.3,
                max_scale: float = 0.25) -> tuple[FaceTrack, list[Clip]]:
    """Fill short face-less gaps and cut where the face is lost too long or its box jumps.

    Args:
        track: raw per-frame detections (NaN rows = no face).
        max_gap: longest run of face-less frames filled from context; longer runs cut (SPEC section 4).
        max_shift: largest box-centre move between consecutive detections, in face sizes.
        max_scale: largest ``|log(size ratio)|`` between consecutive detections.

    Returns:
        The gap-filled track (N rows) and the clips, each with the reason for the cut before it.
    """
    found = np.flatnonzero(track.found)
    clips: list[Clip] = []
    if found.size == 0:
        return track, clips
    start, cut = int(found[0]), None
    for prev, cur in zip(found[:-1], found[1:]):
        reason = _cut_reason(track.boxes[prev], track.boxes[cur], int(prev), int(cur), max_gap, max_shift, max_scale)
        if reason is not None:
            clips.append(Clip(start, int(prev) + 1, cut))
            start, cut = int(cur), reason
    clips.append(Clip(start, int(found[-1]) + 1, cut))
    landmarks, _ = fill_gaps(track.landmarks, max_gap)
    boxes, _ = fill_gaps(track.boxes, max_gap)
    return FaceTrack(boxes, landmarks, track.layout), clips


def _cut_reason(a: np.ndarray, b: np.ndarray, prev: int, cur: int, max_gap: int, max_shift: float,
                max_scale: float) -> str | None:
    if cur - prev - 1 > max_gap:
        return f"no face for {cur - prev - 1} frames (> {max_gap}) at frames {prev + 1}-{cur - 1}"
    shift, scale = box_jump(a, b)
    if shift > max_shift:
        return f"face box jumped {shift:.2f} face sizes (> {max_shift:g}) at frame {cur}"
    if scale > max_scale:
        return f"face size changed by {np.exp(scale):.2f}x (|log| {scale:.2f} > {max_scale:g}) at frame {cur}"
    return None


# --- per-clip predicates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipData:
    """What clip-level filters may look at: crops (T, S, S, 3) uint8 RGB at 25 fps, face boxes in crop
    pixels (T, 4), and the clip's 16 kHz mono audio."""

    crops: np.ndarray
    boxes: np.ndarray
    audio: np.ndarray


class ClipFilter(Protocol):
    def __call__(self, clip: ClipData) -> str | None: ...


@dataclass(frozen=True)
class MinDuration:
    """Drop clips shorter than ``seconds`` (the paper keeps clips of at least 2 s)."""

    seconds: float = 2.0
    fps: float = MODEL_FPS

    def frames(self) -> int:
        return int(np.ceil(self.seconds * self.fps))

    def check(self, num_frames: int) -> str | None:
        if num_frames < self.frames():
            return f"clip shorter than {self.seconds:g} s ({num_frames} frames < {self.frames()})"
        return None


@dataclass(frozen=True)
class SpeechFilter:
    """Drop clips without speech to learn from: no sound at all, or sound in too few frames.

    A frame is voiced when its audio level (80 ms RMS, :func:`lipsync.media.frame_levels_db`) is
    within ``range_db`` of the clip's loud level (its 95th percentile) and above ``floor_db``. It needs
    no weights, and it cannot tell speech from music: a clip of music only passes.

    Args:
        floor_db: a clip whose loud level is under this (dBFS) is silent.
        range_db: how far under the loud level a frame still counts as voiced.
        min_voiced: the fraction of voiced frames a clip needs.
    """

    floor_db: float = -60.0
    range_db: float = 25.0
    min_voiced: float = 0.3
    fps: float = MODEL_FPS
    sample_rate: int = 16_000

    def skip_reason(self) -> str | None:
        return None  # needs no weights

    def __call__(self, clip: ClipData) -> str | None:
        levels = frame_levels_db(clip.audio, self.sample_rate, self.fps, len(clip.crops))
        loud = float(np.percentile(levels, 95))
        if loud < self.floor_db:
            return f"no speech: the sound stays under {self.floor_db:g} dBFS (loudest {loud:.0f})"
        voiced = float(np.mean(levels >= max(loud - self.range_db, self.floor_db)))
        if voiced < self.min_voiced:
            return f"no speech: sound in {100 * voiced:.0f} % of frames (< {100 * self.min_voiced:g} %)"
        return None


def _missing_weights(path: str | None, key: str, what: str) -> str | None:
    if path and Path(path).expanduser().is_file():
        return None
    return f"{what} filter skipped: no weights at {path or '<unset>'} (set {key}=PATH)"


class QualityFilter:
    """Image-quality filter (the paper uses HyperIQA): drop clips whose mean frame score is low.

    The weight file is a TorchScript module mapping ``(B, 3, 224, 224)`` ImageNet-normalised RGB to
    ``(B,)`` or ``(B, 1)`` quality scores (HyperIQA's 0-100 scale when exported from it).

    Args:
        weights: path of that file; the filter is skipped when absent.
        min_score: clips scoring below it are dropped.
        num_frames: frames scored per clip (evenly spaced).
    """

    config_key = "filters.quality.weights"

    def __init__(self, weights: str | None = None, min_score: float = 40.0, num_frames: int = 4) -> None:
        self.weights, self.min_score, self.num_frames = weights, min_score, num_frames
        self._net = None

    def skip_reason(self) -> str | None:
        return _missing_weights(self.weights, self.config_key, "image-quality")

    def __call__(self, clip: ClipData) -> str | None:
        import torch

        if self._net is None:
            self._net = torch.jit.load(str(Path(self.weights).expanduser()), map_location="cpu").eval()
        rows = np.linspace(0, len(clip.crops) - 1, self.num_frames).round().astype(int)
        x = np.stack([cv2.resize(clip.crops[r], (224, 224), interpolation=cv2.INTER_AREA) for r in rows])
        x = (x.astype(np.float32) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
        with torch.no_grad():
            scores = self._net(torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2))
        score = float(scores.float().mean())
        return None if score >= self.min_score else f"image quality {score:.1f} < {self.min_score:g}"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_net": None}  # the loaded net stays in its process


class SyncFilter:
    """Audio-visual sync filter (SyncNet offset and confidence, Appendix A) via ``lipsync.evaluate``.

    Args:
        weights: ``syncnet_v2.model``; the filter is skipped when absent.
        min_confidence: clips with Sync-C below it are dropped.
        max_offset: clips whose best audio-video offset exceeds this many frames are dropped.
    """

    config_key = "filters.sync.weights"

    def __init__(self, weights: str | None = None, min_confidence: float = 3.0, max_offset: int = 3) -> None:
        self.weights, self.min_confidence, self.max_offset = weights, min_confidence, max_offset
        self._scorer = None

    def skip_reason(self) -> str | None:
        return _missing_weights(self.weights, self.config_key, "audio-visual sync")

    def __call__(self, clip: ClipData) -> str | None:
        if self._scorer is None:
            self._scorer = SyncNetScorer(load_syncnet(os.path.expanduser(str(self.weights)), self.config_key))
        crops = (syncnet_crop(frame, box) for frame, box in zip(clip.crops, clip.boxes))
        result = self._scorer.score(crops, clip.audio)
        if abs(result.offset) > self.max_offset:
            return f"audio-video offset {result.offset} frames (> {self.max_offset})"
        if result.sync_c < self.min_confidence:
            return f"sync confidence {result.sync_c:.2f} < {self.min_confidence:g}"
        return None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_scorer": None}
