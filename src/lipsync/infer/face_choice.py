"""Which face to dub when several are in frame (``options.face``), decided once per shot.

The faces of the whole video are first linked into tracks (:func:`.tracking.track_all_faces`); then
each shot gets one track, by the rule the user chose:

================== ===================================================================================
``largest``        the track with the largest summed box area over the shot (big and present longest);
                   with one face in frame this is the old per-frame "largest face"
``index:N`` / N    the N-th face from the left (0-based) in the shot's first frame with faces
``point:X,Y``      the face whose box holds pixel (X, Y) in the shot's first frame with faces (else the
                   box whose centre is nearest)
``box:X0,Y0,X1,Y1`` the face whose box overlaps this one most there (else the nearest centre)
``speaker``        the face whose mouth moves with the source video's own soundtrack: per track, the
                   Pearson correlation over the shot of its mouth opening (from the landmarks,
                   :func:`lipsync.data.face_tracks.mouth_opening`) with the soundtrack's loudness per
                   frame; the best track wins when it beats the runner-up by ``margin`` and scores at
                   least ``min_score``
================== ===================================================================================

Fallback (documented, logged): where ``speaker`` cannot decide (a margin too small, no face visible long
enough) or the source has no usable soundtrack (no audio stream, or silence), and where ``index:N``
names a face a later shot does not have, that shot uses ``largest``. Pixel coordinates are the source
video's own (x right, y down from its top-left corner); a point or box names a face in every shot, so a
two-shot that cuts back and forth keeps the person standing at that place.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from scipy.ndimage import gaussian_filter1d

from lipsync.data.face_tracks import FaceTracks, box_iou
from lipsync.data.faces import FaceBackend
from lipsync.infer.tracking import FaceTrackSummary, track_all_faces
from lipsync.media import MODEL_SAMPLE_RATE, MediaError, read_audio

log = logging.getLogger(__name__)

RULES = ("largest", "index", "point", "box", "speaker")
FORMS = "largest | speaker | index:N (or N) | point:X,Y | box:X0,Y0,X1,Y1 (source pixels)"


@dataclass(frozen=True)
class FaceChoice:
    """A parsed ``options.face``: the rule and its argument (index, point x y, or box x0 y0 x1 y1)."""

    rule: str = "largest"
    index: int = 0
    coords: tuple[float, ...] = ()


def parse_face(value: str | int | FaceChoice) -> FaceChoice:
    """``options.face`` as given on the command line, in the API or the app; ValueError naming the forms."""
    if isinstance(value, FaceChoice):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = f"index:{int(value)}"
    text = str(value).strip().lower().replace(" ", "")
    if text in ("largest", "speaker"):
        return FaceChoice(text)
    if re.fullmatch(r"\d+", text):
        text = f"index:{text}"
    match = re.fullmatch(r"(index|point|box):(.+)", text)
    numbers = _numbers(match.group(2)) if match else None
    expected = {"index": 1, "point": 2, "box": 4}
    if match is None or numbers is None or len(numbers) != expected[match.group(1)]:
        raise ValueError(f"face={value!r} is not one of: {FORMS}")
    rule = match.group(1)
    if rule == "index":
        if numbers[0] < 0 or numbers[0] != int(numbers[0]):
            raise ValueError(f"face={value!r}: the index must be a whole number >= 0")
        return FaceChoice("index", index=int(numbers[0]))
    if rule == "box" and not (numbers[0] < numbers[2] and numbers[1] < numbers[3]):
        raise ValueError(f"face={value!r}: a box is X0,Y0,X1,Y1 with X0 < X1 and Y0 < Y1")
    return FaceChoice(rule, coords=tuple(numbers))


def _numbers(text: str) -> list[float] | None:
    try:
        return [float(v) for v in re.split(r"[,x;]", text)]
    except ValueError:
        return None


@dataclass(frozen=True)
class SpeakerRule:
    """How ``speaker`` decides.

    Attributes:
        margin: the best correlation must beat the runner-up's by at least this.
        min_score: ... and be at least this.
        min_presence: a track counts in a shot when present in at least this fraction of its frames ...
        min_frames: ... and at least this many.
        smooth: Gaussian smoothing (frames) of both curves before correlating.
        range_db: loudness below the track's loud level (95th percentile) minus this is clipped, so
            pauses count as "closed" whatever their exact level.
    """

    margin: float = 0.15
    min_score: float = 0.2
    min_presence: float = 0.3
    min_frames: int = 8
    smooth: float = 1.0
    range_db: float = 30.0


@dataclass
class ShotDecision:
    """What was chosen for one shot and why (for logs, tests and measurements)."""

    shot: int
    start: int
    stop: int
    track: int  # -1 when the shot has no face
    rule: str  # the rule that decided (the fallback's name when it was used)
    scores: dict[int, float] = field(default_factory=dict)  # speaker: correlation per candidate track
    note: str = ""


# --- the soundtrack -------------------------------------------------------------------------------


def frame_loudness(wave: np.ndarray, rate: int, fps: float, num_frames: int) -> np.ndarray:
    """RMS level in dBFS of the audio under each video frame, ``(num_frames,)``; past the end -100 dB."""
    edges = np.round(np.arange(num_frames + 1) * rate / fps).astype(np.int64)
    padded = np.zeros(max(int(edges[-1]), 1) + 1, np.float64)
    n = min(len(wave), len(padded))
    padded[:n] = wave[:n]
    power = np.add.reduceat(padded ** 2, edges[:-1]) / np.maximum(np.diff(edges), 1)
    return 10.0 * np.log10(power + 1e-10)


def source_loudness(video: Path, fps: float, num_frames: int) -> tuple[np.ndarray | None, str]:
    """The source video's own loudness per frame, or None and why it is not usable."""
    try:
        wave, _ = read_audio(video, sample_rate=MODEL_SAMPLE_RATE, mono=True)
    except MediaError:
        return None, "the source video has no audio stream"
    level = frame_loudness(np.asarray(wave).reshape(-1), MODEL_SAMPLE_RATE, fps, num_frames)
    loud = float(np.percentile(level, 95))
    if loud < -60.0 or loud - float(np.percentile(level, 5)) < 6.0:
        return None, f"the source soundtrack is silent or flat (95th percentile {loud:.0f} dBFS)"
    return level, ""


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-12 else 0.0


def speaker_scores(tracks: FaceTracks, loudness: np.ndarray, frames: np.ndarray, rule: SpeakerRule
                   ) -> dict[int, float]:
    """Correlation of each eligible track's mouth opening with the loudness over ``frames`` (one shot)."""
    level = np.clip(loudness, np.percentile(loudness, 95) - rule.range_db, None)
    openings = tracks.openings()
    scores = {}
    for m in range(tracks.num_tracks):
        seen = frames[tracks.present[frames, m]]
        if seen.size < max(rule.min_frames, rule.min_presence * len(frames)):
            continue
        opening = gaussian_filter1d(openings[seen, m], rule.smooth, mode="nearest")
        scores[m] = _pearson(opening, gaussian_filter1d(level[seen], rule.smooth, mode="nearest"))
    return scores


# --- choosing per shot ----------------------------------------------------------------------------


def _largest(tracks: FaceTracks, frames: np.ndarray) -> int:
    area = tracks.areas()[frames].sum(axis=0)
    return int(np.argmax(area)) if area.size and area.max() > 0 else -1


def _first_faces(tracks: FaceTracks, frames: np.ndarray) -> tuple[int, np.ndarray]:
    """The shot's first frame with a face, and the tracks present there sorted left to right."""
    with_face = frames[tracks.present[frames].any(axis=1)]
    if with_face.size == 0:
        return -1, np.zeros(0, np.int64)
    n = int(with_face[0])
    ids = np.flatnonzero(tracks.present[n])
    centre_x = (tracks.boxes[n, ids, 0] + tracks.boxes[n, ids, 2]) / 2
    return n, ids[np.argsort(centre_x, kind="stable")]


def _by_place(tracks: FaceTracks, frames: np.ndarray, choice: FaceChoice) -> int:
    n, ids = _first_faces(tracks, frames)
    if n < 0:
        return -1
    boxes = tracks.boxes[n, ids].astype(np.float64)
    if choice.rule == "point":
        x, y = choice.coords
        inside = (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])
        target = np.array([x, y])
        if inside.any():  # of nested boxes, the smallest holding the point
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            return int(ids[np.flatnonzero(inside)[np.argmin(area[inside])]])
    else:
        given = np.asarray(choice.coords, np.float64)
        iou = box_iou(given, boxes)[0]
        if iou.max() > 0:
            return int(ids[np.argmax(iou)])
        target = (given[:2] + given[2:]) / 2
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    return int(ids[np.argmin(np.linalg.norm(centres - target, axis=1))])


def _decide(tracks: FaceTracks, shot: int, frames: np.ndarray, choice: FaceChoice,
            loudness: np.ndarray | None, rule: SpeakerRule) -> ShotDecision:
    start, stop = int(frames[0]), int(frames[-1]) + 1
    decision = ShotDecision(shot, start, stop, _largest(tracks, frames), "largest")
    if decision.track < 0 or choice.rule == "largest":
        return decision
    if choice.rule == "index":
        _, ids = _first_faces(tracks, frames)
        if choice.index < len(ids):
            return ShotDecision(shot, start, stop, int(ids[choice.index]), "index")
        decision.note = f"face index {choice.index} but this shot shows {len(ids)} face(s); largest used"
        return decision
    if choice.rule in ("point", "box"):
        return ShotDecision(shot, start, stop, _by_place(tracks, frames, choice), choice.rule)
    if loudness is None:
        return decision
    scores = speaker_scores(tracks, loudness, frames, rule)
    decision.scores = scores
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    if len(ranked) == 1:
        decision.track, decision.rule = ranked[0][0], "speaker"
        decision.note = "the only face seen long enough"
    elif ranked and ranked[0][1] >= rule.min_score and ranked[0][1] - ranked[1][1] >= rule.margin:
        decision.track, decision.rule = ranked[0][0], "speaker"
    else:
        best = ", ".join(f"track {m}: {s:.2f}" for m, s in ranked[:3]) or "no face seen long enough"
        decision.note = (f"no face leads by the margin {rule.margin} (at least {rule.min_score}); "
                         f"{best}; largest used")
    return decision


def choose_tracks(tracks: FaceTracks, choice: FaceChoice, loudness: np.ndarray | None = None,
                  rule: SpeakerRule | None = None) -> tuple[np.ndarray, list[ShotDecision]]:
    """The track to dub in every frame, ``(N,)`` int (-1: none there), and one decision per shot.

    Args:
        tracks: every face track of the video.
        choice: the parsed ``options.face``.
        loudness: ``(N,)`` the source's loudness per frame in dB (``speaker``; None = not usable).
        rule: the ``speaker`` thresholds.
    """
    rule = rule or SpeakerRule()
    shots = tracks.shots
    chosen = np.full(tracks.num_frames, -1, np.int64)
    decisions = []
    for shot in np.unique(shots):
        frames = np.flatnonzero(shots == shot)
        decision = _decide(tracks, int(shot), frames, choice, loudness, rule)
        if decision.track >= 0:
            present = tracks.present[frames, decision.track]
            chosen[frames[present]] = decision.track
        decisions.append(decision)
    if choice.rule == "index" and decisions and decisions[0].note:
        raise ValueError(f"face=index:{choice.index}: {decisions[0].note.split(';')[0]} (faces are counted "
                         "from the left, from 0, in the first frame with faces)")
    return chosen, decisions


def chosen_summary(tracks: FaceTracks, chosen: np.ndarray) -> FaceTrackSummary:
    """The chosen face per frame as the inference track (NaN where the chosen face is absent)."""
    rows = np.arange(tracks.num_frames)
    pick = np.clip(chosen, 0, None)
    found = chosen >= 0
    boxes = np.where(found[:, None], tracks.boxes[rows, pick] if tracks.num_tracks else np.nan, np.nan)
    landmarks = np.full((tracks.num_frames, tracks.landmarks.shape[2], 2), np.nan, np.float32)
    if tracks.num_tracks:
        landmarks[found] = tracks.landmarks[rows[found], pick[found]]
    seen = np.flatnonzero(found)  # a stretch starts where the chosen track changes, or at a cut
    switches = seen[1:][chosen[seen[1:]] != chosen[seen[:-1]]]
    starts = tuple(sorted({*switches.tolist(), *tracks.cuts}))
    return FaceTrackSummary(boxes.astype(np.float32), landmarks, tracks.layout, found.copy(), starts)


@dataclass
class FaceSelection:
    """Everything :func:`choose_face` found: the tracks, the chosen track per frame, the shot decisions."""

    tracks: FaceTracks
    chosen: np.ndarray
    decisions: list[ShotDecision]

    @property
    def summary(self) -> FaceTrackSummary:
        return chosen_summary(self.tracks, self.chosen)


def choose_face(frames: Iterable[np.ndarray], backend: FaceBackend, source: Path, fps: float,
                face: str | int | FaceChoice = "largest", rule: SpeakerRule | None = None) -> FaceSelection:
    """Track every face of ``frames`` and choose the one to dub in each shot, logging each decision.

    Args:
        frames: the source's RGB frames in order (a stream).
        backend: the face backend.
        source: the video file (its own soundtrack is what ``speaker`` listens to).
        fps: its frame rate.
        face: ``options.face`` (see the module docstring).
        rule: the ``speaker`` thresholds.
    """
    choice = parse_face(face)
    tracks = track_all_faces(frames, backend, source)
    loudness = None
    if choice.rule == "speaker":
        loudness, why = source_loudness(source, fps, tracks.num_frames)
        if loudness is None:
            log.warning("%s: face=speaker: %s; every shot uses the largest face", source, why)
    chosen, decisions = choose_tracks(tracks, choice, loudness, rule)
    for d in decisions:
        if d.note:
            log.warning("%s: shot %d (frames %d-%d): %s", source, d.shot, d.start, d.stop - 1, d.note)
        else:
            log.info("%s: shot %d (frames %d-%d): track %d by %s", source, d.shot, d.start, d.stop - 1,
                     d.track, d.rule)
    return FaceSelection(tracks, chosen, decisions)
