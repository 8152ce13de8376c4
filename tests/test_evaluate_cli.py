"""`python -m lipsync.evaluate` end to end on real mp4 files, with networks of the real file formats
written by the test (TorchScript Inception/I3D call signatures, torchvision AlexNet, SyncNet v2)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
from hydra import compose, initialize_config_dir
from skimage.data import astronaut
from torch import nn

from lipsync.assets import ROOT
from lipsync.cli import config_dir
from lipsync.evaluate import make_lists
from lipsync.evaluate.folders import find_datasets, score_folders
from lipsync.evaluate.make_lists import LISTS_DIR, SEED, draw, listed_videos, read_list
from lipsync.evaluate.regions import fill_gaps, square_crop
from lipsync.evaluate.report import PAPER_TABLE1, summary, sweep_table
from lipsync.models.syncnet import SyncNetV2
from lipsync.media import write_video

FRAMES, SIZE, RATE = 16, 64, 16_000  # 16: one FVD clip per video


class TinyInception(nn.Module):
    """FID's TorchScript call convention (one image batch in, (N, D) out) at toy cost."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 8, stride=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


class TinyI3D(nn.Module):
    """StyleGAN-V's I3D call signature: (N, 3, T, H, W), rescale, resize, return_features -> (N, D)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 6, 3, padding=1)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1.0
        return torch.tanh(self.conv(x)).mean(dim=(2, 3, 4)) * 10


def moving_face(seed: int) -> np.ndarray:
    """(FRAMES, SIZE, SIZE, 3) uint8: a window drifting over the astronaut photo."""
    img = astronaut()[::2, ::2]  # 256 x 256
    return np.stack([img[50 + 2 * t + seed:50 + 2 * t + seed + SIZE, 75 + t:75 + t + SIZE]
                     for t in range(FRAMES)])


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    tone = 0.2 * np.sin(2 * np.pi * 180 * np.arange(FRAMES * 640) / RATE)
    audio = (tone * rng.uniform(0.2, 1, FRAMES).repeat(640)).astype(np.float32)
    for name, seed in (("a", 0), ("b", 5)):
        write_video(root / "ref" / "hdtf" / f"{name}.mp4", moving_face(seed), 25, audio=audio,
                    audio_rate=RATE)
    (root / "gen" / "hdtf").mkdir(parents=True)
    shutil.copy(root / "ref" / "hdtf" / "a.mp4", root / "gen" / "hdtf" / "a.mp4")  # perfect reconstruction
    noisy = np.clip(moving_face(5).astype(int) + rng.integers(-40, 41, (FRAMES, SIZE, SIZE, 3)), 0, 255)
    write_video(root / "gen" / "hdtf" / "b.mp4", noisy.astype(np.uint8), 25, audio=audio, audio_rate=RATE)
    torch.manual_seed(0)
    w = root / "weights"
    w.mkdir()
    torch.jit.script(TinyInception().eval()).save(str(w / "inception.pt"))
    torch.jit.script(TinyI3D().eval()).save(str(w / "i3d_torchscript.pt"))
    features = torchvision.models.alexnet(weights=None).features.state_dict()
    torch.save({f"features.{k}": v for k, v in features.items()}, w / "alexnet-owt-7be5be79.pth")
    torch.save(SyncNetV2().state_dict(), w / "syncnet_v2.model")
    return {"root": root, "weights": w}


def compose_cfg(setup: dict, *extra: str):
    r, w = setup["root"], setup["weights"]
    overrides = [f"generated={r / 'gen'}", f"reference={r / 'ref'}", f"weights_dir={w}", "device=cpu",
                 f"fid.weights={w / 'inception.pt'}", f"lpips.backbone={w / 'alexnet-owt-7be5be79.pth'}",
                 "region.mode=full", f"region.size={SIZE}", "syncnet.vshift=3", *extra]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="evaluate", overrides=overrides)


def test_scores_every_metric_and_writes_json_and_table(setup, tmp_path) -> None:
    path = score_folders(compose_cfg(setup), tmp_path)
    result = json.loads(path.read_text())
    hdtf = result["datasets"]["hdtf"]
    assert hdtf["num_videos"] == 2 and hdtf["not_computed"] == {} and hdtf["failed"] == {}
    a, b = hdtf["per_video"]["a"], hdtf["per_video"]["b"]
    assert a["psnr"] == 100.0 and a["ssim"] == pytest.approx(1.0) and a["lpips"] < 1e-6  # identical file
    assert 10 < b["psnr"] < 30 and b["ssim"] < 0.9 and b["lpips"] > 1e-3
    for video in (a, b):  # SyncNet on generated and reference, FRAMES - 5 windows each
        assert -3 <= video["offset"] <= 3 and video["sync_d"] > 0 and np.isfinite(video["sync_c_reference"])
    assert a["sync_c"] == pytest.approx(a["sync_c_reference"], abs=1e-4)  # same file, same score
    metrics = hdtf["metrics"]
    assert metrics["psnr"] == pytest.approx((a["psnr"] + b["psnr"]) / 2)
    assert metrics["fid"] > 0 and metrics["fvd"] >= 0  # FVD: one 16-frame clip per video, 2 per side
    protocol = result["protocol"]
    assert {"fid", "fvd", "ssim", "psnr", "lpips", "sync", "intervals"} <= set(protocol)
    assert protocol["preset"] == "paper" and "not named" in protocol["assumptions"]["ssim"]
    assert "tf1 bilinear" in protocol["fid"] and "scikit-image" in protocol["ssim"]
    # bootstrap over 2 videos: each resample draws a, b or both, so the PSNR interval spans their values
    lo, hi = hdtf["intervals"]["psnr"]
    assert lo == pytest.approx(b["psnr"]) and hi == pytest.approx(a["psnr"])
    assert hdtf["intervals"]["fid"][0] <= metrics["fid"] <= hdtf["intervals"]["fid"][1] + 1e-9
    table = (tmp_path / "table1.md").read_text()
    assert "| SayAnything (paper) | 5.68 | 197.71 | 0.9347 | 29.04 | 0.0239 | 7.23 |" in table
    fid_lo, fid_hi = hdtf["intervals"]["fid"]
    assert f"| ours | {metrics['fid']:.2f} [{fid_lo:.2f}, {fid_hi:.2f}] | {metrics['fvd']:.2f}" in table
    assert "Protocol preset **paper**" in table and "- assumed (ssim):" in table
    assert "AVASpeech FID" in table and len(PAPER_TABLE1) == 4
    assert len(a["sync_dists"]) == 7 and (tmp_path / "sync_offsets.png").stat().st_size > 1000


def test_missing_weights_skip_only_their_metric(setup, tmp_path) -> None:
    cfg = compose_cfg(setup, "syncnet.weights=/nonexistent/syncnet_v2.model",
                      "fvd.weights=/nonexistent/i3d.pt", "metrics=[fvd,psnr,sync]")
    hdtf = json.loads(score_folders(cfg, tmp_path).read_text())["datasets"]["hdtf"]
    assert hdtf["not_computed"] == {
        "fvd": "I3D (FVD) weights not found at /nonexistent/i3d.pt (set fvd.weights=PATH)",
        "sync": "SyncNet v2 weights not found at /nonexistent/syncnet_v2.model (set syncnet.weights=PATH)",
    }
    assert set(hdtf["metrics"]) == {"psnr"}
    payload = json.loads((tmp_path / "metrics.json").read_text())
    assert payload["missing_weights"] == {
        "fvd": {"config_key": "fvd.weights", "path": "/nonexistent/i3d.pt"},
        "sync": {"config_key": "syncnet.weights", "path": "/nonexistent/syncnet_v2.model"}}
    lines = summary(payload).splitlines()
    assert lines[-1] == ("not computed, weights missing: fvd (set fvd.weights=PATH; nothing at "
                         "/nonexistent/i3d.pt), sync (set syncnet.weights=PATH; nothing at "
                         "/nonexistent/syncnet_v2.model)")
    assert sum("weights" in line for line in lines) == 1  # one line, not one per dataset and metric


def test_bad_folder_is_one_line_and_exit_1(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "lipsync.evaluate", f"generated={tmp_path / 'nope'}",
                           f"reference={tmp_path / 'nope'}", f"hydra.run.dir={tmp_path / 'out'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    expected = f"lipsync-evaluate: error: {tmp_path / 'nope'} is not a folder of videos"
    assert proc.stderr.strip().splitlines()[-1] == expected


def test_sweep_table3(setup, tmp_path) -> None:
    for name in ("full", "ablation_wo_mask"):
        score_folders(compose_cfg(setup, f"experiment_name={name}", "metrics=[ssim,psnr]"), tmp_path / "sweep" / name)
    table = sweep_table(tmp_path / "sweep").read_text()
    assert "| w/o Mask (paper) | 16.19 | 299.44 | 0.8676 | 24.50 | 0.0483 | 6.54 |" in table
    assert "| ablation_wo_mask | – | – |" in table and "| full |" in table


def test_pairs_by_name_and_dataset_folders(setup) -> None:
    r = setup["root"]
    datasets = find_datasets(r / "gen", r / "ref", None)
    assert list(datasets) == ["hdtf"] and [g.name for g, _ in datasets["hdtf"]] == ["a.mp4", "b.mp4"]
    single = find_datasets(r / "gen" / "hdtf", r / "ref" / "hdtf", "mine")
    assert list(single) == ["mine"]


def test_seeded_lists_are_reproducible(tmp_path) -> None:
    lists = ROOT / "data" / "eval_lists"
    for name, total in (("hdtf", 436), ("avaspeech", 160)):
        ids = read_list(lists / f"{name}_all.txt")
        assert len(ids) == total
        assert read_list(lists / f"{name}_test30.txt") == draw(list(reversed(ids)), 30, SEED)
    data = tmp_path / "data" / "hdtf"
    data.mkdir(parents=True)
    listed = read_list(lists / "hdtf_test30.txt")
    (data / f"{listed[0]}.mp4").write_bytes(b"")
    (data / "unlisted.mp4").write_bytes(b"")
    found = listed_videos(tmp_path / "data", "hdtf")
    assert [p.name for p in found.videos] == [f"{listed[0]}.mp4"]
    assert found.missing == tuple(listed[1:]) and found.list_path == lists / "hdtf_test30.txt"
    assert found.as_json() == {"list": str(lists / "hdtf_test30.txt"), "listed": 30, "missing": listed[1:]}
    with pytest.raises(ValueError, match="none of the .*avaspeech_test30.txt videos"):
        listed_videos(tmp_path / "data", "avaspeech")


def test_run_reads_the_list_make_lists_wrote_beside_the_data(tmp_path) -> None:
    from lipsync.evaluate.run import select_videos

    data = tmp_path / "data"
    (data / "hdtf").mkdir(parents=True)
    for i in range(35):
        (data / "hdtf" / f"clip_{i:02d}.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match=f"none of the {LISTS_DIR / 'hdtf_test30.txt'} videos"):
        select_videos(data, use_lists=True)  # no list beside the data yet: the official one, none present
    assert make_lists.main([str(data)]) == 0
    drawn = read_list(data / "hdtf_test30.txt")
    assert len(drawn) == 30 and drawn == draw([f"clip_{i:02d}" for i in range(35)])
    (data / "hdtf" / f"{drawn[4]}.mp4").unlink()
    selection = select_videos(data, use_lists=True)
    listed = selection.lists["hdtf"]
    assert listed.list_path == data / "hdtf_test30.txt" and listed.missing == (drawn[4],)
    assert [p.stem for p in selection.videos["hdtf"]] == drawn[:4] + drawn[5:]
    assert len(select_videos(data, use_lists=False).videos["hdtf"]) == 34


def test_listed_videos_without_a_file_are_counted_and_named(setup, tmp_path) -> None:
    ref = setup["root"] / "ref"
    list_path = tmp_path / "hdtf_test30.txt"
    list_path.write_text("a\nb\nWDA_Gone_001\nWRA_Gone_002\n")
    listed = {"hdtf": listed_videos(ref, "hdtf", list_path)}
    payload = json.loads(score_folders(compose_cfg(setup, "metrics=[psnr]"), tmp_path, listed).read_text())
    hdtf = payload["datasets"]["hdtf"]
    assert (hdtf["num_videos"], hdtf["listed"], hdtf["list"]) == (2, 4, str(list_path))
    assert hdtf["missing"] == ["WDA_Gone_001", "WRA_Gone_002"]
    assert summary(payload).splitlines()[-1] == (
        "missing listed videos, not scored: hdtf 2 of 4 (WDA_Gone_001, WRA_Gone_002) (all named in "
        "metrics.json datasets.<name>.missing)")


@pytest.mark.parametrize("preset", [None, "latentsync"])
def test_make_eval_passes_the_preset_to_the_run(preset: str | None) -> None:
    """`make eval ... EVAL=NAME` composes conf/evaluate_run.yaml with that protocol preset (Hydra group)."""
    extra = [f"EVAL={preset}"] if preset else []
    dry = subprocess.run(["make", "-n", "eval", "DATA=/data", "CKPT=/model", *extra], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    line = next(row for row in dry.splitlines() if "-m lipsync.evaluate.run" in row)
    overrides = line.split("-m lipsync.evaluate.run", 1)[1].split()
    assert overrides[:2] == ["data_dir=/data", "ckpt=/model"] and len(overrides) == 2 + bool(preset)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="evaluate_run", overrides=overrides)
    assert cfg.protocol.preset == (preset or "paper") and cfg.reference == "/data"
    assert list(cfg.metrics) == (["fvd", "sync"] if preset else ["fid", "fvd", "ssim", "psnr", "lpips",
                                                                 "sync"])


def test_region_crop_and_gap_filling() -> None:
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[40:60, 40:60] = 200
    crop = square_crop(frame, np.array([40.0, 40.0, 60.0, 60.0]), scale=2.0, size=40)
    assert crop[10:30, 10:30].min() >= 190 and crop[:8].max() == 0  # box in the middle half
    boxes = np.array([[0, 0, 10, 10], [np.nan] * 4, [np.nan] * 4, [30, 30, 40, 40]], float)
    np.testing.assert_allclose(fill_gaps(boxes)[1:3, 0], [10, 20])


def test_run_generates_self_reconstructions_then_scores(tmp_path, save_tiny_pipeline) -> None:
    """`python -m lipsync.evaluate.run`: a tiny random pipeline dubs a real face clip with its own audio."""
    from lipsync.assets import asset_path, ensure_assets
    from lipsync.evaluate.run import run as run_protocol
    from lipsync.media import read_audio, read_frames

    ensure_assets(names=["sample.wav", "carphone_pristine.mp4"])
    frames = read_frames(asset_path("carphone_pristine.mp4"), 0, 20)
    speech, rate = read_audio(asset_path("sample.wav"))
    audio = speech[rate:rate + 20 * 640]
    write_video(tmp_path / "data" / "hdtf" / "clip.mp4", frames, 25, audio=audio, audio_rate=rate)
    (tmp_path / "data" / "hdtf_test30.txt").write_text("clip\nWDA_NotDownloaded_001\n")  # a make_lists list
    ckpt = save_tiny_pipeline(tmp_path / "ckpt")
    overrides = [f"data_dir={tmp_path / 'data'}", f"ckpt={ckpt}", f"output={tmp_path / 'gen'}", "device=cpu",
                 "options.num_steps=1", "options.detect_generated=false", "metrics=[ssim,psnr]",
                 "region.mode=full", "region.size=64"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="evaluate_run", overrides=overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared 2-core box
    try:
        result = json.loads(run_protocol(cfg, tmp_path / "run").read_text())
    finally:
        torch.set_num_threads(threads)
    generated = tmp_path / "gen" / "hdtf" / "clip.mp4"
    assert generated.exists()
    hdtf = result["datasets"]["hdtf"]
    assert hdtf["list"] == str(tmp_path / "data" / "hdtf_test30.txt")
    assert hdtf["missing"] == ["WDA_NotDownloaded_001"]
    video = hdtf["per_video"]["clip"]
    assert video["frames"] == 20 and 10 < video["psnr"] < 100  # the mouth region was re-generated
    assert result["generated"] == str(tmp_path / "gen") and result["reference"] == str(tmp_path / "data")
