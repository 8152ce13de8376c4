"""Closed-form checks of the preconditioning (SPEC section 2) against the formulas and diffusers."""

import math

import pytest
import torch
from diffusers import EulerDiscreteScheduler

from lipsync.models.denoiser import Denoiser
from lipsync.models.precond import EDMPrecond, SVDPrecond, loss_weight

SIGMAS = torch.tensor([0.002, 0.05, 0.5, 1.0, 2.0, 14.6, 80.0, 700.0], dtype=torch.float64)


def test_svd_values_at_sigma_one():
    p, s = SVDPrecond(), torch.tensor(1.0, dtype=torch.float64)
    assert p.c_skip(s).item() == pytest.approx(0.5)
    assert p.c_out(s).item() == pytest.approx(-1 / math.sqrt(2))
    assert p.c_in(s).item() == pytest.approx(1 / math.sqrt(2))
    assert p.c_noise(s).item() == pytest.approx(0.0)
    assert p.c_noise(torch.tensor(math.e**4)).item() == pytest.approx(1.0)


@pytest.mark.parametrize("precond", [SVDPrecond(), EDMPrecond(0.5), EDMPrecond(1.0)], ids=repr)
def test_unit_variance_input_and_target(precond):
    """EDM's design: c_in makes the net input unit-variance and the implied training target of F is unit-variance.

    For z ~ N(0, sd^2), x = z + s n: Var(c_in x) = c_in^2 (sd^2 + s^2) = 1, and the target
    F* = (z - c_skip x) / c_out has Var = ((1 - c_skip)^2 sd^2 + c_skip^2 s^2) / c_out^2 = 1.
    """
    sd, s = precond.sigma_data, SIGMAS
    assert torch.allclose(precond.c_in(s) ** 2 * (sd**2 + s**2), torch.ones_like(s))
    target_var = ((1 - precond.c_skip(s)) ** 2 * sd**2 + precond.c_skip(s) ** 2 * s**2) / precond.c_out(s) ** 2
    assert torch.allclose(target_var, torch.ones_like(s))


def test_loss_weight_is_inverse_c_out_squared():
    assert torch.allclose(loss_weight(SVDPrecond(), SIGMAS), (SIGMAS**2 + 1) / SIGMAS**2)
    edm = EDMPrecond(0.5)  # EDM's lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2
    assert torch.allclose(loss_weight(edm, SIGMAS), (SIGMAS**2 + 0.25) / (SIGMAS * 0.5) ** 2)


class _EchoNet(torch.nn.Module):
    """F(x_in, c_noise) = fixed tensor v; records what the denoiser fed it."""

    def __init__(self, v):
        super().__init__()
        self.v = v

    def forward(self, x_in, c_noise, cond):
        self.seen = (x_in, c_noise)
        return self.v


@pytest.mark.parametrize("sigma", [0.03, 0.7, 5.0, 300.0])
def test_svd_denoiser_matches_diffusers_euler_v_prediction(sigma):
    """Our D equals diffusers' EulerDiscreteScheduler(v_prediction) pred_original_sample for the same F output."""
    torch.manual_seed(0)
    x, v = torch.randn(1, 2, 4, 3, 3), torch.randn(1, 2, 4, 3, 3)
    sched = EulerDiscreteScheduler(prediction_type="v_prediction", timestep_type="continuous",
                                   use_karras_sigmas=True, sigma_min=0.002, sigma_max=700.0)
    sched.set_timesteps(10)
    sched.sigmas = torch.tensor([sigma, 0.0])
    sched.timesteps = 0.25 * torch.log(torch.tensor([sigma]))
    sched._step_index = 0
    scaled = sched.scale_model_input(x, sched.timesteps[0])
    expected = sched.step(v, sched.timesteps[0], x).pred_original_sample

    net = _EchoNet(v)
    D = Denoiser(net, SVDPrecond())(x, torch.tensor([sigma]), {})
    assert torch.allclose(net.seen[0], scaled, atol=1e-6)
    assert torch.allclose(net.seen[1], sched.timesteps.float(), atol=1e-6)
    assert torch.allclose(D, expected, atol=1e-5)
