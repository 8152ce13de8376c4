"""Inference: dub a video with new speech (``python -m lipsync.infer`` or :class:`LipSyncPipeline`).

The names below load lazily (PEP 562), so ``python -m lipsync.infer`` can reject bad arguments before
importing torch.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "LipSyncPipeline": "lipsync.infer.pipeline",
    "InferenceOptions": "lipsync.infer.pipeline",
    "InferenceResult": "lipsync.infer.pipeline",
    "CheckpointError": "lipsync.infer.checkpoint",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lipsync.infer' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
