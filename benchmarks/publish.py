"""Copy a finished run's report into ``bench_results/`` under its published name, stamped with its command.

    make demo && python benchmarks/publish.py demo
    make bench-sync && python benchmarks/publish.py bench_sync
    make eval DATA=outputs/realfaces/split/tail CKPT=models/realface EVAL=realface \\
        ARGS="max_side=512 hydra.run.dir=outputs/evaluate/realface_tail"
    python benchmarks/publish.py realface_tail
    python benchmarks/publish.py NAME [--run FOLDER]       # a run made elsewhere

The commands behind the README's long results (the demo, its ablations, the real-face evaluations, a
fine-tuning) write into their own run folder, where a later run overwrites them; this copies the files a
README quotes, each under the name of :data:`PUBLICATIONS`: JSON gets a ``written_by`` block and markdown a
first line (:mod:`lipsync.benchresults`), both naming the run's command; pictures are copied as they are,
and ``demo_frames.png`` is six evenly spaced frames of the demo's side-by-side video. ``bench_results/
README.md`` lists every result file and the command that writes it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lipsync.benchresults import RESULTS, ROOT, Results, in_checkout

EVAL = "make eval DATA=outputs/realfaces/{data} CKPT=models/realface EVAL=realface " \
       'ARGS="{args}hydra.run.dir=outputs/evaluate/{name}"'
FINETUNE = "python -m lipsync.finetune video=../shared/realfaces/voxceleb2_pcavs_741400163.mp4 " \
           "out=outputs/realfaces/finetune_7414"


@dataclass(frozen=True)
class Publication:
    """What one run publishes: ``files`` maps a name in ``bench_results/`` to a file of the run folder."""

    made_by: str  # the command that makes the run folder
    run: str  # the folder it writes, relative to the checkout
    files: dict[str, str] = field(default_factory=dict)
    ablations: bool | None = None  # report.json must hold several variants (True) or only the demo's (False)


PUBLICATIONS: dict[str, Publication] = {
    "demo": Publication("make demo", "outputs/demo", {
        "demo_report.json": "report.json", "demo_openings.png": "openings.png",
        "demo_frames.png": "side_by_side.mp4"}, ablations=False),
    "bench_sync": Publication("make bench-sync", "outputs/demo", {
        "bench_sync_report.json": "report.json", "bench_sync_report.md": "report.md",
        "bench_sync_loss_curves.png": "loss_curves.png"}, ablations=True),
    "realface_tail": Publication(EVAL.format(data="split/tail", args="max_side=512 ", name="realface_tail"),
                                 "outputs/evaluate/realface_tail",
                                 {"realface_tail.json": "metrics.json", "realface_tail.md": "realface.md"}),
    "realface_heldout3s": Publication(EVAL.format(data="split/heldout", args="max_frames=75 ",
                                                  name="realface_heldout3s"),
                                      "outputs/evaluate/realface_heldout3s",
                                      {"realface_heldout3s.json": "metrics.json",
                                       "realface_heldout3s.md": "realface.md"}),
    "finetune_voxceleb_7414": Publication(FINETUNE, "outputs/realfaces/finetune_7414", {
        "finetune_voxceleb_7414.json": "finetune.json", "finetune_voxceleb_7414.md": "finetune.md"}),
}


def check_variants(pub: Publication, run: Path) -> None:
    """``make demo`` and ``make bench-sync`` share ``outputs/demo``: refuse to publish one as the other."""
    if pub.ablations is None:
        return
    several = len(json.loads((run / "report.json").read_text())["variants"]) > 1
    if several != pub.ablations:
        made = "make bench-sync (several variants)" if several else "make demo (one variant)"
        raise ValueError(f"{in_checkout(run)}/report.json was written by {made}, not by {pub.made_by}")


def frames_picture(video: Path, out: Path, count: int = 6) -> None:
    """``count`` evenly spaced frames of ``video``, one above the other, as a PNG."""
    import numpy as np
    from PIL import Image

    from lipsync import media

    frames = media.read_frames(video)
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    with media.atomic_path(out) as tmp:
        Image.fromarray(np.concatenate([frames[i] for i in picks], axis=0)).save(tmp, format="PNG")


def publish(name: str, run: Path, results: Results) -> list[Path]:
    """Copy (or draw) every file of ``PUBLICATIONS[name]`` from ``run`` into ``bench_results/``."""
    pub = PUBLICATIONS[name]
    missing = [src for src in pub.files.values() if not (run / src).is_file()]
    if missing:
        raise FileNotFoundError(f"{in_checkout(run)} lacks {', '.join(missing)}: run `{pub.made_by}` first")
    check_variants(pub, run)
    written = []
    for dest, src in pub.files.items():
        source, target = run / src, RESULTS / dest
        stamp = {"made_by": pub.made_by, "source": in_checkout(source)}
        if dest.endswith(".json"):
            results.json(target, json.loads(source.read_text()), **stamp)
        elif dest.endswith(".md"):
            results.markdown(target, source.read_text(), **stamp)
        elif source.suffix == ".mp4":
            frames_picture(source, target)
        else:
            from lipsync.media import atomic_path

            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    results = Results([__file__, *(sys.argv[1:] if argv is None else argv)])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(PUBLICATIONS))
    parser.add_argument("--run", type=Path, default=None, help="the run folder (default: the one its command "
                                                               "writes, see PUBLICATIONS)")
    args = parser.parse_args(argv)
    run = args.run or ROOT / PUBLICATIONS[args.name].run
    try:
        written = publish(args.name, run, results)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"publish: error: {err}", file=sys.stderr)
        return 1
    print("\n".join(in_checkout(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
