"""The demo's stages in order, each skipped when its output already exists (an interrupted demo resumes).

The own model trains in a background process (:mod:`lipsync.demo.training`) while the shipped model is
dubbed and scored on the core it leaves free; then each variant is dubbed and scored
(:mod:`lipsync.demo.dubbing`), the own model's quality beside the resolution ceilings
(:mod:`lipsync.evaluate.quality`), and the pictures and the report are written.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from lipsync import media
from lipsync.assets import ROOT
from lipsync.clock import Stopwatch
from lipsync.demo.dubbing import (build_quality, dub, load_pipeline, own_audio_pairs, pairs, score, summarize,
                                  torch_threads)
from lipsync.demo.pictures import pictures
from lipsync.demo.report import write_report
from lipsync.demo.results import ShippedResult, VariantResult, on_every_pair
from lipsync.demo.training import (export, finish_training, prepare, render, start_training, stop_training,
                                   train, trained_steps)
from lipsync.evaluate.quality import Quality, region_key
from lipsync.infer.pipeline import options_from_mapping


def stage(n: int, total: int, text: str) -> None:
    """Announce stage ``n`` of ``total``."""
    print(f"\n[{n}/{total}] {text}", flush=True)


def stage_count(names: list[str]) -> int:
    """Render, prepare, the shipped model, one stage per variant, the own model's quality, the pictures."""
    return 5 + len(names)


def quality_seconds(cfg: DictConfig) -> float | None:
    """The first seconds of each self-reconstruction scored (``quality.seconds``; None: whole clips)."""
    return None if cfg.quality.seconds is None else float(cfg.quality.seconds)


def shipped_model(cfg: DictConfig) -> Path | None:
    """The committed showcase model folder (``shipped.model``, relative to the checkout), or None when off."""
    if not cfg.shipped.model:
        return None
    path = Path(str(cfg.shipped.model)).expanduser()
    path = path if path.is_absolute() else ROOT / path
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: the shipped model is missing (shipped.model); restore it with "
                                "`git checkout -- models/showcase`, or pass shipped.model=null to skip it")
    return path


def run_variant(cfg: DictConfig, name: str, spec: DictConfig, shards: Path, held: Path, out: Path,
                started: dict[str, subprocess.Popen | None] | None = None) -> VariantResult:
    """Train (or reuse ``same_training_as``'s run, or wait for its training in ``started``), export, dub the
    held-out pairs and score them."""
    trained = spec.get("same_training_as") or name
    if trained not in cfg.variants:
        raise ValueError(f"variant {name}: same_training_as={trained} is not a variant")
    overrides = list(cfg.variants[trained].overrides)
    run_dir = out / "runs" / trained
    if started is not None and trained in started:
        last = finish_training(started.pop(trained), run_dir)
    else:
        last = train(cfg, shards, run_dir, overrides)
    model_dir = export(last, out / "model" if trained == "full" else run_dir / "model")
    results = out / "results" if name == "full" else out / "runs" / name / "results"
    done = dub(cfg, load_pipeline(model_dir), pairs(held), results, float(spec.guidance))
    return VariantResult(guidance=float(spec.guidance), overrides=overrides, trained_as=trained,
                         steps=trained_steps(run_dir), pairs=score(done), done=done, model=model_dir)


def run_shipped(cfg: DictConfig, model_dir: Path, held: Path, out: Path, quality: Quality) -> ShippedResult:
    """Dub the first ``shipped.pairs`` held-out pairs (first ``shipped.seconds`` of speech) and the
    self-reconstructions with the shipped model; score both as the own model is scored. Runs while the own
    model trains, on the threads training leaves free (this process's count minus ``train_threads``, at
    least 1) and without progress bars (the training's own bar keeps the terminal)."""
    with torch_threads(max(1, torch.get_num_threads() - int(cfg.train_threads))):
        quiet = OmegaConf.merge(cfg, {"infer": {"progress": False}})
        return _run_shipped(quiet, model_dir, held, out, quality)


def _run_shipped(cfg: DictConfig, model_dir: Path, held: Path, out: Path, quality: Quality) -> ShippedResult:
    pipe = load_pipeline(model_dir)
    guidance = pipe.guidance_scale(options_from_mapping(dict(cfg.infer)))
    jobs = pairs(held)[: cfg.shipped.pairs]
    seconds = None if cfg.shipped.seconds is None else float(cfg.shipped.seconds)
    done = dub(cfg, pipe, jobs, out / "shipped" / "results", guidance, seconds)
    scores = score(done)
    selfs = dub(cfg, pipe, own_audio_pairs(cfg, held), out / "shipped" / "self", guidance,
                quality_seconds(cfg))
    ceilings = quality.ceilings(pipe.crop, pipe.mask)  # while the own model trains: only crop and mask matter
    return ShippedResult(model=str(model_dir), guidance=guidance, pairs_scored=len(jobs), seconds=seconds,
                         mask=repr(pipe.mask), region=region_key(pipe.crop, pipe.mask), ceilings=ceilings,
                         frames=[int(media.probe(d.result).num_frames) for d in done],
                         resolution=int(pipe.crop.resolution), pairs=scores,
                         quality=quality.of_videos({d.video: d.result for d in selfs}, pipe.crop, pipe.mask),
                         done=done)


def score_shipped(cfg: DictConfig, model_dir: Path, held: Path, out: Path, quality: Quality,
                  total: int) -> ShippedResult:
    """Stage 3: :func:`run_shipped`, announced and timed."""
    stage(3, total, f"the shipped model ({model_dir.name}) on the held-out pairs, while the own "
          f"model trains ({cfg.train_steps:,} steps)")
    clock = Stopwatch()
    shipped = run_shipped(cfg, model_dir, held, out, quality)
    print(f"  shipped model dubbed and scored in {clock.total / 60:.1f} min: sync "
          f"{shipped.summary['sync_mean']:.2f}, SSIM {shipped.quality['ssim']:.3f}", flush=True)
    return shipped


def train_and_dub(cfg: DictConfig, names: list[str], shards: Path, held: Path, out: Path,
                  shipped_dir: Path | None, clock: Stopwatch) -> tuple[Quality, ShippedResult | None,
                                                               dict[str, VariantResult]]:
    """Stages 3 to 3 + len(names): the shipped model scored while the first variant trains, then every
    variant trained (or waited for), dubbed and scored. A failure stops the background training."""
    total = stage_count(names)
    # The own model trains in a background process on `train_threads` threads (1: 0.59 s/step, where 2
    # threads with passive OpenMP waiting take 0.87); the shipped model is scored meanwhile on the other core.
    first = cfg.variants[names[0]].get("same_training_as") or names[0]
    started = {first: start_training(cfg, shards, out / "runs" / first, list(cfg.variants[first].overrides))}
    try:
        quality = build_quality(cfg, held)
        shipped = None if shipped_dir is None else score_shipped(cfg, shipped_dir, held, out, quality, total)
        variants = {}
        for i, name in enumerate(names):
            stage(4 + i, total, f"training + dubbing held-out identities: {name} ({cfg.train_steps:,} steps)")
            variants[name] = run_variant(cfg, name, cfg.variants[name], shards, held, out, started)
            alongside = " (shipped model scored alongside)" if i == 0 and shipped is not None else ""
            clock.lap(f"train + dub: {name}" + alongside)
    finally:
        for proc in started.values():
            stop_training(proc)
    return quality, shipped, variants


def score_own_quality(cfg: DictConfig, own: VariantResult, held: Path, out: Path, quality: Quality,
                      shipped: ShippedResult | None) -> dict[str, dict]:
    """The own model's self-reconstructions scored (``own.quality``, its mask and region set), and its
    sync on the shipped model's pairs and frames when those are a subset; returns its ceilings."""
    pipe = load_pipeline(own.model)
    selfs = dub(cfg, pipe, own_audio_pairs(cfg, held), out / "results" / "self", own.guidance,
                quality_seconds(cfg))
    own.quality = quality.of_videos({d.video: d.result for d in selfs}, pipe.crop, pipe.mask)
    own.mask, own.region = repr(pipe.mask), region_key(pipe.crop, pipe.mask)
    ceilings = quality.ceilings(pipe.crop, pipe.mask)  # scored early when the shipped model frames alike
    if shipped is not None and not on_every_pair(shipped.pairs_scored, shipped.seconds, len(own.pairs)):
        frames = max(shipped.frames)  # the own model on exactly the shipped one's pairs and frames
        own.on_shipped_pairs = summarize(score(own.done[: shipped.pairs_scored], max_frames=frames))
    return ceilings


def report_json(cfg: DictConfig, held: Path, variants: dict[str, VariantResult],
                shipped: ShippedResult | None, ceilings: dict[str, dict], quality: Quality,
                files: dict[str, str], clock: Stopwatch) -> dict[str, Any]:
    """Everything report.json records (:mod:`lipsync.demo.report` formats it)."""
    return {"heldout_pairs": len(pairs(held)), "train_steps": variants["full"].steps,
            "train_steps_budget": int(cfg.train_steps),
            "variants": {name: v.as_json() for name, v in variants.items()},
            "shipped": None if shipped is None else shipped.as_json(),
            "ceilings": ceilings, "quality_seconds": quality_seconds(cfg),
            "quality_identities": len(quality.videos), "files": files,
            "threads": torch.get_num_threads(), "train_threads": int(cfg.train_threads),
            "dub_threads": int(cfg.dub_threads),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "stage_minutes": clock.minutes(), "wall_minutes": round(clock.total / 60, 1)}


def run(cfg: DictConfig) -> None:
    """Every stage of the demo (``main`` without the one-line error handling)."""
    out = Path(cfg.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = list(cfg.variants) if cfg.ablations else ["full"]
    shipped_dir = shipped_model(cfg)  # first: a missing shipped model fails before any work
    total, clock = stage_count(names), Stopwatch()
    stage(1, total, "rendering the synthetic talking-face world")
    train_dir, held = render(cfg, out)
    stage(2, total, "curating the training videos into shards (true landmarks, Whisper features cached)")
    shards = prepare(cfg, train_dir, out)
    clock.lap("render + prepare")
    quality, shipped, variants = train_and_dub(cfg, names, shards, held, out, shipped_dir, clock)
    own = variants["full"]
    stage(4 + len(names), total,
          "quality: each held-out identity dubbed with its own speech; resolution ceilings")
    ceilings = score_own_quality(cfg, own, held, out, quality, shipped)
    clock.lap("quality: own model + ceilings")
    stage(total, total, "pictures: side-by-side video, mouth-opening plot, mask overlays, loss curves")
    runs = {v.trained_as: out / "runs" / v.trained_as for v in variants.values()}
    files = pictures(own.done[0], shipped.done[0] if shipped is not None else None, out, shards, runs)
    clock.lap("pictures")
    report = report_json(cfg, held, variants, shipped, ceilings, quality, files, clock)
    write_report(out, report)
    stage(total, total, f"done in {report['wall_minutes']} min: {out / 'report.md'}")
    print((out / "report.md").read_text())
