"""DSM loss and samplers on oracle denoisers with closed-form answers."""

import math

import pytest
import torch

from lipsync.models.denoiser import Denoiser
from lipsync.models.loss import DSMLoss, LogNormalSigma
from lipsync.models.precond import EDMPrecond, SVDPrecond
from lipsync.sampling import GuidedDenoiser, karras_sigmas, sample_euler, sample_heun


class FixedSigma:
    def __init__(self, s):
        self.s = s

    def __call__(self, n, device="cpu", generator=None):
        return torch.full((n,), self.s, device=device)


class Oracle(Denoiser):
    """A Denoiser whose D is given in closed form (bypasses the net)."""

    def __init__(self, fn, precond):
        super().__init__(torch.nn.Identity(), precond)
        self.fn = fn

    def forward(self, x, sigma, cond):
        return self.fn(x, sigma, cond)


@pytest.mark.parametrize("sigma", [0.1, 1.0, 10.0])
def test_dsm_loss_closed_form(sigma):
    z = torch.randn(64, 2, 4, 8, 8)
    perfect = Oracle(lambda x, s, c: z, SVDPrecond())
    assert DSMLoss(FixedSigma(sigma))(perfect, z, {}).abs().max() == 0
    # D = x (no denoising): error = sigma n, weighted by (sigma^2+1)/sigma^2 -> (sigma^2+1) E[n^2]
    identity = Oracle(lambda x, s, c: x, SVDPrecond())
    loss = DSMLoss(FixedSigma(sigma))(identity, z, {}, generator=torch.Generator().manual_seed(0)).mean()
    assert loss.item() == pytest.approx(sigma**2 + 1, rel=0.02)


def test_lognormal_sigma_moments():
    s = LogNormalSigma(0.7, 1.6)(100_000, generator=torch.Generator().manual_seed(0)).log()
    assert s.mean().item() == pytest.approx(0.7, abs=0.03) and s.std().item() == pytest.approx(1.6, abs=0.03)


def test_karras_sigmas():
    s = karras_sigmas(15)
    assert len(s) == 16 and s[-1] == 0
    assert s[0].item() == pytest.approx(700.0, rel=1e-5) and s[-2].item() == pytest.approx(0.002, rel=1e-4)
    assert bool((s[:-1] > s[1:]).all())
    mid = (700 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 700 ** (1 / 7))) ** 7  # EDM eq. 5 at i = (n-1)/2
    assert karras_sigmas(3)[1].item() == pytest.approx(mid, rel=1e-5)


def _gaussian_ode_error(sampler, n, sd=0.5, sigma_max=80.0):
    """Relative end-point error on data N(0, sd^2): ideal D = x sd^2/(s^2+sd^2), exact x0 = x_T sd/sqrt(S^2+sd^2)."""
    sigmas = karras_sigmas(n, sigma_min=0.002, sigma_max=sigma_max).double()
    x_T = torch.randn(100, dtype=torch.float64) * sigma_max
    x0 = sampler(lambda x, s: x * sd**2 / (s**2 + sd**2), x_T, sigmas)
    exact = x_T * sd / math.sqrt(sigma_max**2 + sd**2)
    return ((x0 - exact) / exact).abs().max().item()


@pytest.mark.parametrize("sampler,order,tol", [(sample_heun, 2, 2e-3), (sample_euler, 1, 4e-2)])
def test_samplers_follow_gaussian_ode_with_their_order(sampler, order, tol):
    e100, e200 = _gaussian_ode_error(sampler, 100), _gaussian_ode_error(sampler, 200)
    assert e100 < tol
    assert e100 / e200 == pytest.approx(2**order, rel=0.25)  # halving the step divides the error by 2^order


def test_euler_lands_on_a_point_mass():
    z0 = torch.randn(5)
    out = sample_euler(lambda x, s: z0, torch.randn(5) * 700, karras_sigmas(15))
    assert torch.allclose(out, z0, atol=1e-5)


def test_guidance_formula_and_single_batch():
    calls = []

    def D(x, sigma, cond):  # depends linearly on the conditions
        calls.append(x.shape[0])
        return x + cond["audio"].mean((1, 2, 3)).view(-1, 1, 1, 1) + 10 * cond["id"][0].mean((1, 2, 3)).view(-1, 1, 1, 1)

    cond = {"concat": torch.zeros(2, 1, 1, 1), "audio": torch.ones(2, 1, 2, 3), "id": [torch.ones(2, 4, 2, 2)]}
    x = torch.zeros(2, 1, 1, 1)
    out = GuidedDenoiser(D, cond, scale=3.0)(x, torch.tensor(1.0))
    assert calls == [4] and torch.allclose(out, torch.full_like(out, 3 * 11.0))
    calls.clear()
    two = GuidedDenoiser(D, cond, scale=2.0, audio_scale=5.0)(x, torch.tensor(1.0))
    assert calls == [6] and torch.allclose(two, torch.full_like(two, 2 * 10.0 + 5 * 1.0))
    calls.clear()
    plain = GuidedDenoiser(D, cond, scale=1.0)(x, torch.tensor(1.0))
    assert calls == [2] and torch.allclose(plain, torch.full_like(plain, 11.0))
