"""`make bench-sync` / `make demo` orchestration at smoke size: the Makefile's own command line, every stage,
a variant that reuses another's training, the step budget, the shipped model beside the own one, the
quality columns and resolution ceilings, the report, and resuming without retraining."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lipsync.assets import ROOT
from lipsync.media import read_frames

SMOKE = [
    "corpus.train_videos=2", "corpus.heldout_videos=2", "corpus.seconds=4.4", "corpus.workers=1",
    "train_steps=3", 'train_overrides=["data.batch_size=2","trainer.log_every_n_steps=1"]', "infer.num_steps=1", "infer.progress=false",
    "quality.seconds=0.8", "quality.fid_stride=10",  # 20 frames a video, 2 of them into FID
    "~variants.no_cfg", "~variants.no_audio", "~variants.full_seed1", "~variants.lips_mask",
    # keep full, full_no_guidance and steady_mask (its box sized per clip in training, per video when dubbing)
]


def _make_command(target: str) -> list[str]:
    """The recipe line of a Makefile target, with $(PY) as this interpreter."""
    text = (ROOT / "Makefile").read_text()
    recipe = re.search(rf"^{re.escape(target)}:.*\n\t(.+)$", text, re.M)
    assert recipe, f"no recipe for {target} in the Makefile"
    return recipe.group(1).replace("$(PY)", sys.executable).split()


def _run(cmd: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"exit {done.returncode}: {done.stderr[-3000:]}")


def _shipped(root: Path) -> Path:
    """A stand-in for models/showcase: a random tiny pipeline at 32 px crops, the demo's crop geometry."""
    from lipsync.infer.pipeline import LipSyncPipeline
    from lipsync.infer.presets import tiny_config

    config = tiny_config(resolution=32)
    config["components"]["crop"].update(scale=0.8, shift_y=0.15)
    return LipSyncPipeline.from_config(config).save_pretrained(root / "shipped")


@pytest.mark.slow  # 2-3 min of the 12-minute budget of `make test` from a fresh clone: `make test-slow`
def test_bench_sync_command_runs_every_stage_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    cmd = _make_command("bench-sync") + [f"out={out}", f"shipped.model={_shipped(tmp_path)}", *SMOKE]
    _run(cmd)

    report = json.loads((out / "report.json").read_text())
    variants = report["variants"]
    assert list(variants) == ["full", "full_no_guidance", "steady_mask"]
    assert variants["full_no_guidance"]["trained_as"] == "full" and variants["full_no_guidance"]["guidance"] == 1.0
    assert variants["full_no_guidance"]["steps"] == variants["full"]["steps"] == 3  # the step budget, exactly
    assert report["train_threads"] == 1 and report["dub_threads"] == 1
    # the shipped model: on every pair and whole clips under bench-sync, scored like the own model
    shipped = report["shipped"]
    assert shipped["pairs_scored"] == 2 and shipped["seconds"] is None and shipped["resolution"] == 32
    assert shipped["frames"] == [110, 110] and len(shipped["pairs"]) == 2
    # quality of the own and the shipped model, and the ceilings, on the same 2 x 20 frames
    for q in (variants["full"]["quality"], shipped["quality"], *report["ceilings"].values()):
        assert q["frames"] == 40 and q["fid_frames"] == 4 and q["fid"] is not None and q["fid"] >= 0
        assert 0 < q["ssim"] < 1 and 5 < q["psnr"] < 100
    ceilings = report["ceilings"]
    assert set(ceilings) == {"16", "32"} and ceilings["32"]["ssim"] > ceilings["16"]["ssim"]
    assert ceilings["32"]["psnr"] > ceilings["16"]["psnr"]
    assert variants["steady_mask"]["overrides"] == ["mask=steady"] and variants["steady_mask"]["steps"] > 0
    steady = json.loads((out / "runs" / "steady_mask" / "model" / "config.json").read_text())["components"]["mask"]
    own_mask = json.loads((out / "model" / "config.json").read_text())["components"]["mask"]
    assert steady["size"] == "steady" and own_mask["size"] == "frame"
    assert not (out / "runs" / "full_no_guidance" / "checkpoints").exists()  # sampled, never trained
    for v in variants.values():
        assert len(v["pairs"]) == 2 and all(-1 <= p["sync"] <= 1 and -1 <= p["leak"] <= 1 for p in v["pairs"])
    # the untouched source scored for sync does not depend on the model: the same in every row
    assert len({round(v["summary"]["copy_sync_mean"], 6) for v in variants.values()}) == 1
    assert (out / "model" / "config.json").exists() and len(list((out / "results").glob("*.mp4"))) == 2
    for full in sorted((out / "results").glob("*.mp4")):  # the same model, sampled at CFG 1 instead of 2
        unguided = out / "runs" / "full_no_guidance" / "results" / full.name
        assert np.abs(read_frames(full).astype(float) - read_frames(unguided).astype(float)).mean() > 0.1
    table = (out / "report.md").read_text()
    assert all(f"| {name}, CFG " in table for name in variants if name != "full")
    assert "same pairs as shipped" not in table  # every pair, whole clips: the own model's row already is
    assert "on_shipped_pairs" not in variants["full"]  # and its own videos are not scored a second time
    assert "| own (full), CFG 2 |" in table and "| shipped (shipped, 32 px) | committed | 2 pairs, whole clips |" in table
    assert "| ceiling of a 16 px model |" in table and "SSIM in mask" in table
    assert set(report["files"]) == {"side_by_side", "openings", "masks", "loss"}
    for name in report["files"].values():
        assert (out / name).stat().st_size > 0

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/checkpoints/last.ckpt")}
    results = {p: p.stat().st_mtime_ns for p in out.glob("**/results/*.mp4")}
    _run(cmd)
    again = json.loads((out / "report.json").read_text())
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained
    assert {p: p.stat().st_mtime_ns for p in results} == results  # nothing dubbed again
    assert again["variants"]["full"]["summary"] == variants["full"]["summary"]


def test_the_demo_trains_to_a_step_budget_whatever_the_load() -> None:
    """conf/demo.yaml's train_steps reaches the trainer as max_steps; no wall-clock budget is left."""
    from lipsync.cli import config_file
    from lipsync.demo.training import train_command

    cfg = config_file("demo")
    assert cfg.train_steps == 1200 and "train_minutes" not in cfg
    cmd = train_command(cfg, Path("shards"), Path("/runs/full"), ["seed=1"])
    assert "trainer.max_steps=1200" in cmd and cmd[-1] == "seed=1"
    assert cfg.train_threads == 1 and "torch_threads=1" in cmd  # one thread: the same model on any machine
    assert cfg.dub_threads == 1
    assert not any("max_time" in part for part in cmd)
    cfg.train_steps = 0
    with pytest.raises(ValueError, match="train_steps=0"):
        train_command(cfg, Path("shards"), Path("/runs/full"), [])


def test_the_report_table_puts_shipped_own_and_ceilings_in_one_table() -> None:
    from lipsync.demo.report import report_rows

    sync = {"sync_mean": 0.71, "sync_std": 0.05, "leak_mean": 0.02, "leak_std": 0.01, "copy_sync_mean": -0.02}
    quality = {"ssim": 0.8123, "psnr": 27.456, "fid": 33.21}
    report = {"heldout_pairs": 4, "ceilings": {"16": {"ssim": 0.75, "psnr": 24.06, "fid": 80.0}},
              "shipped": {"model": "/x/models/showcase", "resolution": 32, "pairs_scored": 2, "seconds": 4.0,
                          "summary": sync, "quality": quality},
              "variants": {"full": {"steps": 1200, "guidance": 2.0, "trained_as": "full", "summary": sync,
                                    "on_shipped_pairs": sync, "quality": quality}}}
    rows = report_rows(report)
    assert rows[2] == ("| shipped (showcase, 32 px) | committed | first 2 pairs, first 4 s | 0.71 ± 0.05 | "
                       "0.02 ± 0.01 | -0.02 | 0.812 | 27.46 | 33.2 |")
    assert rows[3].startswith("| own (full), same pairs as shipped | 1,200 steps | first 2 pairs, first 4 s |")
    assert rows[4].startswith("| own (full), CFG 2 | 1,200 steps | 4 pairs, whole clips | 0.71 ± 0.05 |")
    assert rows[5] == "| ceiling of a 16 px model | source crop resized | — | — | — | — | 0.750 | 24.06 | 80.0 |"
    assert len(rows) == 6
    # The shipped model masks the face otherwise (a steady box): its ceilings get their own rows, named.
    report["shipped"]["region"], report["variants"]["full"]["region"] = "steady", "per frame"
    report["shipped"]["ceilings"] = {"16": {"ssim": 0.78, "psnr": 23.6, "fid": 70.0}}
    rows = report_rows(report)
    assert rows[5] == ("| ceiling of a 16 px model, shipped model's mask | source crop resized | — | — | — | — | "
                       "0.780 | 23.60 | 70.0 |")
    assert rows[6].startswith("| ceiling of a 16 px model, own model's mask | source crop resized |")
    # Decided by the regions, not by the numbers: two regions that happened to score alike stay apart ...
    report["shipped"]["ceilings"] = report["ceilings"]
    assert len(report_rows(report)) == 7
    # ... and one region is one set of ceilings, unnamed.
    report["shipped"]["region"] = "per frame"
    assert len(report_rows(report)) == 6


def test_ceilings_scored_early_are_reused_only_for_the_same_framing_and_mask() -> None:
    """The demo scores the resolution ceilings with the shipped model's crop and mask while its own model
    trains; they stand for the own model only when it frames and masks the face the same way."""
    from lipsync.data.masks import AdaptiveMask
    from lipsync.evaluate.quality import Quality, region_key
    from lipsync.infer.options import InferenceOptions
    from lipsync.prepare.crop import CropSpec

    def same_region(a, b) -> bool:
        return region_key(*a) == region_key(*b)

    crop = CropSpec(resolution=32, scale=0.8, shift_y=0.15, alpha=0.2)
    own = (CropSpec(resolution=16, scale=0.8, shift_y=0.15, alpha=0.2), AdaptiveMask())
    assert same_region((crop, AdaptiveMask()), own)  # the resolution is what a ceiling varies anyway
    assert not same_region((CropSpec(resolution=32, scale=1.5, shift_y=0.15, alpha=0.2), AdaptiveMask()), own)
    assert not same_region((crop, AdaptiveMask(pad_bottom=0.3)), own)
    assert not same_region((crop, AdaptiveMask(points="mouth")), own)

    # Quality.ceilings scores each framing once: the own model's call after the shipped one's is free.
    quality, scored = Quality([], faces=None, options=InferenceOptions(), resolutions=[16, 32]), []
    quality.ceiling = lambda r, c, m: scored.append((r, c.scale)) or {"resolution": r}
    first = quality.ceilings(crop, AdaptiveMask())
    assert quality.ceilings(*own) is first and scored == [(16, 0.8), (32, 0.8)]
    quality.ceilings(own[0], AdaptiveMask(pad_bottom=0.3))
    assert scored[2:] == [(16, 0.8), (32, 0.8)]  # another mask: scored again


def test_dubs_run_on_dub_threads_and_restore_the_process_count(tmp_path: Path, monkeypatch) -> None:
    """Every dub runs on ``dub_threads`` torch threads (1 is faster than 2 with passive waiting on this
    machine's model sizes), and the process's own count comes back afterwards."""
    import torch
    from omegaconf import OmegaConf

    from lipsync.demo import dubbing

    seen = []

    class Pipe:
        net, config = torch.nn.Linear(2, 2), {"crop": 16}

        def __call__(self, a, wav, result, options):
            seen.append(torch.get_num_threads())
            Path(result).write_bytes(b"")

    monkeypatch.setattr(dubbing, "driving_wav", lambda b, folder, seconds=None: folder / f"{b.stem}.wav")
    cfg = OmegaConf.create({"infer": {"preset": "fast", "seed": 0, "progress": False}, "dub_threads": 1})
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        done = dubbing.dub(cfg, Pipe(), [(tmp_path / "a.mp4", tmp_path / "b.mp4")] * 2, tmp_path / "r", 2.0)
        assert seen == [1] and torch.get_num_threads() == 2  # the second job's result was on disk already
        assert [d.result.name for d in done] == ["a__b.mp4", "a__b.mp4"]
    finally:
        torch.set_num_threads(before)


def test_kept_results_are_reused_only_for_the_same_weights_and_options(tmp_path: Path) -> None:
    """A dub on disk is kept only when the same network and sampling options made it: more training, a new
    shipped model or another preset in the same output folder re-dub instead of reporting stale videos."""
    import torch

    from lipsync.demo.dubbing import forget_other_results
    from lipsync.infer.options import InferenceOptions
    from lipsync.infer.pipeline import LipSyncPipeline
    from lipsync.infer.presets import tiny_config

    pipe = LipSyncPipeline.from_config(tiny_config(resolution=32), generated_faces=None)
    results = tmp_path / "results"

    def dubbed() -> Path:
        video = results / "a__b.mp4"
        video.write_bytes(b"x")
        return video

    forget_other_results(results, pipe, InferenceOptions(), None)
    video = dubbed()
    forget_other_results(results, pipe, InferenceOptions(progress=False), None)  # progress bars change nothing
    assert video.exists()
    forget_other_results(results, pipe, InferenceOptions(preset="fast"), None)
    assert not video.exists()
    video = dubbed()
    forget_other_results(results, pipe, InferenceOptions(preset="fast"), 2.0)  # a shorter driving clip
    assert not video.exists()
    video = dubbed()
    pipe.config["components"]["crop"]["scale"] = 0.8  # same weights, another crop around the face
    forget_other_results(results, pipe, InferenceOptions(preset="fast"), 2.0)
    assert not video.exists()
    video = dubbed()
    with torch.no_grad():
        next(pipe.net.parameters()).add_(1e-3)  # one more training step
    forget_other_results(results, pipe, InferenceOptions(preset="fast"), 2.0)
    assert not video.exists()


def test_background_training_fails_loudly_and_stops_on_error(tmp_path: Path) -> None:
    """The demo's own training runs while the shipped model is scored: a failed run is an error naming its
    command, and an error elsewhere SIGTERMs it (its StopCheckpoint saves; the next demo resumes)."""
    from lipsync.demo.training import finish_training, stop_training

    failed = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(subprocess.CalledProcessError, match="exit status 3"):
        finish_training(failed, tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        finish_training(None, tmp_path)  # nothing to wait for, and no last.ckpt either
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stop_training(running)
    assert running.returncode == -15  # SIGTERM, not left running behind the demo
    stop_training(running)  # already stopped: nothing to do
    stop_training(None)
