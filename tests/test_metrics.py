"""Frame metrics, FID and FVD against answers known in closed form.

FID runs the real shipped Inception (assets/fid_inception.pt); LPIPS and FVD load networks of the real
file formats that the tests write (torchvision AlexNet state dict + LPIPS linear layers; a TorchScript
module with the StyleGAN-V I3D call signature).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torchvision
from skimage.data import astronaut
from torch import nn

from lipsync.assets import asset_path, ensure_assets
from lipsync.evaluate.fid import TorchScriptInception, build_fid, is_torchscript
from lipsync.evaluate.frame_metrics import PSNR_CAP_DB, build_lpips, lpips, psnr, region_ssim, seam_ratio, ssim
from lipsync.evaluate.fvd import TorchScriptI3D, build_fvd
from lipsync.models.weights import MissingWeights


def frechet_closed_form(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 sqrtm(S_a S_b)) with scipy (Heusel et al. 2017).

    With few samples all the variation and the mean difference lie in a subspace of dimension
    <= n_a + n_b - 1; both terms are unchanged in an orthonormal basis of it, where sqrtm is a
    20x20 problem instead of 2048x2048 (exact, not an approximation).
    """
    mu_a, mu_b = a.mean(0), b.mean(0)
    basis, _ = np.linalg.qr(np.concatenate([a - mu_a, b - mu_b, (mu_a - mu_b)[None]]).T)  # (D, k)
    a, b, mu_a, mu_b = a @ basis, b @ basis, mu_a @ basis, mu_b @ basis
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


def faces(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) uint8 random crops of the scikit-image astronaut (a real photo)."""
    rng = np.random.default_rng(seed)
    img = astronaut()
    out = []
    for _ in range(n):
        y, x = rng.integers(0, 512 - 160, 2)
        crop = torch.from_numpy(img[y:y + 160, x:x + 160]).permute(2, 0, 1)[None].float()
        out.append(nn.functional.interpolate(crop, size=(size, size), mode="area")[0].round().byte())
    return torch.stack(out)


# --- PSNR / SSIM / LPIPS ----------------------------------------------------------------------------


def test_identical_frames_give_capped_psnr_and_unit_ssim() -> None:
    x = faces(3).float() / 255
    assert torch.equal(psnr(x, x), torch.full((3,), PSNR_CAP_DB))
    torch.testing.assert_close(ssim(x, x), torch.ones(3))


def test_gaussian_noise_gives_the_psnr_of_the_formula() -> None:
    torch.manual_seed(0)
    sigma = 0.05
    ref = torch.full((4, 3, 64, 64), 0.5)  # far enough from 0 and 1 that no noise is clipped
    noisy = ref + sigma * torch.randn_like(ref)
    expected = 10 * math.log10(1.0 / sigma**2)  # 26.02 dB: MSE = sigma^2 for a [0, 1] range
    torch.testing.assert_close(psnr(noisy, ref), torch.full((4,), expected), atol=0.1, rtol=0)
    assert (ssim(noisy, ref) < 0.9).all()


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory) -> tuple:
    """A random AlexNet in torchvision's file layout and random LPIPS linear layers in LPIPS' layout."""
    root = tmp_path_factory.mktemp("lpips")
    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet(weights=None)
    features = {k: v for k, v in alexnet.state_dict().items() if k.startswith("features.")}
    torch.save(features, root / "alexnet-owt-7be5be79.pth")  # classifier.* left out: unused, 230 MB
    channels = (64, 192, 384, 256, 256)
    linear = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(channels)}
    torch.save(linear, root / "alex_linear.pth")
    return root / "alexnet-owt-7be5be79.pth", root / "alex_linear.pth", features, linear


def test_lpips_loads_local_weights_and_is_zero_on_identical_frames(lpips_files) -> None:
    backbone, linear, features, lin = lpips_files
    net = build_lpips(backbone, linear)
    # the slices keep torchvision's layer indices: slice2 holds features.3
    torch.testing.assert_close(getattr(net.net.slice2, "3").weight, features["features.3.weight"])
    torch.testing.assert_close(net.lin2.model[1].weight, lin["lin2.model.1.weight"])
    x, y = faces(2).float() / 255, faces(2, seed=1).float() / 255
    assert lpips(net, x, x).abs().max() < 1e-6
    assert (lpips(net, x, y) > 1e-3).all()
    shipped = build_lpips(backbone)  # linear=None: torchmetrics' copy of LPIPS v0.1
    assert not torch.equal(shipped.lin2.model[1].weight, lin["lin2.model.1.weight"])


def test_lpips_missing_or_wrong_files_are_one_line(tmp_path, lpips_files) -> None:
    with pytest.raises(MissingWeights, match=r"lpips\.backbone=PATH"):
        build_lpips(tmp_path / "absent.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="no AlexNet 'features"):
        build_lpips(tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="not an LPIPS AlexNet linear-layer file"):
        build_lpips(lpips_files[0], tmp_path / "wrong.pth")


# --- FID with the shipped Inception -----------------------------------------------------------------


@pytest.fixture(scope="module")
def fid_metric():
    """The FID metric as the evaluation builds it from the shipped file (loaded once for these tests)."""
    ensure_assets(names=["fid_inception.pt"])
    return build_fid(asset_path("fid_inception.pt"))


@pytest.fixture(scope="module")
def inception(fid_metric) -> TorchScriptInception:
    assert isinstance(fid_metric.inception, TorchScriptInception)
    return fid_metric.inception


def test_shipped_inception_features_feed_the_fid_statistics(fid_metric, inception) -> None:
    """The metric built from the shipped file accumulates exactly the extractor's 2048-d pool_3 features."""
    real = faces(2, seed=0)
    features = inception(real).double()
    assert features.shape == (2, 2048) and features.min() >= 0  # pool_3 after ReLU
    fid_metric.reset()
    fid_metric.update(real, real=True)
    torch.testing.assert_close(fid_metric.real_features_sum, features.sum(0))
    torch.testing.assert_close(fid_metric.real_features_cov_sum, features.T @ features)


def test_fid_input_convention_is_tensorflow_range(inception) -> None:
    """uint8 -> x / 128 - 1 at 299 px: a mid-grey frame already at 299 reaches the net as zeros."""
    img = torch.full((1, 3, 299, 299), 128, dtype=torch.uint8)
    torch.testing.assert_close(inception(img), inception.net(torch.zeros(1, 3, 299, 299)))
    assert is_torchscript(asset_path("fid_inception.pt"))


@pytest.mark.slow  # two 2048x2048 eigen-decompositions in torchmetrics: minutes on a busy 2-core box
def test_fid_equals_the_closed_form_on_the_same_features(fid_metric, inception) -> None:
    real, fake = faces(8, seed=0), faces(8, seed=1)
    feats_real, feats_fake = inception(real).double().numpy(), inception(fake).double().numpy()
    fid = fid_metric
    fid.reset()
    fid.update(real, real=True)
    fid.update(fake, real=False)
    value = float(fid.compute())
    assert value > 1.0
    assert value == pytest.approx(frechet_closed_form(feats_real, feats_fake), rel=2e-3)
    fid.reset()
    fid.update(real, real=True)
    fid.update(real, real=False)
    assert abs(float(fid.compute())) < 1e-2 * value  # identical sets: ~0


class TinyExtractor(nn.Module):
    """An image extractor in the shipped file's format: TorchScript, (N, 3, 299, 299) -> (N, D)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 13, stride=13)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean(dim=(2, 3)) * 10


def test_fid_of_a_torchscript_extractor_equals_the_closed_form(tmp_path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "extractor.pt"
    torch.jit.script(TinyExtractor().eval()).save(str(path))
    real, fake = faces(20, seed=0), faces(20, seed=1)
    extractor = TorchScriptInception(path)
    closed = frechet_closed_form(extractor(real).double().numpy(), extractor(fake).double().numpy())
    fid = build_fid(path)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    assert float(fid.compute()) == pytest.approx(closed, rel=1e-4)
    fid.reset()
    fid.update(real, real=True)
    fid.update(real, real=False)
    assert abs(float(fid.compute())) < 1e-6 * closed


def test_fid_missing_file_names_the_key(tmp_path) -> None:
    with pytest.raises(MissingWeights, match=r"fid\.weights=PATH"):
        build_fid(tmp_path / "absent.pt")
    torch.save({"w": torch.zeros(1)}, tmp_path / "state.pth")
    assert not is_torchscript(tmp_path / "state.pth")  # a state dict goes to torch-fidelity's extractor


# --- FVD with a TorchScript module of the I3D call signature ----------------------------------------


class TinyI3D(nn.Module):
    """The call signature of StyleGAN-V's i3d_torchscript.pt at toy size: (N, 3, T, H, W) -> (N, 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1.0
        if resize:
            x = nn.functional.interpolate(x, size=(x.shape[2], 32, 32), mode="trilinear", align_corners=False)
        features = torch.tanh(self.conv(x)).mean(dim=(2, 3, 4)) * 10
        return features if return_features else torch.softmax(self.fc(features), dim=1)


@pytest.fixture(scope="module")
def i3d_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    torch.jit.script(TinyI3D().eval()).save(str(path))
    return path


def clips(n: int, seed: int) -> torch.Tensor:
    """(n, 3, 16, 48, 48) uint8 clips: astronaut crops drifting over time."""
    frames = faces(n * 16 + 1, size=48, seed=seed)
    return frames[: n * 16].reshape(n, 16, 3, 48, 48).permute(0, 2, 1, 3, 4).contiguous()


def test_fvd_calls_the_detector_like_stylegan_v_and_matches_the_closed_form(i3d_path) -> None:
    real, fake = clips(12, seed=0), clips(12, seed=1)
    detector = torch.jit.load(str(i3d_path))
    with torch.no_grad():
        expected_real = detector(real.float(), rescale=True, resize=True, return_features=True)
    wrapper = TorchScriptI3D(i3d_path)
    assert wrapper.num_features == 8
    torch.testing.assert_close(wrapper(real), expected_real)

    fvd = build_fvd(i3d_path)
    fvd.update(real, real=True)
    fvd.update(fake, real=False)
    closed = frechet_closed_form(expected_real.double().numpy(), wrapper(fake).double().numpy())
    assert float(fvd.compute()) == pytest.approx(closed, rel=1e-3)
    fvd.reset()
    fvd.update(real, real=True)
    fvd.update(real, real=False)
    assert abs(float(fvd.compute())) < 1e-4


def test_fvd_missing_file_names_the_key(tmp_path) -> None:
    with pytest.raises(MissingWeights, match=r"fvd\.weights=PATH"):
        build_fvd(tmp_path / "i3d_torchscript.pt")


def test_edit_region_ssim_and_seam_ratio_closed_form() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, 48, 48, 3)).astype(np.uint8)
    frames = np.repeat(base, 12, axis=0)
    regions = np.tile([8, 8, 40, 40], (12, 1))
    assert region_ssim(frames, frames, regions) == pytest.approx(np.ones(12), abs=1e-6)
    other = frames.copy()
    other[:, :, :4] = 0  # outside the region: not compared
    assert region_ssim(other, frames, regions) == pytest.approx(np.ones(12), abs=1e-6)
    assert region_ssim(255 - frames, frames, regions).max() < 0.1
    # a slow drift everywhere plus a jump at one boundary: the ratio is the jump over the drift
    drift = np.clip(frames.astype(np.int64) + 2 * np.arange(12)[:, None, None, None], 0, 255)
    jump = drift.copy()
    jump[6:] = np.clip(jump[6:] + 20, 0, 255)
    boundary = np.zeros(11, bool)
    boundary[5] = True
    assert seam_ratio(drift.astype(np.uint8), regions, boundary) == pytest.approx(1.0, abs=0.05)
    assert seam_ratio(jump.astype(np.uint8), regions, boundary) > 5
