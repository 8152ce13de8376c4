"""Atomic checkpoint writes: a crash while saving never leaves the only checkpoint corrupt (issue 7); and
the one reader of a trained network's weights (``init_from``, a distillation's teacher)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO
from safetensors.torch import load_file
from torch import Tensor

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


def read_net_weights(path: str | os.PathLike, what: str = "init_from") -> dict[str, Tensor]:
    """The raw network's weights, keyed as its ``state_dict``, from a pipeline folder (``model.safetensors``,
    ``net.*``) or a Lightning checkpoint of a training system (``state_dict``, ``denoiser.net.*``).

    Raises:
        ValueError: the file is missing or holds no network (one line starting with ``what``).
    """
    file = Path(path)
    if file.is_dir():
        file = file / "model.safetensors"
    if not file.is_file():
        raise ValueError(f"{what}: {file} does not exist")
    if file.suffix == ".safetensors":
        state, prefix = load_file(file), "net."
    else:
        state, prefix = torch.load(file, map_location="cpu", weights_only=True)["state_dict"], "denoiser.net."
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not weights:
        raise ValueError(f"{what}: {file} holds no network weights ({prefix}*)")
    return weights
