"""Cramer-Rao bounds: the paper's closed forms (Eqs. 5a-5d) and the profiling inequality."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sbi_symmetry.reference.fisher import cramer_rao_bound, fisher_information
from sbi_symmetry.tasks import DampedOscillator, SineGaussian


def _sho_closed_form(w0: float, beta: float, u: torch.Tensor, sigma: float) -> tuple[float, float]:
    u = u[u >= 0].double()
    s = math.sqrt(1 - beta**2)
    env = torch.exp(-2 * beta * w0 * u)
    a = u**2 * env * (s * torch.sin(w0 * u * s) + beta * torch.cos(w0 * u * s)) ** 2  # (5a)
    b = w0**2 * u**2 * env * (beta * torch.sin(w0 * u * s) / s - torch.cos(w0 * u * s)) ** 2
    return sigma / math.sqrt(a.sum()), sigma / math.sqrt(b.sum())  # (5a), (5b)


def _sg_closed_form(f0: float, tau: float, u: torch.Tensor, sigma: float) -> tuple[float, float]:
    u = u.double()
    env = torch.exp(-2 * u**2 / tau**2)
    dtau = sigma * tau**3 / math.sqrt((4 * u**4 * env * torch.sin(2 * math.pi * f0 * u) ** 2).sum())
    df = sigma / math.sqrt(
        (4 * math.pi**2 * u**2 * env * torch.cos(2 * math.pi * f0 * u) ** 2).sum()
    )
    return df, dtau  # (5d), (5c)


@given(w0=st.floats(0.1, 2.0), beta=st.floats(0.01, 0.5), shift=st.floats(-4.0, 4.0))
def test_damped_oscillator_matches_closed_forms(w0, beta, shift):
    task = DampedOscillator()
    got = task.cramer_rao_bound(
        torch.tensor([[w0, beta]]), torch.tensor([[shift]]), nuisance_known=True, conditional=True
    )[0]
    want = _sho_closed_form(w0, beta, task.times.double() - shift, task.noise_std)
    assert got[0].item() == pytest.approx(want[0], rel=1e-6)
    assert got[1].item() == pytest.approx(want[1], rel=1e-6)


@given(f0=st.floats(0.1, 1.0), tau=st.floats(1.0, 4.0), shift=st.floats(-2.0, 2.0))
def test_sine_gaussian_matches_closed_forms(f0, tau, shift):
    task = SineGaussian()
    got = task.cramer_rao_bound(
        torch.tensor([[f0, tau]]), torch.tensor([[shift]]), nuisance_known=True, conditional=True
    )[0]
    want = _sg_closed_form(f0, tau, task.times.double() - shift, task.noise_std)
    assert got[0].item() == pytest.approx(want[0], rel=1e-6)
    assert got[1].item() == pytest.approx(want[1], rel=1e-6)


def test_paper_example_values():
    # Appendix A.1: SHO at (w0, beta) = (1.5, 0.2) gives about 0.04 and 0.03.
    task = DampedOscillator()
    crb = task.cramer_rao_bound(
        torch.tensor([[1.5, 0.2]]), torch.tensor([[0.0]]), nuisance_known=True, conditional=True
    )[0]
    assert crb[0].item() == pytest.approx(0.04, abs=0.01)
    assert crb[1].item() == pytest.approx(0.03, abs=0.005)


@pytest.mark.parametrize("cls", [DampedOscillator, SineGaussian])
def test_profiled_bound_is_never_smaller(cls):
    task = cls()
    g = torch.Generator().manual_seed(0)
    theta, shift = task.sample_prior(64, generator=g), task.sample_nuisance(64, generator=g)
    known = cramer_rao_bound(task, theta, shift, nuisance_known=True)
    profiled = cramer_rao_bound(task, theta, shift)
    conditional = cramer_rao_bound(task, theta, shift, nuisance_known=True, conditional=True)
    assert known.shape == (64, 2) and known.dtype == torch.float64
    assert torch.all(profiled >= known * (1 - 1e-9))
    assert torch.all(known >= conditional * (1 - 1e-9))  # correlations only widen
    assert torch.isfinite(profiled).all()


def test_profiling_matters_when_shift_and_theta_correlate():
    # the oscillator's switch-on makes the shift and w0 correlate: profiling widens the bound
    task = DampedOscillator()
    theta, shift = torch.tensor([[1.5, 0.2]]), torch.tensor([[0.0]])
    assert (
        task.cramer_rao_bound(theta, shift, nuisance_known=False)
        / task.cramer_rao_bound(theta, shift, nuisance_known=True)
    )[0, 0] > 1.2


def test_the_default_bound_holds_the_shift_known_only_where_the_waveform_jumps():
    """The oscillator's switch-on pins the shift beyond autograd's view (reference/fisher.py)."""
    theta, shift = torch.tensor([[1.2, 0.2]]), torch.tensor([[0.537]])
    task = DampedOscillator()
    known = task.cramer_rao_bound(theta, shift, nuisance_known=True)
    assert task.onset_jump and torch.equal(task.cramer_rao_bound(theta, shift), known)
    smooth, theta = SineGaussian(), torch.tensor([[0.5, 2.0]])
    profiled = cramer_rao_bound(smooth, theta, shift)
    assert not smooth.onset_jump and torch.equal(smooth.cramer_rao_bound(theta, shift), profiled)


def test_fisher_is_symmetric_positive_definite():
    task = SineGaussian()
    fisher = fisher_information(task, torch.tensor([[0.4, 2.0]]), torch.tensor([[0.1]]))[0]
    assert torch.allclose(fisher, fisher.T)
    assert torch.linalg.eigvalsh(fisher).min() > 0


def test_fisher_rejects_non_signal_tasks():
    with pytest.raises(TypeError, match="SignalInNoiseTask"):
        fisher_information(object(), torch.ones(1, 2), torch.ones(1, 1))
