"""Two-person scenes made of real talking-face clips whose speaker is known, for ``options.face=speaker``.

A scene puts two clips of a real corpus (``../shared/realfaces``: people talking with their own sound)
side by side on one canvas at two sizes. Its soundtrack is one of them's own sound (the speaker); the
other one talks too, but to speech that is muted. A scene is one shot, or two with a cut between them
after which the two may stand elsewhere at other sizes and the word may pass to the other (:class:`Shot`).

Each clip is first cut to a fixed square around its face (the median MediaPipe box of a few frames,
``FACE_SQUARE`` times its side; :func:`load_clip`) and brought to 25 fps, so a full-body portrait clip
gives a head about as large as a face crop does.

The truth written beside ``scene.mp4`` (``scene.mp4.truth.npz``) holds no pixels: ``tiles`` (N, 2, 4) the
left and right tile rectangles, ``speaker`` (N,) which of them is heard, ``cuts`` the first frame of every
shot after the first. :func:`shot_outcomes` turns a :class:`~lipsync.infer.face_choice.FaceSelection`
into one outcome per true shot: ``correct``, ``wrong`` (the speaker rule chose another face) or
``fallback`` (announced: no clear speaker, the largest face was dubbed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from lipsync.assets import ROOT
from lipsync.data.faces import MediaPipeFaces
from lipsync.infer.face_choice import FaceSelection
from lipsync.media import (MODEL_FPS, MODEL_SAMPLE_RATE, atomic_path, iter_frames, probe, read_audio,
                           write_video)
from lipsync.prepare.split import load_split

# The held-out people of the realfaces split (data/realfaces/split.json): never tuned or trained on, only
# used to confirm; the two VoxCeleb2 7414 clips show the same man (SOURCES.md), so they never pair.
SPLIT = load_split(ROOT / "data" / "realfaces" / "split.json")
HELD_OUT = tuple(f for files in SPLIT["heldout_people"].values() for f in files)
SAME_PERSON = tuple(frozenset(files) for files in {**SPLIT["heldout_people"], **SPLIT["train_people"]}.values()
                    if len(files) > 1)
FACE_SQUARE = 2.0  # side of a clip's square around its face, in face-box sides (the whole head and neck)
WORK_SIZE = 256  # clips are kept at this square size; a tile is at most this large
CANVAS = (512, 288)  # scene width, height (16:9)
BACKGROUNDS = ((96, 104, 112), (150, 132, 110))  # one grey per shot, so the cut changes the backdrop too
SAMPLES_PER_FRAME = MODEL_SAMPLE_RATE // MODEL_FPS


@dataclass(frozen=True)
class Clip:
    """One corpus clip at the scene rate.

    Attributes:
        name: its file name.
        frames: (T, WORK_SIZE, WORK_SIZE, 3) uint8 RGB, the square around the face, at 25 fps.
        wave: (T * 640,) float32 its own sound, 16 kHz mono, zero-padded to the frames' length.
    """

    name: str
    frames: np.ndarray
    wave: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class Shot:
    """One shot: which clip stands left and right, how large, whose sound is heard, and when.

    Attributes:
        clips: names of the left and the right clip.
        sizes: their tile sides in pixels.
        speaker: 0 = the left one is heard, 1 = the right one.
        start: first frame taken from both clips (25 fps).
        frames: frames the shot lasts.
    """

    clips: tuple[str, str]
    sizes: tuple[int, int]
    speaker: int
    start: int
    frames: int


@dataclass(frozen=True)
class RealScene:
    """A composed scene and its truth.

    Attributes:
        frames: (N, H, W, 3) uint8 RGB.
        wave: (N * 640,) float32, 16 kHz mono: the speaker's own sound, shot by shot.
        tiles: (N, 2, 4) float32 left and right tile rectangles x0, y0, x1, y1.
        speaker: (N,) int: 0 or 1, the tile that is heard.
        cuts: first frame of every shot after the first.
    """

    frames: np.ndarray
    wave: np.ndarray
    tiles: np.ndarray
    speaker: np.ndarray
    cuts: tuple[int, ...]


def face_square(path: Path, probes: int = 5) -> np.ndarray:
    """A fixed square ``x0, y0, x1, y1`` around the clip's face (median box of ``probes`` frames),
    ``FACE_SQUARE`` box sides wide, moved (not cut) to lie inside the frame.

    Where no face is found (a face crop so tight that the full-range detector misses it), the largest
    centred square: such a clip is all face already."""
    info = probe(path)
    wanted = set(np.linspace(0, info.num_frames - 1, probes).round().astype(int).tolist())
    frames = [(i, f) for i, f in enumerate(iter_frames(path)) if i in wanted]
    boxes = [max((f.box for f in faces), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
             for faces in MediaPipeFaces().detect_all(path, frames) if faces]
    whole = np.array([0, 0, info.width, info.height], np.float64)
    box = np.median(np.stack(boxes), axis=0) if boxes else whole
    side = min(FACE_SQUARE * max(box[2] - box[0], box[3] - box[1]), info.width, info.height)
    x0 = np.clip((box[0] + box[2] - side) / 2, 0, info.width - side)
    y0 = np.clip((box[1] + box[3] - side) / 2, 0, info.height - side)
    return np.array([x0, y0, x0 + side, y0 + side])


def load_clip(path: str | os.PathLike) -> Clip:
    """The clip cut to its face square, resized to ``WORK_SIZE`` and resampled to 25 fps (nearest frame)."""
    path = Path(path)
    info = probe(path)
    x0, y0, x1, y1 = face_square(path).round().astype(int)
    frames = [cv2.resize(f[y0:y1, x0:x1], (WORK_SIZE, WORK_SIZE), interpolation=cv2.INTER_AREA)
              for f in iter_frames(path)]
    n = int(len(frames) * MODEL_FPS / float(info.fps))
    picked = np.minimum(np.round(np.arange(n) * float(info.fps) / MODEL_FPS).astype(int), len(frames) - 1)
    wave, _ = read_audio(path, sample_rate=MODEL_SAMPLE_RATE, mono=True)
    padded = np.zeros(n * SAMPLES_PER_FRAME, np.float32)
    padded[: min(len(wave), len(padded))] = wave[: len(padded)]
    return Clip(path.name, np.stack([frames[i] for i in picked]), padded)


def tile_boxes(sizes: tuple[int, int], canvas: tuple[int, int] = CANVAS) -> np.ndarray:
    """(2, 4) the left and right tile rectangles: standing on the bottom edge, 16 px in from the sides."""
    width, height = canvas
    left, right = sizes
    return np.array([[16, height - left, 16 + left, height],
                     [width - 16 - right, height - right, width - 16, height]], np.float32)


def render_shot(shot: Shot, clips: Mapping[str, Clip], background: tuple[int, int, int],
                canvas: tuple[int, int] = CANVAS) -> tuple[np.ndarray, np.ndarray]:
    """The shot's frames ``(shot.frames, H, W, 3)`` and its sound (the speaker's, same frames)."""
    boxes = tile_boxes(shot.sizes, canvas).astype(int)
    frames = np.empty((shot.frames, canvas[1], canvas[0], 3), np.uint8)
    frames[:] = background
    span = slice(shot.start, shot.start + shot.frames)
    for (x0, y0, x1, y1), name in zip(boxes, shot.clips):
        clip = clips[name]
        if shot.start + shot.frames > clip.num_frames:
            raise ValueError(f"{name}: shot frames {shot.start}-{shot.start + shot.frames} past its "
                             f"{clip.num_frames}")
        for t, image in enumerate(clip.frames[span]):
            frames[t, y0:y1, x0:x1] = cv2.resize(image, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    heard = clips[shot.clips[shot.speaker]].wave
    return frames, heard[shot.start * SAMPLES_PER_FRAME:(shot.start + shot.frames) * SAMPLES_PER_FRAME]


def compose(shots: Sequence[Shot], clips: Mapping[str, Clip], canvas: tuple[int, int] = CANVAS) -> RealScene:
    """The shots one after the other (a cut between each two, the backdrop alternating) and their truth."""
    parts = [render_shot(s, clips, BACKGROUNDS[k % len(BACKGROUNDS)], canvas) for k, s in enumerate(shots)]
    tiles = np.concatenate([np.repeat(tile_boxes(s.sizes, canvas)[None], s.frames, 0) for s in shots])
    speaker = np.concatenate([np.full(s.frames, s.speaker) for s in shots])
    cuts = tuple(np.cumsum([s.frames for s in shots])[:-1].tolist())
    return RealScene(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), tiles,
                     speaker, cuts)


def write_real_scene(scene: RealScene, path: str | os.PathLike, crf: int = 18) -> Path:
    """The truth file (no pixels), then the mp4 with the speaker's sound (each atomically)."""
    path = Path(path)
    with atomic_path(f"{path}.truth.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, tiles=scene.tiles, speaker=scene.speaker, cuts=np.array(scene.cuts, np.int64))
    return write_video(path, scene.frames, MODEL_FPS, audio=scene.wave, audio_rate=MODEL_SAMPLE_RATE, crf=crf)


@dataclass(frozen=True)
class ShotOutcome:
    """What ``speaker`` did in one true shot of a scene.

    Attributes:
        shot: the true shot's index; ``start``, ``stop`` its frames ``[start, stop)``.
        outcome: ``correct`` / ``wrong`` (the speaker rule chose, and the dubbed face is not the speaker
            in at least ``min_on`` of the frames where a face is dubbed) / ``fallback`` (the decision
            covering most of the shot was announced as a fallback).
        rule: that decision's rule; ``line`` its one-line report.
        on_speaker: fraction of the shot's dubbed frames whose dubbed face lies in the speaker's tile.
        dubbed: fraction of the shot's frames where a face is dubbed (the chosen face was found there).
        speaker_score, other_score: the speaker scores of the best track in the speaker's tile and in
            the other tile (NaN where no such track was scored).
    """

    shot: int
    start: int
    stop: int
    outcome: str
    rule: str
    on_speaker: float
    dubbed: float
    speaker_score: float
    other_score: float
    line: str


def tile_of_tracks(tiles: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, M) which tile (0 left, 1 right) holds the centre of each track's box; -1 absent or neither.

    Args:
        tiles: (N, 2, 4) tile rectangles per frame.
        boxes: (N, M, 4) track boxes (NaN where absent).
    """
    cx, cy = (boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2
    t = tiles[:, None]  # (N, 1, 2, 4)
    inside = ((t[..., 0] <= cx[..., None]) & (cx[..., None] < t[..., 2]) & (t[..., 1] <= cy[..., None])
              & (cy[..., None] < t[..., 3]))
    return np.where(inside.any(-1), np.argmax(inside, -1), -1)


def shot_outcomes(selection: FaceSelection, tiles: np.ndarray, speaker: np.ndarray, cuts: Sequence[int],
                  min_on: float = 0.9) -> list[ShotOutcome]:
    """One :class:`ShotOutcome` per true shot (``cuts``: the true ones) of a scene's selection."""
    tile = tile_of_tracks(tiles, selection.tracks.boxes)
    rows = np.arange(len(speaker))
    dubbed = np.where(selection.chosen >= 0, tile[rows, np.clip(selection.chosen, 0, None)], -1)
    edges = [0, *cuts, len(speaker)]
    return [_outcome(selection, tile, dubbed, speaker, k, a, b, min_on)
            for k, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]


def _outcome(selection: FaceSelection, tile: np.ndarray, dubbed: np.ndarray, speaker: np.ndarray, shot: int,
             start: int, stop: int, min_on: float) -> ShotOutcome:
    overlap = [min(d.stop, stop) - max(d.start, start) for d in selection.decisions]
    decision = selection.decisions[int(np.argmax(overlap))]
    best = {0: np.nan, 1: np.nan}
    for m, score in decision.scores.items():
        seen = tile[start:stop, m][tile[start:stop, m] >= 0]
        where = int(np.bincount(seen, minlength=2).argmax()) if seen.size else -1
        if where >= 0 and not best[where] >= score:
            best[where] = score
    some = dubbed[start:stop] >= 0
    on = float((dubbed[start:stop] == speaker[start:stop])[some].mean()) if some.any() else 0.0
    outcome = "fallback" if decision.rule != "speaker" else "correct" if on >= min_on else "wrong"
    heard = int(speaker[start])
    return ShotOutcome(shot, start, stop, outcome, decision.rule, on, float(some.mean()), float(best[heard]),
                       float(best[1 - heard]), decision.line)
