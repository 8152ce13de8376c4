"""One training per run folder: a second ``python -m lipsync.train`` on a folder in use is refused.

Two trainings started on the same run folder both ran and wrote the same checkpoints. The folder now
holds ``run.lock``, locked with ``flock`` by the training that writes there and holding its process id.
The kernel releases an ``flock`` when its process ends, however it ends, so the lock of a killed run is
simply taken over by the next start: there is no stale lock to delete by hand.

Only the first process of a run takes it: the other ranks of a multi-process run (Lightning's DDP
launcher, torchrun, SLURM) set ``LOCAL_RANK``, ``NODE_RANK``, ``RANK`` or ``SLURM_PROCID`` and share the
folder with it by design.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


class RunFolderInUse(ValueError):
    """Another live process trains into the run folder (message is one line)."""


def is_first_process() -> bool:
    """Whether this is rank 0 of its run (or a run of one process)."""
    return all(os.environ.get(name, "0") in ("", "0") for name in RANK_VARIABLES)


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder/run.lock`` for the block; yields the lock file.

    Raises:
        RunFolderInUse: a live process holds it (the message names the folder and that process's id).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the holder's pid must stay readable
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderInUse(
                f"run folder {folder} is in use by process {_holder(fd)} (another training writes there); "
                "wait for it to end, stop it, or give this run another name=") from None
        previous = _holder(fd)
        if previous != "unknown" and previous != str(os.getpid()):
            log.info("%s: taking over the lock of process %s, which ended without releasing it", folder,
                     previous)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # an end this process saw: an id left in the file means it was killed
    finally:
        os.close(fd)  # releases the flock; the file stays (deleting it would race a starting run)


def _holder(fd: int) -> str:
    """The process id written in the lock file, or "unknown" (empty: its holder was killed while writing)."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "unknown"
