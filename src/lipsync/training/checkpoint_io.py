"""Atomic checkpoint writes: a crash while saving never leaves the only checkpoint corrupt (issue 7)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

# Temp-file prefix: hidden, no ".ckpt" suffix and not "last*", so a half-written file left by a kill -9
# is never picked up by ckpt_path="last" (the newest last*.ckpt) or taken for a checkpoint.
TEMP_PREFIX = ".ckpt-partial-"


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
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())  # the bytes must be on disk before the rename makes them the checkpoint
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
