"""``python -m lipsync.evaluate generated=DIR reference=DIR`` (Hydra; config ``conf/evaluate.yaml``): scores
the folders (:func:`lipsync.evaluate.folders.score_folders`) and prints the table."""

from __future__ import annotations

import json
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from lipsync.cli import hydra_main
from lipsync.evaluate.folders import score_folders
from lipsync.evaluate.report import summary


@hydra_main("evaluate", "lipsync-evaluate")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    path = score_folders(cfg, out_dir)
    print((out_dir / "table1.md").read_text())
    print(f"metrics: {path}")
    print(summary(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
