"""``python -m lipsync.prepare input=DIR_OR_LIST output=DIR [workers=N] [face_backend=...]`` (Hydra)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

os.environ.setdefault("GLOG_minloglevel", "2")  # before mediapipe loads: no C++ log lines per video

from lipsync.cli import hydra_main  # noqa: E402
from lipsync.prepare.curate import Curator  # noqa: E402
from lipsync.prepare.run import config_hash, list_inputs, prepare, skipped_files  # noqa: E402


def build_curator(cfg: DictConfig) -> Curator:
    """The per-input worker described by ``conf/prepare.yaml``."""
    output = Path(cfg.output).expanduser().resolve()
    f = cfg.filters
    settings = OmegaConf.to_container(cfg, resolve=True)
    curation = {k: settings[k] for k in ("fps", "sample_rate", "faces", "filters", "crop", "segment_frames",
                                         "ref_pool", "jpeg_quality", "encoders", "face_tracks")}
    return Curator(
        staging=output / "staging", faces=instantiate(cfg.faces),
        min_face=instantiate(f.min_face), min_duration=instantiate(f.min_duration),
        quality=instantiate(f.quality), sync=instantiate(f.sync), speech=instantiate(f.speech),
        crop=instantiate(cfg.crop),
        max_gap=f.max_gap, max_shift=f.max_shift, max_scale=f.max_scale,
        segment_frames=cfg.segment_frames, ref_pool=cfg.ref_pool, fps=cfg.fps, sample_rate=cfg.sample_rate,
        jpeg_quality=cfg.jpeg_quality, patch_margin=cfg.patch_margin, patch_budget_mb=cfg.patch_budget_mb,
        face_tracks=cfg.face_tracks,
        encoders=instantiate(cfg.encoders) if cfg.encoders else None,
        config_hash=config_hash(curation),
    )


def run(cfg: DictConfig) -> dict:
    """Curate ``cfg.input`` into ``cfg.output``; returns the summary printed by :func:`main`."""
    inputs = list_inputs(cfg.input, cfg.extensions)
    return prepare(build_curator(cfg), inputs, Path(cfg.output).expanduser().resolve(), workers=cfg.workers,
                   chunk_bytes=cfg.chunk_bytes, progress=cfg.progress,
                   skipped=skipped_files(cfg.input, cfg.extensions))


@hydra_main("prepare", "lipsync-prepare")
def main(cfg: DictConfig) -> None:
    print(json.dumps(run(cfg), indent=1))


if __name__ == "__main__":
    main()
