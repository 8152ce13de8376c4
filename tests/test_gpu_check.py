"""``make gpu-check`` at tiny size on CPU (issues 16 and 29): the same script and every stage (profiles,
cached latents, compilation with dynamo's eager backend), so it cannot rot between the sessions that are
lent a GPU. The numbers checked are ones a wrong FLOP count, a wrong phase split or a dropped stage would
change."""

from __future__ import annotations

import gzip
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
                            "--student", str(folder / "no_student")])
    assert rc == 0
    md = (folder / "out" / "gpu.md").read_text()
    assert md.startswith("# Full size on one GPU")
    assert "## Where the time goes" in md and "## Compilation" in md
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


def test_cached_latents_and_layouts_are_recorded(tiny_check: dict) -> None:
    st = tiny_check["stages"]
    assert not st["train_nockpt"]["cached_latents"] and st["train_cached"]["cached_latents"]
    assert st["train_cached"]["attention_backend"] == ["flash", "efficient"]  # conf/model/sayanything.yaml
    assert st["train_channels_last"]["channels_last"] and not st["train_cached"]["channels_last"]
    assert st["train_compile"]["status"] == "ok" and st["train_compile"]["compiled"]
    assert st["train_deepspeed"]["status"] == "skipped" and "deepspeed" in st["train_deepspeed"]["reason"]


@pytest.mark.parametrize("name", ["profile_train", "profile_dub"])
def test_profiles_name_the_kernels_and_keep_the_trace(tiny_check: dict, name: str) -> None:
    prof = tiny_check["stages"][name]
    assert prof["status"] == "ok" and prof["kernels"] > 100
    assert sum(prof["share_by_kind"].values()) == pytest.approx(1.0, abs=0.01)
    shares = [k["share"] for k in prof["top"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0001
    assert any("flash" in k for k in prof["attention_kernels"])  # the configured backend is what ran
    trace = ROOT / prof["trace"]  # relative to the checkout when inside it, else absolute (both join right)
    assert json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]


def test_dub_stages_compile_and_say_what_is_missing(tiny_check: dict) -> None:
    st = tiny_check["stages"]
    assert st["dub_fast"]["options"]["num_steps"] == 6
    assert st["dub_fast"]["net_calls"] < st["dub_paper"]["net_calls"]
    assert st["dub_student"]["status"] == "skipped" and "no distilled student" in st["dub_student"]["reason"]
    comp = st["dub_compile"]
    assert comp["compiled"] and comp["net_calls"] == st["dub_paper"]["net_calls"] and comp["graphs"] >= 1
    # The clock wraps the compiled callable: no graph break of its own; compiling is paid in the first run.
    assert comp["graph_breaks"] == 0
    assert comp["first_run_seconds_per_output_second"] > comp["seconds_per_output_second"]
    settings = st["compile_settings"]["settings"]
    assert settings["eager"]["status"] == settings["compile"]["status"] == "ok"
