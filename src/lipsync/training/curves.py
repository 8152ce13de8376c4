"""Loss curves of training runs, read back from their TensorBoard event files, as one PNG.

    python -m lipsync.training.curves outputs/demo/runs/full outputs/demo/runs/lips_mask --out curves.png

Each run is a folder holding ``events.out.tfevents.*`` (what ``lipsync.train`` writes under
``paths.log_dir/name``); several event files in one folder (a resumed run) are read together and a
step logged twice keeps its last value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from lipsync.cli import ArgumentParser, user_errors
from lipsync.media import atomic_path

LOSS_TAG = "train/loss"


def read_scalars(run_dir: str | os.PathLike, tag: str = LOSS_TAG) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one scalar over every event file in ``run_dir``, sorted by step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(Path(run_dir).glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"{run_dir}: no TensorBoard event files (events.out.tfevents.*)")
    by_step: dict[int, float] = {}
    for f in files:  # in write order, so a resumed run's later value for a step wins
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags().get("scalars", []):
            by_step.update({e.step: e.value for e in acc.Scalars(tag)})
    if not by_step:
        raise ValueError(f"{run_dir}: no {tag!r} scalars in its event files")
    steps = np.array(sorted(by_step))
    return steps, np.array([by_step[s] for s in steps], np.float64)


def smooth(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    """TensorBoard's debiased exponential moving average (weight 0 = no smoothing)."""
    out = np.empty(len(values), np.float64)
    last, norm = 0.0, 0.0
    for i, v in enumerate(values):
        last = weight * last + (1 - weight) * float(v)
        norm = weight * norm + (1 - weight)
        out[i] = last / norm
    return out


def plot_loss_curves(runs: Mapping[str, str | os.PathLike], path: str | os.PathLike, tag: str = LOSS_TAG,
                     weight: float = 0.9, title: str = "training loss") -> Path:
    """One PNG with every run's ``tag`` over steps: raw values faint, the smoothed curve on top, log scale."""
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt


    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    for i, (name, run_dir) in enumerate(runs.items()):
        steps, values = read_scalars(run_dir, tag)
        colour = f"C{i % 10}"
        ax.plot(steps, values, color=colour, alpha=0.2, lw=0.8)
        ax.plot(steps, smooth(values, weight), color=colour, lw=1.6, label=f"{name} ({steps[-1]:,} steps)")
    ax.set(xlabel="step", ylabel=tag, title=title, yscale="log")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="lipsync-curves",
                            description="Plot training loss curves from TensorBoard event files.")
    parser.add_argument("runs", nargs="+", help="run folders (each holds events.out.tfevents.*)")
    parser.add_argument("--out", default="loss_curves.png")
    parser.add_argument("--tag", default=LOSS_TAG)
    args = parser.parse_args(argv)
    with user_errors("lipsync-curves"):
        print(plot_loss_curves({Path(r).name: r for r in args.runs}, args.out, args.tag))


if __name__ == "__main__":
    main()
