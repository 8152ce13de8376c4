"""``python -m lipsync.demo [out=DIR] [train_steps=N] [ablations=true]`` (Hydra; ``conf/demo.yaml``)."""

from __future__ import annotations

import os
import subprocess
import sys

from omegaconf import DictConfig

from lipsync.cli import hydra_main
from lipsync.demo.run import run


@hydra_main("demo", "lipsync-demo")
def main(cfg: DictConfig) -> None:
    """Run every stage (:func:`lipsync.demo.run.run`); a failed stage subprocess is one line naming it."""
    try:
        run(cfg)
    except subprocess.CalledProcessError as err:  # the stage printed its own error above
        sys.exit(f"lipsync-demo: error: stage `{' '.join(map(str, err.cmd[1:4]))} ...` exited with status "
                 f"{err.returncode}; fix what it reported and run the same command again to resume")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
