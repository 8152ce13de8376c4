"""The shipped real-face model (issue 27): it is what its README commands train (stage 1 from the showcase
weights, stage 2 from stage 1 with the motion-weighted loss) on the committed split's training heads, and it
loads through the public API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _shipped_model import compose_command, folder_config_and_expected, without_run_settings
from lipsync.infer.options import InferenceOptions
from lipsync.infer.pipeline import LipSyncPipeline

ROOT = Path(__file__).resolve().parents[1]
REALFACE = ROOT / "models" / "realface"
COMMAND = ["experiment=realface_stage2"]  # models/realface/README.md: stage 2, run to its max_steps
STEPS = 600

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_committed_model_is_what_its_command_trains(tmp_path: Path) -> None:
    recorded, expected = folder_config_and_expected(REALFACE, COMMAND, tmp_path)
    for name in ("net", "precond", "mask"):
        assert recorded["components"][name] == expected["components"][name], name
    assert recorded["sampling"] == expected["sampling"] and recorded["preprocess"] == expected["preprocess"]
    assert recorded["components"]["crop"]["resolution"] == 48  # the minimum real-face crop
    assert recorded["components"]["audio_encoder"]["_target_"].endswith("from_packaged")
    assert sum(f.stat().st_size for f in REALFACE.iterdir()) < 20e6


def test_committed_models_training_record_is_what_its_command_composes() -> None:
    record = json.loads((REALFACE / "training.json").read_text())
    recorded, composed = without_run_settings(record["config"]), compose_command(COMMAND)
    for key in ("model", "data", "mask", "sampling", "seed", "init_from", "torch_threads"):
        assert recorded[key] == composed[key], key
    assert record["global_step"] == STEPS
    assert recorded["init_from"] == "models/realface" and recorded["mask"]["size"] == "steady"  # stage 1
    assert recorded["model"]["loss"]["motion_weight"] == 2.0
    assert recorded["data"]["shards"] == "outputs/realfaces/train48/shards"  # the split's training heads


def test_realface_loads_through_the_public_api() -> None:
    pipe = LipSyncPipeline.from_pretrained(REALFACE, generated_faces=None)
    assert pipe.crop.resolution == 48 and pipe.guidance_scale(InferenceOptions()) == 2.0
    assert 3e6 < sum(p.numel() for p in pipe.net.parameters()) < 4e6
