"""Loss curves read back from TensorBoard event files (lipsync.training.curves)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

from lipsync.training.curves import main, plot_loss_curves, read_scalars, smooth


def _write(run: Path, points: dict[int, float]) -> None:
    writer = SummaryWriter(str(run))
    for step, value in points.items():
        writer.add_scalar("train/loss", value, step)
    writer.close()


def test_smoothing_is_tensorboards_debiased_ema() -> None:
    v = np.array([4.0, 2.0, 1.0])
    np.testing.assert_allclose(smooth(v, 0.0), v)
    np.testing.assert_allclose(smooth(np.full(5, 3.0), 0.9), 3.0)  # debiased: no pull towards 0 at the start
    # by hand, weight 0.5: 4; (0.5*0.5*4... ) -> (0.25*4+0.5*2)/0.75 = 8/3; (0.125*4+0.25*2+0.5*1)/0.875 = 12/7
    np.testing.assert_allclose(smooth(v, 0.5), [4.0, 8 / 3, 12 / 7])


def test_a_resumed_run_reads_as_one_curve_and_plots(tmp_path: Path) -> None:
    run = tmp_path / "full"
    _write(run, {0: 1.0, 1: 0.5, 2: 0.4})
    first = next(run.glob("events.out.tfevents.*"))
    os.utime(first, (time.time() - 60, time.time() - 60))  # the resumed file is written later
    _write(run, {2: 0.3, 3: 0.2})  # resumed from step 2: its value for step 2 wins
    steps, values = read_scalars(run)
    np.testing.assert_array_equal(steps, [0, 1, 2, 3])
    np.testing.assert_allclose(values, [1.0, 0.5, 0.3, 0.2])
    other = tmp_path / "lips_mask"
    _write(other, {0: 2.0, 5: 1.0})
    png = plot_loss_curves({"full": run, "lips_mask": other}, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000


def test_missing_runs_and_tags_are_clear_errors(tmp_path: Path, capsys) -> None:
    with pytest.raises(FileNotFoundError, match="no TensorBoard event files"):
        read_scalars(tmp_path)
    _write(tmp_path / "run", {0: 1.0})
    with pytest.raises(ValueError, match="no 'val/loss' scalars"):
        read_scalars(tmp_path / "run", "val/loss")
    with pytest.raises(SystemExit, match="lipsync-curves: error: .*no TensorBoard event files"):
        main([str(tmp_path / "empty"), "--out", str(tmp_path / "x.png")])
    assert not (tmp_path / "x.png").exists()
