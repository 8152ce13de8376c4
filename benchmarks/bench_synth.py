"""Synthetic world: render speed, and how well mouth opening is measured back from pixels.

    .venv/bin/python benchmarks/bench_synth.py [--videos 12] [--seconds 8]

Writes bench_results/synth.json and bench_results/synth.md. Measured-vs-true correlation on raw frames,
through the corpus's H.264 mp4, and on 64 px / 32 px face crops (JPEG 95, as `prepare` stores them);
a 64 px crop blurred with sigma 1.5 px (a blurry generated mouth); chance-level sync of copy-the-input
(A's frames, B's audio) and of noise frames.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import cv2
import numpy as np
from tqdm import tqdm

from lipsync import media
from lipsync.benchresults import RESULTS, Results, skip
from lipsync.data.faces import crop_square, square_around
from lipsync.stats import pearson
from lipsync.synth import corpus, measure, speech


def _crop_measure(frames: np.ndarray, boxes: np.ndarray, size: int, blur: float = 0.0) -> np.ndarray:
    """Measure on square face crops (1.5 x the box, as `prepare` cuts them), maybe blurred, as JPEG 95."""
    regions = np.stack([square_around(b, 1.5) for b in boxes])
    crops = [crop_square(f, r, size) for f, r in zip(frames, regions)]
    crops = [cv2.GaussianBlur(c, (0, 0), blur) if blur else c for c in crops]
    encoded = [cv2.imencode(".jpg", c, [cv2.IMWRITE_JPEG_QUALITY, 95])[1] for c in crops]
    crops = np.stack([cv2.imdecode(e, cv2.IMREAD_UNCHANGED) for e in encoded])
    return measure.measure_opening(crops, measure.boxes_in_crop(boxes, regions, size))


def run(num_videos: int, seconds: float, seed: int = 123) -> dict:
    corr: dict[str, list[float]] = {"raw": [], "mp4": [], "crop64": [], "crop64_blur1.5": [], "crop32": []}
    samples, render_s = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i in tqdm(range(num_videos), desc="render + measure"):
            start = time.perf_counter()
            s = corpus.synth_sample(seed, i, seconds, 128)
            render_s += time.perf_counter() - start
            v = s.video
            decoded = media.read_frames(corpus.write_sample(s, tmp, seed))
            corr["raw"].append(pearson(measure.measure_opening(v.frames, v.boxes), v.opening))
            corr["mp4"].append(pearson(measure.measure_opening(decoded, v.boxes), v.opening))
            corr["crop64"].append(pearson(_crop_measure(decoded, v.boxes, 64), v.opening))
            blurred = _crop_measure(decoded, v.boxes, 64, 1.5)
            corr["crop64_blur1.5"].append(pearson(blurred, v.opening))
            corr["crop32"].append(pearson(_crop_measure(decoded, v.boxes, 32), v.opening))
            samples.append(s)
    copy, noise = [], []
    for i, a in enumerate(samples):
        b = samples[(i + 1) % len(samples)]
        copy.append(measure.sync_score(a.video.frames, a.video.boxes, b.speech.wave))
        rng = np.random.default_rng(i)
        noise_frames = rng.integers(0, 256, a.video.frames.shape, dtype=np.uint8)
        noise.append(measure.sync_score(noise_frames, a.video.boxes, b.speech.wave))
    frames = num_videos * round(seconds * 25)
    stat = lambda x: {"mean": float(np.mean(x)), "min": float(np.min(x)), "max": float(np.max(x)),
                      "std": float(np.std(x))}
    return {"videos": num_videos, "seconds": seconds, "size": 128, "render_fps": frames / render_s,
            "measured_vs_true": {k: stat(v) for k, v in corr.items()},
            "copy_input_sync": stat(copy), "noise_sync": stat(noise),
            "opening_closed_fraction": float(np.mean([(s.video.opening == 0).mean() for s in samples]))}


def markdown(r: dict) -> str:
    lines = [f"# Synthetic world ({r['videos']} videos x {r['seconds']} s at {r['size']} px)", "",
             f"Render speed: {r['render_fps']:.0f} frames/s (one process, incl. espeak-ng).", "",
             "| measured vs true opening (Pearson) | mean | min |", "|---|---|---|"]
    lines += [f"| {k} | {v['mean']:.3f} | {v['min']:.3f} |" for k, v in r["measured_vs_true"].items()]
    lines += ["", "| chance sync (A's frames or noise vs B's audio) | mean | std | max abs |",
              "|---|---|---|---|"]
    for key in ("copy_input_sync", "noise_sync"):
        v = r[key]
        worst = max(abs(v["min"]), abs(v["max"]))
        lines.append(f"| {key} | {v['mean']:.3f} | {v['std']:.3f} | {worst:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    results = Results()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    if not speech.espeak_available():
        skip("espeak-ng not found (make system-deps installs it)")
    result = run(args.videos, args.seconds)
    results.json(RESULTS / "synth.json", result)
    results.markdown(RESULTS / "synth.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
