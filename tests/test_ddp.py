"""DDP on 2 CPU processes (gloo), real entry point: ranks see different data, end with equal weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from lipsync.data.batch import KEY

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3


class RecordRank(Callback):
    """Writes what this rank trained on and its final raw weights to ``out_dir/rank{r}.pt``."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.keys: list[list[str]] = []
        self.initial: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.initial = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.keys.append(list(batch[KEY]))
        if trainer.global_step == trainer.max_steps:  # raw weights, before EMA replaces them at train end
            final = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}
            record = {"keys": self.keys, "initial": self.initial, "final": final, "world": trainer.world_size}
            torch.save(record, self.out_dir / f"rank{trainer.global_rank}.pt")


def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "lipsync.train", "experiment=tiny", "data.size=16", "data.num_frames=2",
           "data.batch_size=2", "data.num_clips=16", "model.vae.factor=2", "model.net.net.latent_channels=12",
           "model.net.net.vae_downsample_factor=2", f"trainer.max_steps={STEPS}",
           "trainer.limit_val_batches=0",
           "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
           "trainer.strategy.process_group_backend=gloo", "callbacks.progress=null", "torch_threads=1",
           f"+callbacks.record._target_={__name__}.RecordRank", f"+callbacks.record.out_dir={tmp_path}",
           f"paths.log_dir={tmp_path}", "name=ddp"]
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert [len(r["keys"]) for r in ranks] == [STEPS, STEPS]
    for step, (a, b) in enumerate(zip(ranks[0]["keys"], ranks[1]["keys"])):
        assert not set(a) & set(b), f"step {step}: both ranks trained on {set(a) & set(b)}"
    seen = [k for r in ranks for batch in r["keys"] for k in batch]
    assert len(seen) == len(set(seen)) == 2 * STEPS * 2  # 16 clips: no clip twice within 12 samples
    assert all(torch.equal(ranks[0]["initial"][k], ranks[1]["initial"][k]) for k in ranks[0]["initial"])
    final0, final1 = ranks[0]["final"], ranks[1]["final"]
    assert all(torch.equal(final0[k], final1[k]) for k in final0), "ranks ended with different weights"
    assert any(not torch.equal(final0[k], ranks[0]["initial"][k]) for k in final0), "no training happened"
