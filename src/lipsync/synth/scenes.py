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

    python -m lipsync.synth.scenes --out /tmp/scenes --scenes 20 --seed 1000   # speaker-choice accuracy
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

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
    wave = np.where(np.repeat(speaker, MODEL_SAMPLE_RATE // MODEL_FPS)[: len(waves[0])] == np.arange(people)[:, None],
                    np.stack(waves), 0.0).sum(0).astype(np.float32)
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
            landmarks[t, f], boxes[t, f] = draw_person(image, idents[f], float(openings[t, f]), float(m.blink[t]),
                                                       pose, SUPERSAMPLE, float(sizes[f]))
        frames.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
    return Scene(np.stack(frames), wave, landmarks, boxes, openings.astype(np.float32), speaker, cut)


def scene_name(index: int) -> str:
    return f"scene_{index:05d}.mp4"


def write_scene(scene: Scene, path: str | os.PathLike, crf: int = 15) -> Path:
    """The truth file, then the mp4 with its soundtrack (each atomically)."""
    path = Path(path)
    with atomic_path(f"{path}.landmarks.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, landmarks=scene.landmarks, boxes=scene.boxes, kind=np.array("ibug68"), opening=scene.opening,
                 speaker=scene.speaker, cut=np.array(scene.cut))
    write_video(path, scene.frames, MODEL_FPS, audio=scene.wave, audio_rate=MODEL_SAMPLE_RATE, crf=crf)
    return path


def slot_of_tracks(boxes: np.ndarray, track_boxes: np.ndarray) -> np.ndarray:
    """Which true person each track is in each frame: ``(N, M)`` slot (-1 where the track is absent),
    the slot whose true box overlaps the track's box most."""
    from lipsync.data.face_tracks import box_iou

    out = np.full(track_boxes.shape[:2], -1, np.int64)
    for n in range(len(boxes)):
        seen = ~np.isnan(track_boxes[n]).any(axis=1)
        if seen.any():
            out[n, seen] = np.argmax(box_iou(track_boxes[n, seen], boxes[n]), axis=1)
    return out


def choice_accuracy(video: Path, backend) -> dict:
    """Speaker choice on one written scene: the fraction of frames whose dubbed face is the speaker."""
    from lipsync.infer.face_choice import choose_face
    from lipsync.media import read_frames

    with np.load(f"{video}.landmarks.npz") as truth:
        boxes, speaker, cut = truth["boxes"], truth["speaker"], int(truth["cut"])
    frames = read_frames(video)
    selection = choose_face(iter(frames), backend, video, MODEL_FPS, "speaker")
    slots = slot_of_tracks(boxes, selection.tracks.boxes)
    rows = np.arange(len(speaker))
    picked = np.where(selection.chosen >= 0, slots[rows, np.clip(selection.chosen, 0, None)], -1)
    largest = np.argmax((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]), axis=1)
    return {"video": video.name, "frames": len(speaker), "people": int(boxes.shape[1]),
            "accuracy": float((picked == speaker).mean()), "cut_found": cut in selection.tracks.cuts,
            "speaker_is_largest": float((largest == speaker).mean()),
            "decisions": [{"shot": d.shot, "rule": d.rule, "scores": {int(k): round(v, 3) for k, v in d.scores.items()}}
                          for d in selection.decisions]}


def dub_scores(video: Path, speech: Path, pipe, output: Path) -> dict:
    """Dub ``video``'s speaker (``face=speaker``) with ``speech`` and score it on the output pixels.

    Returns:
        ``sync``: the dubbed speaker's measured opening vs the opening ``speech`` asks for (Pearson);
        ``copy_sync``: the same for the untouched source (chance level); ``others_max_diff``: the largest
        change of any other face's measured opening (0 = the others stay the source's; both videos
        through the same lossless encoder), and
        ``others_leak``: their output opening vs their source opening (1 = unchanged).
    """
    from lipsync.media import read_audio, read_frames
    from lipsync.synth.measure import measure_opening, pearson

    with np.load(f"{video}.landmarks.npz") as truth:
        boxes, speaker = truth["boxes"], truth["speaker"]
    # Lossless output, compared with the source through the same encoder: only the edit can differ.
    result = pipe(video, speech, output, face="speaker", progress=False, crf=0)
    passed = write_video(output.with_name(f"{output.stem}_source.mp4"), read_frames(video), MODEL_FPS, crf=0)
    out, src = read_frames(result.output), read_frames(passed)
    n = result.source_index
    rows = np.arange(len(n))
    wave, _ = read_audio(speech, sample_rate=MODEL_SAMPLE_RATE, mono=True)
    target = mouth_opening_from_audio(np.asarray(wave).reshape(-1), len(n))
    spoken = boxes[n, speaker[n]]
    report = {"video": video.name, "sync": pearson(measure_opening(out, spoken), target),
              "copy_sync": pearson(measure_opening(src[n], spoken), target)}
    diffs, leaks = [], []
    for f in range(boxes.shape[1]):
        quiet = rows[speaker[n] != f]
        if quiet.size:
            a, b = measure_opening(out[quiet], boxes[n[quiet], f]), measure_opening(src[n[quiet]], boxes[n[quiet], f])
            diffs.append(float(np.abs(a - b).max()))
            leaks.append(pearson(a, b))
    return {**report, "others_max_diff": max(diffs), "others_leak": float(np.mean(leaks))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Render multi-person scenes and measure speaker choice.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000, help="held-out seed (tuning used 0)")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--backend", choices=["landmarks-file", "mediapipe"], default="landmarks-file")
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=None,
                        help="a pipeline folder: also dub each scene's speaker with the next scene's soundtrack "
                             "and report sync and the leak into the others")
    args = parser.parse_args(argv)
    from lipsync.data.faces import LandmarksFileFaces, MediaPipeFaces

    backend = LandmarksFileFaces() if args.backend == "landmarks-file" else MediaPipeFaces()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in tqdm(range(args.scenes), desc="scenes", unit="scene"):
        path = args.out / scene_name(i)
        if not path.exists():
            write_scene(render_scene(args.seed, i, args.seconds), path)
        rows.append(choice_accuracy(path, backend))
        tqdm.write(f"{path.name}: {rows[-1]['people']} people, accuracy {rows[-1]['accuracy']:.3f}")
    frames = sum(r["frames"] for r in rows)
    report = {"seed": args.seed, "backend": args.backend, "scenes": len(rows), "frames": frames,
              "accuracy": sum(r["accuracy"] * r["frames"] for r in rows) / frames,
              "speaker_is_largest": sum(r["speaker_is_largest"] * r["frames"] for r in rows) / frames,
              "cuts_found": sum(r["cut_found"] for r in rows), "per_scene": rows}
    if args.model is not None:
        report["dubbing"] = _dub_all(args, [args.out / scene_name(i) for i in range(args.scenes)])
    print(json.dumps({k: v for k, v in report.items() if k not in ("per_scene", "dubbing")}, indent=1))
    if args.report:
        with atomic_path(args.report) as tmp:
            tmp.write_text(json.dumps(report, indent=1))


def _dub_all(args: argparse.Namespace, videos: list[Path]) -> dict:
    from lipsync.data.faces import LandmarksFileFaces
    from lipsync.infer.pipeline import LipSyncPipeline
    from lipsync.media import read_audio, write_wav

    pipe = LipSyncPipeline.from_pretrained(args.model, faces=LandmarksFileFaces(), generated_faces=None)
    rows = []
    for i, video in enumerate(tqdm(videos, desc="dubbing", unit="scene")):
        wave, rate = read_audio(videos[(i + 1) % len(videos)], sample_rate=None, mono=False)
        speech = write_wav(args.out / f"speech_{i:05d}.wav", wave, rate)
        rows.append(dub_scores(video, speech, pipe, args.out / f"dubbed_{i:05d}.mp4"))
    mean = lambda key: float(np.mean([r[key] for r in rows]))
    summary = {k: mean(k) for k in ("sync", "copy_sync", "others_leak")}
    summary["others_max_diff"] = max(r["others_max_diff"] for r in rows)
    print(json.dumps({"model": str(args.model), **summary}, indent=1))
    return {"model": str(args.model), **summary, "per_scene": rows}


if __name__ == "__main__":
    main()
