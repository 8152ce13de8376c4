"""Scoring cost per metric on this machine: frames per second for a real face clip (carphone).

    python benchmarks/bench_evaluate.py [--frames 50] [--device cpu]

The networks have the real architectures and sizes (the shipped TF-FID Inception; AlexNet for LPIPS,
SyncNet v2 and nothing for I3D with random weights, since their files are not here), so the timings are
what a real evaluation costs; the metric values themselves are meaningless. Writes
bench_results/evaluate.json and .md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision

from lipsync.assets import asset_path, ensure_assets
from lipsync.benchresults import RESULTS, Results
from lipsync.evaluate.frame_metrics import build_lpips, lpips, psnr, ssim
from lipsync.evaluate.fid import build_fid
from lipsync.models.syncnet import SyncNetScorer, SyncNetV2
from lipsync.media import read_frames

SIZE = 256


def timed(fn, frames: int) -> float:
    """Frames per second of ``fn()``."""
    start = time.perf_counter()
    fn()
    return frames / (time.perf_counter() - start)


def main() -> None:
    results = Results()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    ensure_assets(names=["carphone_pristine.mp4", "fid_inception.pt"])
    clip = read_frames(asset_path("carphone_pristine.mp4"), 0, args.frames)
    crops = torch.from_numpy(np.stack([cv2.resize(c, (SIZE, SIZE)) for c in clip])).permute(0, 3, 1, 2)
    crops = crops.contiguous().to(args.device)
    x = crops.float() / 255
    with tempfile.TemporaryDirectory() as tmp:
        alex = Path(tmp) / "alexnet.pth"
        features = torchvision.models.alexnet().features.state_dict()
        torch.save({f"features.{k}": v for k, v in features.items()}, alex)
        net = build_lpips(alex).to(args.device)
    fid = build_fid(asset_path("fid_inception.pt")).to(args.device)
    sync = SyncNetScorer(SyncNetV2(), device=args.device)
    sync_crops = [cv2.resize(c, (224, 224)) for c in clip]
    audio = np.zeros(len(clip) * 640, np.float32)
    rates = {
        "psnr+ssim": timed(lambda: (psnr(x, x), ssim(x, x)), len(x)),
        "lpips": timed(lambda: lpips(net, x, x), len(x)),
        "fid (inception)": timed(lambda: fid.update(crops, real=True), len(x)),
        "sync (syncnet v2)": timed(lambda: sync.score(sync_crops, audio), len(x)),
    }
    out = {"device": args.device, "frames": len(x), "crop": SIZE, "threads": torch.get_num_threads(),
           "frames_per_second": {k: round(v, 2) for k, v in rates.items()}}
    results.json(RESULTS / "evaluate.json", out)
    table = "| metric | frames/s |\n|---|---|\n" + "".join(f"| {k} | {v:.2f} |\n" for k, v in rates.items())
    head = f"Scoring cost on {args.device}, {len(x)} carphone frames at {SIZE}px, {out['threads']} threads"
    results.markdown(RESULTS / "evaluate.md", f"{head}\n\n{table}")
    print(table)


if __name__ == "__main__":
    main()
