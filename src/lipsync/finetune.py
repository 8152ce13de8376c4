"""Per-person fine-tuning: one video of a new person in, a pipeline folder that dubs that person out.

    python -m lipsync.finetune video=PERSON.mp4 out=DIR [steps=250] [holdout=0.2]   (conf/finetune.yaml)

Small models cannot learn every face from minutes of video, but minutes of one person are enough to look
right on that person (GeneFace, SyncTalk). The stages, each resuming when run again:

1. cut (:mod:`lipsync.prepare.split`): the video's last ``holdout`` is held out in time (``split/``);
2. curate the head with ``lipsync.prepare`` at the base model's own crop, Whisper features cached;
3. train ``steps`` optimizer steps from the base model's weights (``lipsync.train experiment=<base's>
   init_from=<base>``, cosine-annealed learning rate), then convert to ``DIR/model``;
4. score the base and the fine-tuned model on the tail (:mod:`lipsync.evaluate.realface`): the tail dubbed
   with its own sound (opening correlation, LMD, SSIM / PSNR in the mask) and with the head's sound
   (sync with the head's true mouth, leak of the tail's), written to ``finetune.json`` / ``finetune.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from lipsync import media
from lipsync.cli import configure_threads, hydra_main
from lipsync.data.faces import MediaPipeFaces
from lipsync.evaluate import realface
from lipsync.infer.convert import convert
from lipsync.infer.options import options_from_mapping
from lipsync.infer.pipeline import LipSyncPipeline
from lipsync.prepare import split

#: the scores the before/after table shows: (row, metric, label)
SHOWN = (("self/model", "opening_r", "opening r"), ("self/model", "lmd", "LMD"), ("self/model", "ssim", "SSIM"),
         ("self/model", "psnr", "PSNR"), ("cross/model", "sync", "sync"), ("cross/model", "leak", "leak"))


#: stored segments of 1-2 s: one person's ~10 s head still fills a batch of 4 clips with distinct segments
SEGMENT_FRAMES = 25


@dataclass(frozen=True)
class Person:
    """The cut video: ``head`` is trained on; ``tail`` (None when nothing is held out) is scored."""

    head: Path
    tail: Path | None


def cut_person(video: Path, out: Path, holdout: float) -> Person:
    """Cut ``video`` into head and held-out tail under ``out/split`` (the whole video when ``holdout`` is 0)."""
    if not 0.0 <= holdout < 0.5:
        raise ValueError(f"holdout={holdout}: expected a fraction in [0, 0.5) (the tail is scored against "
                         "the head's sound, so the head must be the longer part)")
    info = media.probe(video)
    if holdout == 0:
        return Person(video, None)
    start = split.tail_start(info.num_frames, holdout)
    parts = [split.Part(p, "person", video.name, a, b, float(info.fps))
             for p, a, b in (("train", 0, start), ("tail", start, info.num_frames))]
    head, tail = (split.cut(p, video.parent, out / "split") for p in parts)
    return Person(head, tail)


def base_crop(base: Path) -> dict[str, Any]:
    """The crop spec of a pipeline folder (its ``config.json``): the head is curated exactly so."""
    config = base / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"base={base}: no pipeline folder there (config.json missing; the real-face "
                                "model is models/realface)")
    return json.loads(config.read_text())["components"]["crop"]


def prepare_command(head: Path, prepared: Path, crop: Mapping[str, Any], whisper: str) -> list[str]:
    """``lipsync.prepare`` of the head at the base model's crop, Whisper features cached in the shards."""
    encoders = ("+encoders={_target_: lipsync.prepare.curate.Encoders, _partial_: true, audio: {_target_: "
                f"lipsync.models.audio.WhisperAudioEncoder.from_checkpoint, path: {whisper}}}}}")
    return [sys.executable, "-m", "lipsync.prepare", f"input={head}", f"output={prepared}", "progress=false",
            *(f"crop.{k}={crop[k]}" for k in ("resolution", "scale", "shift_y", "alpha")),
            f"segment_frames={SEGMENT_FRAMES}", encoders]


def train_command(cfg: Mapping[str, Any], shards: Path, run_dir: Path) -> list[str]:
    """``lipsync.train`` from the base model's weights for ``steps`` steps (cosine to 0), in ``run_dir``."""
    if int(cfg["steps"]) < 1:
        raise ValueError(f"steps={cfg['steps']}: expected a positive number of optimizer steps")
    return [sys.executable, "-m", "lipsync.train", f"experiment={cfg['experiment']}", f"data.shards={shards}",
            f"init_from={cfg['base']}", f"trainer.max_steps={int(cfg['steps'])}",
            f"data.batch_size={int(cfg['batch_size'])}", f"model.optimizer.lr={cfg['lr']}",
            f"paths.log_dir={run_dir.parent}", f"name={run_dir.name}", f"torch_threads={int(cfg['threads'])}",
            "callbacks.checkpoint.every_n_train_steps=50"]


def _run(cmd: list[str], threads: int) -> None:
    """Run a stage (its own Hydra app); its failure is one line here, its own message printed above."""
    print("  $", " ".join(cmd), flush=True)
    code = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": str(threads)}).returncode
    if code:
        raise ValueError(f"stage `{' '.join(cmd[1:4])}` failed (exit status {code}); its error is printed above")


def train(cfg: Mapping[str, Any], person: Person, out: Path) -> Path:
    """Stages 2-3: curate, train (resuming), convert; returns the fine-tuned pipeline folder."""

    prepared, run_dir, model = out / "prepared", out / "runs" / "finetune", out / "model"
    threads = int(cfg["threads"])
    _run(prepare_command(person.head, prepared, base_crop(Path(cfg["base"])), str(cfg["whisper"])), threads)
    last = run_dir / "checkpoints" / "last.ckpt"
    if not (model / "config.json").exists() or not last.exists() or _steps(last) < int(cfg["steps"]):
        _run(train_command(cfg, prepared / "shards", run_dir), threads)
        convert(last, model, audio_encoder="packaged")
    return model


def _steps(last: Path) -> int:
    import torch

    return int(torch.load(last, map_location="cpu", weights_only=False).get("global_step", 0))


def score_model(model: Path, person: Person, out: Path, options: Mapping[str, Any]
                ) -> tuple[dict[str, dict], realface.Clip]:
    """The realface protocol on the tail: its own sound (self-reconstruction, with the baselines) and the
    head's sound cut to the tail's length (sync against the head's true mouth). Dubs are kept (resume)."""

    pipe, opts = LipSyncPipeline.from_pretrained(model), options_from_mapping(options)
    tail_info = media.probe(person.tail)
    wav = realface.driving_audio(person.head, tail_info.duration_s, out / "head_sound.wav")
    dubs = {"self": (person.tail, out / "self.mp4"), "cross": (wav, out / "cross.mp4")}
    for audio, result in dubs.values():
        if not result.exists():
            pipe(person.tail, audio, result, options=opts)
    faces = MediaPipeFaces(mesh_every=1)
    tail = realface.load_clip(person.tail, pipe.crop, pipe.mask, faces)
    head = realface.load_clip(person.head, pipe.crop, pipe.mask, faces, num_frames=len(tail.frames))
    scorer = realface.Scorer(faces, int(pipe.crop.resolution), opts.resolved())
    scorer.self_rows(tail, media.read_frames(dubs["self"][1]), float(tail_info.fps))
    scorer.cross_row(media.read_frames(dubs["cross"][1]), tail, head)
    return {row: items[0] for row, items in scorer.table.rows.items()}, tail


def report(before: Mapping[str, dict], after: Mapping[str, dict], frames: int) -> str:
    """The before/after table (markdown) of the held-out tail, the tail's baselines beside (the same for
    both models: the source itself resized, or its first frame's mouth)."""
    baselines = [r for r in after if r.startswith("self/") and r != "self/model"]
    head = ["held-out tail, %d frames" % frames, "base", "fine-tuned", *(r.split("/", 1)[1] for r in baselines)]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for row, key, label in SHOWN:
        cells = [before[row][key], after[row][key], *(after[b][key] if row == "self/model" else None
                                                       for b in baselines)]
        lines.append(f"| {label} | " + " | ".join("-" if c is None else f"{c:.3f}" for c in cells) + " |")
    lines.append(f"| chance (tail vs head sound) | {after['cross/model']['chance']:.3f} |" + " |" * (len(head) - 2))
    return "\n".join(lines) + "\n"


def picture(tail: realface.Clip, out: Path) -> Path:
    """``out/frames.png``: the tail's faces, then its base and fine-tuned dubs (own sound, head's sound)."""
    runs = [out / "eval" / name for name in ("base", "finetuned")]
    return realface.frames_picture([tail, tail], [r / "self.mp4" for r in runs], [r / "cross.mp4" for r in runs],
                                   out / "frames.png")


def run(cfg: Mapping[str, Any]) -> dict:
    """All stages; returns what ``finetune.json`` records."""
    video, out = Path(cfg["video"]), Path(cfg["out"])
    if not video.is_file():
        raise FileNotFoundError(f"video={video}: no such file")
    person = cut_person(video, out, float(cfg["holdout"]))
    model = train(cfg, person, out)
    record: dict[str, Any] = {"video": str(video), "base": str(cfg["base"]), "model": str(model),
                              "steps": int(cfg["steps"]), "holdout": float(cfg["holdout"])}
    if cfg["evaluate"] and person.tail is not None:
        record["before"], _ = score_model(Path(cfg["base"]), person, out / "eval" / "base", cfg["options"])
        record["after"], tail = score_model(model, person, out / "eval" / "finetuned", cfg["options"])
        text = report(record["before"], record["after"], media.probe(person.tail).num_frames)
        (out / "finetune.md").write_text(text)
        print(text)
        print(f"faces (source / self / cross; base above, fine-tuned below): {picture(tail, out)}")
    (out / "finetune.json").write_text(json.dumps(record, indent=1, default=float))
    print(f"fine-tuned model: {model}   (python -m lipsync.infer ckpt={model} video=... audio=...)")
    return record


@hydra_main("finetune", "lipsync-finetune")
def main(cfg: DictConfig) -> None:

    configure_threads(int(cfg.threads))
    run(OmegaConf.to_container(cfg, resolve=True))


if __name__ == "__main__":
    main()
