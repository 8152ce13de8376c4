"""``python -m lipsync.synth output=DIR [num_videos=N seconds=S size=PX seed=K workers=2]`` (Hydra)."""

from __future__ import annotations

import json

from omegaconf import DictConfig

from lipsync.cli import hydra_main
from lipsync.synth.corpus import render_corpus


@hydra_main("synth", "lipsync-synth")
def main(cfg: DictConfig) -> None:
    summary = render_corpus(cfg.output, num_videos=cfg.num_videos, seconds=cfg.seconds, size=cfg.size,
                            seed=cfg.seed, workers=cfg.workers, videos_per_identity=cfg.videos_per_identity,
                            crf=cfg.crf, progress=cfg.progress)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
