"""One training per run folder (issue 30): a second start on a folder in use is refused in one line naming
the folder and the process holding it; the lock of a killed run is taken over."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from lipsync.training.run_lock import LOCK_FILE, RunFolderInUse, is_first_process, run_lock

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
HOLD = ("import sys, time\nfrom lipsync.training.run_lock import run_lock\n"
        "with run_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(600)\n")


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    """Another process holding the lock of ``tmp_path/run``."""
    folder = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                            env=ENV)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc, folder
    finally:
        proc.kill()
        proc.wait()


def test_a_folder_held_by_a_live_process_is_refused_naming_it_and_the_process(holder) -> None:
    proc, folder = holder
    with pytest.raises(RunFolderInUse) as info:
        with run_lock(folder):
            pass
    assert str(info.value).startswith(f"run folder {folder} is in use by process {proc.pid} ")
    assert "\n" not in str(info.value)
    assert (folder / LOCK_FILE).read_text() == f"{proc.pid}\n"  # the refused start changed nothing


def test_the_lock_of_a_killed_run_is_taken_over(holder, caplog) -> None:
    proc, folder = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with caplog.at_level(logging.INFO, logger="lipsync"), run_lock(folder) as lock:
        assert lock.read_text() == f"{os.getpid()}\n"
    assert caplog.messages == [f"{folder}: taking over the lock of process {proc.pid}, which ended without "
                               "releasing it"]
    assert (folder / LOCK_FILE).read_text() == ""  # released cleanly: the next start takes it silently
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lipsync"), run_lock(folder):
        pass
    assert caplog.messages == []


def test_only_the_first_process_of_a_run_takes_the_lock(monkeypatch) -> None:
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    assert is_first_process()
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert is_first_process()
    monkeypatch.setenv("LOCAL_RANK", "1")  # Lightning's DDP launcher starts rank 1 with this
    assert not is_first_process()


def test_a_second_training_cli_on_a_folder_in_use_is_one_line_and_status_1(holder, tmp_path: Path) -> None:
    proc, folder = holder
    cmd = [sys.executable, "-m", "lipsync.train", "experiment=tiny", "debug=smoke",
           f"paths.log_dir={tmp_path}", "name=run"]
    run = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1, run.stderr
    assert lines == [f"lipsync-train: error: run folder {folder} is in use by process {proc.pid} (another "
                     "training writes there); wait for it to end, stop it, or give this run another name="]
    assert not (folder / "checkpoints").exists()
