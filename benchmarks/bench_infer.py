"""Inference cost: tiny model on CPU (speed, flat memory) and the full-size model's FLOPs (issue 5).

    python benchmarks/bench_infer.py                  # ~10 min on 2 shared cores
    python benchmarks/bench_infer.py --skip-speed     # only the memory runs and the FLOP count

1. Speed: the tiny pipeline (tests' size: UNet (32, 64), 32 px crops, space-to-depth codec, 1-layer
   Whisper; random weights, MediaPipe faces) dubs a 10 s real video (carphone played forward and
   backward, 29.97 fps, 176x144) with 10 s of real speech at the paper's sampling settings
   (15 Euler steps, CFG 3 as one batch of 2, 16-frame segments with 4 shared): seconds of wall time per
   second of output video, per phase.
2. Memory: the same with 10 s and 60 s inputs at 1 step (memory does not depend on the step count),
   each in a fresh process: peak RSS, and RSS growth over the generation phase.
3. FLOPs of the full-size model (SVD-xt UNet + audio layers + ID-Guider, SVD VAE, Whisper tiny) counted
   with ``torch.utils.flop_counter`` on meta tensors (no weights, no memory), per second of 25 fps output:
   the paper's accounting (25/12 segments x 15 steps x 2 passes x one UNet pass) and ours (plus VAE
   encode/decode per segment, the ID-Guider once, Whisper once; two-scale guidance as a variant).

Results: bench_results/infer.json and bench_results/infer.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from lipsync.benchresults import RESULTS, Results

PAPER_UNET_TFLOP = 7.2  # the paper's figure per UNet pass (issue 5)


# --- inputs ---------------------------------------------------------------------------------------
def make_inputs(folder: Path, seconds: float) -> tuple[Path, Path]:
    """Real face video and real speech, ``seconds`` long (carphone ping-pong, pyannote speech looped)."""
    from lipsync.assets import asset_path, ensure_assets
    from lipsync.infer.lengths import source_indices
    from lipsync.media import probe, read_audio, read_frames, write_video, write_wav

    ensure_assets(names=["sample.wav", "carphone_pristine.mp4"])
    fps = probe(asset_path("carphone_pristine.mp4")).fps
    frames = read_frames(asset_path("carphone_pristine.mp4"))
    n = int(round(seconds * float(fps)))
    video = write_video(
        folder / f"face_{seconds:g}s.mp4", (frames[i] for i in source_indices(len(frames), n, 0)), fps
    )
    speech, rate = read_audio(asset_path("sample.wav"), sample_rate=None, mono=False)
    speech = speech[:, 8 * rate :]  # the sample is quiet for 8 s, then speech to its end (30 s)
    reps = int(np.ceil(seconds * rate / speech.shape[1]))
    audio = write_wav(
        folder / f"speech_{seconds:g}s.wav", np.tile(speech, reps)[:, : int(seconds * rate)], rate
    )
    return video, audio


# --- one measured run (child process) ---------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(args: argparse.Namespace) -> None:
    """Run the pipeline once and print a JSON line with timings and memory."""
    import torch

    from lipsync.infer.pipeline import LipSyncPipeline

    torch.set_num_threads(args.threads)
    pipe = LipSyncPipeline.from_pretrained(args.ckpt, generated_faces=None)
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter(), _rss_mb()))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = pipe(
        args.video, args.audio, args.output, num_steps=args.steps, progress=False, detect_generated=False
    )
    done.set()
    sampler.join()
    end = time.perf_counter()
    gen_start = end - result.timings["generate"]
    during = [rss for t, rss in samples if t >= gen_start]
    early = [rss for t, rss in samples if gen_start <= t <= gen_start + 0.2 * result.timings["generate"]]
    print(
        json.dumps(
            {
                "frames": result.num_frames,
                "video_seconds": result.num_frames / float(result.fps),
                "steps": args.steps,
                "wall_seconds": result.seconds,
                "timings": result.timings,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rss_generate_start_mb": early[0] if early else None,
                "rss_generate_growth_mb": (max(during) - max(early)) if during and early else None,
            }
        )
    )


def measure(ckpt: Path, video: Path, audio: Path, steps: int, threads: int, out: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--ckpt",
        str(ckpt),
        "--video",
        str(video),
        "--audio",
        str(audio),
        "--output",
        str(out),
        "--steps",
        str(steps),
        "--threads",
        str(threads),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "GLOG_minloglevel": "2"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["seconds_per_video_second"] = row["wall_seconds"] / row["video_seconds"]
    row["generate_seconds_per_video_second"] = row["timings"]["generate"] / row["video_seconds"]
    return row


# --- CPU-side crop and paste at full HD --------------------------------------------------------------
def crop_paste_cost(repeats: int = 30) -> dict:
    """Milliseconds per 1920x1080 frame to cut the 320 px training crop and paste a result back (feathered).

    Users of other tools report the CPU-side crop/paste as a bottleneck; here only the face's rectangle
    is warped and blended, so the cost follows the face size, not the frame size.
    """
    from lipsync.data.faces import crop_square
    from lipsync.infer.paste import dilate_box, paste_back

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    crop = np.array([700.0, 200.0, 1300.0, 800.0])  # a 600 px face square
    box = dilate_box(np.array([820.0, 480.0, 1180.0, 760.0]), 0.1)  # the lower-face edit rectangle
    t0 = time.perf_counter()
    for _ in range(repeats):
        image = crop_square(frame, crop, 320)
    t1 = time.perf_counter()
    for _ in range(repeats):
        paste_back(frame, image.astype(np.float32), crop, [box], feather=40.0)
    t2 = time.perf_counter()
    return {"crop_ms": 1000 * (t1 - t0) / repeats, "paste_ms": 1000 * (t2 - t1) / repeats}


# --- FLOPs on meta tensors ----------------------------------------------------------------------------
def count_flops() -> dict:
    """Full-size per-call FLOPs (no weights: meta tensors) and the per-second-of-video totals."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lipsync.infer.checkpoint import build_component
    from lipsync.infer.presets import full_config

    comps = full_config()["components"]
    with torch.device("meta"):
        net, vae, whisper = (build_component(comps[k], k) for k in ("net", "vae", "audio_encoder"))
    for m in (net, vae, whisper):
        m.to("meta")  # a few buffers are made with legacy constructors that ignore the device context

    def flops(fn) -> float:
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops() / 1e12

    meta = dict(device="meta")
    T, S, h = 16, 320, 40
    ref = lambda: net.encode_reference(
        torch.empty(1, 3, S, S, **meta), torch.empty(1, 1, S, S, **meta)
    )  # noqa: E731
    id_feats = ref()
    cond = {
        "concat": torch.empty(1, T, 4, h, h, **meta),
        "audio": torch.empty(1, T, 10, 384, **meta),
        "id": id_feats,
    }
    unet = flops(lambda: net(torch.empty(1, T, 4, h, h, **meta), torch.zeros(1, **meta), cond))
    u = net.unet
    svd_only = flops(
        lambda: u(
            torch.empty(T, 8, h, h, **meta).unsqueeze(0),
            torch.zeros(1, **meta),
            torch.zeros(1, 1, 1024, **meta),
            torch.zeros(1, 3, **meta),
        )
    )
    enc = flops(lambda: vae.encode(torch.empty(1, T, 3, S, S, **meta)))
    dec = flops(lambda: vae.decode(torch.empty(1, T, 4, h, h, **meta)))
    id_guider = flops(ref)
    whisper_30s = flops(lambda: whisper.encoder(torch.empty(1, 80, 3000, **meta)))
    seg_per_s = 25 / 12  # 25 fps, 16-frame segments advancing by 12
    paper = seg_per_s * 15 * 2 * PAPER_UNET_TFLOP
    ours_unet = seg_per_s * 15 * 2 * unet
    ours = ours_unet + seg_per_s * (enc + dec) + whisper_30s / 30
    return {
        "per_call_tflop": {
            "lipsync_net_pass_16f": unet,
            "svd_unet_alone_16f": svd_only,
            "vae_encode_16f": enc,
            "vae_decode_16f": dec,
            "id_guider_once": id_guider,
            "whisper_tiny_30s": whisper_30s,
        },
        "params_millions": {
            "net": sum(p.numel() for p in net.parameters()) / 1e6,
            "id_guider": sum(p.numel() for p in net.id_guider.parameters()) / 1e6,
        },
        "tflop_per_video_second": {
            "paper_formula (25/12 x 15 x 2 x 7.2)": paper,
            "paper_formula_with_our_unet_count": ours_unet,
            "ours_total (unet + vae enc/dec per segment + whisper)": ours,
            "ours_two_scale_guidance (3 passes)": ours + ours_unet / 2,
            "ours_at_29.97_fps_source": ours * (30000 / 1001) / 25,
            "id_guider_per_video (once, not per step)": id_guider,
        },
    }


# --- report ---------------------------------------------------------------------------------------------
def write_report(results: dict, writer: Results) -> None:
    writer.json(RESULTS / "infer.json", results)
    lines = [
        "# Inference benchmark (`python benchmarks/bench_infer.py`)",
        "",
        f"Machine: {results['machine']}",
        "",
    ]
    if results.get("speed"):
        r = results["speed"]
        lines += [
            "## Tiny model on CPU, paper sampling settings (15 steps, CFG 3 batched, 16/4 segments)",
            "",
            "| input | frames | wall s | s per s of video | generate s per s | faces s | peak RSS MB |",
            "|---|---|---|---|---|---|---|",
            f"| {r['video_seconds']:.1f} s | {r['frames']} | {r['wall_seconds']:.1f} | "
            f"{r['seconds_per_video_second']:.2f} | {r['generate_seconds_per_video_second']:.2f} | "
            f"{r['timings']['faces']:.1f} | {r['peak_rss_mb']:.0f} |",
            "",
        ]
    lines += [
        "## Memory against length (tiny model, 1 step, fresh process each)",
        "",
        "| input | frames | wall s | s per s of video | peak RSS MB | RSS growth during generation MB |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["memory"]:
        lines.append(
            f"| {r['video_seconds']:.1f} s | {r['frames']} | {r['wall_seconds']:.1f} | "
            f"{r['seconds_per_video_second']:.2f} | {r['peak_rss_mb']:.0f} | "
            f"{r['rss_generate_growth_mb']:.1f} |"
        )
    c = results["crop_paste_1080p"]
    lines += ["", f"CPU-side work per 1920x1080 frame: crop {c['crop_ms']:.1f} ms, feathered paste "
              f"{c['paste_ms']:.1f} ms (one thread)."]
    f = results["flops"]
    lines += [
        "",
        "## Full-size model, TFLOP per second of 25 fps output (meta tensors, no weights)",
        "",
        "| accounting | TFLOP per s of video |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.1f} |" for k, v in f["tflop_per_video_second"].items()]
    lines += ["", "| call | TFLOP |", "|---|---|"] + [
        f"| {k} | {v:.3f} |" for k, v in f["per_call_tflop"].items()
    ]
    lines += [
        "",
        f"Parameters: net {f['params_millions']['net']:.0f} M, of which ID-Guider "
        f"{f['params_millions']['id_guider']:.1f} M.",
        "",
    ]
    writer.markdown(RESULTS / "infer.md", "\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    writer = Results()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", type=Path)
    parser.add_argument("--video", type=Path)
    parser.add_argument("--audio", type=Path)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads in the measured runs")
    parser.add_argument("--durations", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    import torch

    from lipsync.infer.pipeline import LipSyncPipeline
    from lipsync.infer.presets import tiny_config

    results: dict = {
        "machine": f"{os.cpu_count()} CPU cores (shared), torch {torch.__version__}, "
        f"{args.threads} intra-op thread(s)"
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.manual_seed(0)
        ckpt = LipSyncPipeline.from_config(tiny_config(resolution=32), generated_faces=None).save_pretrained(
            folder / "m"
        )
        inputs = {d: make_inputs(folder, d) for d in args.durations}
        if not args.skip_speed:
            video, audio = inputs[min(args.durations)]
            results["speed"] = measure(ckpt, video, audio, args.steps, args.threads, folder / "speed.mp4")
        results["memory"] = [
            measure(ckpt, *inputs[d], 1, args.threads, folder / f"mem_{d:g}.mp4") for d in args.durations
        ]
    results["crop_paste_1080p"] = crop_paste_cost()
    results["flops"] = count_flops()
    write_report(results, writer)


if __name__ == "__main__":
    main()
