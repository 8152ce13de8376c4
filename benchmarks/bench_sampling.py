"""Fast sampling against lip sync: steps x solver x guidance interval x overlap on a trained model (issue 14).

    python benchmarks/bench_sampling.py                     # shipped model, 5 rows (make bench); resumes
    python benchmarks/bench_sampling.py --rows all --jobs 2 # every row of ROWS
    python benchmarks/bench_sampling.py --model outputs/demo/model --name sampling_demo --rows all
    python benchmarks/bench_sampling.py --report-only ...   # the table from the cached dubs only

Every row dubs the same held-out pairs of the synthetic world (each held-out identity A driven by the next
one's speech B; rendered with the demo's held-out seed) with each sampling seed (``options.seed``: the
initial noise and the reference frame), and scores on the output pixels:

- **sync** / **leak**: as the demo (correlation of the measured mouth opening with B's / with A's own);
- **SSIM in the edit region**: against the true cross-driven video (A's identity, head motion and blinks
  re-rendered with the mouth B's speech opens, :func:`lipsync.synth.corpus.redubbed_truth`), inside the
  pipeline's paste region per frame;
- **seam ratio**: temporal change in the edit region across segment boundaries over that inside segments
  (:func:`lipsync.evaluate.frame_metrics.seam_ratio`; about 1 = invisible seams), with the truth's own ratio beside.

Cost per row, counted at **full size** the way ``bench_infer.py`` counts the paper's 477 TFLOP per second:
network passes per 16-frame segment (NFE, with the unconditional pass only where guidance runs) x
segments per second of 25 fps output (25 / (16 - overlap)) x one full-size net pass (7.64 TFLOP); the total
adds the VAE encode + decode per segment and Whisper (the paper's settings: 531). Per-call FLOPs come from
``bench_results/infer.json`` (``bench_infer.py``), counted again on meta tensors when it is missing.

Noise: each row is compared with ``paper`` pair by pair and seed by seed (paired differences, their mean
and standard error), and the ``paper`` row's own seed-to-seed difference is the run-to-run spread. A row
"keeps sync" when its mean sync is no lower than paper's by more than max(2 SE, that spread).

Model: ``--model``, default the shipped model (``models/showcase``) when the repo has one, else the
demo's (``outputs/demo/model``; ``make demo`` trains it). Results: bench_results/sampling.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from lipsync.benchresults import RESULTS, ROOT, Results, in_checkout

SHIPPED, DEMO_MODEL = ROOT / "models" / "showcase", ROOT / "outputs" / "demo" / "model"
FPS, SEGMENT = 25.0, 16
BUDGET = 150  # TFLOP per output second (net, full size): the target for the fast preset
MID = (0.25, 5.0)  # guidance interval tried: the middle of the trajectory (Kynkaanniemi et al. 2024)
HIGH = (1.0, math.inf)  # guidance only early (large sigma)
CORE = (1.0, 5.0)  # the middle's upper part: two of 8 Karras steps from sigma 20

# name -> InferenceOptions overrides (on the paper preset), most informative first (the report is rewritten
# after every finished row, so a cut-short sweep still reports). Budget: 150 TFLOP/s at full size.
ROWS: dict[str, dict] = {
    "paper": {},
    "fast": {"preset": "fast"},
    "dpmpp_2m_6_mid_ov0": {"sampler": "dpmpp_2m", "num_steps": 6, "guidance_interval": MID, "overlap": 0},
    "dpmpp_2m_6_mid": {"sampler": "dpmpp_2m", "num_steps": 6, "guidance_interval": MID},
    "dpmpp_2m_6": {"sampler": "dpmpp_2m", "num_steps": 6},
    "euler_8": {"num_steps": 8},
    "dpmpp_2m_8": {"sampler": "dpmpp_2m", "num_steps": 8},
    "heun_5": {"sampler": "heun", "num_steps": 5},
    "dpmpp_2m_4": {"sampler": "dpmpp_2m", "num_steps": 4},
    "dpmpp_2m_6_high": {"sampler": "dpmpp_2m", "num_steps": 6, "guidance_interval": HIGH},
    "euler_15_mid": {"guidance_interval": MID},
    "dpmpp_2m_6_mid_ov2": {"sampler": "dpmpp_2m", "num_steps": 6, "guidance_interval": MID, "overlap": 2},
    "euler_6_mid_ov2": {"num_steps": 6, "guidance_interval": MID, "overlap": 2},
    "euler_8_core_ov2": {"num_steps": 8, "guidance_interval": CORE, "overlap": 2},
    "euler_6": {"num_steps": 6},
}

# `make bench`: paper, fast, and one factor away from fast each (guidance everywhere + overlap 4; the solver).
DEFAULT_ROWS = ["paper", "fast", "euler_6", "dpmpp_2m_6_mid_ov2", "heun_5"]


# --- inputs -----------------------------------------------------------------------------------------
def default_model() -> Path:
    """The shipped model, else the demo's; with neither, train the demo's (``make demo``, ~15 min)."""
    for folder in (SHIPPED, DEMO_MODEL):
        if (folder / "config.json").exists():
            return folder
    print(f"bench_sampling: no trained model at {SHIPPED} or {DEMO_MODEL}: running the demo to train one",
          flush=True)
    subprocess.run([sys.executable, "-m", "lipsync.demo", f"out={DEMO_MODEL.parent}"], check=True, cwd=ROOT)
    return DEMO_MODEL


def heldout_pairs(folder: Path, videos: int) -> list[tuple[Path, Path, Path]]:
    """(A, B, B's 16 kHz wav) for the demo's held-out identities (seed 1000), rendered once."""
    from lipsync.demo import driving_wav, pairs
    from lipsync.synth.corpus import render_corpus

    render_corpus(folder, videos, 8.0, 128, seed=1000, workers=1)
    return [(a, b, driving_wav(b, folder)) for a, b in pairs(folder)]


def _truth_frames(a: Path, b: Path, audio: np.ndarray) -> np.ndarray:
    """A re-rendered with B's mouth (cached beside A: the same for every row and seed)."""
    from lipsync.synth.corpus import redubbed_truth

    cached = a.parent / f"{a.stem}__{b.stem}.truth.npz"
    if not cached.exists():
        np.savez_compressed(cached, frames=redubbed_truth(a, audio).frames)
    with np.load(cached) as data:
        return data["frames"]


# --- one dub, scored -----------------------------------------------------------------------------------
def score_dub(pipe, opts, a: Path, b: Path, wav: Path, output: Path) -> dict:
    """Dub A with B's speech under ``opts`` and score the pixels (cached beside the video as JSON)."""
    from lipsync import media
    from lipsync.infer.segments import plan_segments, segment_boundaries
    from lipsync.synth.corpus import load_truth
    from lipsync.evaluate.frame_metrics import region_ssim, seam_ratio
    from lipsync.synth.measure import leak_score, sync_score

    cached = output.with_suffix(".json")
    if cached.exists():
        return json.loads(cached.read_text())
    result = pipe(a, wav, output, options=opts)
    frames, (audio, _) = media.read_frames(output), media.read_audio(wav)
    truth, target = load_truth(a), _truth_frames(a, b, audio)
    n = min(len(frames), len(truth.opening))
    regions = result.paste_region[:n]
    boundary = segment_boundaries(plan_segments(n, opts.segment_length, opts.overlap), n)
    row = {"sync": sync_score(frames[:n], truth.boxes[:n], audio),
           "leak": leak_score(frames[:n], truth.boxes[:n], truth.opening[:n]),
           "ssim": float(region_ssim(frames[:n], target[:n], regions).mean()),
           "seam": seam_ratio(frames[:n], regions, boundary),
           "seam_truth": seam_ratio(target[:n], regions, boundary),
           "generate_s_per_s": result.timings["generate"] / (n / float(result.fps))}
    with media.atomic_path(cached) as tmp:
        tmp.write_text(json.dumps(row))
    return row


# --- cost at full size -------------------------------------------------------------------------------------
def per_call_tflop() -> dict[str, float]:
    saved = RESULTS / "infer.json"
    if saved.exists():
        return json.loads(saved.read_text())["flops"]["per_call_tflop"]
    from bench_infer import count_flops  # this script's folder is on sys.path (run as a script)

    return count_flops()["per_call_tflop"]


def cost(opts, sigma_range: tuple[float, float], guided_passes: int, calls: dict[str, float]) -> dict:
    """NFE per segment and full-size TFLOP per second of 25 fps output for the resolved options."""
    from lipsync.sampling import evaluation_sigmas, karras_sigmas, network_passes

    sigmas = evaluation_sigmas(opts.sampler, karras_sigmas(opts.num_steps, *sigma_range, opts.rho).double())
    passes = network_passes(sigmas, guided_passes, opts.guidance_interval)
    segments_per_s = FPS / (opts.segment_length - opts.overlap)
    net = segments_per_s * passes * calls["lipsync_net_pass_16f"]
    vae = segments_per_s * (calls["vae_encode_16f"] + calls["vae_decode_16f"])
    return {"nfe": len(sigmas), "passes_per_segment": passes, "tflop_net": net,
            "tflop_total": net + vae + calls["whisper_tiny_30s"] / 30}


# --- the sweep -------------------------------------------------------------------------------------------
_WORKER: dict = {}


def _load(model: Path) -> None:
    """Per process: one thread, one pipeline (true landmarks as the face backend, as the demo)."""
    import torch

    from lipsync.data.faces import LandmarksFileFaces
    from lipsync.infer.pipeline import LipSyncPipeline

    torch.set_num_threads(1)
    _WORKER["pipe"] = LipSyncPipeline.from_pretrained(model, faces=LandmarksFileFaces(), generated_faces=None)


def option_key(opts) -> str:
    """Short stable key of the sampling options a row resolves to (a changed preset is a new row)."""
    import hashlib

    text = repr([getattr(opts, k) for k in ("sampler", "num_steps", "guidance_interval", "overlap",
                                            "segment_length", "rho")])
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _dub(task: tuple) -> tuple[str, str, dict]:
    name, overrides, seed, a, b, wav, out = task
    from lipsync.infer.pipeline import InferenceOptions

    opts = InferenceOptions(**{**overrides, "seed": seed, "progress": False}).resolved()
    folder = out / "rows" / option_key(opts) / f"seed{seed}"  # cached per resolved options, not per name
    folder.mkdir(parents=True, exist_ok=True)
    return name, f"{a.stem}/{seed}", score_dub(_WORKER["pipe"], opts, a, b, wav, folder / f"{a.stem}__{b.stem}.mp4")


def _cached(task: tuple) -> bool:
    from lipsync.infer.pipeline import InferenceOptions

    name, overrides, seed, a, b, wav, out = task
    opts = InferenceOptions(**overrides).resolved()
    return (out / "rows" / option_key(opts) / f"seed{seed}" / f"{a.stem}__{b.stem}.json").exists()


def run_rows(names: list[str], model: Path, pairs, seeds: list[int], out: Path, jobs: int, log, done,
             report_only: bool = False) -> None:
    """Dub every (row, seed, pair) on ``jobs`` processes; ``done(name, scores)`` as each row completes.
    ``report_only``: only rows whose every dub is cached, nothing dubbed."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    tasks = [(name, ROWS[name], seed, a, b, wav, out) for name in names for seed in seeds for a, b, wav in pairs]
    if report_only:
        incomplete = {t[0] for t in tasks if not _cached(t)}
        tasks, jobs = [t for t in tasks if t[0] not in incomplete], 1
        log(f"report only; rows with uncached dubs left out: {sorted(incomplete)}")
    scores: dict[str, dict] = {name: {} for name in names}

    def collect(name: str, key: str, row: dict) -> None:
        scores[name][key] = row
        log(f"{name} {key}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
        if len(scores[name]) == len(seeds) * len(pairs):
            done(name, scores[name])

    if jobs == 1:  # in this process, with the pipeline main() loaded
        for task in tasks:
            collect(*_dub(task))
        return
    with ProcessPoolExecutor(jobs, multiprocessing.get_context("spawn"), _load, (model,)) as pool:
        for future in as_completed([pool.submit(_dub, t) for t in tasks]):
            collect(*future.result())


def summarize(rows: dict[str, dict], seeds: list[int]) -> dict[str, dict]:
    """Per row: means and spreads of every metric, and sync paired against ``paper``."""
    paper = rows["paper"]["scores"]
    seed_means = {s: np.mean([v["sync"] for k, v in paper.items() if k.endswith(f"/{s}")]) for s in seeds}
    spread = float(np.ptp(list(seed_means.values()))) if len(seeds) > 1 else float("nan")
    out = {}
    for name, row in rows.items():
        sc = row["scores"]
        keys = sorted(set(sc) & set(paper))
        delta = np.array([sc[k]["sync"] - paper[k]["sync"] for k in keys])
        se = float(delta.std(ddof=1) / math.sqrt(len(delta))) if len(delta) > 1 else float("nan")
        by_seed = [np.mean([v["sync"] for k, v in sc.items() if k.endswith(f"/{s}")]) for s in seeds]
        stats = {m: (float(np.mean([v[m] for v in sc.values()])), float(np.std([v[m] for v in sc.values()])))
                 for m in ("sync", "leak", "ssim", "seam", "seam_truth", "generate_s_per_s")}
        paired = name == "paper" or delta.mean() >= -2 * se
        out[name] = {**row["cost"], "options": row["options"], "metrics": stats,
                     "sync_by_seed": [float(x) for x in by_seed], "sync_delta_vs_paper": float(delta.mean()),
                     "sync_delta_se": se, "keeps_sync": bool(paired),
                     "within_seed_spread": bool(name == "paper" or delta.mean() >= -spread), "dubs": len(sc)}
    out["_noise"] = {"paper_seed_spread": spread,
                     "criterion": "keeps sync: the paired mean difference to paper (same pairs, same seeds) is "
                                  "no lower than -2 standard errors; within spread: no lower than minus the paper "
                                  "row's own seed-to-seed difference"}
    return out


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {k: v for k, v in summary.items() if not k.startswith("_")}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    colours = {"euler": "tab:blue", "heun": "tab:orange", "dpmpp_2m": "tab:green"}
    for j, (metric, label) in enumerate([("sync", "held-out sync"), ("leak", "leak"),
                                         ("ssim", "SSIM in the edit region")]):
        for i, (x, xlabel) in enumerate([("passes_per_segment", "network passes per segment (NFE x CFG)"),
                                         ("tflop_net", "full-size TFLOP per output second (net)")]):
            ax = axes[i, j]
            for name, r in rows.items():
                mean, sd = r["metrics"][metric]
                marker = "*" if name in ("paper", "fast") else ("s" if r["options"]["overlap"] != 4 else "o")
                ax.errorbar(r[x], mean, yerr=sd / math.sqrt(max(r["dubs"], 1)), fmt=marker, ms=10 if marker == "*"
                            else 6, color=colours.get(r["options"]["sampler"], "k"), capsize=3)
                ax.annotate(name, (r[x], mean), fontsize=7, xytext=(3, 3), textcoords="offset points")
            paper = rows.get("paper")
            if paper:
                ax.axhline(paper["metrics"][metric][0], color="tab:blue", lw=0.8, alpha=0.6)
            if x == "tflop_net":
                ax.axvline(BUDGET, color="grey", ls="--", lw=1)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    fig.suptitle("sampling cost vs quality (blue Euler, orange Heun, green DPM-Solver++(2M); squares: less "
                 "overlap; bars: standard error over pairs x seeds; dashed: 150 TFLOP/s)")
    fig.tight_layout()
    from lipsync.media import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def write_report(summary: dict, meta: dict, writer: Results, name: str = "sampling") -> None:
    writer.json(RESULTS / f"{name}.json", {"meta": meta, "rows": summary})
    rows = {k: v for k, v in summary.items() if not k.startswith("_")}
    lines = ["# Sampling sweep (`python benchmarks/bench_sampling.py`)", "",
             f"Model `{meta['model']}` (guidance scale {meta['guidance']}, sigma {meta['sigma_range'][0]:g} to "
             f"{meta['sigma_range'][1]:g}); {meta['pairs']} held-out pairs x seeds {meta['seeds']} = "
             f"{meta['pairs'] * len(meta['seeds'])} dubs per row, the same in every row. "
             f"{meta['jobs']} dubbing process(es).", "",
             "| row | sampler | steps | guidance interval | overlap | NFE | passes / segment | TFLOP/s net "
             "(total) | sync | Δ sync vs paper (± SE) | keeps sync (paired) / within seed spread | leak | "
             "SSIM (edit region) | seam ratio "
             "(truth) | CPU s per s |", "|" + "---|" * 15]
    for row, r in sorted(rows.items(), key=lambda kv: -kv[1]["tflop_net"]):
        o, m = r["options"], r["metrics"]
        lo, hi = o["guidance_interval"]
        interval = "all" if lo == 0 and math.isinf(hi) else f"({lo:g}, {hi:g}]"
        lines.append(
            f"| {'**' + row + '**' if row in ('paper', 'fast') else row} | {o['sampler']} | {o['num_steps']} | "
            f"{interval} | {o['overlap']} | {r['nfe']} | {r['passes_per_segment']} | {r['tflop_net']:.0f} "
            f"({r['tflop_total']:.0f}) | {m['sync'][0]:.3f} ± {m['sync'][1]:.2f} | "
            f"{r['sync_delta_vs_paper']:+.3f} ± {r['sync_delta_se']:.3f} | {'yes' if r['keeps_sync'] else 'no'} / "
            f"{'yes' if r['within_seed_spread'] else 'no'} | "
            f"{m['leak'][0]:.2f} | {m['ssim'][0]:.3f} | {m['seam'][0]:.2f} ({m['seam_truth'][0]:.2f}) | "
            f"{m['generate_s_per_s'][0]:.1f} |")
    noise = summary["_noise"]
    cheapest = min((r for r in rows.values() if r["keeps_sync"]), key=lambda r: r["tflop_net"])
    cheapest_name = next(k for k, v in rows.items() if v is cheapest)
    in_budget = [k for k, v in rows.items() if v["tflop_net"] <= BUDGET]
    best = max(in_budget, key=lambda k: rows[k]["metrics"]["sync"][0]) if in_budget else None
    lines += ["", f"Run-to-run spread: the paper row's mean sync differs by {noise['paper_seed_spread']:.3f} "
              f"between its two sampling seeds. {noise['criterion']}. Cheapest row that keeps sync: "
              f"**{cheapest_name}** "
              f"at {cheapest['tflop_net']:.0f} TFLOP per output second (net; {cheapest['tflop_total']:.0f} "
              f"with VAE and Whisper)."
              + (f" Best sync within {BUDGET} TFLOP/s: **{best}** ({rows[best]['metrics']['sync'][0]:.3f}, "
                 f"{rows[best]['sync_delta_vs_paper']:+.3f} ± {rows[best]['sync_delta_se']:.3f} vs paper, "
                 f"{rows[best]['tflop_net']:.0f} TFLOP/s)." if best else ""), "",
              "sync / leak: correlation of the measured mouth opening with the driving speech's / the source's "
              "own; SSIM: against the true cross-driven render inside the paste region; seam ratio: temporal "
              "change across segment boundaries / inside segments in the edit region (1 = no seam), the "
              "true render's own ratio in brackets; CPU s per s: the tiny model's generate phase on this "
              "machine (shared cores; indicative only).", "", f"![sampling sweep]({name}.png)", ""]
    writer.markdown(RESULTS / f"{name}.md", "\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    writer = Results()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None,
                        help="dubs and their scores, cached (default outputs/sampling_sweep/<model>)")
    parser.add_argument("--rows", nargs="+", default=DEFAULT_ROWS, choices=[*ROWS, "all"],
                        help="rows of ROWS to run (default: one factor each away from fast; 'all': every row)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--pairs", type=int, default=4, help="held-out identities (each is one pair)")
    parser.add_argument("--jobs", type=int, default=1, help="dubbing processes (one thread each)")
    parser.add_argument("--name", default="sampling", help="results: bench_results/NAME.{json,md,png}")
    parser.add_argument("--report-only", action="store_true",
                        help="dub nothing: report the rows whose dubs are all cached in --out")
    args = parser.parse_args()
    if "all" in args.rows:
        args.rows = list(ROWS)
    if "paper" not in args.rows:
        args.rows.insert(0, "paper")
    from lipsync import media
    from lipsync.infer.pipeline import InferenceOptions

    model = args.model or default_model()
    args.out = args.out or ROOT / "outputs" / "sampling_sweep" / f"{model.resolve().parent.name}_{model.name}"
    args.out.mkdir(parents=True, exist_ok=True)
    logfile = (args.out / "sweep.log").open("a")

    def log(text: str) -> None:
        print(text, flush=True)
        logfile.write(text + "\n")
        logfile.flush()

    pairs = heldout_pairs(args.out / "heldout", args.pairs)
    for a, b, wav in pairs:  # the truth renders once, here, not in every worker
        _truth_frames(a, b, media.read_audio(wav)[0])
    _load(model)  # the model's own sampling range and guidance, as every worker's pipeline reads them
    base = InferenceOptions()
    sigma_range, guidance = _WORKER["pipe"].sigma_range(base), _WORKER["pipe"].guidance_scale(base)
    calls = per_call_tflop()
    rows: dict[str, dict] = {}
    meta = {"model": in_checkout(model), "guidance": guidance, "sigma_range": sigma_range, "seeds": args.seeds,
            "pairs": len(pairs), "jobs": args.jobs, "per_call_tflop": calls}

    def done(name: str, scores: dict) -> None:
        opts = InferenceOptions(**ROWS[name]).resolved()
        rows[name] = {"options": {k: getattr(opts, k) for k in ("sampler", "num_steps", "guidance_interval",
                                                                "overlap")},
                      "cost": cost(opts, sigma_range, 2 if guidance != 1 else 1, calls), "scores": scores}
        if "paper" in rows:
            summary = summarize({k: rows[k] for k in args.rows if k in rows}, args.seeds)
            plot(summary, RESULTS / f"{args.name}.png")
            write_report(summary, meta, writer, args.name)

    run_rows(args.rows, model, pairs, args.seeds, args.out, args.jobs, log, done, args.report_only)


if __name__ == "__main__":
    main()
