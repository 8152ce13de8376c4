"""Two real-face evaluations of the same clips, compared clip by clip: paired differences with bootstrap
intervals and standard errors (``B - A`` for every score of the protocol's model rows).

    python benchmarks/paired_realface.py A/metrics.json B/metrics.json --labels "stage 1" "stage 2" \\
        --name realface_stage1_vs_stage2

``A`` and ``B`` are ``metrics.json`` files of ``python -m lipsync.evaluate.realface`` (``make eval
EVAL=realface``) on the same clips with the same options: the dubs differ only by the model. A paired
difference removes what the clips share (how hard each face is), so it resolves changes that the two
tables' overlapping intervals hide. Writes ``bench_results/NAME.json`` and ``NAME.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lipsync.benchresults import RESULTS, Results, in_checkout
from lipsync.evaluate.frechet import mean_interval

#: (row, score) pairs compared; higher is better except for LMD
SCORES = (("self/model", "lmd"), ("self/model", "opening_r"), ("self/model", "ssim"), ("self/model", "psnr"),
          ("cross/model", "sync"), ("cross/model", "leak"))


def per_clip(metrics: dict, row: str, score: str) -> dict[str, float]:
    """``clip -> value`` of one score of one row (NaN values left out)."""
    values = {r["clip"]: float(r[score]) for r in metrics["per_clip"].get(row, []) if score in r}
    return {clip: v for clip, v in values.items() if np.isfinite(v)}


def paired(a: dict[str, float], b: dict[str, float], lower_is_better: bool = False, resamples: int = 2000,
           seed: int = 0) -> dict:
    """Mean of ``b - a`` over the clips both hold, its standard error, a 95 % bootstrap interval and how
    many clips B improves on."""
    clips = sorted(set(a) & set(b))
    if len(clips) < 2:
        raise ValueError(f"needs at least 2 clips scored in both evaluations, found {len(clips)}")
    d = np.array([b[c] - a[c] for c in clips])
    lo, hi = mean_interval(list(d), resamples, 0.95, seed)  # the protocol's own bootstrap over clips
    better = d < 0 if lower_is_better else d > 0
    return {"clips": len(clips), "a": float(np.mean([a[c] for c in clips])),
            "b": float(np.mean([b[c] for c in clips])), "diff": float(d.mean()),
            "se": float(d.std(ddof=1) / np.sqrt(len(d))), "ci95": [float(lo), float(hi)],
            "b_better": int(better.sum())}


def compare(a: dict, b: dict) -> dict[str, dict]:
    """Every :data:`SCORES` entry of two metrics.json, compared clip by clip."""
    return {f"{row}:{score}": paired(per_clip(a, row, score), per_clip(b, row, score), score == "lmd")
            for row, score in SCORES}


def markdown(result: dict[str, dict], labels: tuple[str, str], sources: tuple[str, str]) -> str:
    lines = [f"# Real-face protocol, paired: {labels[1]} - {labels[0]}", "",
             f"A = {labels[0]} (`{sources[0]}`), B = {labels[1]} (`{sources[1]}`); the same clips and "
             "options. Mean over clips; difference B - A with its standard error and 95 % bootstrap "
             "interval; `B better` counts clips (LMD: lower is better).", "",
             f"| score | clips | {labels[0]} | {labels[1]} | B - A | SE | 95 % interval | B better |",
             "|---|---|---|---|---|---|---|---|"]
    for key, r in result.items():
        lines.append(f"| {key} | {r['clips']} | {r['a']:.3f} | {r['b']:.3f} | {r['diff']:+.3f} | "
                     f"{r['se']:.3f} | [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] | "
                     f"{r['b_better']}/{r['clips']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="metrics.json of the reference evaluation")
    parser.add_argument("b", type=Path, help="metrics.json of the compared evaluation")
    parser.add_argument("--labels", nargs=2, default=("A", "B"))
    parser.add_argument("--name", default="realface_paired", help="bench_results/NAME.json and NAME.md")
    args = parser.parse_args(argv)
    for path in (args.a, args.b):
        if not path.is_file():
            sys.exit(f"paired_realface: error: {path}: no such metrics.json")
    a, b = (json.loads(p.read_text()) for p in (args.a, args.b))
    if a["videos"] != b["videos"]:
        sys.exit("paired_realface: error: the two evaluations scored different clips; "
                 "compare evaluations of the same folder")
    result = compare(a, b)
    results = Results()
    sources = (in_checkout(args.a), in_checkout(args.b))
    results.json(RESULTS / f"{args.name}.json", {"labels": list(args.labels), "sources": list(sources),
                                                  "videos": a["videos"], "paired": result})
    text = markdown(result, tuple(args.labels), sources)
    print(text + f"written: {results.markdown(RESULTS / f'{args.name}.md', text)}")


if __name__ == "__main__":
    main()
