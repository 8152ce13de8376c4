"""Score a folder of generated videos against a folder of references (``conf/evaluate.yaml``): the
datasets found in them, the metric region, and the files written (metrics.json, table1.md,
sync_offsets.png). ``python -m lipsync.evaluate`` and ``python -m lipsync.evaluate.run`` both call
:func:`score_folders`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lipsync.evaluate.make_lists import ListedVideos
from lipsync.evaluate.regions import Region
from lipsync.evaluate.report import describe_protocol, plot_sync_curves, table1, write_json, write_text
from lipsync.evaluate.score import VIDEO_SUFFIXES, build_scorers, match_pairs, score_dataset


def dataset_key(name: str) -> str:
    """Map a folder name to the paper's dataset key when it is one of them (HDTF_test -> hdtf)."""
    low = name.lower()
    return "hdtf" if "hdtf" in low else "avaspeech" if "ava" in low else name


def find_datasets(generated: Path, reference: Path, name: str | None) -> dict[str, list[tuple[Path, Path]]]:
    """Dataset name -> video pairs: same-named subfolders holding videos, else the folders themselves."""
    def has_videos(d: Path) -> bool:
        return d.is_dir() and any(p.suffix.lower() in VIDEO_SUFFIXES for p in d.iterdir())

    subs = sorted(d.name for d in reference.iterdir() if has_videos(d)) if reference.is_dir() else []
    shared = [s for s in subs if has_videos(generated / s)]
    if shared and not has_videos(reference):
        return {dataset_key(s): match_pairs(generated / s, reference / s) for s in shared}
    return {dataset_key(name or reference.resolve().name): match_pairs(generated, reference)}


def build_region(cfg: DictConfig, device: str) -> tuple[Region, str]:
    """The metric region, with syncnet_python's S3FD as face detector when ``s3fd.weights`` is a file;
    also names the detector used (for the protocol)."""
    weights = cfg.get("s3fd", {}).get("weights")
    if weights and Path(weights).is_file():
        from lipsync.evaluate.s3fd import S3FDFaces

        return instantiate(cfg.region, faces=S3FDFaces(weights, device=device)), f"S3FD ({weights})"
    face_mode = cfg.region.mode == "face"
    faces = cfg.region.faces._target_.rsplit(".", 1)[-1] if face_mode else "none (whole frame)"
    if weights:
        faces += f" (S3FD weights not found at {weights}: set s3fd.weights=PATH)"
    return instantiate(cfg.region), faces


def score_folders(cfg: DictConfig, out_dir: Path, lists: dict[str, ListedVideos] | None = None) -> Path:
    """Score every dataset; write metrics.json and table1.md into ``out_dir``; return metrics.json's path.

    Args:
        lists: dataset sub-folder -> the test list its videos came from (``lipsync.evaluate.run``); each
            dataset's result then records the list and the listed videos that had no file.
    """
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    datasets = find_datasets(Path(cfg.generated), Path(cfg.reference), cfg.dataset)
    settings = OmegaConf.to_container(cfg, resolve=True)
    scorers = build_scorers(settings, device)
    region, faces = build_region(cfg, device)
    results = {name: score_dataset(pairs, scorers, region, settings, device, name)
               for name, pairs in datasets.items()}
    for sub, listed in (lists or {}).items():
        if dataset_key(sub) in results:
            results[dataset_key(sub)].update(listed.as_json())
    protocol = describe_protocol(settings, faces)
    payload = {"generated": str(cfg.generated), "reference": str(cfg.reference),
               "experiment": cfg.experiment_name, "device": device, "protocol": protocol,
               "missing_weights": scorers.missing_weights(), "datasets": results}
    write_text(out_dir / "table1.md", table1(results, protocol))
    plot_sync_curves(results, out_dir / "sync_offsets.png")
    return write_json(out_dir / "metrics.json", payload)
