"""The demo's pictures: the side-by-side video, the mouth-opening plot, mask overlays and loss curves."""

from __future__ import annotations

from pathlib import Path

from lipsync import media
from lipsync.demo.dubbing import Dub
from lipsync.evaluate.side_by_side import side_by_side
from lipsync.prepare.preview import preview
from lipsync.synth.corpus import load_truth
from lipsync.synth.measure import measure_opening, plot_openings
from lipsync.synth.speech import mouth_opening_from_audio
from lipsync.training.curves import plot_loss_curves


def pictures(own: Dub, shipped: Dub | None, out: Path, shards: Path, runs: dict[str, Path]) -> dict[str, str]:
    """Side-by-side video (source | shipped | own) and mouth-opening plot of the first pair, mask overlays,
    and the loss curves of ``runs``; returns each file's path relative to ``out``."""
    files = {"side_by_side": out / "side_by_side.mp4", "openings": out / "openings.png",
             "masks": out / "mask_overlays.png", "loss": out / "loss_curves.png"}
    if shipped is not None:  # the shipped one may be shorter (make demo dubs it on the first seconds only)
        side_by_side(own.video, [shipped.result, own.result], shipped.wav, files["side_by_side"],
                     labels=["source", "shipped", "own"])
    else:
        side_by_side(own.video, own.result, own.wav, files["side_by_side"], labels=["source", "own"])
    openings(own, files["openings"])
    preview(shards, files["masks"], mask="adaptive", frames=8)
    plot_loss_curves(runs, files["loss"], title="training loss (EMA-smoothed; raw values faint)")
    return {k: str(v.relative_to(out)) for k, v in files.items()}


def openings(dubbed: Dub, path: Path) -> None:
    """The mouth opening B's speech asks for, the one measured on the dub, and A's original one."""
    truth = load_truth(dubbed.video)
    frames = media.read_frames(dubbed.result)
    n = min(len(frames), len(truth.opening))
    audio, _ = media.read_audio(dubbed.wav)
    title = f"{dubbed.video.stem} driven by {dubbed.speech.stem}'s speech"
    plot_openings(mouth_opening_from_audio(audio, n), measure_opening(frames[:n], truth.boxes[:n]),
                  truth.opening[:n], path, title=title)
