"""``python -m lipsync.evaluate.run data_dir=DIR ckpt=MODEL``: generate self-reconstructions, then score them.

Phases: 1. pick the test videos (for ``hdtf/`` and ``avaspeech/`` the videos of their test list, every
video of a flat folder); 2. dub each with its own audio through :class:`lipsync.infer.LipSyncPipeline` into
``<output>/<dataset>/<name>.mp4`` (existing outputs are kept, so an interrupted run resumes); 3. score
with :func:`lipsync.evaluate.folders.score_folders` (metrics.json, table1.md).

The test list of a dataset is ``DATA/<dataset>_test30.txt`` when it exists (what ``python -m
lipsync.evaluate.make_lists DATA`` writes), else the official ``data/eval_lists/<dataset>_test30.txt``.
Listed videos with no file are named and counted in metrics.json (``datasets.<name>.missing``) and in
the summary printed at the end, as are metrics whose weights are missing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from tqdm import tqdm

from lipsync.cli import hydra_main
from lipsync.evaluate.folders import score_folders
from lipsync.evaluate.make_lists import DATASETS, ListedVideos, listed_videos, videos_in
from lipsync.evaluate.report import summary
from lipsync.infer.pipeline import LipSyncPipeline, options_from_mapping

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """The videos to reconstruct, and for listed datasets the list they came from."""

    videos: dict[str, list[Path]]  # sub-folder ("" for a flat folder) -> videos
    lists: dict[str, ListedVideos] = field(default_factory=dict)  # sub-folder -> its matched test list


def select_videos(data: Path, use_lists: bool) -> Selection:
    """The test videos of ``data``: listed ones of ``hdtf/`` and ``avaspeech/`` (all if not ``use_lists``),
    else every video directly in ``data``.

    Raises:
        ValueError: no video found (names the folder), or none of a list's videos (names the list).
    """
    subs = [d for d in DATASETS if videos_in(data / d)]
    if not subs:
        found = videos_in(data)
        if not found:
            raise ValueError(f"no videos in {data} (expected {data}/hdtf/*.mp4, {data}/avaspeech/*.mp4 "
                             "or videos directly in it)")
        return Selection({"": found})
    if not use_lists:
        return Selection({d: videos_in(data / d) for d in subs})
    lists = {d: listed_videos(data, d) for d in subs}
    for d, listed in lists.items():
        log.info("%s: %d videos of %s (%d listed without a file)", d, len(listed.videos), listed.list_path,
                 len(listed.missing))
    return Selection({d: list(listed.videos) for d, listed in lists.items()}, lists)


def generate(pipe, videos: dict[str, list[Path]], output: Path, options) -> int:
    """Dub every video with its own audio into ``output/<dataset>/<stem>.mp4``; returns how many were made."""
    made = 0
    todo = [(sub, v) for sub, vs in videos.items() for v in vs]
    for sub, video in tqdm(todo, desc="self-reconstruction", unit="video"):
        target = output / sub / f"{video.stem}.mp4"
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        pipe(video, video, target, options)
        made += 1
    return made


def run(cfg: DictConfig, out_dir: Path) -> Path:
    """All three phases; returns metrics.json's path."""
    data = Path(cfg.data_dir)
    selection = select_videos(data, bool(cfg.lists))
    output = Path(cfg.output) if cfg.output else out_dir / "generated"
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    pipe = LipSyncPipeline.from_pretrained(cfg.ckpt, train_config=cfg.train_config, device=device)
    options = options_from_mapping(OmegaConf.to_container(cfg.options, resolve=True))
    log.info("generated %d videos into %s", generate(pipe, selection.videos, output, options), output)
    with open_dict(cfg):
        cfg.generated, cfg.reference = str(output), str(data)
    return score_folders(cfg, out_dir, selection.lists)


@hydra_main("evaluate_run", "lipsync-eval")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    path = run(cfg, out_dir)
    print((out_dir / "table1.md").read_text())
    print(f"metrics: {path}")
    print(summary(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
