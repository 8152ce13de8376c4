"""Turn a training checkpoint into a pipeline folder (``save_pretrained`` format).

    python -m lipsync.infer.convert lightning_logs/RUN/checkpoints/last.ckpt OUT_DIR [--train-config CFG]

The component configs come from the run's resolved config (:func:`lipsync.infer.loading.
pipeline_config_from_training` says where each is read from); the weights from the checkpoint's
``state_dict`` (the EMA weights when the EMA callback ran), read with ``torch.load(weights_only=True)``.
The run's resolved training config and its step count go to ``training.json`` beside them (what trained
the weights: batch, learning rate, EMA, data, initial weights), when the checkpoint records them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


from lipsync.cli import ArgumentParser, user_errors
from lipsync.infer.checkpoint import load_torch_checkpoint
from lipsync.infer.loading import pipeline_config_from_training
from lipsync.infer.pipeline import LipSyncPipeline

__all__ = ["convert", "main", "pipeline_config_from_training"]

TRAINING_NAME = "training.json"


def convert(
    ckpt: str | os.PathLike, out: str | os.PathLike, train_config: str | os.PathLike | None = None,
    audio_encoder: str = "embed",
) -> Path:
    """Load a training checkpoint as a pipeline and write it with ``save_pretrained``."""
    pipe = LipSyncPipeline.from_pretrained(ckpt, train_config=train_config, generated_faces=None)
    folder = pipe.save_pretrained(out, audio_encoder=audio_encoder)
    if Path(ckpt).is_file():
        state = load_torch_checkpoint(ckpt)
        if "config" in state:
            record = {"global_step": state.get("global_step"), "config": state["config"]}
            tmp = folder / f".{TRAINING_NAME}.tmp"
            tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
            tmp.replace(folder / TRAINING_NAME)
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m lipsync.infer.convert",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--train-config", type=Path, default=None)
    parser.add_argument("--audio-encoder", choices=("embed", "packaged"), default="embed",
                        help="packaged: reference the packaged Whisper tiny.en (pinned by hash) instead of "
                             "embedding its 32 MB")
    args = parser.parse_args(argv)
    with user_errors("lipsync-convert"):
        print(convert(args.ckpt, args.out, args.train_config, args.audio_encoder))


if __name__ == "__main__":
    main()
