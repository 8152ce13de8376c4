"""Speaker choice and scene dubbing, measured on the synthetic multi-person scenes
(:mod:`lipsync.synth.scenes`, whose truth says who speaks in every frame).

    python -m lipsync.evaluate.scenes --out /tmp/scenes --scenes 20 --seed 1000 [--backend mediapipe]
    python -m lipsync.evaluate.scenes --out /tmp/scenes --model outputs/demo/model   # + dubbing scores

- :func:`choice_accuracy`: the fraction of frames where ``options.face=speaker`` picks the true speaker;
- :func:`dub_scores`: dub the speaker with other speech, then the dubbed speaker's sync and the leak into
  the other faces (their measured openings must stay the source's).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lipsync.cli import ArgumentParser, user_errors
from lipsync.data.faces import FaceBackend, LandmarksFileFaces, MediaPipeFaces
from lipsync.infer.face_choice import choose_face
from lipsync.infer.pipeline import LipSyncPipeline
from lipsync.media import (MODEL_FPS, MODEL_SAMPLE_RATE, atomic_path, read_audio, read_frames, write_video,
                           write_wav)
from lipsync.stats import pearson
from lipsync.synth.measure import measure_opening
from lipsync.synth.scenes import render_scene, scene_name, slot_of_tracks, write_scene
from lipsync.synth.speech import mouth_opening_from_audio

PROG = "lipsync-scenes"


def choice_accuracy(video: Path, backend: FaceBackend) -> dict:
    """Speaker choice on one written scene: the fraction of frames whose dubbed face is the speaker."""
    with np.load(f"{video}.landmarks.npz") as truth:
        boxes, speaker, cut = truth["boxes"], truth["speaker"], int(truth["cut"])
    frames = read_frames(video)
    selection = choose_face(iter(frames), backend, video, MODEL_FPS, "speaker")
    slots = slot_of_tracks(boxes, selection.tracks.boxes)
    rows = np.arange(len(speaker))
    picked = np.where(selection.chosen >= 0, slots[rows, np.clip(selection.chosen, 0, None)], -1)
    largest = np.argmax((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]), axis=1)
    decisions = [{"shot": d.shot, "rule": d.rule,
                  "scores": {int(k): round(v, 3) for k, v in d.scores.items()}} for d in selection.decisions]
    return {"video": video.name, "frames": len(speaker), "people": int(boxes.shape[1]),
            "accuracy": float((picked == speaker).mean()), "cut_found": cut in selection.tracks.cuts,
            "speaker_is_largest": float((largest == speaker).mean()), "decisions": decisions}


def dub_scores(video: Path, speech: Path, pipe: LipSyncPipeline, output: Path) -> dict:
    """Dub ``video``'s speaker (``face=speaker``) with ``speech`` and score it on the output pixels.

    Returns:
        ``sync``: the dubbed speaker's measured opening vs the opening ``speech`` asks for (Pearson);
        ``copy_sync``: the same for the untouched source (chance level); ``others_max_diff``: the largest
        change of any other face's measured opening (0 = the others stay the source's; both videos
        through the same lossless encoder), and
        ``others_leak``: their output opening vs their source opening (1 = unchanged).
    """
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
            a = measure_opening(out[quiet], boxes[n[quiet], f])
            b = measure_opening(src[n[quiet]], boxes[n[quiet], f])
            diffs.append(float(np.abs(a - b).max()))
            leaks.append(pearson(a, b))
    return {**report, "others_max_diff": max(diffs), "others_leak": float(np.mean(leaks))}


def run(args: argparse.Namespace) -> dict:
    """Render (or reuse) the scenes, measure speaker choice on each, and optionally dub them."""
    if args.scenes < 1:
        raise ValueError(f"--scenes must be >= 1, got {args.scenes}")
    if args.model is not None and not args.model.is_dir():
        raise FileNotFoundError(f"--model {args.model}: no such pipeline folder")
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
    return report


def _dub_all(args: argparse.Namespace, videos: list[Path]) -> dict:
    """Dub each scene's speaker with the next scene's soundtrack; sync and leak per scene and on average."""
    pipe = LipSyncPipeline.from_pretrained(args.model, faces=LandmarksFileFaces(), generated_faces=None)
    rows = []
    for i, video in enumerate(tqdm(videos, desc="dubbing", unit="scene")):
        wave, rate = read_audio(videos[(i + 1) % len(videos)], sample_rate=None, mono=False)
        speech = write_wav(args.out / f"speech_{i:05d}.wav", wave, rate)
        rows.append(dub_scores(video, speech, pipe, args.out / f"dubbed_{i:05d}.mp4"))
    summary = {k: float(np.mean([r[k] for r in rows])) for k in ("sync", "copy_sync", "others_leak")}
    summary["others_max_diff"] = max(r["others_max_diff"] for r in rows)
    print(json.dumps({"model": str(args.model), **summary}, indent=1))
    return {"model": str(args.model), **summary, "per_scene": rows}


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog=PROG, description="Render multi-person scenes and measure speaker choice.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000, help="held-out seed (tuning used 0)")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--backend", choices=["landmarks-file", "mediapipe"], default="landmarks-file")
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=None,
                        help="a pipeline folder: also dub each scene's speaker with the next scene's "
                             "soundtrack and report sync and the leak into the others")
    args = parser.parse_args(argv)
    with user_errors(PROG):
        run(args)


if __name__ == "__main__":
    main()
