"""What curation kept and why, as a table a person reads: one row per input of a ``manifest.jsonl``.

    python -m lipsync.prepare.report OUTPUT/manifest.jsonl [--out curation.md]

Columns: status, decoded frames (at the model's 25 fps), the face's median box side (px, the largest
track), the share of frames with a face, shot cuts, clips kept / dropped with the first reason, stored
segments, and the input's rejection reason. File names and numbers only: the table can be committed
where the videos cannot.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from lipsync.cli import ArgumentParser, user_errors
from lipsync.media import atomic_path
from lipsync.prepare.run import read_manifest

HEADER = ("| file | status | frames | face side (px) | face found | cuts | clips kept / dropped | segments | "
          "why |\n|---|---|---|---|---|---|---|---|---|")


def face_side(row: dict) -> float | None:
    """Median box side (sqrt of width x height) of the input's longest face track, px."""
    tracks = row.get("face_tracks") or []
    if not tracks:
        return None
    box = np.asarray(max(tracks, key=lambda t: t.get("frames", 0))["median_box"], np.float64)
    return float(np.sqrt(max(box[2] - box[0], 0) * max(box[3] - box[1], 0)))


def line(row: dict, clips: list[dict]) -> str:
    """One markdown row for an input and its clips."""
    kept = [c for c in clips if c.get("status") == "kept"]
    dropped = [c for c in clips if c.get("status") == "dropped"]
    why = row.get("reason") or (dropped[0]["reason"] if dropped else "")
    side = face_side(row)
    name = Path(row.get("path", row["video_id"])).name
    return (f"| {name} | {row['status']} | {row.get('frames', '-')} | {'-' if side is None else f'{side:.0f}'} | "
            f"{row.get('face_found', '-')} | {len(row.get('shot_cuts') or [])} | {len(kept)} / {len(dropped)} | "
            f"{row.get('segments') or 0} | {why} |")


def report(manifest: str | os.PathLike) -> str:
    """The table of every input of ``manifest``, and a count line by status."""
    rows = read_manifest(manifest)
    clips: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("kind") == "clip":
            clips[r["video_id"]].append(r)
    inputs = [r for r in rows if r.get("kind") == "input"]
    counts = defaultdict(int)
    for r in inputs:
        counts[r["status"]] += 1
    total = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    segments = sum(r.get("segments") or 0 for r in inputs)
    return "\n".join([HEADER, *(line(r, clips[r["video_id"]]) for r in inputs), "",
                      f"{len(inputs)} inputs: {total}; {segments} segments stored."]) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="lipsync-prepare-report", description=__doc__.splitlines()[0])
    parser.add_argument("manifest", help="a manifest.jsonl written by lipsync.prepare")
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    with user_errors("lipsync-prepare-report"):
        text = report(args.manifest)
        if args.out:
            with atomic_path(args.out) as tmp:
                Path(tmp).write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
