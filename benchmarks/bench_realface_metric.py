"""Does the face-mesh lip-sync measure separate right from wrong on real faces? (issue 26)

    python benchmarks/bench_realface_metric.py [--corpus ../shared/realfaces] [--shift 12]

On every clip of the real-face corpus (whole clips, 25 fps as decoded), the mouth opening of the true
video (:mod:`lipsync.evaluate.mouth`) is correlated with:

- the same video written to H.264 at the dubs' crf 18 and measured again (**written**: should be near 1;
  it is the best any dub can score, the measurement's own noise);
- itself shifted by ``--shift`` frames (**shifted**: near 0 when the measure tracks this clip's timing);
- the next clip's mouth (**other clip**: the chance level of the cross-driven sync).

and the written copy's LMD says how many inter-ocular units the mesh itself wobbles. Results:
``bench_results/realface_metric.{json,md}`` (numbers and file names only). Skipped, with one line, where
the corpus is absent (it is not part of the repository).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lipsync import media
from lipsync.benchresults import RESULTS, ROOT, Results, in_checkout, skip
from lipsync.data.faces import MediaPipeFaces
from lipsync.evaluate import mouth
from lipsync.evaluate.frechet import mean_interval


def clip_scores(path: Path, faces: MediaPipeFaces, shift: int) -> tuple[dict, np.ndarray]:
    """(scores of one clip against itself, its true opening series)."""
    frames = media.read_frames(path)
    truth = mouth.track_frames(frames, faces).landmarks
    written = mouth.track_frames(media.as_written(frames, float(media.probe(path).fps), crf=18), faces).landmarks
    o = mouth.opening(truth)
    return {"clip": path.name, "frames": len(frames), "written": mouth.correlation(mouth.opening(written), o),
            "shifted": mouth.correlation(o[shift:], o[:-shift]), "written_lmd": mouth.lmd(written, truth)}, o


def summary(rows: list[dict], key: str) -> dict:
    values = [r[key] for r in rows if np.isfinite(r[key])]
    interval = mean_interval(values, 1000, 0.95, 0)
    return {"mean": float(np.mean(values)), "interval": list(interval) if interval else None, "n": len(values)}


def main(argv: list[str] | None = None) -> int:
    results = Results([__file__, *(sys.argv[1:] if argv is None else argv)])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "realfaces")
    ap.add_argument("--shift", type=int, default=12, help="frames (12 = 0.48 s at 25 fps)")
    ap.add_argument("--out", type=Path, default=RESULTS / "realface_metric")
    args = ap.parse_args(argv)
    clips = sorted(args.corpus.glob("*.mp4")) if args.corpus.is_dir() else []
    if not clips:
        skip(f"no real-face clips (*.mp4) at {in_checkout(args.corpus)} (--corpus; not part of the repository)",
             __file__)
    torch.set_num_threads(1)
    faces = MediaPipeFaces(mesh_every=1)
    rows, openings = [], []
    for path in tqdm(clips, desc="clips", unit="clip"):
        row, o = clip_scores(path, faces, args.shift)
        rows.append(row)
        openings.append(o)
    for i, row in enumerate(rows):
        row["other_clip"] = mouth.correlation(openings[i], openings[(i + 1) % len(rows)])
    result = {"corpus": str(args.corpus.name), "shift_frames": args.shift, "rows": rows,
              "summary": {k: summary(rows, k) for k in ("written", "shifted", "other_clip", "written_lmd")}}
    results.json(args.out.with_suffix(".json"), result)
    s = result["summary"]
    table = ["| clips | written r | shifted r | other clip r | written LMD |", "|---|---|---|---|---|",
             f"| {len(rows)} | " + " | ".join(f"{s[k]['mean']:.3f} [{s[k]['interval'][0]:.3f}, {s[k]['interval'][1]:.3f}]"
                                            for k in ("written", "shifted", "other_clip", "written_lmd")) + " |"]
    table += ["", "| clip | frames | written r | shifted r | other clip r | written LMD |", "|---|---|---|---|---|---|"]
    table += [f"| {r['clip']} | {r['frames']} | {r['written']:.3f} | {r['shifted']:.3f} | {r['other_clip']:.3f} | "
              f"{r['written_lmd']:.4f} |" for r in rows]
    results.markdown(args.out.with_suffix(".md"), "\n".join(table))
    print("\n".join(table[:3]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
