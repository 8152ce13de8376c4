"""Scenes with several people: two or three identities side by side, one speaking at a time.

Each scene has two shots with a cut between them. In every shot one person is the speaker: the
soundtrack is their speech and their mouth follows it (:func:`mouth_opening_from_audio`, the same truth
as the one-person corpus); the others mouth *other* speech that is not in the soundtrack (at 50-100 % of
its amplitude: the hardest listener, one who moves the mouth all the time). Sizes are drawn per person,
so the speaker is often not the largest face. The second shot changes the background (a cut a detector
can see), moves everyone to another place with another size, and hands the word to someone else.

For ``DIR/scene_00003.mp4`` the truth is written beside it as a several-faces landmarks file
(:mod:`lipsync.data.faces`): ``landmarks`` (N, F, 70, 2), ``boxes`` (N, F, 4) with F = the scene's
people (slot f is the same person in both shots), ``kind`` "ibug68", plus ``opening`` (N, F) the drawn
openings, ``speaker`` (N,) the slot that speaks, ``cut`` the first frame of the second shot.

The speaker-choice accuracy and the dubbing scores on these scenes are measured by
:mod:`lipsync.evaluate.scenes` (``python -m lipsync.evaluate.scenes --out /tmp/scenes --seed 1000``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lipsync.data.face_tracks import box_iou
from lipsync.media import MODEL_FPS, MODEL_SAMPLE_RATE, atomic_path, write_video
from lipsync.synth.render import Pose, draw_person, make_background, sample_identity, sample_motion
from lipsync.synth.speech import mouth_opening_from_audio, sample_voice, speech_clip

SUPERSAMPLE = 2


@dataclass(frozen=True)
class Scene:
    """One rendered scene and its truth.

    Attributes:
        frames: (T, S, S, 3) uint8 RGB.
        wave: (samples,) the soundtrack, 16 kHz mono (the speaker's speech, shot by shot).
        landmarks: (T, F, 70, 2) float32 per person slot.
        boxes: (T, F, 4) float32 face boxes.
        opening: (T, F) float32 drawn mouth openings.
        speaker: (T,) int slot of the speaker.
        cut: first frame of the second shot.
    """

    frames: np.ndarray
    wave: np.ndarray
    landmarks: np.ndarray
    boxes: np.ndarray
    opening: np.ndarray
    speaker: np.ndarray
    cut: int


def _layout(rng: np.random.Generator, people: int) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal places (fraction of the frame from its centre) and sizes, in random order."""
    places = {2: np.array([-0.23, 0.23]), 3: np.array([-0.31, 0.0, 0.31])}[people]
    sizes = rng.uniform(0.42, 0.62, people) if people == 3 else rng.uniform(0.5, 0.75, people)
    return places[rng.permutation(people)], sizes


def render_scene(seed: int, index: int, seconds: float = 6.0, size: int = 192) -> Scene:
    """Render scene ``index`` of the set drawn from ``seed`` (deterministic)."""
    rng = np.random.default_rng([seed, 7, index])
    people = int(rng.integers(2, 4))
    idents = [sample_identity(rng) for _ in range(people)]
    voices = [sample_voice(rng) for _ in range(people)]
    num_frames = int(round(seconds * MODEL_FPS))
    cut = int(rng.integers(int(0.35 * num_frames), int(0.65 * num_frames)))
    first = int(rng.integers(people))
    speaker = np.where(np.arange(num_frames) < cut, first, (first + 1 + rng.integers(people - 1)) % people)
    waves = [speech_clip(seconds, rng, voice).wave for voice in voices]
    spoken = np.repeat(speaker, MODEL_SAMPLE_RATE // MODEL_FPS)[: len(waves[0])] == np.arange(people)[:, None]
    wave = np.where(spoken, np.stack(waves), 0.0).sum(0).astype(np.float32)
    gains = rng.uniform(0.5, 1.0, people)
    openings = np.stack([mouth_opening_from_audio(w, num_frames) for w in waves], axis=1)
    openings = np.where(np.arange(people)[None] == speaker[:, None], openings, openings * gains[None])
    motions = [sample_motion(rng, num_frames, MODEL_FPS) for _ in range(people)]
    first_layout = _layout(rng, people)
    second_layout = (np.roll(first_layout[0], 1), _layout(rng, people)[1])  # everyone changes place
    shots = [(layout, make_background(idents[k], size * SUPERSAMPLE))
             for k, layout in enumerate((first_layout, second_layout))]
    frames, landmarks, boxes = [], np.zeros((num_frames, people, 70, 2), np.float32), np.zeros(
        (num_frames, people, 4), np.float32)
    for t in range(num_frames):
        (places, sizes), background = shots[int(t >= cut)]
        image = background.copy()
        for f in np.argsort(sizes):  # smaller = farther: drawn first
            m = motions[f]
            pose = Pose(float(places[f] + 0.4 * m.tx[t]), float(0.08 + 0.4 * m.ty[t]), float(m.angle[t]),
                        float(m.scale[t]))
            landmarks[t, f], boxes[t, f] = draw_person(image, idents[f], float(openings[t, f]),
                                                       float(m.blink[t]), pose, SUPERSAMPLE, float(sizes[f]))
        frames.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
    return Scene(np.stack(frames), wave, landmarks, boxes, openings.astype(np.float32), speaker, cut)


def scene_name(index: int) -> str:
    return f"scene_{index:05d}.mp4"


def write_scene(scene: Scene, path: str | os.PathLike, crf: int = 15) -> Path:
    """The truth file, then the mp4 with its soundtrack (each atomically)."""
    path = Path(path)
    with atomic_path(f"{path}.landmarks.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, landmarks=scene.landmarks, boxes=scene.boxes, kind=np.array("ibug68"),
                 opening=scene.opening, speaker=scene.speaker, cut=np.array(scene.cut))
    write_video(path, scene.frames, MODEL_FPS, audio=scene.wave, audio_rate=MODEL_SAMPLE_RATE, crf=crf)
    return path


def slot_of_tracks(boxes: np.ndarray, track_boxes: np.ndarray) -> np.ndarray:
    """Which true person each track is in each frame: ``(N, M)`` slot (-1 where the track is absent),
    the slot whose true box overlaps the track's box most."""
    out = np.full(track_boxes.shape[:2], -1, np.int64)
    for n in range(len(boxes)):
        seen = ~np.isnan(track_boxes[n]).any(axis=1)
        if seen.any():
            out[n, seen] = np.argmax(box_iou(track_boxes[n, seen], boxes[n]), axis=1)
    return out
