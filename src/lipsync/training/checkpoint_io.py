"""Atomic checkpoint writes: a crash while saving never leaves the only checkpoint corrupt (issue 7)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lipsync.media import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file beside the target, fsync it, then rename it over the target.

    ``os.replace`` is atomic on POSIX file systems, so readers (and a restarted run) see either the old
    checkpoint or the complete new one, never a half-written file. Unlike Lightning's default writer it
    streams to disk instead of first serialising into memory (a full SayAnything checkpoint with AdamW
    and EMA state is tens of GB) and fsyncs before the rename. Every save goes through this plugin:
    periodic ``ModelCheckpoint`` files, ``last.ckpt``, the SIGTERM checkpoint and ``trainer.save_checkpoint``.
    Remote paths (``s3://`` ...) have no rename, so they fall back to Lightning's own writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        if not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path)
            return
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)
            _fsync(tmp)  # the data must be on disk before the rename makes it the checkpoint


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
