"""Faults (issue 7): atomic and periodic checkpoints, SIGTERM checkpoint, kill -9, exact resume."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lipsync.train import PREEMPTED_EXIT, train
from lipsync.training.checkpoint_io import TEMP_PREFIX, AtomicCheckpointIO
from test_configs import compose_train

ROOT = Path(__file__).resolve().parents[1]
# A tiny run: 16 px, 2 frames, space-to-depth factor 2, no validation, loss logged every step.
TINY_RUN = ["experiment=tiny", "data.size=16", "data.num_frames=2", "data.batch_size=2", "data.num_clips=8",
            "model.vae.factor=2", "model.net.net.latent_channels=12", "model.net.net.vae_downsample_factor=2",
            "trainer.limit_val_batches=0", "trainer.log_every_n_steps=1", "callbacks.progress=null",
            "torch_threads=1"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)  # train() sets torch_threads=1 for the whole process


def logged_losses(run_dir: Path) -> dict[int, float]:
    """train/loss per step from every TensorBoard event file of a run; a later process's value wins."""
    losses: dict[int, float] = {}
    for events in sorted(run_dir.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0}).Reload()
        if "train/loss" in acc.Tags()["scalars"]:
            losses.update({e.step: e.value for e in acc.Scalars("train/loss")})
    return losses


def in_process(tmp_path: Path, name: str, *overrides: str) -> Path:
    """Run `python -m lipsync.train` in this process; returns the run directory."""
    run_dir = tmp_path / name
    train(compose_train([*TINY_RUN, *overrides], run_dir))
    return run_dir


def assert_same_losses(got: dict[int, float], want: dict[int, float], steps: list[int]) -> None:
    missing = [s for s in steps if s not in got]
    assert not missing, f"steps {missing} were not logged"
    diff = {s: (got[s], want[s]) for s in steps if abs(got[s] - want[s]) > 1e-6 * max(1.0, abs(want[s]))}
    assert not diff, f"losses differ from the uninterrupted run at steps {diff}"


# --- atomic writes ------------------------------------------------------------------------------------
class ExplodesWhenPickled:
    """Makes torch.save fail half-way through writing, as a crash would."""

    def __reduce__(self) -> Any:
        raise RuntimeError("crash while writing the checkpoint")


def test_checkpoint_write_is_atomic(tmp_path: Path) -> None:
    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "weights": torch.arange(1000.0)}, path)
    with pytest.raises(RuntimeError, match="crash while writing"):
        io.save_checkpoint({"global_step": 2, "weights": torch.zeros(1000), "x": ExplodesWhenPickled()}, path)
    kept = torch.load(path, weights_only=False)
    assert kept["global_step"] == 1 and torch.equal(kept["weights"], torch.arange(1000.0))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no partial file left behind
    assert TEMP_PREFIX.startswith(".") and "last" not in TEMP_PREFIX


# --- periodic checkpoints and SIGTERM ------------------------------------------------------------------
class SigtermAt(Callback):
    """Sends this process a real SIGTERM once ``global_step`` reaches ``step`` (cluster preemption)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_periodic_end_and_sigterm_checkpoints_resume_exactly(tmp_path: Path) -> None:
    # Uninterrupted reference, keeping every periodic checkpoint.
    ref = in_process(tmp_path, "ref", "trainer.max_steps=5", "callbacks.checkpoint.every_n_train_steps=2",
                     "callbacks.checkpoint.save_top_k=-1")
    assert sorted(p.name for p in (ref / "checkpoints").glob("*.ckpt")) == [
        "last.ckpt", "step=0000002.ckpt", "step=0000004.ckpt"]
    # ... and last.ckpt written when training stopped at step 5, between two periodic checkpoints.
    assert torch.load(ref / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5

    # Preempted at step 3 (no periodic checkpoint is due): SIGTERM must write last.ckpt, then exit 143.
    run = ["trainer.max_steps=5", "callbacks.checkpoint.every_n_train_steps=1000",
           f"+callbacks.sigterm._target_={__name__}.SigtermAt", "+callbacks.sigterm.step=3"]
    with pytest.raises(SystemExit) as exit_info:
        in_process(tmp_path, "run", *run)
    assert exit_info.value.code == PREEMPTED_EXIT
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)  # plain values
    assert ckpt["global_step"] == 3
    assert ckpt["RandomClipDataModule"]["batches_consumed"] == 3  # data loader position
    assert ckpt["optimizer_states"][0]["state"][0]["step"] == 3  # AdamW moments
    assert int(ckpt["averaging_state"]["n_averaged"]) == 3 and "current_model_state" in ckpt  # EMA
    assert {"torch", "numpy", "python"} <= set(ckpt["rng_states"]) and ckpt["config"]["name"] == "tiny"

    # The same command again resumes at step 3 and reproduces the uninterrupted losses.
    in_process(tmp_path, "run", *run[:2])
    assert_same_losses(logged_losses(tmp_path / "run"), logged_losses(ref), steps=[3, 4])


# --- kill -9 ------------------------------------------------------------------------------------------
def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training exited ({proc.returncode}) before writing {path}:\n"
                                 f"{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no checkpoint after {timeout} s")
        time.sleep(0.05)


def test_kill9_then_same_command_resumes_with_identical_losses(tmp_path: Path) -> None:
    steps, every = 10, 2
    overrides = [f"trainer.max_steps={steps}", f"callbacks.checkpoint.every_n_train_steps={every}"]
    want = logged_losses(in_process(tmp_path, "ref", *overrides))
    assert sorted(want) == list(range(steps))

    cmd = [sys.executable, "-m", "lipsync.train", *TINY_RUN, *overrides, f"paths.log_dir={tmp_path}",
           "name=run"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    quiet = dict(cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc = subprocess.Popen(cmd, **quiet)
    wait_for(last, proc)
    moment = random.uniform(0.0, 1.0)  # a random moment: mid-step, mid-save or between
    time.sleep(moment)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"run ended ({proc.returncode}) before the kill (+{moment:.2f} s)"
    resumed_from = torch.load(last, weights_only=True)["global_step"]  # loads: the file is never half-written
    assert every <= resumed_from < steps and resumed_from % every == 0

    rerun = subprocess.run(cmd, **quiet, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert torch.load(last, weights_only=True)["global_step"] == steps
    assert_same_losses(logged_losses(tmp_path / "run"), want, steps=list(range(resumed_from, steps)))


# --- the same on curated litdata shards (LipSyncDataModule's loader state through Lightning) ----------
def test_sigterm_resume_on_shards_is_exact_mid_epoch(tmp_path: Path, tmp_path_factory) -> None:
    import whisper

    from _data_corpus import prepared_corpus
    from test_datamodule import TINY_WHISPER

    shards = prepared_corpus(tmp_path_factory.getbasetemp() / "data_corpus")["output"] / "shards"
    from lipsync.data.shards import read_shard_meta

    segments = read_shard_meta(shards)["segments"]  # one epoch = this many batches of 1
    assert 4 % segments != 0, "the SIGTERM at step 4 must land mid-epoch"
    ckpt = tmp_path / "tiny-whisper.pt"
    torch.manual_seed(0)
    model = whisper.model.Whisper(whisper.model.ModelDimensions(**TINY_WHISPER))
    torch.save({"dims": TINY_WHISPER, "model_state_dict": model.state_dict()}, ckpt)
    run = ["experiment=tiny", "data=shards", f"data.shards={shards}", "~data.size", "data.num_frames=2",
           "data.batch_size=1", "data.num_workers=0", f"data.audio_encoder.path={ckpt}",
           "model.net.net.audio_dim=16", "trainer.limit_val_batches=0", "trainer.log_every_n_steps=1",
           "callbacks.progress=null", "torch_threads=1", "trainer.max_steps=6",
           "callbacks.checkpoint.every_n_train_steps=1000"]
    ref = tmp_path / "ref"
    train(compose_train(run, ref))
    with pytest.raises(SystemExit):
        train(compose_train([*run, f"+callbacks.sigterm._target_={__name__}.SigtermAt", "+callbacks.sigterm.step=4"],
                            tmp_path / "run"))
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 4
    train(compose_train(run, tmp_path / "run"))
    assert_same_losses(logged_losses(tmp_path / "run"), logged_losses(ref), steps=[4, 5])


def test_cli_data_mistakes_are_one_line_and_exit_1(tmp_path: Path) -> None:
    """`python -m lipsync.train` with shards that are not there: one line naming the fix, status 1, no
    traceback (HYDRA_FULL_ERROR=1 brings the traceback back for debugging)."""
    cmd = [sys.executable, "-m", "lipsync.train", "experiment=tiny", "data=shards", "~data.size",
           f"data.shards={tmp_path / 'nowhere'}", f"paths.log_dir={tmp_path}", "name=bad"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | {"OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("lipsync-train: error: no complete shards at") and "lipsync.prepare" in last
    assert "Traceback" not in run.stderr
    full = subprocess.run(cmd, cwd=tmp_path, env=env | {"HYDRA_FULL_ERROR": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert full.returncode == 1 and "Traceback" in full.stderr
