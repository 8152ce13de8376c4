"""report.json and report.md: the demo's one table (shipped, own, variants, ceilings) and what it measured.

Only formatting: the numbers come in as report.json's dict, assembled by :mod:`lipsync.demo.run`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lipsync import media
from lipsync.demo.results import on_every_pair

HEADER = ["| model | trained | sync/leak scored on | sync (mean ± sd) | leak (mean ± sd) | "
          "copy-input sync | SSIM in mask | PSNR in mask (dB) | FID |",
          "|---|---|---|---|---|---|---|---|---|"]

SCORES = ("sync = corr(measured mouth opening, opening the driving audio asks for); leak = corr(measured "
          "opening, the source video's own opening); copy-input = the untouched source scored for sync "
          "(chance).")


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _row(name: str, trained: str, scored: str, s: dict | None, q: dict | None) -> str:
    """One line of the report table: sync/leak (``s``, a :func:`lipsync.demo.dubbing.summarize` dict) and
    quality (``q``)."""
    sync = "—" if s is None else f"{s['sync_mean']:.2f} ± {s['sync_std']:.2f}"
    leak = "—" if s is None else f"{s['leak_mean']:.2f} ± {s['leak_std']:.2f}"
    copy = "—" if s is None else f"{s['copy_sync_mean']:.2f}"
    ssim, psnr, fid = (None, None, None) if q is None else (q["ssim"], q["psnr"], q["fid"])
    return (f"| {name} | {trained} | {scored} | {sync} | {leak} | {copy} | {_fmt(ssim, '.3f')} | "
            f"{_fmt(psnr, '.2f')} | {_fmt(fid, '.1f')} |")


def report_rows(report: dict[str, Any]) -> list[str]:
    """The one table: the shipped model, the own model (on the shipped one's pairs too), the other
    variants, and the resolution ceilings."""
    pairs_all = f"{report['heldout_pairs']} pairs, whole clips"
    return [*HEADER, *_shipped_rows(report, pairs_all), *_variant_rows(report, pairs_all),
            *_ceiling_rows(report)]


def _shipped_rows(report: dict[str, Any], pairs_all: str) -> list[str]:
    """The shipped model's row, and the own model's on the same pairs unless they are all of them."""
    shipped, own = report.get("shipped"), report["variants"]["full"]
    if not shipped:
        return []
    every = on_every_pair(shipped["pairs_scored"], shipped["seconds"], report["heldout_pairs"])
    subset = pairs_all if every else (f"first {shipped['pairs_scored']} pairs, " + (
        "whole clips" if shipped["seconds"] is None else f"first {shipped['seconds']:g} s"))
    rows = [_row(f"shipped ({Path(shipped['model']).name}, {shipped['resolution']} px)", "committed", subset,
                 shipped["summary"], shipped["quality"])]
    if not every:
        rows.append(_row("own (full), same pairs as shipped", f"{own['steps']:,} steps", subset,
                         own["on_shipped_pairs"], own.get("quality")))
    return rows


def _variant_rows(report: dict[str, Any], pairs_all: str) -> list[str]:
    """One row per variant, on every held-out pair."""
    rows = []
    for name, v in report["variants"].items():
        trained = f"{v['steps']:,} steps" + ("" if v["trained_as"] == name else f" (as {v['trained_as']})")
        label = "own (full)" if name == "full" else name
        rows.append(_row(f"{label}, CFG {v['guidance']:g}", trained, pairs_all, v["summary"],
                         v.get("quality")))
    return rows


def _ceiling_rows(report: dict[str, Any]) -> list[str]:
    """The resolution ceilings. A ceiling is scored in a model's own mask rectangle; when the shipped model
    masks (or frames) the face otherwise than the own model, each gets its own ceiling rows, named."""
    shipped, own = report.get("shipped"), report["variants"]["full"]
    apart = bool(shipped) and shipped.get("region") != own.get("region")
    rows, sets = [], [("shipped", shipped["ceilings"])] if apart else []
    for whose, ceilings in sets + [("own", report["ceilings"])]:
        for r, q in ceilings.items():
            label = f"ceiling of a {r} px model" + (f", {whose} model's mask" if apart else "")
            rows.append(_row(label, "source crop resized", "—", None, q))
    return rows


def write_report(out: Path, report: dict[str, Any]) -> None:
    """``out``/report.json (``report`` as it is) and report.md (the table and what it measured)."""
    with media.atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    text = "\n".join(["# lipsync demo report", "", _setting(report), "", *report_rows(report), "",
                      SCORES, _quality_note(report), "", _minutes(report), "",
                      *(f"- {k}: `{v}`" for k, v in report.get("files", {}).items()), ""])
    with media.atomic_path(out / "report.md") as tmp:
        tmp.write_text(text)


def _setting(report: dict[str, Any]) -> str:
    """What was scored, how long the own model trained, and on how many threads."""
    return (f"{report['heldout_pairs']} held-out identities, each driven by another held-out clip's speech; "
            f"own model trained {report['train_steps']:,} steps (budget {report['train_steps_budget']:,}) on "
            f"{report['train_threads']} CPU thread(s), dubs on {report['dub_threads']}, scoring on "
            f"{report['threads']}; load average at the end {report['load_average']}.")


def _quality_note(report: dict[str, Any]) -> str:
    """How the quality columns and the ceilings were measured."""
    seconds = report["quality_seconds"]
    some = next(iter(report["ceilings"].values()), None) or report["variants"]["full"].get("quality") or {}
    clips = "whole clips" if seconds is None else f"first {seconds:g} s"
    return (f"Quality = self-reconstruction: {report['quality_identities']} held-out identities, each dubbed "
            f"with its own speech ({clips}); SSIM and PSNR over the training-mask rectangle at the frame's "
            "resolution; FID (shipped Inception) over the crop squares, "
            f"{some.get('fid_frames', 0)} frames a side. A ceiling is the source crop resized to r px and "
            "back, pasted and written to H.264 as a dub is: the best an r-px model can score.")


def _minutes(report: dict[str, Any]) -> str:
    """Wall minutes of each stage and in all."""
    return ("Wall minutes per stage: " + ", ".join(f"{k} {v}" for k, v in report["stage_minutes"].items())
            + f"; total {report['wall_minutes']}.")
