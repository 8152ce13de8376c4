"""The demo's training run: the synthetic world, its shards, the trained model and its pipeline folder.

Each step runs the stage's own entry point (``lipsync.prepare``, ``lipsync.train``) as a subprocess, so
the demo trains exactly what those commands train; training runs in the background (:func:`start_training`)
while the demo dubs with the shipped model, and resumes from its last checkpoint when interrupted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig

from lipsync.infer.convert import convert
from lipsync.models.whisper_convert import ensure_whisper_tiny_en
from lipsync.synth.corpus import render_corpus


def run_stage(cmd: list[str]) -> None:
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
    """Curate ``corpus`` into shards with ``prepare_overrides``; returns the shard folder."""
    ensure_whisper_tiny_en()  # the real pretrained audio encoder, converted once from the packaged CT2 model
    prepared = out / "prepared"
    run_stage([sys.executable, "-m", "lipsync.prepare", f"input={corpus}", f"output={prepared}",
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


def trained_steps(run_dir: Path) -> int:
    """The optimizer steps the run's last checkpoint holds (0: none yet)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.exists():
        return 0
    return int(torch.load(last, map_location="cpu", weights_only=True).get("global_step", 0))


def start_training(cfg: DictConfig, shards: Path, run_dir: Path,
                   overrides: list[str]) -> subprocess.Popen | None:
    """Start training to ``train_steps`` in the background (resuming from the run's last checkpoint); None
    when the run already has them. Its OpenMP pool is ``train_threads`` wide, so the rest of the machine's
    cores stay free for the demo's own process (see conf/demo.yaml)."""
    if trained_steps(run_dir) >= int(cfg.train_steps):
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
