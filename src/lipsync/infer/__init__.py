"""Inference: dub a video with new speech (``python -m lipsync.infer`` or :class:`LipSyncPipeline`)."""

from lipsync.infer.checkpoint import CheckpointError
from lipsync.infer.pipeline import InferenceOptions, InferenceResult, LipSyncPipeline

__all__ = ["CheckpointError", "InferenceOptions", "InferenceResult", "LipSyncPipeline"]
