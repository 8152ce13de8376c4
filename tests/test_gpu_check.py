"""``make gpu-check`` at tiny size on CPU (issue 16): the same script and stages, so it cannot rot between
the sessions that are lent a GPU. The numbers checked are ones a wrong FLOP count, a wrong phase split or
a dropped stage would change."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from lipsync.synth.corpus import synth_sample, write_sample

ROOT = Path(__file__).resolve().parents[1]


def _bench_gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_check(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("gpu_check")
    video = write_sample(synth_sample(seed=3, index=0, seconds=1.0, size=96), folder / "video", seed=3)
    rc = _bench_gpu().main(["--size", "tiny", "--device", "cpu", "--video", str(video), "--out", str(folder / "out"),
                            "--skip", "train_compile", "dub_compile"])
    assert rc == 0
    assert (folder / "out" / "gpu.md").read_text().startswith("# Full size on one GPU")
    return json.loads((folder / "out" / "gpu.json").read_text())


def test_training_stages_count_the_recompute(tiny_check: dict) -> None:
    st = tiny_check["stages"]
    ckpt, plain = st["train_ckpt"], st["train_nockpt"]
    assert ckpt["status"] == plain["status"] == "ok"
    assert ckpt["gradient_checkpointing"] and not plain["gradient_checkpointing"]
    assert ckpt["steps_timed"] == 2 and ckpt["seconds_per_step"] > 0
    # Checkpointing recomputes the net's forward in backward: the counted step grows by about one forward
    # (forward + backward ~ 3 forwards, so the net's share grows by ~1/3; the VAE-free tiny codec adds nothing).
    ratio = ckpt["tflop_per_step_by_part"]["Denoiser"] / plain["tflop_per_step_by_part"]["Denoiser"]
    assert 1.2 < ratio < 1.45
    # 200k steps at the measured per-step time on 8 GPUs, batch scaled from the measured 1 to the paper's 2.
    assert ckpt["paper_run_hours_8_gpus"] == pytest.approx(200_000 * ckpt["seconds_per_step"] * 2 / 3600, rel=0.01)
    assert st["train_fsdp"]["status"] == "skipped"  # needs CUDA; it ran on the H200 (bench_results/gpu.json)


def test_dub_phases_add_up_and_passes_are_counted(tiny_check: dict) -> None:
    dub = tiny_check["stages"]["dub_paper"]
    assert dub["status"] == "ok" and dub["frames"] in (25, 26)  # 1 s of AAC-padded audio
    # One 25-26-frame video = 2 segments (16 + 4 overlap -> starts 0 and 12) x 15 steps, CFG batched (2 samples).
    assert dub["net_calls"] == 2 * 15 and dub["net_samples"] == 2 * dub["net_calls"]
    phases = dub["phase_seconds_per_output_second"]
    assert {"faces", "audio", "vae_encode", "unet", "vae_decode", "paste", "video_encode", "other"} <= set(phases)
    assert sum(phases.values()) == pytest.approx(dub["seconds_per_output_second"], rel=0.02, abs=0.01)
    assert phases["unet"] == max(phases.values())
    expected = dub["net_pass_tflop_16f"] * dub["net_samples"] / dub["video_seconds"]
    assert dub["net_tflop_per_output_second"] == pytest.approx(expected, rel=0.01)
