"""The dubbing web app (``python -m lipsync.app``): a Gradio page over :class:`lipsync.infer.LipSyncPipeline`.

- :mod:`.catalog`: checkpoints and examples found on disk;
- :mod:`.workdirs`: per-request folders and their cleanup policy;
- :mod:`.compare`: the side-by-side (source | result) video;
- :mod:`.jobs`: one dubbing job, without any web code;
- :mod:`.ui`: the page, the queue, and :func:`launch`.

Importing this package does not import Gradio; :func:`build_app` and :func:`launch` load it on first use.
"""

from __future__ import annotations

from typing import Any

from lipsync.app.catalog import Example, find_checkpoints, find_examples
from lipsync.app.jobs import DubRequest, DubResult, PipelineCache, pipeline_from_pretrained, run_dub

__all__ = ["Example", "find_checkpoints", "find_examples", "DubRequest", "DubResult", "PipelineCache", "run_dub",
           "pipeline_from_pretrained",
           "AppSettings", "build_app", "launch"]


def __getattr__(name: str) -> Any:
    if name in ("AppSettings", "build_app", "launch"):
        from lipsync.app import ui

        return getattr(ui, name)
    raise AttributeError(f"module 'lipsync.app' has no attribute {name!r}")
