"""Lightning's training-loop overhead against a bare PyTorch loop over the same tiny model and data (issue 7).

    python benchmarks/bench_loop_overhead.py [--steps 60] [--repeats 3] [--size 32] [--frames 4]

Both loops run the same system (experiment=tiny at tiny width), the same DataLoader (resumable stream)
and the same AdamW: the bare loop calls the system's own pieces (latents, conditions, dropout, loss),
backward and step; Lightning runs ``Trainer.fit`` with logging, checkpointing and progress bar off.
A third line runs Lightning with the shipped callbacks and TensorBoard logger (what a real run pays).
Runs are interleaved and repeated, and the median per-step time after warm-up is kept, because this
machine's load changes under us. It also times ``experiment=tiny`` as configured (steps per minute),
which sets its checkpoint interval (about one per minute). Writes bench_results/loop_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import open_dict
from tqdm import tqdm

from lipsync.benchresults import RESULTS, Results
from lipsync.cli import config_dir
from lipsync.train import instantiate_all
WARMUP = 5


class StepClock(Callback):
    """Wall time at the end of every training batch."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_end(self, *args: Any) -> None:
        self.stamps.append(time.perf_counter())


def per_step(stamps: list[float]) -> float:
    """Median seconds per step after the warm-up steps."""
    gaps = [b - a for a, b in zip(stamps[WARMUP:], stamps[WARMUP + 1:])]
    return statistics.median(gaps)


def compose_cfg(overrides: list[str], out: str) -> Any:
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = out
    return cfg


def build(cfg: Any) -> tuple[L.LightningModule, L.LightningDataModule]:
    L.seed_everything(cfg.seed, verbose=False)
    return instantiate(cfg.model), instantiate(cfg.data)


def bare_loop(cfg: Any, steps: int, clock: Any = time.perf_counter) -> float:
    """Plain PyTorch: the system's own step pieces, backward, AdamW step; ``clock`` seconds per step."""
    system, dm = build(cfg)
    optimizer = system.configure_optimizers()
    system.train()
    loader = iter(dm.train_dataloader())
    stamps = []
    for i in range(steps):
        batch = next(loader)
        g = system.step_generator("train", 0, i)
        cond = system.dropout(system.conditions(batch), generator=g)
        loss = system.loss(system.denoiser, system.latents(batch), cond, generator=g).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        stamps.append(clock())
    return per_step(stamps)


def lightning_loop(cfg: Any, steps: int, full: bool) -> float:
    """Trainer.fit; ``full`` adds the shipped callbacks and TensorBoard logger of a real run."""
    system, dm = build(cfg)
    clock = StepClock()
    callbacks = [*instantiate_all(cfg.callbacks), clock] if full else [clock]
    loggers = instantiate_all(cfg.logger) if full else False
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=0, logger=loggers,
                        callbacks=callbacks, enable_checkpointing=full, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False, num_sanity_val_steps=0,
                        log_every_n_steps=cfg.trainer.log_every_n_steps,
                        default_root_dir=cfg.paths.output_dir)
    trainer.fit(system, datamodule=dm)
    return per_step(clock.stamps)


def main() -> None:
    results = Results()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--tiny-steps", type=int, default=25, help="steps of experiment=tiny as configured")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "loop_overhead.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        small = compose_cfg(["experiment=tiny", f"data.size={args.size}", f"data.num_frames={args.frames}",
                             "data.batch_size=2", "callbacks.progress=null"], tmp)
        times: dict[str, list[float]] = {"bare": [], "lightning": [], "lightning_with_callbacks": []}
        runs = [(name, r) for r in range(args.repeats) for name in times]
        for name, _ in tqdm(runs, desc="interleaved runs", file=sys.stderr):
            if name == "bare":
                times[name].append(bare_loop(small, args.steps))
            else:
                times[name].append(lightning_loop(small, args.steps, full=name != "lightning"))
        tiny = compose_cfg(["experiment=tiny", "callbacks.progress=null"], tmp)
        tiny_step = bare_loop(tiny, args.tiny_steps)
        # CPU seconds of this process per step: what the step costs on an otherwise idle machine.
        tiny_cpu = bare_loop(tiny, args.tiny_steps, clock=time.process_time)

    median = {k: statistics.median(v) for k, v in times.items()}
    every = tiny.callbacks.checkpoint.every_n_train_steps
    result = {
        "what": "median seconds per training step after warm-up, experiment=tiny model, CPU",
        "data": {"size": args.size, "frames": args.frames, "batch_size": 2}, "steps": args.steps,
        "repeats": args.repeats, "threads": args.threads, "load_average": os.getloadavg(),
        "seconds_per_step": median, "all_runs": times,
        "lightning_overhead_pct": 100 * (median["lightning"] / median["bare"] - 1),
        "lightning_with_callbacks_overhead_pct":
            100 * (median["lightning_with_callbacks"] / median["bare"] - 1),
        "target_pct": 5.0,
        "experiment_tiny": {"seconds_per_step": tiny_step, "cpu_seconds_per_step": tiny_cpu,
                            "steps_per_minute_idle": 60 / tiny_cpu, "checkpoint_every_n_train_steps": every,
                            "minutes_between_checkpoints_idle": every * tiny_cpu / 60,
                            "minutes_between_checkpoints_measured": every * tiny_step / 60},
    }
    results.json(args.out, result)
    keys = ("seconds_per_step", "lightning_overhead_pct", "lightning_with_callbacks_overhead_pct",
            "experiment_tiny")
    print(json.dumps({k: result[k] for k in keys}, indent=2))


if __name__ == "__main__":
    main()
