"""Local weight files for the scoring networks, and the one-line error when one is missing.

Nothing here downloads: every network that scores (Inception, I3D, AlexNet for LPIPS, SyncNet) is read
from a path in config (``conf/evaluate.yaml``; SyncNet also in ``conf/prepare.yaml``'s sync filter).
When the file is absent the metric is reported as
"not computed" with :class:`MissingWeights`' message, and the other metrics still run.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class MissingWeights(FileNotFoundError):
    """A metric's weight file is absent; the message names the file and the config key that sets it."""

    def __init__(self, path: str | os.PathLike, config_key: str, what: str) -> None:
        self.path = Path(path)
        self.config_key = config_key
        super().__init__(f"{what} weights not found at {self.path} (set {config_key}=PATH)")


def require_file(path: str | os.PathLike | None, config_key: str, what: str) -> Path:
    """Return ``path`` as a Path if it is an existing file, else raise :class:`MissingWeights`."""
    if path is None or str(path) == "" or not Path(path).is_file():
        raise MissingWeights(path if path else "<unset>", config_key, what)
    return Path(path)


def state_dict_sha256(module: "torch.nn.Module") -> str:
    """SHA-256 over a module's tensors (sorted names, float32 bytes): the identity of its weights."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()
