"""The real-face protocol (``evaluate=realface``): lip sync and quality on real talking faces, from the face
mesh alone (:mod:`lipsync.evaluate.mouth`), with the baselines that say what a number means.

Over a folder of real clips with their own sound (a part of the committed split, ``data/realfaces``):

- **self-reconstruction** (each clip dubbed with its own audio): LMD and the correlation of the mouth
  opening with the true one (``opening_r``); SSIM / PSNR (/ LPIPS) inside the edit mask and FID over the
  crop squares (:mod:`lipsync.evaluate.reconstruction`). Beside the model, the same scores of three
  baselines on the same frames: the **resolution ceilings** of the model's crop size and of half of it
  (the source crop resized and pasted back as a dub is) and a **still mouth** (the first frame's crop
  pasted on every frame: a model that ignores the audio);
- **cross-driven** (clip A dubbed with the audio of clip B, the next clip in the folder's order):
  **sync** = r(opening of the result, B's true opening: the truth for that audio, measured the same way),
  **leak** = r(result, A's own opening), and **chance** = r(A's opening, B's opening) (copy-input sync);
- **sanity** of the measurement on the true clips: a clip against itself written to H.264 (near 1),
  against itself shifted by ``shift_frames`` (near 0) and against the next clip (near 0).

The run folder gets ``metrics.json``, ``realface.md`` and ``frames.png`` (source, self-reconstruction and
cross-driven dub of the first clips' faces; it holds the clips' pixels, so it is never committed).

Every mean has a percentile bootstrap interval over clips (each clip counts once).
"""

from __future__ import annotations

import json

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import cv2
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from lipsync import media
from lipsync.cli import configure_threads, hydra_main
from lipsync.data.faces import MediaPipeFaces, crop_square
from lipsync.data.masks import MaskSpec, render_masks
from lipsync.evaluate import mouth
from lipsync.evaluate.fid import TorchScriptInception
from lipsync.evaluate.frame_metrics import build_lpips, lpips
from lipsync.evaluate.frechet import FeatureStats, frechet_distance, frechet_interval, mean_interval, weighted_sum
from lipsync.evaluate.reconstruction import (EditRegion, edit_region, fid_crops, masked_psnr, masked_ssim,
                                             resolution_ceiling)
from lipsync.infer.options import InferenceOptions, options_from_mapping
from lipsync.infer.paste import paste_crop
from lipsync.infer.pipeline import LipSyncPipeline
from lipsync.models.weights import MissingWeights, require_file
from lipsync.prepare import split
from lipsync.prepare.crop import CropSpec
from lipsync.prepare.preview import grid, write_png

#: scores of a cross-driven row, per pair
CROSS_KEYS = ("sync", "leak", "chance")


@dataclass
class Clip:
    """One real clip: its frames, the edit region a pipeline uses on it, and its true mouth.

    Attributes:
        name: file name.
        frames: (N, H, W, 3) uint8.
        region: crop squares and mask rectangles (frame pixels) of the model's crop and mask.
        landmarks: (N, 478, 2) face mesh of the true frames (NaN where no face).
    """

    name: str
    frames: np.ndarray
    region: EditRegion
    landmarks: np.ndarray

    @property
    def opening(self) -> np.ndarray:
        """(N,) true mouth opening (:func:`lipsync.evaluate.mouth.opening`)."""
        return mouth.opening(self.landmarks)


def still_mouth(frames: np.ndarray, region: EditRegion, resolution: int, index: int = 0,
                options: InferenceOptions | None = None) -> np.ndarray:
    """The ``index``-th frame's crop (at ``resolution`` px) pasted into every frame's crop square, exactly
    as a dub is pasted: a model that paints the reference's mouth whatever the audio says."""
    opts = options or InferenceOptions()
    still = crop_square(frames[index], region.crops[index], resolution)
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        out[i] = paste_crop(frame, still, region.crops[i], region.masks[i], None, resolution, opts.paste_blend,
                            opts.paste_dilate, opts.paste_feather).frame
    return out


def self_scores(clip: Clip, frames: np.ndarray, landmarks: np.ndarray,
                lpips_net: torch.nn.Module | None = None) -> dict[str, float]:
    """LMD, opening correlation and SSIM / PSNR (/ LPIPS with ``lpips_net``) in the mask of ``frames`` (a
    reconstruction of ``clip``)."""
    n = min(len(frames), len(clip.frames))
    (gen, true), boxes = around_masks((frames[:n], clip.frames[:n]), clip.region.masks[:n])
    masks = render_masks(boxes, *true.shape[1:3])[:, 0]
    scores = {"lmd": mouth.lmd(landmarks[:n], clip.landmarks[:n]),
              "opening_r": mouth.correlation(mouth.opening(landmarks[:n]), clip.opening[:n]),
              "ssim": float(masked_ssim(gen, true, masks).mean()),
              "psnr": float(masked_psnr(gen, true, masks).mean())}
    if lpips_net is not None:
        scores["lpips"] = masked_lpips(lpips_net, frames[:n], clip.frames[:n], clip.region.masks[:n])
    return scores


def around_masks(videos: Sequence[np.ndarray], boxes: np.ndarray, margin: int = 8
                 ) -> tuple[list[np.ndarray], np.ndarray]:
    """The frames cut to the mask rectangles' union plus ``margin`` px (inside the frame), and the boxes
    in the cut's pixels. SSIM inside the mask is unchanged (its 11-px Gaussian window reaches 5 px past
    the rectangle and sees the same pixels) and costs a fraction of a whole 1080x1920 frame's."""
    h, w = videos[0].shape[1:3]
    x0, y0 = (max(0, int(np.floor(np.nanmin(boxes[:, i]))) - margin) for i in (0, 1))
    x1, y1 = (min(size, int(np.ceil(np.nanmax(boxes[:, i]))) + margin) for i, size in ((2, w), (3, h)))
    return [v[:, y0:y1, x0:x1] for v in videos], boxes - [x0, y0, x0, y0]


def masked_lpips(net: torch.nn.Module, generated: np.ndarray, truth: np.ndarray, boxes: np.ndarray,
                 size: int = 64) -> float:
    """LPIPS of the mask rectangles (frame pixels, (N, 4)) resized to ``size`` px, mean over frames."""
    def cut(frames: np.ndarray) -> torch.Tensor:
        out = []
        for frame, box in zip(frames, boxes):
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            patch = frame[max(y0, 0):max(y1, y0 + 1), max(x0, 0):max(x1, x0 + 1)]
            out.append(cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA))
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0

    return float(lpips(net, cut(generated), cut(truth)).mean())


def cross_scores(result_landmarks: np.ndarray, source: Clip, driver: Clip) -> dict[str, float]:
    """Sync with the driver's true mouth, leak of the source's, and the chance level between the two."""
    opened = mouth.opening(result_landmarks)
    return {"sync": mouth.correlation(opened, driver.opening),
            "leak": mouth.correlation(opened, source.opening),
            "chance": mouth.correlation(source.opening, driver.opening)}


def sanity_scores(clip: Clip, other: Clip, written_landmarks: np.ndarray, shift: int) -> dict[str, float]:
    """The measurement on true clips: itself through H.264, itself shifted by ``shift`` frames, another."""
    o = clip.opening
    return {"written": mouth.correlation(mouth.opening(written_landmarks), o),
            "shifted": mouth.correlation(o[shift:], o[:-shift]) if len(o) > shift + 2 else float("nan"),
            "other_clip": mouth.correlation(o, other.opening)}


def baselines(clip: Clip, resolution: int, options: InferenceOptions, fps: float,
              crf: int) -> dict[str, np.ndarray]:
    """The baseline rows' frames for one clip, written to H.264 as a dub is (``media.as_written``)."""
    half = max(4, resolution // 2)
    made = {f"ceiling_{resolution}px": resolution_ceiling(clip.frames, clip.region, resolution, options),
            f"ceiling_{half}px": resolution_ceiling(clip.frames, clip.region, half, options),
            "still_mouth": still_mouth(clip.frames, clip.region, resolution, 0, options)}
    return {k: media.as_written(v, fps, crf) for k, v in made.items()}


@dataclass
class Table:
    """Per-clip scores of every row, and their means with bootstrap intervals (:meth:`summary`)."""

    rows: dict[str, list[dict]] = field(default_factory=dict)

    def add(self, row: str, clip: str, scores: Mapping[str, float]) -> None:
        self.rows.setdefault(row, []).append({"clip": clip, **scores})

    def summary(self, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, dict]:
        """Row -> metric -> {mean, interval, n}: NaN clips (no face, constant mouth) are left out."""
        out: dict[str, dict] = {}
        for row, items in self.rows.items():
            keys = [k for k in items[0] if k != "clip"]
            out[row] = {k: _mean(np.array([it[k] for it in items], np.float64), resamples, level, seed)
                        for k in keys}
        return out


def _mean(values: np.ndarray, resamples: int, level: float, seed: int) -> dict:
    ok = values[np.isfinite(values)]
    if not len(ok):
        return {"mean": None, "interval": None, "n": 0}
    interval = mean_interval(list(ok), resamples, level, seed)
    return {"mean": float(ok.mean()), "interval": list(interval) if interval else None, "n": int(len(ok))}


def pair_order(names: Sequence[str]) -> list[tuple[int, int]]:
    """Cross-driven pairs: each clip driven by the next one's audio (cyclic), never by its own."""
    n = len(names)
    if n < 2:
        raise ValueError(f"cross-driven scoring needs at least 2 clips, got {n}")
    return [(i, (i + 1) % n) for i in range(n)]


# --- the run: dub, measure, summarise ---------------------------------------------------------------


def load_clip(path: Path, crop: CropSpec, mask: MaskSpec, faces: MediaPipeFaces,
              num_frames: int | None = None) -> Clip:
    """A real clip's frames, edit region (as the pipeline finds it) and true face mesh."""
    frames = media.read_frames(path, stop=num_frames)
    region = edit_region(path, len(frames), faces, crop, mask)
    return Clip(path.name, frames, region, mouth.track_frames(frames, faces).landmarks)


def driving_audio(driver: Path, seconds: float, out: Path) -> Path:
    """The driver's own sound (its rate and channels), cut to ``seconds``, as a WAV at ``out``."""
    if not out.exists():
        audio, rate = media.read_audio(driver, sample_rate=None, mono=False)
        media.write_wav(out, audio[:, : int(round(seconds * rate))], rate)
    return out


def dub_all(pipe: LipSyncPipeline, videos: Sequence[Path], out: Path, options: InferenceOptions,
            progress: bool = True) -> tuple[list[Path], list[Path]]:
    """Self-reconstructions (``out/self``) and cross-driven dubs (``out/cross``, A driven by the next clip's
    sound); a result already on disk is kept (a rerun resumes)."""
    jobs = [(v, v, out / "self" / v.name) for v in videos]
    jobs += [(videos[i], videos[j], out / "cross" / f"{videos[i].stem}__{videos[j].stem}.mp4")
             for i, j in pair_order([v.name for v in videos])]
    for video, driver, result in tqdm(jobs, desc="dubbing", unit="video", disable=not progress):
        if result.exists():
            continue
        result.parent.mkdir(parents=True, exist_ok=True)
        audio = video if driver == video else driving_audio(
            driver, media.probe(video).duration_s, out / "audio" / f"{driver.stem}.wav")
        pipe(video, audio, result, options=options)
    n = len(videos)
    return [j[2] for j in jobs[:n]], [j[2] for j in jobs[n:]]


@dataclass
class Scorer:
    """Scores every row of the protocol into a :class:`Table`, FID per self-reconstruction row.

    Args:
        faces: the face mesh (every frame) used for the truth and every result alike.
        resolution: the model's crop side in px (its ceiling, and half of it, are rows).
        options: the paste the baselines are made with (the dubs' own).
        fid: the FID Inception (crops uint8 (N, 3, S, S) -> (N, 2048)); None skips FID.
        lpips: an LPIPS net (:func:`lipsync.evaluate.frame_metrics.build_lpips`); None skips LPIPS.
        shift_frames: the sanity row's time shift (frames).
        crf: the H.264 quality the baselines are written with, as the dubs are.
        fid_stride: every this-many-th frame into FID (neighbouring frames are near copies).
    """

    faces: MediaPipeFaces
    resolution: int
    options: InferenceOptions
    fid: torch.nn.Module | None = None
    lpips: torch.nn.Module | None = None
    shift_frames: int = 12
    crf: int = 18
    fid_stride: int = 2
    table: Table = field(default_factory=Table)
    _real: dict = field(default_factory=dict)
    _fake: dict = field(default_factory=dict)

    def self_rows(self, clip: Clip, generated: np.ndarray, fps: float) -> None:
        rows = {"model": generated, **baselines(clip, self.resolution, self.options, fps, self.crf)}
        for row, frames in rows.items():
            landmarks = mouth.track_frames(frames, self.faces).landmarks
            self.table.add(f"self/{row}", clip.name, self_scores(clip, frames, landmarks, self.lpips))
            self._add_fid(row, clip, frames)

    def cross_row(self, result: np.ndarray, source: Clip, driver: Clip) -> None:
        landmarks = mouth.track_frames(result, self.faces).landmarks
        self.table.add("cross/model", f"{source.name}<-{driver.name}", cross_scores(landmarks, source, driver))

    def sanity_row(self, clip: Clip, other: Clip, fps: float) -> None:
        written = mouth.track_frames(media.as_written(clip.frames, fps, self.crf), self.faces).landmarks
        self.table.add("sanity/true_video", clip.name, sanity_scores(clip, other, written, self.shift_frames))

    def _add_fid(self, row: str, clip: Clip, frames: np.ndarray) -> None:
        """Inception features of every ``fid_stride``-th crop square; the true side once per clip."""
        if self.fid is None:
            return
        n = min(len(frames), len(clip.frames))
        region = EditRegion(clip.region.crops[:n], clip.region.masks[:n])
        if clip.name not in self._real:
            self._real[clip.name] = self._features(fid_crops(clip.frames[:n], region, self.fid_stride))
        self._fake.setdefault(row, []).append(
            (self._real[clip.name], self._features(fid_crops(frames[:n], region, self.fid_stride))))

    def _features(self, crops: torch.Tensor) -> FeatureStats:
        return FeatureStats.of(torch.cat([self.fid(c) for c in crops.split(16)]))

    def fids(self, resamples: int = 100, level: float = 0.95, seed: int = 0) -> dict[str, dict]:
        """FID of each self-reconstruction row's crops against the true crops (all clips pooled), with a
        bootstrap interval over clips."""
        out = {}
        for row, pairs in self._fake.items():
            real, fake = [p[0] for p in pairs], [p[1] for p in pairs]
            value = frechet_distance(weighted_sum(real), weighted_sum(fake))
            interval = frechet_interval(real, fake, resamples=resamples, level=level, seed=seed)
            out[row] = {"value": value, "interval": list(interval) if interval else None,
                        "frames": sum(f.n for f in fake)}
        return out


def score(scorer: Scorer, clips: Sequence[Clip], selfs: Sequence[Path], crosses: Sequence[Path],
          progress: bool = True) -> None:
    """Every row for every clip (the dubs as written by :func:`dub_all`, in the same order; each read for
    as many frames as its clip was loaded with)."""
    pairs = pair_order([c.name for c in clips])
    for k, clip in enumerate(tqdm(clips, desc="scoring", unit="clip", disable=not progress)):
        fps, n = float(media.probe(selfs[k]).fps), len(clip.frames)
        scorer.self_rows(clip, media.read_frames(selfs[k], stop=n), fps)
        i, j = pairs[k]
        scorer.cross_row(media.read_frames(crosses[k], stop=n), clips[i], clips[j])
        scorer.sanity_row(clip, clips[j], fps)


def protocol(cfg: Mapping, resolution: int) -> dict:
    """What metrics.json records about how the numbers were made."""
    return {"preset": "realface", "reproduces": None, "assumptions": {
        "mouth": "MediaPipe face mesh on every frame (478 points); opening = inner-lip gap (13-14, 82-87, "
                 "312-317) / outer eye corners (33-263); LMD = 40 lip points / inter-ocular distance",
        "self": "each clip dubbed with its own sound; SSIM/PSNR (LPIPS) inside the edit mask, FID over the "
                "crop squares at frame resolution, all clips pooled",
        "cross": "clip i dubbed with clip i+1's sound (cyclic, cut to clip i's length); sync = r(result, "
                 "driver's true opening), leak = r(result, source's opening), chance = r(source, driver)",
        "baselines": f"ceilings: the source crop at {resolution} px and {max(4, resolution // 2)} px pasted "
                     "back as a dub is; still_mouth: the first frame's crop on every frame; all written to "
                     "H.264 as the dubs are",
        "sanity": f"true clip vs itself through H.264 (written), shifted by {cfg['shift_frames']} frames, "
                  "and the next clip (other_clip)",
        "intervals": f"percentile bootstrap over clips, {cfg['bootstrap']['resamples']} resamples, "
                     f"level {cfg['bootstrap']['level']}"}}


def markdown(summary: Mapping[str, Mapping], fids: Mapping[str, Mapping]) -> str:
    """The summary as markdown tables: self-reconstruction rows, then the cross-driven and sanity rows."""
    def cell(m: Mapping | None) -> str:
        if not m or m["mean"] is None:
            return "-"
        iv = m["interval"]
        return f"{m['mean']:.3f}" + (f" [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else "")

    selfs = {k.split("/", 1)[1]: v for k, v in summary.items() if k.startswith("self/")}
    keys = [k for k in ("lmd", "opening_r", "ssim", "psnr", "lpips") if any(k in v for v in selfs.values())]
    lines = ["| self-reconstruction | " + " | ".join(keys) + " | FID |", "|---" * (len(keys) + 2) + "|"]
    for row, v in selfs.items():
        fid = fids.get(row)
        fid_cell = "-" if fid is None else f"{fid['value']:.1f}" + (
            f" [{fid['interval'][0]:.1f}, {fid['interval'][1]:.1f}]" if fid["interval"] else "")
        lines.append(f"| {row} | " + " | ".join(cell(v.get(k)) for k in keys) + f" | {fid_cell} |")
    for group, names in (("cross/model", CROSS_KEYS), ("sanity/true_video", ("written", "shifted", "other_clip"))):
        if group in summary:
            lines += ["", f"| {group} | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|",
                      f"| {summary[group][names[0]]['n']} clips | "
                      + " | ".join(cell(summary[group].get(k)) for k in names) + " |"]
    return "\n".join(lines) + "\n"


# --- the command ------------------------------------------------------------------------------------


def frames_picture(clips: Sequence[Clip], selfs: Sequence[Path], crosses: Sequence[Path], out: Path,
                   columns: int = 6, side: int = 160) -> Path:
    """Per clip (the first three), three rows of ``columns`` evenly spaced face crops: the source, its
    self-reconstruction and its cross-driven dub (``out``, a PNG: it holds the clips' pixels, so it stays
    in the run folder)."""
    tiles = []
    for clip, own, other in list(zip(clips, selfs, crosses))[:3]:
        n = min(len(clip.frames), media.probe(own).num_frames, media.probe(other).num_frames)
        picks = np.linspace(0, n - 1, columns).round().astype(int)
        for frames in (clip.frames, media.read_frames(own, stop=n), media.read_frames(other, stop=n)):
            tiles += [crop_square(frames[i], clip.region.crops[i], side) for i in picks]
    return write_png(out, grid(tiles, columns))


def build_metrics(cfg: Mapping) -> tuple[torch.nn.Module | None, torch.nn.Module | None, list[str]]:
    """The FID Inception and the LPIPS net the config's weights allow, and one line per metric left out."""
    missing, fid, net = [], None, None
    try:
        fid = TorchScriptInception(require_file(cfg["fid"]["weights"], "fid.weights", "FID Inception"),
                                   cfg["fid"]["resize"])
    except MissingWeights as err:
        missing.append(f"FID not computed: {err}")
    try:
        net = build_lpips(cfg["lpips"]["backbone"], cfg["lpips"]["linear"])
    except MissingWeights as err:
        missing.append(f"LPIPS not computed: {err}")
    return fid, net, missing


def select_clips(folder: Path, max_side: int | None = None) -> tuple[list[Path], list[str]]:
    """The folder's ``.mp4`` clips, sorted, and the names of those whose larger side exceeds ``max_side``
    (left out: full-body 1080 px frames cost minutes each on a CPU; None keeps every clip)."""
    videos, too_large = [], []
    for path in sorted(folder.glob("*.mp4")):
        info = media.probe(path) if max_side is not None else None
        if info is not None and max(info.width, info.height) > int(max_side):
            too_large.append(path.name)
        else:
            videos.append(path)
    return videos, too_large


def first_frames(videos: Sequence[Path], num_frames: int, out: Path) -> list[Path]:
    """Each video's first ``num_frames`` frames with the sound under them, cut into ``out/first<N>/`` (kept
    for a rerun); a clip that is no longer is used as it is."""
    cut = []
    for video in videos:
        info = media.probe(video)
        if info.num_frames <= num_frames:
            cut.append(video)
            continue
        part = split.Part(f"first{num_frames}", "", video.name, 0, int(num_frames), float(info.fps))
        cut.append(split.cut(part, video.parent, out))
    return cut


def run(cfg: Mapping, out_dir: Path) -> dict:
    """Dub and score the folder ``cfg['clips']`` with ``cfg['ckpt']``; writes metrics.json and realface.md."""

    videos, too_large = select_clips(Path(cfg["clips"]), cfg.get("max_side"))
    if len(videos) < 2:
        raise ValueError(f"clips={cfg['clips']}: needs at least 2 .mp4 clips, found {len(videos)}"
                         + (f" of at most max_side={cfg['max_side']} px" if too_large else ""))
    if cfg["max_frames"]:
        videos = first_frames(videos, int(cfg["max_frames"]), Path(cfg["output"] or out_dir / "generated"))
    pipe = LipSyncPipeline.from_pretrained(cfg["ckpt"])
    opts = options_from_mapping(cfg["options"])
    selfs, crosses = dub_all(pipe, videos, Path(cfg["output"] or out_dir / "generated"), opts)
    faces = MediaPipeFaces(mesh_every=1)
    clips = [load_clip(v, pipe.crop, pipe.mask, faces, cfg["max_frames"]) for v in videos]
    fid, lpips_net, missing = build_metrics(cfg)
    scorer = Scorer(faces, int(pipe.crop.resolution), opts.resolved(), fid, lpips_net, int(cfg["shift_frames"]),
                    int(cfg["crf"]), int(cfg["fid_stride"]))
    score(scorer, clips, selfs, crosses)
    boot = cfg["bootstrap"]
    summary = scorer.table.summary(int(boot["resamples"]), float(boot["level"]), int(boot["seed"]))
    fids = scorer.fids(int(boot["frechet_resamples"]), float(boot["level"]), int(boot["seed"]))
    metrics = {"ckpt": str(cfg["ckpt"]), "clips": str(cfg["clips"]), "videos": [v.name for v in videos],
               "left_out": {name: f"larger side over max_side={cfg['max_side']} px" for name in too_large},
               "protocol": protocol(cfg, int(pipe.crop.resolution)), "summary": summary, "fid": fids,
               "per_clip": scorer.table.rows, "missing_weights": missing}
    _write(out_dir / "metrics.json", json.dumps(metrics, indent=1, default=float))
    _write(out_dir / "realface.md", markdown(summary, metrics["fid"]))
    frames_picture(clips, selfs, crosses, out_dir / "frames.png")
    return metrics


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with media.atomic_path(path) as tmp:
        tmp.write_text(text)


@hydra_main("evaluate_realface", "lipsync-evaluate-realface")
def main(cfg: DictConfig) -> None:
    configure_threads(int(cfg.threads))
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    metrics = run(OmegaConf.to_container(cfg, resolve=True), out_dir)
    print((out_dir / "realface.md").read_text())
    print(f"metrics: {out_dir / 'metrics.json'}")
    if metrics["left_out"]:
        print(f"left out {len(metrics['left_out'])} clips larger than max_side={cfg.max_side} px: "
              + ", ".join(metrics["left_out"]))
    for line in metrics["missing_weights"]:
        print(line)


if __name__ == "__main__":
    main()
