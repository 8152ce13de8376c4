"""metrics.json and the paper's tables: Table 1 (per dataset, ours beside the paper's rows) and Table 3
(one row per experiment of a sweep, beside the paper's ablations).

    python -m lipsync.evaluate.report sweep=DIR    # Table 3 from every DIR/**/metrics.json

The paper's numbers are SPEC.md section 7, verbatim.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from lipsync.media import atomic_path

COLUMNS = ("fid", "fvd", "ssim", "psnr", "lpips", "sync_c")
HEADERS = ("FID", "FVD", "SSIM", "PSNR", "LPIPS", "Sync-C")
DATASETS = {"hdtf": "HDTF", "avaspeech": "AVASpeech"}

# Table 1 of the paper: method -> dataset -> (FID, FVD, SSIM, PSNR, LPIPS, Sync-C); None = "–"
PAPER_TABLE1: dict[str, dict[str, tuple[float | None, ...]]] = {
    "LatentSync": {"hdtf": (8.40, 200.83, 0.8870, 27.67, 0.0391, 9.29),
                   "avaspeech": (13.91, 234.95, 0.8836, 27.09, 0.0451, 8.31)},
    "MuseTalk": {"hdtf": (8.42, 209.79, 0.8871, 27.99, 0.0297, 6.39),
                 "avaspeech": (15.76, 331.71, 0.8800, 26.32, 0.0414, 6.46)},
    "SayAnything": {"hdtf": (5.68, 197.71, 0.9347, 29.04, 0.0239, 7.23),
                    "avaspeech": (11.31, 222.61, 0.8881, 27.12, 0.0332, 7.06)},
    "ground truth": {"hdtf": (None, None, None, None, None, 8.58),
                     "avaspeech": (None, None, None, None, None, 7.84)},
}

# Table 3 of the paper (HDTF), each ablation one factor away from the full model
PAPER_TABLE3: dict[str, tuple[float, ...]] = {
    "Video Fusion": (20.14, 247.73, 0.8589, 23.52, 0.0504, 6.09),
    "VAE Feature": (20.13, 244.42, 0.8569, 23.20, 0.0516, 5.88),
    "w/o Mask": (16.19, 299.44, 0.8676, 24.50, 0.0483, 6.54),
    "w/o Cfg": (14.58, 255.29, 0.8628, 23.72, 0.0510, 5.14),
}

DECIMALS = {"fid": 2, "fvd": 2, "ssim": 4, "psnr": 2, "lpips": 4, "sync_c": 2}


def describe_protocol(cfg: dict, faces: str) -> dict:
    """Every protocol choice of a run, as written into metrics.json and under the table.

    Args:
        cfg: the resolved ``conf/evaluate.yaml`` (with its preset).
        faces: the face detector actually used (S3FD falls back to the region's backend without weights).
    """
    r, fid, fvd, sync = cfg["region"], cfg["fid"], cfg["fvd"], cfg["syncnet"]
    crop = (f"face crop {r['scale']}x the box tracked on the reference" if r["mode"] == "face"
            else "whole frame")
    clips = ("every clip" if fvd.get("clips_per_video") is None
             else f"at most {fvd['clips_per_video']} clip(s) per video")
    ssim = {"skimage": "scikit-image Gaussian SSIM (border dropped)",
            "torchmetrics": "torchmetrics SSIM (reflect-padded border averaged)"}[cfg["ssim"]["kind"]]
    boot = cfg.get("bootstrap", {})
    choices = {
        "fid": (f"{crop}, {r['size']}px -> 299 ({fid['resize']} bilinear), every {fid['frame_stride']} "
                f"frame(s); covariance / (N - {fid['ddof']}); weights {Path(str(fid['weights'])).name}"),
        "fvd": (f"{crop}, {r['size']}px; {fvd['clip_len']}-frame clips from frame {fvd['start']} every "
                f"{fvd['stride']} frames, {clips}; I3D input {fvd['input']}; "
                f"covariance / (N - {fvd['ddof']})"),
        "ssim": f"{crop}, {r['size']}px; {ssim}, window 11, sigma 1.5; mean over frames, then videos",
        "psnr": f"{crop}, {r['size']}px; data range 1, capped at 100 dB; mean over frames, then videos",
        "lpips": f"{crop}, {r['size']}px; AlexNet + LPIPS v0.1 linear layers",
        "sync": (f"faces: {faces}; syncnet_python crop (crop_scale {r['sync_crop_scale']}) at "
                 f"{r['sync_size']}px, 25 fps, offsets +-{sync['vshift']}; track filter: more than "
                 f"{sync.get('min_track', 0)} detections, faces above {sync.get('min_face_size', 0)} px; "
                 "Sync-C = median - min distance, Sync-D = min"),
        "intervals": (f"{boot.get('level', 0.95):.0%} percentile bootstrap over videos "
                      f"({boot.get('resamples')} resamples; {boot.get('frechet_resamples')} for FID/FVD)"),
    }
    meta = cfg.get("protocol") or {}
    return {"preset": meta.get("preset", "custom"), "reproduces": meta.get("reproduces"),
            "assumptions": dict(meta.get("assumptions") or {}), **choices}


def _fmt(key: str, value: float | None, interval: list[float] | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    d = DECIMALS[key]
    if interval is None:
        return f"{value:.{d}f}"
    return f"{value:.{d}f} [{interval[0]:.{d}f}, {interval[1]:.{d}f}]"


def _ours(result: dict | None, suffix: str = "") -> list[str]:
    """Our formatted cells of one dataset, each with its bootstrap interval when there is one."""
    if result is None:
        return ["–"] * len(COLUMNS)
    metrics, intervals = result["metrics"], result.get("intervals", {})
    # ground-truth row: only Sync-C is defined for the reference videos themselves
    keys = [None] * 5 + ["sync_c" + suffix] if suffix else list(COLUMNS)
    return [_fmt(col, metrics.get(key), intervals.get(key)) if key else "–"
            for col, key in zip(COLUMNS, keys)]


def protocol_lines(protocol: dict | None) -> list[str]:
    """The protocol under a table: preset, what it reproduces, then every metric's choices."""
    if not protocol:
        return ["Protocol: not recorded (metrics.json from before protocols were written)."]
    lines = [f"Protocol preset **{protocol.get('preset', 'custom')}**"
             + (f": {protocol['reproduces']}." if protocol.get("reproduces") else ".")]
    lines += [f"- {k}: {v}" for k, v in protocol.items() if k not in ("preset", "reproduces", "assumptions")]
    lines += [f"- assumed ({k}): {v}" for k, v in (protocol.get("assumptions") or {}).items()]
    return lines


def table1(datasets: dict[str, dict], protocol: dict | None = None) -> str:
    """Markdown in the layout of the paper's Table 1: paper rows, then ours, one column group per dataset.

    Our cells carry their bootstrap interval over videos ``value [lo, hi]``; the protocol follows the table.

    Args:
        datasets: dataset name -> the ``score_dataset`` result (``{"metrics": {...}, ...}``). Names
            ``hdtf`` and ``avaspeech`` line up with the paper's columns; any other name gets its own group.
        protocol: :func:`describe_protocol` of the run.
    """
    # the paper's two datasets keep their column groups whenever either was scored; others follow
    paper = list(DATASETS) if any(d in DATASETS for d in datasets) else []
    names = paper + [d for d in datasets if d not in DATASETS]
    head = "| method | " + " | ".join(f"{DATASETS.get(d, d)} {h}" for d in names for h in HEADERS) + " |"
    rule = "|---|" + "---|" * (len(names) * len(COLUMNS))
    rows = [head, rule]
    for method, per_dataset in PAPER_TABLE1.items() if paper else ():
        cells = [_fmt(k, v) for d in names for k, v in zip(COLUMNS, per_dataset.get(d, (None,) * 6))]
        rows.append(f"| {method} (paper) | " + " | ".join(cells) + " |")
    for label, suffix in (("ours", ""), ("ours: ground truth", "_reference")):
        cells = [c for d in names for c in _ours(datasets.get(d), suffix)]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    notes = ["", "Ours: mean [95 % bootstrap interval over videos]. The paper rows' protocol is not "
             "published (README, Evaluate)."] + protocol_lines(protocol)
    return "\n".join(rows + notes) + "\n"


def table3(experiments: dict[str, dict], dataset: str = "hdtf") -> str:
    """Markdown in the layout of the paper's Table 3: the paper's ablations, then one row per experiment.

    Each row names its protocol preset; rows scored under different presets are flagged under the table.

    Args:
        experiments: experiment name -> metrics.json content (its ``datasets[dataset]`` result is used, or
            its only dataset when ``dataset`` is absent).
    """
    rows = [f"| ablation ({DATASETS.get(dataset, dataset)}) | " + " | ".join(HEADERS) + " | protocol |",
            "|---|" + "---|" * (len(COLUMNS) + 1)]
    for name, values in PAPER_TABLE3.items():
        rows.append(f"| {name} (paper) | " + " | ".join(_fmt(k, v) for k, v in zip(COLUMNS, values))
                    + " | paper's |")
    protocols = {}
    for name, result in sorted(experiments.items()):
        per_dataset = result["datasets"]
        chosen = per_dataset.get(dataset) or next(iter(per_dataset.values()))
        protocols[name] = result.get("protocol")
        preset = (protocols[name] or {}).get("preset", "not recorded")
        rows.append(f"| {name} | " + " | ".join(_ours(chosen)) + f" | {preset} |")
    notes = ["", "Ours: mean [95 % bootstrap interval over videos]."]
    described = {json.dumps(p, sort_keys=True) for p in protocols.values()}
    if len(described) > 1:
        notes.append("**Warning: these rows were scored under different protocols; compare them only "
                     "metric by metric where the choices below agree.**")
        for name, protocol in sorted(protocols.items()):
            notes += ["", f"{name}:"] + protocol_lines(protocol)
    elif protocols:
        notes += protocol_lines(next(iter(protocols.values())))
    return "\n".join(rows + notes) + "\n"


def _some(names: list[str], shown: int = 8) -> str:
    """The first ``shown`` names, then how many more."""
    more = f", +{len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def missing_videos_line(datasets: dict[str, dict]) -> str | None:
    """One line counting and naming, per dataset, the listed videos that had no file; None if none."""
    parts = [f"{name} {len(r['missing'])} of {r['listed']} ({_some(r['missing'])})"
             for name, r in datasets.items() if r.get("missing")]
    if not parts:
        return None
    return (f"missing listed videos, not scored: {'; '.join(parts)} (all named in metrics.json "
            "datasets.<name>.missing)")


def missing_weights_line(missing: dict[str, dict[str, str]]) -> str | None:
    """One line naming each metric not computed for a missing weight file, with the key that enables it."""
    if not missing:
        return None
    parts = [f"{metric} (set {m['config_key']}=PATH; nothing at {m['path']})"
             for metric, m in missing.items()]
    return "not computed, weights missing: " + ", ".join(parts)


def summary(payload: dict) -> str:
    """What a run prints last: per dataset the videos scored and other gaps, then the two warning lines."""
    missing = payload.get("missing_weights") or {}
    lines = []
    for name, r in payload["datasets"].items():
        listed = f" (list {r['list']}: {r['listed']} IDs)" if "list" in r else ""
        lines.append(f"{name}: {r['num_videos']} videos scored{listed}")
        lines += [f"  not computed: {key}: {why}"
                  for key, why in r["not_computed"].items() if key not in missing]
        lines += [f"  failed: {video}: {why}" for video, why in r["failed"].items()]
    warnings = (missing_videos_line(payload["datasets"]), missing_weights_line(missing))
    return "\n".join(lines + [w for w in warnings if w])


def plot_sync_curves(datasets: dict[str, dict], path: str | os.PathLike) -> Path | None:
    """One panel per dataset: each generated video's mean SyncNet distance against the audio offset.

    A sharp dip at offset 0 is a video in sync; a flat curve is one SyncNet finds no lips in. Returns
    None (nothing written) when no video has a SyncNet curve.
    """
    curves = {}
    for name, result in datasets.items():
        rows = [v["sync_dists"] for v in result["per_video"].values() if "sync_dists" in v]
        if rows:
            curves[name] = rows
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.5), squeeze=False)
    for ax, (name, rows) in zip(axes[0], curves.items()):
        vshift = (len(rows[0]) - 1) // 2
        offsets = [vshift - k for k in range(len(rows[0]))]  # index k <-> offset vshift - k
        for row in rows:
            ax.plot(offsets, row, alpha=0.5)
        ax.set(title=f"{DATASETS.get(name, name)}: SyncNet distance", xlabel="audio lead (frames)",
               ylabel="mean distance")
        ax.axvline(0, color="k", lw=0.5)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def _finite(obj: object) -> object:
    """JSON has no inf/nan: replace them by None (read as "not defined")."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite(payload), indent=2) + "\n")
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def experiment_name(metrics_json: Path, sweep: Path) -> str:
    """An experiment's name: the ``experiment`` field if the run recorded one, else its folder path."""
    content = json.loads(metrics_json.read_text())
    return content.get("experiment") or str(metrics_json.parent.relative_to(sweep)) or sweep.name


def sweep_table(sweep: str | os.PathLike, dataset: str = "hdtf") -> Path:
    """Collect ``sweep/**/metrics.json`` into ``sweep/table3.md`` (Table 3 layout); returns its path.

    Raises:
        ValueError: the folder holds no metrics.json.
    """
    sweep = Path(sweep)
    found = sorted(sweep.rglob("metrics.json"))
    if not found:
        raise ValueError(f"no metrics.json under {sweep}: run `python -m lipsync.evaluate` per experiment")
    experiments = {experiment_name(p, sweep): json.loads(p.read_text()) for p in found}
    return write_text(sweep / "table3.md", table3(experiments, dataset))


def main(argv: list[str] | None = None) -> int:
    """``python -m lipsync.evaluate.report sweep=DIR [dataset=hdtf]``."""
    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv) if "=" in a)
    if "sweep" not in args:
        print("usage: python -m lipsync.evaluate.report sweep=DIR [dataset=hdtf]", file=sys.stderr)
        return 2
    try:
        path = sweep_table(args["sweep"], args.get("dataset", "hdtf"))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(path.read_text())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
