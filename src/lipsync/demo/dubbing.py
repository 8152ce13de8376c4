"""Dubbing the held-out identities and scoring the dubs for sync and leak on the pixels.

Each held-out video A is dubbed with another held-out clip's speech B (:func:`pairs`), or with its own
(:func:`own_audio_pairs`: the self-reconstructions :class:`lipsync.evaluate.quality.Quality` scores);
*sync* = corr(measured mouth opening, the opening B's audio drives), *leak* = corr(measured opening, A's
original opening) (:mod:`lipsync.synth.measure`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from omegaconf import DictConfig

from lipsync import media
from lipsync.data.faces import LandmarksFileFaces
from lipsync.evaluate.fid import build_fid
from lipsync.evaluate.quality import Quality
from lipsync.infer.options import InferenceOptions
from lipsync.infer.pipeline import LipSyncPipeline, options_from_mapping
from lipsync.models.weights import state_dict_sha256
from lipsync.synth.corpus import load_truth
from lipsync.synth.measure import leak_score, sync_score


class Dub(NamedTuple):
    """One dubbed video: A's face driven by B's speech (B = A for a self-reconstruction)."""

    video: Path  # A, the held-out video dubbed
    speech: Path  # B, the held-out video whose speech drives it
    wav: Path  # B's speech as 16 kHz mono WAV (its first seconds when the dub was cut short)
    result: Path  # the dubbed mp4


@dataclass
class PairScore:
    """Scores of one dubbed held-out video (A's face, B's speech)."""

    video: str
    audio: str
    sync: float
    leak: float
    copy_sync: float  # A's untouched frames scored against B's audio (the chance level)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """This process's torch CPU threads set to ``n`` for a block (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
        seconds: float | None = None) -> list[Dub]:
    """Dub each (A, B) job with B's speech (its first ``seconds`` when given). A result already on disk is
    kept (an interrupted demo resumes). Runs on ``dub_threads`` torch threads (1: faster than 2 with
    passive OpenMP waiting at the demo's model sizes, conf/demo.yaml)."""
    opts = options_from_mapping({**cfg.infer, "guidance_scale": guidance})
    forget_other_results(results, pipe, opts, seconds)
    done = []
    with torch_threads(int(cfg.dub_threads)):
        for a, b in jobs:
            wav = driving_wav(b, results, seconds)
            result = results / f"{a.stem}__{b.stem}.mp4"
            if not result.exists():
                pipe(a, wav, result, options=opts)
            done.append(Dub(a, b, wav, result))
    return done


def forget_other_results(results: Path, pipe: LipSyncPipeline, opts: InferenceOptions,
                         seconds: float | None) -> None:
    """Delete the dubbed videos in ``results`` that another model or other sampling options made (a
    ``.made_by`` stamp records the hash of the network weights, the pipeline config (crop, mask, sampling
    defaults) and the options): a result on disk is reused only when it is what this call would write
    (after more training steps, a new shipped model, or ``make bench-sync``'s paper preset in the folder
    of a ``make demo`` run)."""
    options = {k: v for k, v in asdict(opts).items() if k != "progress"} | {"seconds": seconds,
                                                                            "config": pipe.config}
    made_by = hashlib.sha256((state_dict_sha256(pipe.net) + json.dumps(options, sort_keys=True, default=str))
                             .encode()).hexdigest()
    stamp = results / ".made_by"
    if results.exists() and not (stamp.exists() and stamp.read_text() == made_by):
        for old in results.glob("*.mp4"):
            old.unlink()
    results.mkdir(parents=True, exist_ok=True)
    stamp.write_text(made_by)


def build_quality(cfg: DictConfig, held_dir: Path) -> Quality:
    """The demo's quality scoring (``quality`` in conf/demo.yaml) of the :func:`own_audio_pairs`
    self-reconstructions: faces from the renderer's true landmarks, ceilings pasted and written with the
    dubs' options (``infer``)."""
    q = cfg.quality
    fid = build_fid(q.fid_weights, config_key="quality.fid_weights") if q.fid else None
    videos = [a for a, _ in own_audio_pairs(cfg, held_dir)]
    options = options_from_mapping(dict(cfg.infer))
    return Quality(videos, LandmarksFileFaces(), options, resolutions=q.ceilings, seconds=q.seconds, fid=fid,
                   fid_stride=q.fid_stride)


def score(done: list[Dub], max_frames: int | None = None) -> list[PairScore]:
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
    """Mean and standard deviation over pairs of sync, leak and copy-input sync (``sync_mean``, ...)."""
    keys = ("sync", "leak", "copy_sync")
    return {f"{k}_mean": float(np.mean([getattr(s, k) for s in scores])) for k in keys} | {
        f"{k}_std": float(np.std([getattr(s, k) for s in scores])) for k in keys}
