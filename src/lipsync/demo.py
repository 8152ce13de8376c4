"""The built-in default (`make demo`): lip sync learned and *measured* on two CPU cores.

    python -m lipsync.demo [out=outputs/demo] [train_steps=1200] [ablations=false]

Stages (each skipped when its output already exists, so an interrupted demo resumes):

1. render the synthetic talking-face world (``lipsync.synth``): training identities and held-out ones;
2. curate the training videos into shards (``lipsync.prepare``, true landmarks as the face backend,
   real Whisper tiny.en features cached in the shards);
3. train the tiny SayAnything model (``python -m lipsync.train experiment=demo``) for a step budget
   (``train_steps``: the same model whatever the machine's load; killed, it resumes) in a background
   process on ``train_threads`` threads, while this process dubs and scores the shipped showcase model
   (``models/showcase``) on the held-out pairs on the core left free;
4. convert the last checkpoint into a pipeline folder (``outputs/demo/model``, what ``lipsync.infer
   ckpt=...`` takes) and dub every held-out identity A with another held-out clip's audio B;
5. measure on the pixels: *sync* = corr(measured mouth opening, the opening B's audio drives) and
   *leak* = corr(measured opening, A's original opening), and the self-reconstruction quality (SSIM,
   PSNR, FID) beside resolution ceilings; write report.json / report.md, a side-by-side video (source |
   shipped | own), the opening plot and mask overlays.

``ablations=true`` (``make bench-sync``) trains one-factor variants on the same corpus and budget and
writes one table (SPEC section 7's claims that can be checked here).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from lipsync import media
from lipsync.app.compare import side_by_side
from lipsync.assets import ROOT
from lipsync.cli import hydra_main
from lipsync.data.faces import LandmarksFileFaces
from lipsync.data.masks import MaskSpec
from lipsync.evaluate.fid import build_fid
from lipsync.evaluate.reconstruction import (EditRegion, ReconstructionScorer, edit_region, read_first,
                                             resolution_ceiling)
from lipsync.evaluate.reconstruction import summarize as summarize_quality
from lipsync.infer.convert import convert
from lipsync.infer.pipeline import LipSyncPipeline, options_from_mapping
from lipsync.media import MODEL_FPS
from lipsync.models.weights import state_dict_sha256
from lipsync.models.whisper_convert import ensure_whisper_tiny_en
from lipsync.prepare.crop import CropSpec
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


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """This process's torch CPU threads set to ``n`` for a block (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


def train_command(cfg: DictConfig, shards: Path, run_dir: Path, overrides: list[str]) -> list[str]:
    """The ``lipsync.train`` command of one variant: ``train_steps`` optimizer steps (Lightning's max_steps)
    on ``train_threads`` CPU threads."""
    steps = int(cfg.train_steps)
    if steps < 1:
        raise ValueError(f"train_steps={cfg.train_steps}: expected a positive number of optimizer steps")
    return [sys.executable, "-m", "lipsync.train", "experiment=demo", f"data.shards={shards}",
            f"paths.log_dir={run_dir.parent}", f"name={run_dir.name}", f"trainer.max_steps={steps}",
            f"torch_threads={int(cfg.train_threads)}", *cfg.train_overrides, *overrides]


def start_training(cfg: DictConfig, shards: Path, run_dir: Path, overrides: list[str]) -> subprocess.Popen | None:
    """Start training to ``train_steps`` in the background (resuming from the run's last checkpoint); None when
    the run already has them. Its OpenMP pool is ``train_threads`` wide, so the rest of the machine's
    cores stay free for the demo's own process (see conf/demo.yaml)."""
    if _steps(run_dir) >= int(cfg.train_steps):
        return None
    cmd = train_command(cfg, shards, run_dir, overrides)
    print("  $", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": str(int(cfg.train_threads))})


def finish_training(proc: subprocess.Popen | None, run_dir: Path) -> Path:
    """Wait for :func:`start_training`'s process (None: nothing to wait for); returns last.ckpt."""
    if proc is not None and proc.wait() != 0:
        raise subprocess.CalledProcessError(proc.returncode, proc.args)
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.exists():
        raise FileNotFoundError(f"training wrote no checkpoint at {last}")
    return last


def stop_training(proc: subprocess.Popen | None) -> None:
    """SIGTERM a background training (its StopCheckpoint saves last.ckpt, so the next demo resumes)."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait()


def train(cfg: DictConfig, shards: Path, run_dir: Path, overrides: list[str]) -> Path:
    """Train to ``train_steps`` (resumes from the run's last checkpoint; a finished run is kept);
    returns last.ckpt."""
    return finish_training(start_training(cfg, shards, run_dir, overrides), run_dir)


def export(last: Path, model_dir: Path) -> Path:
    """The trained weights (EMA) as a pipeline folder that ``python -m lipsync.infer ckpt=`` accepts."""
    if not (model_dir / "config.json").exists() or model_dir.stat().st_mtime < last.stat().st_mtime:
        convert(last, model_dir)
    return model_dir


def pairs(held_dir: Path) -> list[tuple[Path, Path]]:
    """Each held-out video A with the next one's speech B (A's and B's audio are unrelated)."""
    videos = sorted(held_dir.glob("synth_*.mp4"))
    return [(a, videos[(i + 1) % len(videos)]) for i, a in enumerate(videos)]


def own_audio_pairs(cfg: DictConfig, held_dir: Path) -> list[tuple[Path, Path]]:
    """The first ``quality.identities`` held-out videos (all: null) each with its own speech: the
    self-reconstructions of the quality numbers."""
    return [(a, a) for a in sorted(held_dir.glob("synth_*.mp4"))[: cfg.quality.identities]]


def driving_wav(b: Path, folder: Path, seconds: float | None = None) -> Path:
    """B's speech as 16 kHz mono WAV in ``folder``: all of it, or its first ``seconds``."""
    wav = folder / (f"{b.stem}.wav" if seconds is None else f"{b.stem}_{float(seconds):g}s.wav")
    if not wav.exists():
        audio, rate = media.read_audio(b, sample_rate=media.MODEL_SAMPLE_RATE)
        folder.mkdir(parents=True, exist_ok=True)
        media.write_wav(wav, audio if seconds is None else audio[: int(round(seconds * rate))], rate)
    return wav


def load_pipeline(model_dir: Path) -> LipSyncPipeline:
    """A pipeline folder with the renderer's true landmarks as the face backend."""
    return LipSyncPipeline.from_pretrained(model_dir, faces=LandmarksFileFaces(), generated_faces=None)


def dub(cfg: DictConfig, pipe: LipSyncPipeline, jobs: list[tuple[Path, Path]], results: Path, guidance: float,
        seconds: float | None = None) -> list[tuple]:
    """Dub each (A, B) job with B's speech (its first ``seconds`` when given); returns (A, B, wav, result)
    tuples. A result already on disk is kept (an interrupted demo resumes). Runs on ``dub_threads`` torch
    threads (1: faster than 2 with passive OpenMP waiting at the demo's model sizes, conf/demo.yaml)."""
    opts = options_from_mapping({**cfg.infer, "guidance_scale": guidance})
    forget_other_results(results, pipe, opts, seconds)
    done = []
    with torch_threads(int(cfg.dub_threads)):
        for a, b in jobs:
            wav = driving_wav(b, results, seconds)
            result = results / f"{a.stem}__{b.stem}.mp4"
            if not result.exists():
                pipe(a, wav, result, options=opts)
            done.append((a, b, wav, result))
    return done


def forget_other_results(results: Path, pipe: LipSyncPipeline, opts: Any, seconds: float | None) -> None:
    """Delete the dubbed videos in ``results`` that another model or other sampling options made (a
    ``.made_by`` stamp records the hash of the network weights, the pipeline config (crop, mask, sampling
    defaults) and the options): a result on disk is reused only when
    it is what this call would write (after more training steps, a new shipped model, or ``make bench-sync``'s
    paper preset in the folder of a ``make demo`` run)."""
    options = {k: v for k, v in asdict(opts).items() if k != "progress"} | {"seconds": seconds, "config": pipe.config}
    made_by = hashlib.sha256((state_dict_sha256(pipe.net) + json.dumps(options, sort_keys=True, default=str))
                             .encode()).hexdigest()
    stamp = results / ".made_by"
    if results.exists() and not (stamp.exists() and stamp.read_text() == made_by):
        for old in results.glob("*.mp4"):
            old.unlink()
    results.mkdir(parents=True, exist_ok=True)
    stamp.write_text(made_by)


def score(done: list[tuple], max_frames: int | None = None) -> list[PairScore]:
    """Sync, leak and copy-input sync of each dubbed pair, on its first ``max_frames`` frames (all: None)."""
    scores = []
    for a, b, wav, result in done:
        truth = load_truth(a)
        frames = media.read_frames(result, stop=max_frames)
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


def pictures(own: tuple, shipped: tuple | None, out: Path, shards: Path, runs: dict[str, Path]) -> dict[str, str]:
    """Side-by-side video (source | shipped | own) and mouth-opening plot of the first pair, mask overlays,
    and the loss curves of ``runs``."""
    a, b, wav, result = own
    truth = load_truth(a)
    frames = media.read_frames(result)
    n = min(len(frames), len(truth.opening))
    audio, _ = media.read_audio(wav)
    files = {"side_by_side": out / "side_by_side.mp4", "openings": out / "openings.png",
             "masks": out / "mask_overlays.png", "loss": out / "loss_curves.png"}
    if shipped is not None:  # the shipped one may be shorter (make demo dubs it on the first seconds only)
        side_by_side(a, [shipped[3], result], shipped[2], files["side_by_side"], labels=["source", "shipped", "own"])
    else:
        side_by_side(a, result, wav, files["side_by_side"], labels=["source", "own"])
    plot_openings(mouth_opening_from_audio(audio, n), measure_opening(frames[:n], truth.boxes[:n]),
                  truth.opening[:n], files["openings"], title=f"{a.stem} driven by {b.stem}'s speech")
    preview(shards, files["masks"], mask="adaptive", frames=8)
    plot_loss_curves(runs, files["loss"], title="training loss (EMA-smoothed; raw values faint)")
    return {k: str(v.relative_to(out)) for k, v in files.items()}


class Quality:
    """Self-reconstruction quality on the held-out identities (:mod:`lipsync.evaluate.reconstruction`):
    SSIM and PSNR inside the mask at frame resolution, FID with the shipped Inception over the crop
    squares; and the ceiling of an ``r``-px model (the source crop resized to ``r`` px and back).

    The source's FID features are computed once and kept (every row is scored against the same frames).
    """

    def __init__(self, cfg: DictConfig, held_dir: Path) -> None:
        self.cfg, self.videos = cfg.quality, [a for a, _ in own_audio_pairs(cfg, held_dir)]
        self.options = options_from_mapping(dict(cfg.infer))  # the dubs' paste and H.264 quality: ceilings alike
        self.frames = None if self.cfg.seconds is None else int(round(float(self.cfg.seconds) * MODEL_FPS))
        fid = build_fid(self.cfg.fid_weights, config_key="quality.fid_weights") if self.cfg.fid else None
        if fid is not None:
            fid.reset_real_features = False  # the source side is the same for every row: extracted once
        self.scorer = ReconstructionScorer(fid, int(self.cfg.fid_stride))
        self._sources = {v: read_first(v, self.frames) for v in self.videos}
        self._squares: dict[Path, np.ndarray] = {}  # FID's crop squares: the first row's, kept for every row
        self._real_done = False  # the source side of FID extracted (by whichever row is scored first)
        self._ceilings: dict[str, dict[str, dict]] = {}  # per region_key

    def region(self, video: Path, crop: CropSpec, mask: MaskSpec) -> EditRegion:
        """The model's mask rectangles on ``video``, with the crop squares FID compares on (fixed per video)."""
        region = edit_region(video, len(self._sources[video]), LandmarksFileFaces(), crop, mask)
        squares = self._squares.setdefault(video, region.crops)
        return EditRegion(squares, region.masks)

    def _rows(self, outputs: dict[Path, np.ndarray], crop: CropSpec, mask: MaskSpec) -> dict:
        first, self._real_done = not self._real_done, True
        rows = [self.scorer(video.stem, generated, self._sources[video], self.region(video, crop, mask), real=first)
                for video, generated in outputs.items()]
        return summarize_quality(rows, *self.scorer.fid())

    def of_results(self, done: list[tuple], pipe: LipSyncPipeline) -> dict:
        """Scores of dubbed (A, A, wav, result) self-reconstructions."""
        outputs = {a: media.read_frames(result, stop=self.frames) for a, _, _, result in done}
        return self._rows(outputs, pipe.crop, pipe.mask)

    def ceiling(self, resolution: int, crop: CropSpec, mask: MaskSpec) -> dict:
        """A perfect ``resolution``-px model: each source crop resized to it and back, pasted as the pipeline
        pastes (the same ``paste_blend``), written to H.264 as the pipeline writes its output (the same
        ``crf``), and scored the same way as a dub."""
        crop = replace(crop, resolution=int(resolution))
        outputs = {v: media.as_written(resolution_ceiling(self._sources[v], self.region(v, crop, mask),
                                                          int(resolution), self.options), MODEL_FPS, self.options.crf)
                   for v in self.videos}
        return self._rows(outputs, crop, mask) | {"resolution": int(resolution)}

    def ceilings(self, crop: CropSpec, mask: MaskSpec) -> dict[str, dict]:
        """Every ``quality.ceilings`` resolution for models with this crop framing and mask. Kept per
        :func:`region_key`: the demo scores them with the shipped model's framing while its own model trains,
        and the own model's call reuses them when it frames and masks the face alike."""
        key = region_key(crop, mask)
        if key not in self._ceilings:
            self._ceilings[key] = {str(r): self.ceiling(int(r), crop, mask) for r in self.cfg.ceilings}
        return self._ceilings[key]


def region_key(crop: CropSpec, mask: MaskSpec) -> str:
    """What a resolution ceiling depends on, as a string the report keeps: the crop's framing (its resolution
    aside, which a ceiling sets) and the mask's class and settings (masks are plain classes, compared by
    their attributes)."""
    return json.dumps({"crop": asdict(replace(crop, resolution=0)), "mask": type(mask).__qualname__,
                       "settings": vars(mask)}, sort_keys=True, default=repr)


def _steps(run_dir: Path) -> int:
    last = run_dir / "checkpoints" / "last.ckpt"
    return int(torch.load(last, map_location="cpu", weights_only=True).get("global_step", 0)) if last.exists() else 0


def run_variant(cfg: DictConfig, name: str, spec: DictConfig, shards: Path, held: Path, out: Path,
                started: dict[str, subprocess.Popen | None] | None = None) -> dict:
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
    scores = score(done)
    return {"guidance": float(spec.guidance), "overrides": overrides, "trained_as": trained,
            "steps": _steps(run_dir), "summary": summarize(scores), "pairs": [asdict(s) for s in scores],
            "_done": done, "_model": model_dir}


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


def run_shipped(cfg: DictConfig, model_dir: Path, held: Path, out: Path, quality: Quality) -> dict:
    """Dub the first ``shipped.pairs`` held-out pairs (first ``shipped.seconds`` of speech) and the
    self-reconstructions with the shipped model; score both as the own model is scored. Runs while the own
    model trains, on the threads training leaves free (this process's count minus ``train_threads``, at least
    1) and without progress bars (the training's own bar keeps the terminal)."""
    with torch_threads(max(1, torch.get_num_threads() - int(cfg.train_threads))):
        return _run_shipped(OmegaConf.merge(cfg, {"infer": {"progress": False}}), model_dir, held, out, quality)


def _run_shipped(cfg: DictConfig, model_dir: Path, held: Path, out: Path, quality: Quality) -> dict:
    pipe = load_pipeline(model_dir)
    guidance = pipe.guidance_scale(options_from_mapping(dict(cfg.infer)))
    jobs = pairs(held)[: cfg.shipped.pairs]
    seconds = None if cfg.shipped.seconds is None else float(cfg.shipped.seconds)
    done = dub(cfg, pipe, jobs, out / "shipped" / "results", guidance, seconds)
    scores = score(done)
    selfs = dub(cfg, pipe, own_audio_pairs(cfg, held), out / "shipped" / "self", guidance, quality_seconds(cfg))
    ceilings = quality.ceilings(pipe.crop, pipe.mask)  # while the own model trains: they need only crop and mask
    return {"model": str(model_dir), "guidance": guidance, "pairs_scored": len(jobs), "seconds": seconds,
            "mask": repr(pipe.mask), "region": region_key(pipe.crop, pipe.mask), "ceilings": ceilings,
            "frames": [num_frames(d[3]) for d in done], "resolution": int(pipe.crop.resolution),
            "summary": summarize(scores), "pairs": [asdict(s) for s in scores],
            "quality": quality.of_results(selfs, pipe), "_done": done}


def shipped_on_everything(shipped: dict, heldout_pairs: int) -> bool:
    """Whether the shipped model was scored on every held-out pair, whole clips (then the own model's
    whole-clip row already compares with it: no separate row on its subset)."""
    return shipped["pairs_scored"] == heldout_pairs and shipped["seconds"] is None


def quality_seconds(cfg: DictConfig) -> float | None:
    return None if cfg.quality.seconds is None else float(cfg.quality.seconds)


def num_frames(video: Path) -> int:
    return int(media.probe(video).num_frames)


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
    shipped_dir = shipped_model(cfg)  # first: a missing shipped model fails before any work
    total = 5 + len(names)
    clock = Laps()
    _stage(1, total, "rendering the synthetic talking-face world")
    train_dir, held_dir = render(cfg, out)
    _stage(2, total, "curating the training videos into shards (true landmarks, Whisper features cached)")
    shards = prepare(cfg, train_dir, out)
    clock.lap("render + prepare")
    # The own model trains in a background process on `train_threads` threads (1: 0.59 s/step, where 2
    # threads with passive OpenMP waiting take 0.87); the shipped model is scored meanwhile on the other core.
    first = cfg.variants[names[0]].get("same_training_as") or names[0]
    started = {first: start_training(cfg, shards, out / "runs" / first, list(cfg.variants[first].overrides))}
    try:
        quality = Quality(cfg, held_dir)
        shipped = None
        if shipped_dir is not None:
            _stage(3, total, f"the shipped model ({shipped_dir.name}) on the held-out pairs, while the own "
                   f"model trains ({cfg.train_steps:,} steps)")
            tic = time.time()
            shipped = run_shipped(cfg, shipped_dir, held_dir, out, quality)
            print(f"  shipped model dubbed and scored in {(time.time() - tic) / 60:.1f} min: sync "
                  f"{shipped['summary']['sync_mean']:.2f}, SSIM {shipped['quality']['ssim']:.3f}", flush=True)
        variants = {}
        for i, name in enumerate(names):
            _stage(4 + i, total, f"training + dubbing held-out identities: {name} ({cfg.train_steps:,} steps)")
            variants[name] = run_variant(cfg, name, cfg.variants[name], shards, held_dir, out, started)
            clock.lap(f"train + dub: {name}" + (" (shipped model scored alongside)" if i == 0 and shipped else ""))
    finally:
        for proc in started.values():
            stop_training(proc)
    own = variants["full"]
    _stage(4 + len(names), total, "quality: each held-out identity dubbed with its own speech; resolution ceilings")
    own_pipe = load_pipeline(own.pop("_model"))
    selfs = dub(cfg, own_pipe, own_audio_pairs(cfg, held_dir), out / "results" / "self", own["guidance"],
                quality_seconds(cfg))
    own["quality"] = quality.of_results(selfs, own_pipe)
    own["mask"], own["region"] = repr(own_pipe.mask), region_key(own_pipe.crop, own_pipe.mask)
    ceilings = quality.ceilings(own_pipe.crop, own_pipe.mask)  # scored early when the shipped model frames alike
    if shipped is not None and not shipped_on_everything(shipped, len(own["pairs"])):
        frames = max(shipped["frames"])  # the own model on exactly the shipped one's pairs and frames
        own["on_shipped_pairs"] = summarize(score(own["_done"][: shipped["pairs_scored"]], max_frames=frames))
    clock.lap("quality: own model + ceilings")
    _stage(total, total, "pictures: side-by-side video, mouth-opening plot, mask overlays, loss curves")
    runs = {v["trained_as"]: out / "runs" / v["trained_as"] for v in variants.values()}
    files = pictures(own["_done"][0], shipped.pop("_done")[0] if shipped else None, out, shards, runs)
    for v in variants.values():
        v.pop("_done", None)
        v.pop("_model", None)
    clock.lap("pictures")
    report = {"heldout_pairs": len(pairs(held_dir)), "train_steps": own["steps"],
              "train_steps_budget": int(cfg.train_steps), "variants": variants, "shipped": shipped,
              "ceilings": ceilings, "quality_seconds": quality_seconds(cfg),
              "quality_identities": len(quality.videos), "files": files,
              "threads": torch.get_num_threads(), "train_threads": int(cfg.train_threads),
              "dub_threads": int(cfg.dub_threads),
              "load_average": [round(x, 2) for x in os.getloadavg()],
              "stage_minutes": clock.minutes(), "wall_minutes": clock.total_minutes()}
    write_report(out, report)
    _stage(total, total, f"done in {report['wall_minutes']} min: {out / 'report.md'}")
    print((out / "report.md").read_text())


class Laps:
    """Wall minutes per stage."""

    def __init__(self) -> None:
        self.start = self.last = time.time()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.time()
        self.laps[name] = round((now - self.last) / 60, 2)
        self.last = now

    def minutes(self) -> dict[str, float]:
        return dict(self.laps)

    def total_minutes(self) -> float:
        return round((time.time() - self.start) / 60, 1)


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _row(name: str, trained: str, scored: str, s: dict | None, q: dict | None) -> str:
    """One line of the report table: sync/leak (``s``, a :func:`summarize` dict) and quality (``q``)."""
    sync = "—" if s is None else f"{s['sync_mean']:.2f} ± {s['sync_std']:.2f}"
    leak = "—" if s is None else f"{s['leak_mean']:.2f} ± {s['leak_std']:.2f}"
    copy = "—" if s is None else f"{s['copy_sync_mean']:.2f}"
    ssim, psnr, fid = (None, None, None) if q is None else (q["ssim"], q["psnr"], q["fid"])
    return (f"| {name} | {trained} | {scored} | {sync} | {leak} | {copy} | {_fmt(ssim, '.3f')} | "
            f"{_fmt(psnr, '.2f')} | {_fmt(fid, '.1f')} |")


def report_rows(report: dict[str, Any]) -> list[str]:
    """The one table: the shipped model, the own model (on the shipped one's pairs too), the other
    variants, and the resolution ceilings."""
    pairs_all = f"{report['heldout_pairs']} pairs, whole clips"
    rows = ["| model | trained | sync/leak scored on | sync (mean ± sd) | leak (mean ± sd) | copy-input sync | "
            "SSIM in mask | PSNR in mask (dB) | FID |", "|---|---|---|---|---|---|---|---|---|"]
    shipped, own = report.get("shipped"), report["variants"]["full"]
    if shipped:
        every = shipped_on_everything(shipped, report["heldout_pairs"])
        subset = pairs_all if every else (f"first {shipped['pairs_scored']} pairs, " + (
            "whole clips" if shipped["seconds"] is None else f"first {shipped['seconds']:g} s"))
        rows.append(_row(f"shipped ({Path(shipped['model']).name}, {shipped['resolution']} px)",
                         "committed", subset, shipped["summary"], shipped["quality"]))
        if not every:
            rows.append(_row("own (full), same pairs as shipped", f"{own['steps']:,} steps", subset,
                             own["on_shipped_pairs"], own.get("quality")))
    for name, v in report["variants"].items():
        trained = f"{v['steps']:,} steps" + ("" if v["trained_as"] == name else f" (as {v['trained_as']})")
        label = "own (full)" if name == "full" else name
        rows.append(_row(f"{label}, CFG {v['guidance']:g}", trained, pairs_all, v["summary"], v.get("quality")))
    # A ceiling is scored in a model's own mask rectangle; when the shipped model masks (or frames) the face
    # otherwise than the own model, each gets its own ceiling rows, named.
    apart = bool(shipped) and shipped.get("region") != own.get("region")
    for whose, ceilings in ([("shipped", shipped["ceilings"])] if apart else []) + [("own", report["ceilings"])]:
        for r, q in ceilings.items():
            label = f"ceiling of a {r} px model" + (f", {whose} model's mask" if apart else "")
            rows.append(_row(label, "source crop resized", "—", None, q))
    return rows


def write_report(out: Path, report: dict[str, Any]) -> None:
    with media.atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    q_seconds = report["quality_seconds"]
    some = next(iter(report["ceilings"].values()), None) or report["variants"]["full"].get("quality") or {}
    text = "\n".join([
        "# lipsync demo report", "",
        f"{report['heldout_pairs']} held-out identities, each driven by another held-out clip's speech; own "
        f"model trained {report['train_steps']:,} steps (budget {report['train_steps_budget']:,}) on "
        f"{report['train_threads']} CPU thread(s), dubs on {report['dub_threads']}, scoring on {report['threads']}; load average at the end {report['load_average']}.", "",
        *report_rows(report), "",
        "sync = corr(measured mouth opening, opening the driving audio asks for); leak = corr(measured "
        "opening, the source video's own opening); copy-input = the untouched source scored for sync (chance).",
        f"Quality = self-reconstruction: {report['quality_identities']} held-out identities, each dubbed with "
        f"its own speech ({'whole clips' if q_seconds is None else f'first {q_seconds:g} s'}); SSIM and PSNR over the "
        "training-mask rectangle at the frame's resolution; FID (shipped Inception) over the crop squares, "
        f"{some.get('fid_frames', 0)} frames a side. A ceiling is the source crop resized to r px and back, "
        "pasted and written to H.264 as a dub is: the best an r-px model can score.", "",
        "Wall minutes per stage: " + ", ".join(f"{k} {v}" for k, v in report["stage_minutes"].items()) +
        f"; total {report['wall_minutes']}.", "",
        *(f"- {k}: `{v}`" for k, v in report.get("files", {}).items()), ""])
    with media.atomic_path(out / "report.md") as tmp:
        tmp.write_text(text)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
