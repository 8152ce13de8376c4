"""Protocol presets (conf/evaluate/), the choices they switch, and the bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lipsync.evaluate import frechet as frechet_module
from lipsync.assets import ROOT
from lipsync.evaluate.frechet import FeatureStats, frechet_distance, frechet_interval, mean_interval
from lipsync.evaluate.frechet import resample_counts, trace_sqrt_product, weighted_sum
from lipsync.evaluate.regions import sync_track_rejection
from lipsync.evaluate.report import describe_protocol, table3
from lipsync.evaluate.score import PairScorer, Scorers

PRESETS = sorted(p.stem for p in (ROOT / "conf" / "evaluate").glob("*.yaml"))


def settings(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=["generated=g", "reference=r", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def test_the_issue_presets_exist() -> None:
    assert {"paper", "stylegan_v", "latentsync", "syncnet_python"} <= set(PRESETS)
    assert settings()["protocol"]["preset"] == "paper"  # the default


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_describes_itself(preset: str) -> None:
    cfg = settings(f"evaluate={preset}")
    assert cfg["protocol"]["preset"] == preset and cfg["protocol"]["reproduces"]
    described = describe_protocol(cfg, faces="MediaPipeFaces")
    assert described["preset"] == preset and described["assumptions"]
    assert all(isinstance(described[k], str) for k in ("fid", "fvd", "ssim", "psnr", "lpips", "sync"))


def clip_ends(cfg: dict, frames: int = 60) -> list[int]:
    scorer = PairScorer(Scorers(), region=None, cfg=cfg)
    return [i for i in range(frames) if scorer._is_clip_end(i)]


def test_presets_pick_the_clips_their_references_score() -> None:
    assert clip_ends(settings()) == [15, 23, 31, 39, 47, 55]  # every 16-frame window at stride 8
    assert clip_ends(settings("evaluate=stylegan_v")) == [15]  # frames 0..15 only
    assert clip_ends(settings("evaluate=latentsync")) == [35]  # LatentSync's vr[20:36]
    assert clip_ends(settings("evaluate=latentsync"), frames=35) == []  # too short: no clip


def test_presets_set_the_reference_choices() -> None:
    sg, ls, sp = (settings(f"evaluate={p}") for p in ("stylegan_v", "latentsync", "syncnet_python"))
    assert (sg["fvd"]["ddof"], sg["fvd"]["input"]) == (0, "stylegan_v")
    assert (ls["fvd"]["ddof"], ls["fvd"]["input"], ls["region"]["size"]) == (1, "latentsync", 224)
    assert ls["syncnet"]["min_track"] == 50
    assert (sp["syncnet"]["min_track"], sp["syncnet"]["min_face_size"]) == (100, 100)
    assert sp["metrics"] == ["sync"] and sp["s3fd"]["weights"].endswith("sfd_face.pth")
    assert settings("evaluate=stylegan_v", "fvd.ddof=1")["fvd"]["ddof"] == 1  # the command line wins


def test_syncnet_python_track_filter() -> None:
    boxes = np.tile([10.0, 10.0, 130.0, 140.0], (150, 1))  # 130 px faces
    assert sync_track_rejection(boxes, 100, 100) is None
    assert "min_track" in sync_track_rejection(boxes[:100], 100, 100)  # more than 100 detections needed
    assert "min_face_size" in sync_track_rejection(boxes * 0.5, 100, 100)  # 65 px
    gappy = boxes.copy()
    gappy[60:90] = np.nan  # a 30-frame gap (> 25) splits the track into 60 + 60 detections
    assert "longest 60" in sync_track_rejection(gappy, 100, 100)
    gappy[60:80] = boxes[60:80]  # a 10-frame gap keeps one track of 140 detections
    assert sync_track_rejection(gappy, 100, 100) is None
    assert sync_track_rejection(None, 100, 100) is None and sync_track_rejection(boxes[:5], 0, 0) is None


# --- bootstrap -----------------------------------------------------------------------------------------


def test_resample_counts_draw_every_video_set_with_replacement() -> None:
    counts = resample_counts(5, 2000, seed=0)
    assert counts.shape == (2000, 5) and (counts.sum(1) == 5).all()
    np.testing.assert_allclose(counts.mean(0), 1.0, atol=0.05)  # each video drawn once on average


def test_mean_interval_matches_the_normal_approximation() -> None:
    values = np.random.default_rng(1).normal(3.0, 2.0, 200)
    lo, hi = mean_interval(list(values), resamples=4000, level=0.95, seed=0)
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))  # 0.28
    assert lo == pytest.approx(values.mean() - half, abs=0.04) and hi == pytest.approx(values.mean() + half,
                                                                                         abs=0.04)
    assert mean_interval([2.0] * 5) == (2.0, 2.0) and mean_interval([1.0]) is None


def test_frechet_interval_over_videos() -> None:
    gen = torch.Generator().manual_seed(0)
    real = [FeatureStats.of(torch.randn(20, 3, generator=gen, dtype=torch.float64)) for _ in range(6)]
    fake = [FeatureStats.of(torch.randn(20, 3, generator=gen, dtype=torch.float64) + 1.0) for _ in range(6)]
    lo, hi = frechet_interval(real, fake, resamples=200, seed=0)
    total = frechet_distance(weighted_sum(real), weighted_sum(fake))
    assert lo < total < hi and total == pytest.approx(3.0, abs=0.6)  # mean shift (1, 1, 1): ~3
    same = frechet_interval(real, real, resamples=20, seed=0)
    assert max(abs(v) for v in same) < 1e-6  # identical sets in every resample
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(FeatureStats.of(torch.zeros(1, 3)), FeatureStats.of(torch.zeros(5, 3)))


def test_trace_sqrt_product_closed_forms() -> None:
    """Commuting (diagonal) covariances: Tr (S_r S_f)^1/2 = sum sqrt(a_i b_i), zeros included; a covariance
    of n < D samples: the nuclear norm of C_r C_f^T / (n - 1), C the centred features."""
    a = torch.tensor([4.0, 9.0, 1.0, 0.25], dtype=torch.float64)
    b = torch.tensor([1.0, 4.0, 16.0, 4.0], dtype=torch.float64)
    assert trace_sqrt_product(torch.diag(a), torch.diag(b)) == pytest.approx(2 + 6 + 4 + 1, rel=1e-12)
    a[1:3] = 0  # rank 2: not positive definite, so the eigendecomposition path
    assert trace_sqrt_product(torch.diag(a), torch.diag(b)) == pytest.approx(2 + 1, rel=1e-12)
    gen = torch.Generator().manual_seed(0)
    x_r, x_f = (torch.randn(12, 40, generator=gen, dtype=torch.float64) for _ in range(2))
    (_, s_r), (_, s_f) = FeatureStats.of(x_r).mean_cov(), FeatureStats.of(x_f).mean_cov()
    c_r, c_f = x_r - x_r.mean(0), x_f - x_f.mean(0)
    nuclear = float(torch.linalg.svdvals(c_r @ c_f.T).sum()) / 11
    assert trace_sqrt_product(s_r, s_f) == pytest.approx(nuclear, rel=1e-10)


@pytest.mark.parametrize("dim", [16, 256])
def test_frechet_distance_equals_the_scipy_sqrtm_formula(dim: int) -> None:
    from scipy.linalg import sqrtm

    gen = torch.Generator().manual_seed(dim)
    real = FeatureStats.of(torch.randn(3 * dim, dim, generator=gen, dtype=torch.float64))
    fake = FeatureStats.of(torch.randn(3 * dim, dim, generator=gen, dtype=torch.float64) * 1.3 + 0.2)
    (mu_r, s_r), (mu_f, s_f) = (s.mean_cov() for s in (real, fake))
    s_r, s_f = s_r.numpy(), s_f.numpy()
    expected = (float(((mu_r - mu_f) ** 2).sum()) + np.trace(s_r) + np.trace(s_f)
                - 2 * np.trace(sqrtm(s_r @ s_f).real))  # Heusel et al. 2017, eq. 6, as pytorch-fid has it
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-6)


def _interval_every_resample(real: list, fake: list, resamples: int, seed: int) -> tuple[float, float]:
    """The bootstrap interval as it was computed before: every resample solved with torchmetrics' eigvals."""
    from torchmetrics.image.fid import _compute_fid

    values = []
    for w in resample_counts(len(real), resamples, seed):
        (mu_r, s_r), (mu_f, s_f) = weighted_sum(real, w).mean_cov(), weighted_sum(fake, w).mean_cov()
        values.append(float(_compute_fid(mu_r, s_r, mu_f, s_f)))
    return tuple(np.percentile(values, [2.5, 97.5]))


@pytest.mark.parametrize("videos", [2, 5])
def test_frechet_interval_equals_solving_every_resample(videos: int, monkeypatch) -> None:
    gen = torch.Generator().manual_seed(videos)
    real = [FeatureStats.of(torch.randn(15, 6, generator=gen, dtype=torch.float64)) for _ in range(videos)]
    fake = [FeatureStats.of(torch.randn(15, 6, generator=gen, dtype=torch.float64) * 1.5 + 0.3)
            for _ in range(videos)]
    expected = _interval_every_resample(real, fake, resamples=100, seed=3)
    calls = []
    solve = frechet_module.frechet_distance
    monkeypatch.setattr(frechet_module, "frechet_distance", lambda *a, **k: calls.append(1) or solve(*a, **k))
    assert frechet_interval(real, fake, resamples=100, seed=3) == pytest.approx(expected, rel=1e-9)
    distinct = len(np.unique(resample_counts(videos, 100, 3), axis=0))
    assert len(calls) == distinct and (videos > 2 or distinct == 3)  # 2 videos: (2, 0), (1, 1), (0, 2)


def test_table3_flags_rows_scored_under_different_protocols() -> None:
    result = {"ssim": 0.9}
    paper = describe_protocol(settings(), "MediaPipeFaces")
    other = describe_protocol(settings("evaluate=stylegan_v"), "MediaPipeFaces")
    runs = {"a": {"datasets": {"hdtf": {"metrics": result}}, "protocol": paper},
            "b": {"datasets": {"hdtf": {"metrics": result, "intervals": {"ssim": [0.8, 0.95]}}},
                  "protocol": other}}
    table = table3(runs)
    assert "| a | – | – | 0.9000 |" in table and "| b | – | – | 0.9000 [0.8000, 0.9500] |" in table
    assert "| paper |" in table and "| stylegan_v |" in table and "different protocols" in table
    assert "different protocols" not in table3({"a": runs["a"]})


def test_s3fd_backend_is_syncnet_python_detector_with_local_weights(tmp_path) -> None:
    """Seeded random S3FD weights: the backend's box per frame is the package's largest detection."""
    from syncnet_python.detectors.s3fd.nets import S3FDNet

    from lipsync.evaluate.s3fd import S3FDFaces, load_s3fd
    from lipsync.models.weights import MissingWeights

    with pytest.raises(MissingWeights, match=r"s3fd\.weights=PATH"):
        S3FDFaces(tmp_path / "sfd_face.pth")
    torch.manual_seed(0)
    torch.save(S3FDNet(device="cpu").state_dict(), tmp_path / "sfd_face.pth")
    # a random net scores nothing above 0.9; a low threshold makes it find boxes to compare
    faces = S3FDFaces(tmp_path / "sfd_face.pth", conf_th=0.05, scale=1.0)
    frames = np.random.default_rng(0).integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    track = faces.track(None, enumerate(frames))
    assert track.found.all()
    reference = load_s3fd(tmp_path / "sfd_face.pth")
    for frame, box in zip(frames, track.boxes):
        found = reference.detect_faces(frame, conf_th=0.05, scales=[1.0])
        if len(found) == 0:
            assert np.isnan(box).all()
            continue
        largest = found[np.argmax((found[:, 2] - found[:, 0]) * (found[:, 3] - found[:, 1])), :4]
        np.testing.assert_allclose(box, largest, rtol=1e-5)
