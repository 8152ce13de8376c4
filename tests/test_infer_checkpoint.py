"""Pipeline checkpoints: exact round trip, training-checkpoint conversion, and refusal of unsafe files."""

from __future__ import annotations

import functools
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from lipsync.infer.checkpoint import CheckpointError, load_torch_checkpoint
from lipsync.infer.convert import convert
from lipsync.infer.pipeline import InferenceOptions, LipSyncPipeline
from lipsync.infer.presets import tiny_config
from lipsync.models.precond import SVDPrecond




def _perturb(module: torch.nn.Module) -> None:
    """Non-zero values everywhere (the new layers start at zero), so a lost tensor would show."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.01)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_pipeline) -> LipSyncPipeline:
    pipe = tiny_pipeline()
    _perturb(pipe.net)
    return pipe


def test_save_and_load_pretrained_round_trip_exactly(tiny: LipSyncPipeline, tmp_path: Path) -> None:
    folder = tiny.save_pretrained(tmp_path / "pipe")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded = LipSyncPipeline.from_pretrained(folder, generated_faces=None)
    assert _same(loaded.net, tiny.net) and _same(loaded.audio_encoder, tiny.audio_encoder)
    assert loaded.crop == tiny.crop and repr(loaded.mask) == repr(tiny.mask)


def test_config_may_only_name_component_builders(tiny: LipSyncPipeline, tmp_path: Path) -> None:
    folder = tiny.save_pretrained(tmp_path / "pipe")
    config = json.loads((folder / "config.json").read_text())
    config["components"]["precond"] = {"_target_": "os.system", "command": "touch pwned"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="refused _target_ 'os.system'"):
        LipSyncPipeline.from_pretrained(folder)


def test_weights_that_do_not_fit_the_config_are_named(tiny: LipSyncPipeline, tmp_path: Path) -> None:
    folder = tiny.save_pretrained(tmp_path / "pipe")
    config = json.loads((folder / "config.json").read_text())
    config["components"]["net"]["audio_width"] = 16
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="net weights do not fit its config"):
        LipSyncPipeline.from_pretrained(folder)


def test_truncated_safetensors_is_unreadable(tiny: LipSyncPipeline, tmp_path: Path) -> None:
    folder = tiny.save_pretrained(tmp_path / "pipe")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        LipSyncPipeline.from_pretrained(folder)


class _RunsCode:
    """A pickle payload: unpickling it calls os.system (what weights_only loading must refuse)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_executing_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match="refused: unpickling it would call 'posix.system'"):
        load_torch_checkpoint(path)
    assert not marker.exists()
    plain = tmp_path / "evil.pkl"  # a bare pickle (not torch's zip format) is refused too
    plain.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(CheckpointError):
        load_torch_checkpoint(plain)
    assert not marker.exists()


def test_garbage_checkpoint_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "garbage.ckpt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_torch_checkpoint(path)


def _training_run(tmp_path: Path, pipe: LipSyncPipeline, config_inside: bool,
                  sampling: dict | None = None) -> Path:
    """A run folder as `python -m lipsync.train` leaves it: checkpoints/last.ckpt with the resolved run
    config inside (``config_inside``) or only beside it in .hydra/config.yaml."""
    comps = tiny_config(resolution=32)["components"]
    train_cfg = {
        "model": {
            "net": {
                "_target_": "lipsync.models.pretrained.load_pretrained_net",
                "path": None,
                "net": comps["net"],
            },
            "precond": comps["precond"],
            "vae": comps["vae"],
        },
        "mask": comps["mask"],
        "data": {"crop": comps["crop"], "audio_encoder": comps["audio_encoder"]},
    }
    if sampling is not None:
        train_cfg["sampling"] = sampling
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(train_cfg))
    state = {f"denoiser.net.{k}": v for k, v in pipe.net.state_dict().items()}
    hparams = {"precond": SVDPrecond(), "optimizer": functools.partial(torch.optim.AdamW, lr=6e-5), "seed": 0}
    ckpt = run / "checkpoints" / "last.ckpt"
    extra = {"config": train_cfg} if config_inside else {}
    torch.save({"state_dict": state, "hyper_parameters": hparams, "epoch": 0, **extra}, ckpt)
    if config_inside:
        (run / ".hydra" / "config.yaml").unlink()
    return ckpt


@pytest.mark.parametrize("config_inside", [True, False])
def test_training_checkpoint_converts_to_the_same_net(tiny: LipSyncPipeline, tmp_path: Path,
                                                      config_inside: bool) -> None:
    ckpt = _training_run(tmp_path, tiny, config_inside)
    out = convert(ckpt, tmp_path / "converted")
    loaded = LipSyncPipeline.from_pretrained(out, generated_faces=None)
    assert _same(loaded.net, tiny.net)
    recorded = load_torch_checkpoint(ckpt)
    training = out / "training.json"  # what trained the weights travels with them, when the run recorded it
    assert training.exists() == ("config" in recorded)
    if training.exists():
        assert json.loads(training.read_text()) == json.loads(json.dumps(
            {"global_step": recorded.get("global_step"), "config": recorded["config"]}, default=str))
    direct = LipSyncPipeline.from_pretrained(ckpt, generated_faces=None)  # on the fly, same weights
    assert _same(direct.net, tiny.net)


def test_the_models_noise_range_and_guidance_travel_from_training_to_inference(tiny: LipSyncPipeline, tmp_path: Path) -> None:
    """A net trained on a narrow sigma range (experiment=demo: sigma_max 20) is sampled inside it by default."""
    ckpt = _training_run(tmp_path, tiny, True, sampling={"num_steps": 15, "cfg_scale": 1.5,
                                                         "sigma_min": 0.002, "sigma_max": 20.0})
    loaded = LipSyncPipeline.from_pretrained(convert(ckpt, tmp_path / "converted"), generated_faces=None)
    assert json.loads((tmp_path / "converted" / "config.json").read_text())["sampling"] == {
        "cfg_scale": 1.5, "sigma_min": 0.002, "sigma_max": 20.0}
    assert loaded.sigma_range(InferenceOptions()) == (0.002, 20.0)
    assert loaded.sigma_range(InferenceOptions(sigma_max=80.0)) == (0.002, 80.0)  # the call wins
    assert tiny.sigma_range(InferenceOptions()) == (0.002, 700.0)  # nothing recorded: SVD's
    assert loaded.guidance_scale(InferenceOptions()) == 1.5  # the model's guidance, unless the call sets one
    assert loaded.guidance_scale(InferenceOptions(guidance_scale=3.0)) == 3.0
    assert tiny.guidance_scale(InferenceOptions()) == 3.0  # the paper's
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        loaded.sigma_range(InferenceOptions(sigma_min=30.0))
