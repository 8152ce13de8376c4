"""The built-in default (`make demo`): lip sync learned and *measured* on two CPU cores.

    python -m lipsync.demo [out=outputs/demo] [train_minutes=11] [ablations=false]

Stages (each skipped when its output already exists, so an interrupted demo resumes):

1. render the synthetic talking-face world (``lipsync.synth``): training identities and held-out ones;
2. curate the training videos into shards (``lipsync.prepare``, true landmarks as the face backend,
   real Whisper tiny.en features cached in the shards);
3. train the tiny SayAnything model (``python -m lipsync.train experiment=demo``) for a time budget;
4. convert the last checkpoint into a pipeline folder (``outputs/demo/model``, what ``lipsync.infer
   ckpt=...`` takes) and dub every held-out identity A with another held-out clip's audio B;
5. measure on the pixels: *sync* = corr(measured mouth opening, the opening B's audio drives) and
   *leak* = corr(measured opening, A's original opening); write report.json / report.md, a side-by-side
   video, the opening plot and mask overlays.

``ablations=true`` (``make bench-sync``) trains one-factor variants on the same corpus and budget and
writes one table (SPEC section 7's claims that can be checked here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from lipsync import media
from lipsync.app.compare import side_by_side
from lipsync.cli import hydra_main
from lipsync.data.faces import LandmarksFileFaces
from lipsync.infer.convert import convert
from lipsync.infer.pipeline import LipSyncPipeline, options_from_mapping
from lipsync.models.whisper_convert import ensure_whisper_tiny_en
from lipsync.prepare.preview import preview
from lipsync.synth.corpus import load_truth, render_corpus
from lipsync.synth.measure import leak_score, measure_opening, plot_openings, sync_score
from lipsync.synth.speech import mouth_opening_from_audio
from lipsync.training.curves import plot_loss_curves


@dataclass
class PairScore:
    """Scores of one dubbed held-out video (A's face, B's speech)."""

    video: str
    audio: str
    sync: float
    leak: float
    copy_sync: float  # A's untouched frames scored against B's audio (the chance level)


def _stage(n: int, total: int, text: str) -> None:
    print(f"\n[{n}/{total}] {text}", flush=True)


def _run(cmd: list[str]) -> None:
    """Run a stage as a subprocess (own Hydra app), streaming its progress; fail loudly."""
    print("  $", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def render(cfg: DictConfig, out: Path) -> tuple[Path, Path]:
    """Training and held-out corpora (disjoint identities: different seeds)."""
    c = cfg.corpus
    train_dir, held_dir = out / "corpus" / "train", out / "corpus" / "heldout"
    render_corpus(train_dir, c.train_videos, c.seconds, c.size, seed=cfg.seed, workers=c.workers)
    render_corpus(held_dir, c.heldout_videos, c.seconds, c.size, seed=cfg.seed + 1000, workers=c.workers)
    return train_dir, held_dir


def prepare(cfg: DictConfig, corpus: Path, out: Path) -> Path:
    ensure_whisper_tiny_en()  # the real pretrained audio encoder, converted once from the packaged CTranslate2 model
    prepared = out / "prepared"
    _run([sys.executable, "-m", "lipsync.prepare", f"input={corpus}", f"output={prepared}",
          *cfg.prepare_overrides])
    return prepared / "shards"


def train(cfg: DictConfig, shards: Path, run_dir: Path, overrides: list[str]) -> Path:
    """Train for ``train_minutes`` (resumes from the run's last checkpoint); returns last.ckpt."""
    last = run_dir / "checkpoints" / "last.ckpt"
    done = run_dir / "DONE"
    if not done.exists():
        seconds = int(round(float(cfg.train_minutes) * 60))
        max_time = f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"  # Lightning's DD:HH:MM:SS
        _run([sys.executable, "-m", "lipsync.train", "experiment=demo", f"data.shards={shards}",
              f"paths.log_dir={run_dir.parent}", f"name={run_dir.name}",
              f"+trainer.max_time='{max_time}'", *cfg.train_overrides, *overrides])
        done.write_text(time.strftime("%Y-%m-%d %H:%M:%S"))
    if not last.exists():
        raise FileNotFoundError(f"training wrote no checkpoint at {last}")
    return last


def export(last: Path, model_dir: Path) -> Path:
    """The trained weights (EMA) as a pipeline folder that ``python -m lipsync.infer ckpt=`` accepts."""
    if not (model_dir / "config.json").exists() or model_dir.stat().st_mtime < last.stat().st_mtime:
        convert(last, model_dir)
    return model_dir


def pairs(held_dir: Path) -> list[tuple[Path, Path]]:
    """Each held-out video A with the next one's speech B (A's and B's audio are unrelated)."""
    videos = sorted(held_dir.glob("synth_*.mp4"))
    return [(a, videos[(i + 1) % len(videos)]) for i, a in enumerate(videos)]


def driving_wav(b: Path, folder: Path) -> Path:
    wav = folder / f"{b.stem}.wav"
    if not wav.exists():
        audio, rate = media.read_audio(b, sample_rate=media.MODEL_SAMPLE_RATE)
        media.write_wav(wav, audio, rate)
    return wav


def dub(cfg: DictConfig, model_dir: Path, held_dir: Path, results: Path, guidance: float) -> list[tuple]:
    """Dub every held-out pair; returns (A, B, wav, result) tuples."""
    pipe = LipSyncPipeline.from_pretrained(model_dir, faces=LandmarksFileFaces(), generated_faces=None)
    opts = options_from_mapping({**cfg.infer, "guidance_scale": guidance})
    done = []
    for a, b in pairs(held_dir):
        wav = driving_wav(b, results)
        result = results / f"{a.stem}__{b.stem}.mp4"
        if not result.exists():
            pipe(a, wav, result, options=opts)
        done.append((a, b, wav, result))
    return done


def score(done: list[tuple]) -> list[PairScore]:
    scores = []
    for a, b, wav, result in done:
        truth = load_truth(a)
        frames = media.read_frames(result)
        audio, _ = media.read_audio(wav)
        n = min(len(frames), len(truth.opening))
        src = media.read_frames(a, stop=n)
        scores.append(PairScore(a.stem, b.stem, sync_score(frames[:n], truth.boxes[:n], audio),
                                leak_score(frames[:n], truth.boxes[:n], truth.opening[:n]),
                                sync_score(src, truth.boxes[:n], audio)))
    return scores


def summarize(scores: list[PairScore]) -> dict[str, float]:
    keys = ("sync", "leak", "copy_sync")
    return {f"{k}_mean": float(np.mean([getattr(s, k) for s in scores])) for k in keys} | {
        f"{k}_std": float(np.std([getattr(s, k) for s in scores])) for k in keys}


def pictures(done: list[tuple], out: Path, shards: Path, runs: dict[str, Path]) -> dict[str, str]:
    """Side-by-side video, mouth-opening plot and mask overlays for the first pair; loss curves of ``runs``."""
    a, b, wav, result = done[0]
    truth = load_truth(a)
    frames = media.read_frames(result)
    n = min(len(frames), len(truth.opening))
    audio, _ = media.read_audio(wav)
    files = {"side_by_side": out / "side_by_side.mp4", "openings": out / "openings.png",
             "masks": out / "mask_overlays.png", "loss": out / "loss_curves.png"}
    side_by_side(a, result, wav, files["side_by_side"])
    plot_openings(mouth_opening_from_audio(audio, n), measure_opening(frames[:n], truth.boxes[:n]),
                  truth.opening[:n], files["openings"], title=f"{a.stem} driven by {b.stem}'s speech")
    preview(shards, files["masks"], mask="adaptive", frames=8)
    plot_loss_curves(runs, files["loss"], title="training loss (EMA-smoothed; raw values faint)")
    return {k: str(v.relative_to(out)) for k, v in files.items()}


def write_report(out: Path, report: dict[str, Any]) -> None:
    with media.atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    rows = ["| variant | trained as | steps | guidance | sync (mean ± sd) | leak (mean ± sd) | copy-input sync |",
            "|---|---|---|---|---|---|---|"]
    for name, v in report["variants"].items():
        s = v["summary"]
        rows.append(f"| {name} | {v.get('trained_as', name)} | {v['steps']:,} | {v['guidance']} | "
                    f"{s['sync_mean']:.2f} ± {s['sync_std']:.2f} | {s['leak_mean']:.2f} ± {s['leak_std']:.2f} | "
                    f"{s['copy_sync_mean']:.2f} |")
    text = "\n".join([
        "# lipsync demo report", "",
        f"{report['heldout_pairs']} held-out identities, each driven by another held-out clip's speech; "
        f"training budget {report['train_minutes']} min on this machine ({report['train_steps']} steps).", "",
        *rows, "",
        "sync = corr(measured mouth opening, opening the driving audio asks for); leak = corr(measured "
        "opening, the source video's own opening); copy-input = the untouched source scored for sync (chance).",
        "", *(f"- {k}: `{v}`" for k, v in report.get("files", {}).items()), ""])
    with media.atomic_path(out / "report.md") as tmp:
        tmp.write_text(text)


def _steps(run_dir: Path) -> int:
    import torch

    last = run_dir / "checkpoints" / "last.ckpt"
    return int(torch.load(last, map_location="cpu", weights_only=True).get("global_step", 0)) if last.exists() else 0


def run_variant(cfg: DictConfig, name: str, spec: DictConfig, shards: Path, held: Path, out: Path) -> dict:
    """Train (or reuse ``same_training_as``'s run), export, dub the held-out pairs and score them."""
    trained = spec.get("same_training_as") or name
    if trained not in cfg.variants:
        raise ValueError(f"variant {name}: same_training_as={trained} is not a variant")
    overrides = list(cfg.variants[trained].overrides)
    run_dir = out / "runs" / trained
    last = train(cfg, shards, run_dir, overrides)
    model_dir = export(last, out / "model" if trained == "full" else run_dir / "model")
    results = out / "results" if name == "full" else out / "runs" / name / "results"
    done = dub(cfg, model_dir, held, results, float(spec.guidance))
    scores = score(done)
    return {"guidance": float(spec.guidance), "overrides": overrides, "trained_as": trained,
            "steps": _steps(run_dir), "summary": summarize(scores), "pairs": [asdict(s) for s in scores],
            "_done": done}


@hydra_main("demo", "lipsync-demo")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except subprocess.CalledProcessError as err:  # the stage printed its own error above
        sys.exit(f"lipsync-demo: error: stage `{' '.join(map(str, err.cmd[1:4]))} ...` exited with status "
                 f"{err.returncode}; fix what it reported and run the same command again to resume")


def run(cfg: DictConfig) -> None:
    """Every stage of the demo (``main`` without the one-line error handling)."""
    out = Path(cfg.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = list(cfg.variants) if cfg.ablations else ["full"]
    total = 3 + len(names) + 1
    t0 = time.time()
    _stage(1, total, "rendering the synthetic talking-face world")
    train_dir, held_dir = render(cfg, out)
    _stage(2, total, "curating the training videos into shards (true landmarks, Whisper features cached)")
    shards = prepare(cfg, train_dir, out)
    variants = {}
    for i, name in enumerate(names):
        _stage(3 + i, total, f"training + dubbing held-out identities: {name} ({cfg.train_minutes} min budget)")
        variants[name] = run_variant(cfg, name, cfg.variants[name], shards, held_dir, out)
    _stage(total - 1, total, "pictures: side-by-side video, mouth-opening plot, mask overlays, loss curves")
    runs = {v["trained_as"]: out / "runs" / v["trained_as"] for v in variants.values()}
    files = pictures(variants["full"].pop("_done"), out, shards, runs)
    for v in variants.values():
        v.pop("_done", None)
    report = {"heldout_pairs": len(pairs(held_dir)), "train_minutes": cfg.train_minutes,
              "train_steps": variants["full"]["steps"], "variants": variants, "files": files,
              "wall_minutes": round((time.time() - t0) / 60, 1)}
    write_report(out, report)
    _stage(total, total, f"done in {report['wall_minutes']} min: {out / 'report.md'}")
    print((out / "report.md").read_text())


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
