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
``speaker``        the face whose mouth moves with the source video's own soundtrack (below)
================== ===================================================================================

``speaker``, per shot and per track seen long enough: the soundtrack becomes two curves a speaking mouth
follows (:func:`source_sound`): the mouth opening it implies per frame
(:func:`lipsync.infer.mouth_from_audio.expected_opening`, a predictor trained on real talking faces, as
loudness alone implies little about a real mouth) and its loudness (which a clean or synthetic voice's
mouth does follow, where the real-face predictor reads less). The track's measured opening
(:func:`lipsync.data.face_tracks.mouth_opening`) is compared with each by :func:`sync_score`, the mean of
two Pearson correlations, of the two curves' motion (frame-to-frame change) and of the two curves
detrended (slow drifts of head pose removed), taken at the best of a few audio-visual offsets
(``max_lag`` frames either way: sound and picture of a real video are often a frame or two apart); the
track's score is the better of the two. The best track wins when it scores at least ``min_score`` and
leads the runner-up by ``margin`` (:func:`lead`; tuned on real two-person scenes,
``benchmarks/bench_speaker_choice.py``).

Fallback (documented; each shot's decision is one line, :attr:`ShotDecision.line`, which the CLI
prints): where ``speaker`` cannot decide (no face leads by the margin, no face visible long enough) or
the source has no usable soundtrack (no audio stream, or silence), and where ``index:N`` names a face a
later shot does not have, that shot uses ``largest`` and says so. Pixel coordinates are the source
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
from lipsync.stats import pearson

log = logging.getLogger(__name__)
PAUSE_DB = 30.0  # loudness this far under the soundtrack's loud level (95th percentile) counts as a pause

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
    """How ``speaker`` decides (defaults tuned on the tuning set of ``bench_results/speaker_choice_real``).

    Attributes:
        margin: the best score must lead the runner-up's by at least this (:func:`lead`: in standard
            deviations of chance correlation over the shot, so a short shot needs a larger gap) ...
        min_score: ... and be at least this.
        min_presence: a track counts in a shot when present in at least this fraction of its frames ...
        min_frames: ... and at least this many.
        smooth: Gaussian smoothing (frames) of both curves before comparing.
        detrend: the slow part removed from both curves (Gaussian, frames): head-pose drift, not speech.
        max_lag: audio-visual offsets searched, frames either way.
    """

    margin: float = 3.5
    min_score: float = 0.2
    min_presence: float = 0.3
    min_frames: int = 8
    smooth: float = 1.0
    detrend: float = 12.0
    max_lag: int = 4


@dataclass
class ShotDecision:
    """What was chosen for one shot and why (for the CLI's lines, logs, tests and measurements)."""

    shot: int
    start: int
    stop: int
    track: int  # -1 when the shot has no face
    rule: str  # the rule that decided (the fallback's name when it was used)
    scores: dict[int, float] = field(default_factory=dict)  # speaker: sync score per candidate track
    lags: dict[int, int] = field(default_factory=dict)  # speaker: the offset each score was found at
    note: str = ""  # why a fallback was needed (empty when the asked rule decided)
    box: tuple[int, int, int, int] | None = None  # the chosen track's median box over the shot

    @property
    def line(self) -> str:
        """The decision as one line for the user."""
        head = f"shot {self.shot} (frames {self.start}-{self.stop - 1})"
        if self.track < 0:
            return f"{head}: no face; nothing to dub"
        face = f"track {self.track}" + (" at x {}-{}, y {}-{}".format(*self.box[::2], *self.box[1::2])
                                        if self.box else "")
        if self.note:
            return f"{head}: {self.note}; falling back to the largest face: dubbing {face}"
        if self.rule != "speaker":
            return f"{head}: dubbing {face} (face={self.rule})"
        if len(self.scores) == 1:
            return f"{head}: dubbing {face}, the only face seen long enough (speaker score {self._scores()})"
        return f"{head}: dubbing {face}, the face that moves with the sound (speaker score {self._scores()})"

    def _scores(self) -> str:
        ranked = sorted(self.scores.values(), reverse=True)
        versus = (f" vs {ranked[1]:.2f}, a lead of {lead(ranked[0], ranked[1], self.stop - self.start):.1f}"
                  if len(ranked) > 1 else "")
        return f"{self.scores[self.track]:.2f}{versus}, offset {self.lags.get(self.track, 0):+d} frames"


# --- the soundtrack -------------------------------------------------------------------------------


def frame_loudness(wave: np.ndarray, rate: int, fps: float, num_frames: int) -> np.ndarray:
    """RMS level in dBFS of the audio under each video frame, ``(num_frames,)``; past the end -100 dB."""
    edges = np.round(np.arange(num_frames + 1) * rate / fps).astype(np.int64)
    padded = np.zeros(max(int(edges[-1]), 1) + 1, np.float64)
    n = min(len(wave), len(padded))
    padded[:n] = wave[:n]
    power = np.add.reduceat(padded ** 2, edges[:-1]) / np.maximum(np.diff(edges), 1)
    return 10.0 * np.log10(power + 1e-10)


def source_sound(video: Path, fps: float, num_frames: int) -> tuple[np.ndarray | None, str]:
    """Two curves per frame a mouth speaking the source's own soundtrack follows, ``(2, num_frames)``: the
    opening the sound implies, and its loudness in dB (pauses floored ``PAUSE_DB`` under the loud level,
    so a pause is one "closed" whatever its noise); or None and why the soundtrack is not usable."""
    from lipsync.infer.mouth_from_audio import expected_opening  # torch and Whisper: only for ``speaker``

    try:
        wave, _ = read_audio(video, sample_rate=MODEL_SAMPLE_RATE, mono=True)
    except MediaError:
        return None, "the source video has no audio stream"
    wave = np.asarray(wave).reshape(-1)
    level = frame_loudness(wave, MODEL_SAMPLE_RATE, fps, num_frames)
    loud = float(np.percentile(level, 95))
    if loud < -60.0 or loud - float(np.percentile(level, 5)) < 6.0:
        return None, f"the source soundtrack is silent or flat (95th percentile {loud:.0f} dBFS)"
    return np.stack([expected_opening(wave, fps, num_frames), np.clip(level, loud - PAUSE_DB, None)]), ""


# --- how well a mouth follows a sound -------------------------------------------------------------


def lagged_pearson(mouth: np.ndarray, sound: np.ndarray, max_lag: int) -> np.ndarray:
    """``(2 * max_lag + 1,)`` Pearson r of ``mouth[t]`` with ``sound[t - lag]``, ``lag = -max_lag..max_lag``,
    over the frames both cover (``lag > 0``: the mouth moves that many frames after the sound)."""
    n = len(mouth)
    return np.array([pearson(mouth[max(lag, 0):n + min(lag, 0)], sound[max(-lag, 0):n - max(lag, 0)])
                     for lag in range(-max_lag, max_lag + 1)])


def filled(curve: np.ndarray) -> np.ndarray:
    """NaN gaps filled by linear interpolation (the ends hold the nearest value); all-NaN gives zeros."""
    ok = np.isfinite(curve)
    if not ok.any():
        return np.zeros(len(curve))
    t = np.arange(len(curve))
    return np.interp(t, t[ok], np.asarray(curve, np.float64)[ok])


def motion(curve: np.ndarray, rule: SpeakerRule) -> np.ndarray:
    """``(N - 1,)`` frame-to-frame change of the smoothed curve."""
    return np.diff(gaussian_filter1d(curve, rule.smooth, mode="nearest"))


def detrended(curve: np.ndarray, rule: SpeakerRule) -> np.ndarray:
    """``(N,)`` the smoothed curve less its slow part (a ``rule.detrend``-frame Gaussian)."""
    slow = gaussian_filter1d(curve, rule.detrend, mode="nearest")
    return gaussian_filter1d(curve, rule.smooth, mode="nearest") - slow


def sync_score(mouth: np.ndarray, sound: np.ndarray, rule: SpeakerRule) -> tuple[float, int]:
    """How well a mouth curve follows a sound curve (both ``(N,)``, no NaN): the mean of the correlations
    of their motion and of their detrended shapes, at the best audio-visual offset; returns the score
    (1 = in step, about 0 = unrelated) and that offset (see :func:`lagged_pearson`)."""
    max_lag = max(0, min(rule.max_lag, len(mouth) // 4))
    profile = (lagged_pearson(motion(mouth, rule), motion(sound, rule), max_lag)
               + lagged_pearson(detrended(mouth, rule), detrended(sound, rule), max_lag)) / 2
    best = int(np.argmax(profile))
    return float(profile[best]), best - max_lag


def lead(best: float, second: float, num_frames: int) -> float:
    """How far the best correlation leads the second over ``num_frames`` frames, in standard deviations
    of a chance correlation: ``(atanh best - atanh second) * sqrt(n - 3)`` (Fisher's z). Neighbouring
    frames are not independent, so this is a scale that makes short and long shots comparable, not a
    probability."""
    z = np.arctanh(np.clip([best, second], -0.999, 0.999))
    return float((z[0] - z[1]) * np.sqrt(max(num_frames - 3, 1)))


def speaker_scores(tracks: FaceTracks, sound: np.ndarray, frames: np.ndarray, rule: SpeakerRule
                   ) -> dict[int, tuple[float, int]]:
    """The best :func:`sync_score` (score, offset) of each eligible track's mouth opening with the curves
    of ``sound`` (``(N,)`` or ``(K, N)``) over ``frames`` (one shot), from the track's first to its last
    frame there (gaps filled)."""
    openings, curves = tracks.openings(), np.atleast_2d(np.asarray(sound, np.float64))
    scores = {}
    for m in range(tracks.num_tracks):
        seen = frames[tracks.present[frames, m]]
        if seen.size < max(rule.min_frames, rule.min_presence * len(frames)):
            continue
        span = np.arange(seen[0], seen[-1] + 1)
        mouth = filled(openings[span, m])
        scores[m] = max((sync_score(mouth, curve[span], rule) for curve in curves), key=lambda s: s[0])
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
            sound: np.ndarray | None, rule: SpeakerRule) -> ShotDecision:
    start, stop = int(frames[0]), int(frames[-1]) + 1
    decision = ShotDecision(shot, start, stop, _largest(tracks, frames), "largest")
    if decision.track < 0 or choice.rule == "largest":
        return decision
    if choice.rule == "index":
        _, ids = _first_faces(tracks, frames)
        if choice.index < len(ids):
            return ShotDecision(shot, start, stop, int(ids[choice.index]), "index")
        decision.note = f"face index {choice.index} but this shot shows {len(ids)} face(s)"
        return decision
    if choice.rule in ("point", "box"):
        return ShotDecision(shot, start, stop, _by_place(tracks, frames, choice), choice.rule)
    if sound is None:
        decision.note = "no usable soundtrack to find the speaker by"
        return decision
    return _decide_speaker(tracks, frames, sound, rule, decision)


def _decide_speaker(tracks: FaceTracks, frames: np.ndarray, sound: np.ndarray, rule: SpeakerRule,
                    decision: ShotDecision) -> ShotDecision:
    """``decision`` (the largest face) becomes the speaker's if one face leads clearly, else says why not."""
    scored = speaker_scores(tracks, sound, frames, rule)
    decision.scores = {m: score for m, (score, _) in scored.items()}
    decision.lags = {m: lag for m, (_, lag) in scored.items()}
    ranked = sorted(decision.scores.items(), key=lambda kv: -kv[1])
    ahead = lead(ranked[0][1], ranked[1][1], len(frames)) if len(ranked) > 1 else 0.0
    if len(ranked) == 1 or (len(ranked) > 1 and ranked[0][1] >= rule.min_score and ahead >= rule.margin):
        decision.track, decision.rule = ranked[0][0], "speaker"
    elif not ranked:
        decision.note = "no face seen long enough to find the speaker"
    else:
        why = (f"a lead of {ahead:.1f}, under the margin {rule.margin:.1f}" if ranked[0][1] >= rule.min_score
               else f"the best under the minimum {rule.min_score:.2f}")
        decision.note = f"no clear speaker (speaker score {ranked[0][1]:.2f} vs {ranked[1][1]:.2f}: {why})"
    return decision


def _median_box(tracks: FaceTracks, frames: np.ndarray, track: int) -> tuple[int, int, int, int] | None:
    if track < 0:
        return None
    boxes = tracks.boxes[frames, track]
    boxes = boxes[~np.isnan(boxes).any(axis=1)]
    return tuple(int(round(v)) for v in np.median(boxes, axis=0)) if len(boxes) else None


def choose_tracks(tracks: FaceTracks, choice: FaceChoice, sound: np.ndarray | None = None,
                  rule: SpeakerRule | None = None) -> tuple[np.ndarray, list[ShotDecision]]:
    """The track to dub in every frame, ``(N,)`` int (-1: none there), and one decision per shot.

    Args:
        tracks: every face track of the video.
        choice: the parsed ``options.face``.
        sound: ``(N,)`` or ``(K, N)``: per frame, curves a mouth speaking the soundtrack follows
            (``speaker``: :func:`source_sound`); None = no usable soundtrack.
        rule: the ``speaker`` thresholds.
    """
    rule = rule or SpeakerRule()
    shots = tracks.shots
    chosen = np.full(tracks.num_frames, -1, np.int64)
    decisions = []
    for shot in np.unique(shots):
        frames = np.flatnonzero(shots == shot)
        decision = _decide(tracks, int(shot), frames, choice, sound, rule)
        decision.box = _median_box(tracks, frames, decision.track)
        if decision.track >= 0:
            present = tracks.present[frames, decision.track]
            chosen[frames[present]] = decision.track
        decisions.append(decision)
    if choice.rule == "index" and decisions and decisions[0].note:
        raise ValueError(f"face=index:{choice.index}: {decisions[0].note} (faces are counted "
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
    return choose_in_tracks(track_all_faces(frames, backend, source), source, fps, face, rule)


def choose_in_tracks(tracks: FaceTracks, source: Path, fps: float, face: str | int | FaceChoice = "largest",
                     rule: SpeakerRule | None = None) -> FaceSelection:
    """:func:`choose_face` on tracks already found (``source`` still gives the soundtrack)."""
    choice = parse_face(face)
    sound = None
    if choice.rule == "speaker":
        sound, why = source_sound(source, fps, tracks.num_frames)
        if sound is None:
            log.warning("%s: face=speaker: %s; every shot uses the largest face", source, why)
    chosen, decisions = choose_tracks(tracks, choice, sound, rule)
    for d in decisions:
        log.log(logging.WARNING if d.note else logging.INFO, "%s: %s", Path(source).name, d.line)
    return FaceSelection(tracks, chosen, decisions)
