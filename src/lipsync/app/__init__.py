"""The dubbing web app (``python -m lipsync.app``): a Gradio page over :class:`lipsync.infer.LipSyncPipeline`.

- :mod:`.catalog`: checkpoints and examples found on disk;
- :mod:`.workdirs`: per-request folders and their cleanup policy;
- :mod:`.jobs`: one dubbing job, without any web code (its side-by-side video:
  :mod:`lipsync.evaluate.side_by_side`);
- :mod:`.ui`: the page and its queue (:func:`build_app` -> :class:`LipSyncApp`).

Importing this package does not import Gradio; :func:`build_app` loads it on first use.
"""

from __future__ import annotations

from typing import Any

from lipsync.app.catalog import Example, find_checkpoints, find_examples
from lipsync.app.jobs import DubRequest, DubResult, PipelineCache, pipeline_from_pretrained, run_dub

__all__ = ["Example", "find_checkpoints", "find_examples", "DubRequest", "DubResult", "PipelineCache",
           "pipeline_from_pretrained", "run_dub", "AppSettings", "LipSyncApp", "build_app"]


def __getattr__(name: str) -> Any:
    if name in ("AppSettings", "LipSyncApp", "build_app"):
        from lipsync.app import ui

        return getattr(ui, name)
    raise AttributeError(f"module 'lipsync.app' has no attribute {name!r}")
