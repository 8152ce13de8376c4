"""Score generated videos against their references: the paper's Table 1 metrics (SPEC section 7).

Per dataset: pairs are matched by file name; each pair is read as a stream (memory stays flat for long
videos). SSIM, PSNR and LPIPS are averaged over the frames of a video, then over videos; FID and FVD
are one Frechet distance over all frames / clips of the dataset, from per-video feature statistics;
Sync-C, Sync-D and the AV offset are computed per video (generated video with its own audio track, and
the reference with its own for the "ground truth" row) and averaged over videos. Every metric also gets
a bootstrap interval over videos (``intervals`` in the result).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from tqdm import tqdm

from lipsync.evaluate import frame_metrics
from lipsync.evaluate.fid import build_fid
from lipsync.evaluate.frechet import (FeatureStats, frechet_distance, frechet_interval, mean_interval,
                                      take_stats, weighted_sum)
from lipsync.evaluate.fvd import build_fvd
from lipsync.evaluate.regions import Region, sync_track_rejection
from lipsync.models.syncnet import SYNCNET_RATE, SyncNetScorer, load_syncnet, resample_frames
from lipsync.models.weights import MissingWeights
from lipsync.media import MediaError, iter_frames, probe, read_audio

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
METRICS = ("fid", "fvd", "ssim", "psnr", "lpips", "sync")


def match_pairs(generated: str | os.PathLike, reference: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(generated, reference) video pairs with the same file stem, sorted by name.

    Raises:
        ValueError: a folder is missing or no generated video has a same-named reference.
    """
    gen_dir, ref_dir = Path(generated), Path(reference)
    for d in (gen_dir, ref_dir):
        if not d.is_dir():
            raise ValueError(f"{d} is not a folder of videos")
    refs = {p.stem: p for p in sorted(ref_dir.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES}
    pairs = [(g, refs[g.stem]) for g in sorted(gen_dir.iterdir())
             if g.suffix.lower() in VIDEO_SUFFIXES and g.stem in refs]
    if not pairs:
        raise ValueError(f"no video in {gen_dir} has a reference of the same name in {ref_dir}")
    return pairs


@dataclass
class Scorers:
    """The networks of one evaluation, built once from local files; ``missing`` says why any is absent."""

    fid: FrechetInceptionDistance | None = None
    fvd: FrechetInceptionDistance | None = None
    lpips: torch.nn.Module | None = None
    syncnet: SyncNetScorer | None = None
    missing: dict[str, MissingWeights] = field(default_factory=dict)  # metric -> its absent weight file

    @property
    def skipped(self) -> dict[str, str]:
        """Metric -> why it is not computed (its "not computed" entry in the results)."""
        return {m: str(err) for m, err in self.missing.items()}

    def missing_weights(self) -> dict[str, dict[str, str]]:
        """Metric -> ``{"config_key", "path"}`` of its absent weight file (metrics.json "missing_weights")."""
        return {m: {"config_key": err.config_key, "path": str(err.path)} for m, err in self.missing.items()}

    def reset(self) -> None:
        """Forget the accumulated FID/FVD statistics (between datasets)."""
        for metric in (self.fid, self.fvd):
            if metric is not None:
                metric.reset()


def build_scorers(cfg: dict, device: str = "cpu") -> Scorers:
    """Build every metric named in ``cfg["metrics"]``; a missing weight file skips only its metric."""
    wanted = set(cfg.get("metrics", METRICS))
    unknown = wanted - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}: choose from {list(METRICS)}")
    builders = {
        "fid": lambda: build_fid(cfg["fid"]["weights"], cfg["fid"].get("resize", "tf1")).to(device),
        "fvd": lambda: build_fvd(cfg["fvd"]["weights"], cfg["fvd"]["clip_len"],
                                 cfg["fvd"].get("input", "stylegan_v")).to(device),
        "lpips": lambda: frame_metrics.build_lpips(cfg["lpips"]["backbone"], cfg["lpips"].get("linear")
                                                   ).to(device),
        "syncnet": lambda: SyncNetScorer(load_syncnet(cfg["syncnet"]["weights"]), cfg["syncnet"]["vshift"],
                                         cfg["syncnet"]["batch_size"], device),
    }
    scorers = Scorers()
    for name, build in builders.items():
        if (name if name != "syncnet" else "sync") not in wanted:
            continue
        try:
            setattr(scorers, name, build())
        except MissingWeights as err:
            scorers.missing["sync" if name == "syncnet" else name] = err
            log.warning("%s not computed: %s", name, err)
    return scorers


Pair = tuple[np.ndarray, np.ndarray]


def _chunks(pairs: Iterator[Pair], size: int) -> Iterator[list[Pair]]:
    chunk = []
    for item in pairs:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _to_tensor(frames: list[np.ndarray], device: str) -> torch.Tensor:
    """(B, H, W, 3) uint8 list -> (B, 3, H, W) uint8 tensor."""
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).to(device)


class PairScorer:
    """Streams one (generated, reference) pair through the metrics; FID/FVD accumulate across pairs."""

    def __init__(self, scorers: Scorers, region: Region, cfg: dict, device: str = "cpu") -> None:
        self.s, self.region, self.device = scorers, region, device
        self.wanted = set(cfg.get("metrics", METRICS))
        self.frame_stride = int(cfg["fid"].get("frame_stride", 1))
        fvd = cfg["fvd"]
        self.clip_len, self.clip_stride = int(fvd["clip_len"]), int(fvd["stride"])
        self.clip_start, self.clips_per_video = int(fvd.get("start", 0)), fvd.get("clips_per_video")
        self.ssim_kind = cfg.get("ssim", {}).get("kind", "skimage")
        self.chunk = int(cfg.get("chunk", 16))
        sync = cfg["syncnet"]
        self.sync_reference = bool(sync.get("reference", True))
        self.min_track = int(sync.get("min_track", 0))
        self.min_face_size = float(sync.get("min_face_size", 0))
        # per video: (real, fake) feature statistics of FID frames and FVD clips (bootstrap over videos)
        self.stats: dict[str, dict[str, tuple[FeatureStats, FeatureStats]]] = {"fid": {}, "fvd": {}}

    def __call__(self, generated: Path, reference: Path) -> dict:
        """Per-video results: ssim, psnr, lpips, sync_c, sync_d, offset (+ *_reference) and notes."""
        n_gen, n_ref = probe(generated).num_frames, probe(reference).num_frames
        n = min(n_gen, n_ref)
        self.s.reset()  # what a video that failed half-way left in the FID/FVD sums
        boxes, note, detections = self.region.track(reference, n)
        out: dict = {"frames": n, "region": note}
        if n_gen != n_ref:
            out["length_mismatch"] = f"generated {n_gen} frames, reference {n_ref}: first {n} compared"
        out.update(self._frames(generated, reference, n, boxes))
        self._keep_stats(generated.stem)
        if self.s.syncnet is not None:
            rejected = sync_track_rejection(detections, self.min_track, self.min_face_size)
            if rejected:
                out["sync_note"] = rejected
                return out
            out.update(self._sync(generated, n, boxes, ""))
            if self.sync_reference:
                out.update(self._sync(reference, n, boxes, "_reference"))
        return out

    def _keep_stats(self, video: str) -> None:
        """Move this video's FID/FVD feature sums out of the metrics (those with no sample are left out)."""
        for key, metric in (("fid", self.s.fid), ("fvd", self.s.fvd)):
            if metric is not None:
                real, fake = take_stats(metric)
                if real.n:
                    self.stats[key][video] = (real, fake)

    def _is_clip_end(self, index: int) -> bool:
        """Frame ``index`` closes a scored clip: from ``start + k stride``, at most ``clips_per_video``."""
        first = index + 1 - self.clip_len - self.clip_start
        if first < 0 or first % self.clip_stride:
            return False
        return self.clips_per_video is None or first // self.clip_stride < int(self.clips_per_video)

    def _frames(self, generated: Path, reference: Path, n: int, boxes: np.ndarray | None) -> dict:
        """SSIM/PSNR/LPIPS per frame (averaged here) and FID frames / FVD clips (accumulated)."""
        box_iter = iter(boxes) if boxes is not None else repeat(None)
        crops = ((self.region.metric_crop(g, b), self.region.metric_crop(r, b))
                 for g, r, b in zip(iter_frames(generated, stop=n), iter_frames(reference, stop=n), box_iter))
        per_frame: dict[str, list[torch.Tensor]] = {k: [] for k in ("ssim", "psnr", "lpips")}
        window: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=self.clip_len)
        clips: list[np.ndarray] = []
        index = 0
        for chunk in _chunks(crops, self.chunk):
            gen = _to_tensor([g for g, _ in chunk], self.device)
            ref = _to_tensor([r for _, r in chunk], self.device)
            self._frame_metrics(gen, ref, per_frame, index)
            for pair in chunk:
                window.append(pair)
                if len(window) == self.clip_len and self._is_clip_end(index):
                    clips.append(np.stack(window))  # (T, 2, S, S, 3)
                index += 1
                if len(clips) == 4:
                    self._fvd_update(clips)
                    clips = []
        self._fvd_update(clips)
        return {k: float(torch.cat(v).mean()) for k, v in per_frame.items() if v}

    def _frame_metrics(self, gen: torch.Tensor, ref: torch.Tensor, per_frame: dict, start: int) -> None:
        g, r = gen.float() / 255, ref.float() / 255
        if "ssim" in self.wanted:
            per_frame["ssim"].append(frame_metrics.ssim(g, r, self.ssim_kind).cpu())
        if "psnr" in self.wanted:
            per_frame["psnr"].append(frame_metrics.psnr(g, r).cpu())
        if self.s.lpips is not None:
            per_frame["lpips"].append(frame_metrics.lpips(self.s.lpips, g, r).cpu())
        if self.s.fid is not None:
            keep = [i for i in range(len(gen)) if (start + i) % self.frame_stride == 0]
            if keep:
                self.s.fid.update(gen[keep], real=False)
                self.s.fid.update(ref[keep], real=True)

    def _fvd_update(self, clips: list[np.ndarray]) -> None:
        if self.s.fvd is None or not clips:
            return
        both = torch.from_numpy(np.stack(clips)).to(self.device)  # (C, T, 2, S, S, 3)
        as_video = both.permute(2, 0, 5, 1, 3, 4)  # (2, C, 3, T, S, S)
        self.s.fvd.update(as_video[0].contiguous(), real=False)
        self.s.fvd.update(as_video[1].contiguous(), real=True)

    def _sync(self, path: Path, n: int, boxes: np.ndarray | None, suffix: str) -> dict:
        info = probe(path)
        if not info.has_audio:
            return {f"sync{suffix}_note": f"{path.name} has no audio track"}
        audio, _ = read_audio(path, SYNCNET_RATE)
        box_iter = iter(boxes) if boxes is not None else repeat(None)
        at_25 = resample_frames(zip(iter_frames(path, stop=n), box_iter), float(info.fps))
        try:
            result = self.s.syncnet.score((self.region.sync_crop(f, b) for f, b in at_25), audio)
        except ValueError as err:  # too short for SyncNet's 5-frame windows
            return {f"sync{suffix}_note": str(err)}
        return {f"sync_c{suffix}": result.sync_c, f"sync_d{suffix}": result.sync_d,
                f"offset{suffix}": result.offset, f"sync_dists{suffix}": result.dists.tolist()}


def score_dataset(pairs: list[tuple[Path, Path]], scorers: Scorers, region: Region, cfg: dict,
                  device: str = "cpu", name: str = "") -> dict:
    """Score every pair of one dataset.

    Returns:
        ``{"num_videos", "metrics", "intervals", "not_computed", "failed", "per_video"}``; ``intervals``
        maps each metric to its bootstrap interval ``[lo, hi]`` over videos (cfg ``bootstrap``).
    """
    scorers.reset()
    pair_scorer = PairScorer(scorers, region, cfg, device)
    per_video, failed = {}, {}
    for gen, ref in tqdm(pairs, desc=f"scoring {name}".strip(), unit="video"):
        try:
            per_video[gen.stem] = pair_scorer(gen, ref)
        except MediaError as err:  # one broken file must not end the evaluation
            failed[gen.stem] = str(err)
            log.warning("skipped %s: %s", gen.name, err)
    wanted = set(cfg.get("metrics", METRICS))
    boot = {**BOOTSTRAP, **(cfg.get("bootstrap") or {})}
    metrics, intervals = _means(per_video, boot)
    not_computed: dict[str, str] = {}
    ddof = {"fid": int(cfg["fid"].get("ddof", 1)), "fvd": int(cfg["fvd"].get("ddof", 1))}
    for key in ("fid", "fvd"):
        if key not in wanted or key in scorers.skipped:
            continue
        value, interval = _frechet(pair_scorer.stats[key], ddof[key], boot, key)
        if isinstance(value, str):
            not_computed[key] = value
        else:
            metrics[key] = value
            if interval is not None:
                intervals[key] = list(interval)
    not_computed = {**scorers.skipped, **not_computed}
    if "sync" in wanted and "sync" not in not_computed and "sync_c" not in metrics:
        not_computed["sync"] = "no video had a face track and audio that SyncNet could score"
    return {"num_videos": len(per_video), "metrics": metrics, "intervals": intervals,
            "not_computed": not_computed, "failed": failed, "per_video": per_video}


BOOTSTRAP = {"resamples": 1000, "frechet_resamples": 100, "level": 0.95, "seed": 0}
PER_VIDEO = ("ssim", "psnr", "lpips", "sync_c", "sync_d", "offset", "sync_c_reference", "sync_d_reference",
             "offset_reference")


def _means(per_video: dict, boot: dict) -> tuple[dict, dict]:
    """Mean over videos of every per-video metric, and its bootstrap interval."""
    metrics, intervals = {}, {}
    for key in PER_VIDEO:
        values = [v[key] for v in per_video.values() if key in v]
        if values:
            metrics[key] = float(np.mean(values))
            interval = mean_interval(values, boot["resamples"], boot["level"], boot["seed"])
            if interval is not None:
                intervals[key] = list(interval)
    return metrics, intervals


def _frechet(stats: dict[str, tuple[FeatureStats, FeatureStats]], ddof: int, boot: dict,
             key: str) -> tuple[float | str, tuple[float, float] | None]:
    """The dataset's Fréchet distance from per-video statistics, and its interval over videos."""
    real, fake = [s[0] for s in stats.values()], [s[1] for s in stats.values()]
    if sum(s.n for s in real) < 2 or sum(s.n for s in fake) < 2:
        unit = "frames" if key == "fid" else "clips"
        return f"fewer than 2 {unit} to compare: not computed", None
    value = frechet_distance(weighted_sum(real), weighted_sum(fake), ddof)
    if not boot["frechet_resamples"]:
        return value, None
    log.info("%s: bootstrap over %d videos (%d resamples)", key, len(real), boot["frechet_resamples"])
    return value, frechet_interval(real, fake, ddof, boot["frechet_resamples"], boot["level"], boot["seed"])
