"""How much the protocol choices move the numbers, on real frames (the packaged carphone clip).

    python benchmarks/bench_protocols.py [--frames 96]

- SSIM: scikit-image's Gaussian SSIM (border dropped) against torchmetrics' (border averaged in), on
  256 px face crops of the clip and a blurred, noisy reconstruction of them.
- FID: the shipped TF-FID Inception with the TF1 bilinear resize (torch-fidelity) against torch's, on
  the same crops; and the covariance divisor N - 1 against N.
- The bootstrap interval of the SSIM mean when the frames are split into 30 "videos".

Writes bench_results/protocols.json and .md.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from lipsync.assets import asset_path, ensure_assets
from lipsync.benchresults import RESULTS, Results
from lipsync.evaluate.fid import build_fid
from lipsync.evaluate.frame_metrics import ssim
from lipsync.evaluate.frechet import FeatureStats, frechet_distance, mean_interval, take_stats
from lipsync.models.syncnet import syncnet_crop
from lipsync.media import read_frames

BOX = np.array([50.0, 20.0, 120.0, 90.0])  # the carphone speaker's face


def crops(frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, 256, 256) uint8 face crops and a blurred, noisy reconstruction of them."""
    real = np.stack([syncnet_crop(f, BOX, 0.4, 256) for f in frames])
    rng = np.random.default_rng(0)
    blurred = np.stack([cv2.GaussianBlur(f, (5, 5), 1.2) for f in real]).astype(int)
    fake = np.clip(blurred + rng.integers(-8, 9, real.shape), 0, 255).astype(np.uint8)
    as_t = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return as_t(real), as_t(fake)


def fid_stats(real: torch.Tensor, fake: torch.Tensor, resize: str) -> tuple[FeatureStats, FeatureStats]:
    metric = build_fid(asset_path("fid_inception.pt"), resize)
    for i in range(0, len(real), 16):
        metric.update(real[i:i + 16], real=True)
        metric.update(fake[i:i + 16], real=False)
    return take_stats(metric)


def main() -> None:
    results = Results()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=96)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ensure_assets(names=["carphone_pristine.mp4", "fid_inception.pt"])
    real, fake = crops(read_frames(asset_path("carphone_pristine.mp4"), 0, args.frames))
    g, r = fake.float() / 255, real.float() / 255
    sk, tm = ssim(g, r, "skimage"), ssim(g, r, "torchmetrics")
    start = time.perf_counter()
    stats = {resize: fid_stats(real, fake, resize) for resize in ("tf1", "torch")}
    fid = {resize: frechet_distance(*s, ddof=1) for resize, s in stats.items()}
    fid_biased = frechet_distance(*stats["tf1"], ddof=0)
    per_video = [float(v.mean()) for v in sk.split(max(1, len(sk) // 30))]
    result = {
        "frames": len(real),
        "ssim_skimage_mean": float(sk.mean()), "ssim_torchmetrics_mean": float(tm.mean()),
        "ssim_gap_max": float((sk - tm).abs().max()), "ssim_gap_mean": float((sk - tm).abs().mean()),
        "fid_tf1": fid["tf1"], "fid_torch": fid["torch"],
        "fid_resize_rel_diff": abs(fid["tf1"] - fid["torch"]) / fid["tf1"],
        "fid_tf1_cov_over_n": fid_biased,
        "ssim_interval_30_videos": mean_interval(per_video, 1000, 0.95, 0),
        "inception_seconds": time.perf_counter() - start,
    }
    results.json(RESULTS / "protocols.json", result)
    lines = ["| quantity | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in result.items()]
    results.markdown(RESULTS / "protocols.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
