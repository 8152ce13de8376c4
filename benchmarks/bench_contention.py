"""Dub-stage speed on an idle machine and with one competing CPU-bound process (issue 18, item 5).

    python benchmarks/bench_contention.py [--model models/showcase] [--frames 16] [--steps 15] [--repeats 2]

Dubs one synthetic held-out clip (``frames`` frames: 16 = one segment) with its own speech, in a fresh
process per measurement, under two thread policies:

- ``lipsync``: what every lipsync CLI does (:func:`lipsync.cli.configure_threads`): one thread per core
  this process may use, ``OMP_WAIT_POLICY=PASSIVE`` before torch loads;
- ``torch default``: what the CLIs did before issue 18: torch imported first with OpenMP's default wait
  policy, one thread per online core.

and two loads: ``idle`` (nothing added) and ``contended`` (one extra ``while True: pass`` process for the
whole measurement). The four cells are measured in turn, ``repeats`` rounds, and each cell reports its
median: on a shared machine the other users' load drifts, and interleaving spreads it over all cells.
The load average is recorded before each run ("idle" means "nothing added by this benchmark").
Results: ``bench_results/contention.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lipsync.benchresults import RESULTS, ROOT, Results, in_checkout

POLICIES = ("lipsync", "torch default")
LOADS = ("idle", "contended")


def worker(policy: str, model: str, video: str, wav: str, steps: int) -> None:
    """One measurement in this (fresh) process: load the model, dub once, print the timings as JSON."""
    if policy == "torch default":
        os.environ.pop("OMP_WAIT_POLICY", None)
        import torch  # before lipsync: OpenMP starts with its default (spinning) wait policy

        torch.set_num_threads(os.cpu_count() or 1)
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "PASSIVE" if policy == "lipsync" else None)
    from lipsync.cli import configure_threads

    if policy == "lipsync":
        configure_threads()
    import torch

    from lipsync.data.faces import LandmarksFileFaces
    from lipsync.infer.pipeline import LipSyncPipeline, options_from_mapping

    pipe = LipSyncPipeline.from_pretrained(model, faces=LandmarksFileFaces(), generated_faces=None)
    opts = options_from_mapping({"num_steps": steps, "seed": 0, "progress": False})
    with tempfile.TemporaryDirectory() as tmp:
        result = pipe(video, wav, Path(tmp) / "out.mp4", options=opts)
    print(json.dumps({"threads": torch.get_num_threads(), "wait_policy": wait_policy,
                      "frames": result.num_frames, "generate_s": result.timings["generate"],
                      "total_s": result.seconds}))


def measure(policy: str, load: str, model: Path, video: Path, wav: Path, steps: int) -> dict:
    """Run :func:`worker` in a fresh process, with a competing busy loop when ``load`` is contended."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = f"{ROOT / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}"
    load_before = [round(x, 2) for x in os.getloadavg()]
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load == "contended" else None
    try:
        done = subprocess.run([sys.executable, __file__, "--worker", policy, str(model), str(video), str(wav),
                               str(steps)], env=env, capture_output=True, text=True, check=False)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    if done.returncode:
        raise RuntimeError(f"worker {policy}/{load} failed:\n{done.stderr[-2000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return {"policy": policy, "load": load, "load_average_before": load_before, **row}


def clip(folder: Path, frames: int) -> tuple[Path, Path]:
    """One held-out-style synthetic clip and its own speech cut to ``frames`` frames."""
    from lipsync import media
    from lipsync.synth.corpus import render_corpus

    render_corpus(folder, 1, seconds=max(frames / media.MODEL_FPS, 1.0), size=128, seed=1000, workers=1,
                  progress=False)
    video = folder / "synth_00000.mp4"
    audio, rate = media.read_audio(video, sample_rate=media.MODEL_SAMPLE_RATE)
    wav = media.write_wav(folder / "speech.wav", audio[: int(frames / media.MODEL_FPS * rate)], rate)
    return video, wav


def medians(rows: list[dict]) -> dict[tuple[str, str], float]:
    """Median generate seconds per (policy, load) cell."""
    cells: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        cells.setdefault((r["policy"], r["load"]), []).append(r["generate_s"])
    return {k: float(statistics.median(v)) for k, v in cells.items()}


def table(rows: list[dict]) -> str:
    med = medians(rows)
    first = {r["policy"]: r for r in rows}
    lines = ["| thread policy | threads | wait policy | idle: generate s (median) | contended: generate s "
             "(median) | slowdown | all runs idle / contended |", "|---|---|---|---|---|---|---|"]
    for policy in POLICIES:
        if (policy, "idle") not in med or (policy, "contended") not in med:
            continue
        runs = {load: " ".join(f"{r['generate_s']:.0f}" for r in rows if (r["policy"], r["load"]) == (policy, load))
                for load in LOADS}
        lines.append(f"| {policy} | {first[policy]['threads']} | {first[policy]['wait_policy'] or 'default'} | "
                     f"{med[policy, 'idle']:.1f} | {med[policy, 'contended']:.1f} | "
                     f"{med[policy, 'contended'] / med[policy, 'idle']:.2f}x | {runs['idle']} / {runs['contended']} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
        return
    results = Results()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "showcase", help="pipeline folder")
    parser.add_argument("--frames", type=int, default=16, help="frames dubbed (16 = one segment)")
    parser.add_argument("--steps", type=int, default=15, help="Euler steps (the demo's 15)")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the four cells (medians reported)")
    parser.add_argument("--out", type=Path, default=RESULTS / "contention")
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        sys.exit(f"bench_contention: error: {args.model} is not a pipeline folder (--model)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        video, wav = clip(Path(tmp), args.frames)
        for _ in range(args.repeats):
            for policy in args.policies:
                for load in LOADS:
                    rows.append(measure(policy, load, args.model, video, wav, args.steps))
                    print(json.dumps(rows[-1]), flush=True)
    result = {"model": in_checkout(args.model), "frames": args.frames, "steps": args.steps, "cores": os.cpu_count(),
              "usable_cores": len(os.sched_getaffinity(0)), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
              "medians": {f"{p}/{load}": v for (p, load), v in medians(rows).items()}, "rows": rows}
    results.json(args.out.with_suffix(".json"), result)
    md = (f"# Dub stage under contention\n\n{args.frames} frames of a synthetic clip, {args.steps} Euler steps, "
          f"model `{args.model.name}`, {result['usable_cores']} usable cores; `contended` adds one busy-loop "
          f"process; {args.repeats} interleaved rounds. 1-minute load average before each run, in order: "
          + ", ".join(f"{r['policy']}/{r['load']} {r['load_average_before'][0]}" for r in rows)
          + f" (the machine is shared: 'idle' = nothing added by the benchmark).\n\n{table(rows)}\n")
    results.markdown(args.out.with_suffix(".md"), md)
    print(md)


if __name__ == "__main__":
    main()
