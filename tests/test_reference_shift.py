"""Reference posteriors: the shift marginal, its FFT grid against direct sums, and its convergence
in the number of offsets."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers_reference import TASKS, observe
from hypothesis import given, settings
from hypothesis import strategies as st

from sbi_symmetry.reference import ShiftMarginal, quadrature_posterior
from sbi_symmetry.reference.shift import _fast_fft_size
from sbi_symmetry.tasks import DampedOscillator, SignalInNoiseTask, SineGaussian


def shift_midpoints(task: SignalInNoiseTask, marginal: ShiftMarginal) -> torch.Tensor:
    """Shift at cell (j, k), computed independently of ShiftMarginal: a + (k + (j+1/2)/M) dt."""
    first = math.floor((task.nuisance_low[0] - task.t_start) / task.dt + 1e-9)
    start = task.t_start + first * task.dt
    k = torch.arange(marginal.num_cells, dtype=torch.float64)
    j = torch.arange(marginal.num_offsets, dtype=torch.float64)
    return start + (k[None, :] + (j[:, None] + 0.5) / marginal.num_offsets) * task.dt


def direct_log_likelihood(task, theta, shifts, x) -> torch.Tensor:
    """Float64 Gaussian log-likelihood on the exact time grid, one value per shift."""
    times = task.t_start + torch.arange(task.num_samples, dtype=torch.float64) * task.dt
    norm = -0.5 * task.num_samples * math.log(2 * math.pi * task.noise_std**2)
    out = []
    for chunk in shifts.reshape(-1, 1).split(10_000):
        signal = task.waveform(theta.double()[None, :], times[None, :] - chunk)
        resid = x.double().reshape(1, -1) - signal
        out.append(norm - 0.5 * (resid**2).sum(-1) / task.noise_std**2)
    return torch.cat(out).reshape(shifts.shape)


# ----------------------------------------------------------------------------- shift marginal
@settings(deadline=None)
@given(st.integers(1, 5000))
def test_fft_size_is_smallest_5_smooth_number_not_below_n(n):
    def smooth(m):
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    size = _fast_fft_size(n)
    assert size >= n and smooth(size)
    assert not any(smooth(m) for m in range(n, size))


@pytest.mark.parametrize("task_cls", TASKS)
@pytest.mark.parametrize("num_offsets", [1, 3, 16])
def test_shift_weights_are_the_normalised_prior(task_cls, num_offsets):
    task = task_cls()
    marginal = ShiftMarginal(task, torch.zeros(task.num_samples), num_offsets=num_offsets)
    assert marginal.log_weights.exp().sum().item() == pytest.approx(1.0, abs=1e-12)
    mids = shift_midpoints(task, marginal)
    inside = (mids > task.nuisance_low[0]) & (mids < task.nuisance_high[0])
    assert bool(torch.isfinite(marginal.log_weights)[inside].all())
    # Cells straddle the prior's ends at most once per end; all other weights are dt / M / width.
    full = task.dt / num_offsets / (task.nuisance_high[0] - task.nuisance_low[0])
    partial = (marginal.log_weights.exp() - full).abs() > 1e-12
    assert int((partial & torch.isfinite(marginal.log_weights)).sum()) <= 2


@pytest.mark.parametrize("task_cls", TASKS)
@settings(deadline=None)
@given(u=st.floats(0.0, 1.0), v=st.floats(0.0, 1.0), shift=st.floats(-0.99, 0.99))
def test_fft_grid_equals_direct_log_likelihood(task_cls, u, v, shift):
    task = task_cls()
    low, high = torch.tensor(task.theta_low), torch.tensor(task.theta_high)
    theta = (low + torch.tensor([u, v]) * (high - low)).double()
    x = observe(task, theta.tolist(), shift * task.nuisance_high[0])
    marginal = ShiftMarginal(task, x, num_offsets=2)
    grid = marginal.log_likelihood_grid(theta[None])[0]
    direct = direct_log_likelihood(task, theta, shift_midpoints(task, marginal), x)
    torch.testing.assert_close(grid, direct, rtol=0, atol=1e-8)


@pytest.mark.parametrize("task_cls", TASKS)
def test_normalisation_is_that_of_task_log_likelihood(task_cls):
    task = task_cls()
    theta = torch.tensor([0.6, 0.3] if task_cls is DampedOscillator else [0.6, 2.0])
    x = observe(task, theta.tolist(), 0.4)
    marginal = ShiftMarginal(task, x, num_offsets=3)
    grid = marginal.log_likelihood_grid(theta[None])[0]
    shifts = shift_midpoints(task, marginal)[:, 40:45].reshape(-1, 1)
    expected = task.log_likelihood(theta.double().expand(shifts.shape[0], -1), shifts, x)
    # task.times is float32, so agreement is to ~1e-4 (the FFT grid uses exact times).
    torch.testing.assert_close(grid[:, 40:45].reshape(-1), expected, rtol=0, atol=2e-3)


@pytest.mark.parametrize(
    ("task_cls", "theta", "shift"),
    [(DampedOscillator, [1.3, 0.05], -3.97), (SineGaussian, [0.7, 1.5], 1.98)],
)
def test_shift_marginal_equals_dense_shift_integral_near_prior_edge(task_cls, theta, shift):
    # The shift posterior touches the end of the prior, so partial cells and (for the
    # oscillator) the switch-on jumps matter. A dense direct midpoint sum is the truth.
    task = task_cls()
    x = observe(task, theta, shift, seed=3)
    params = torch.tensor([theta, [theta[0] * 1.01, theta[1] * 0.97]], dtype=torch.float64)
    fft = ShiftMarginal(task, x, num_offsets=16)(params)
    lo, hi = task.nuisance_low[0], task.nuisance_high[0]
    num = 100_000 if task_cls is DampedOscillator else 20_000  # the pulse is smooth in shift
    shifts = lo + (torch.arange(num, dtype=torch.float64) + 0.5) * (hi - lo) / num
    for row, value in zip(params, fft, strict=True):
        log_l = direct_log_likelihood(task, row, shifts, x)
        dense = torch.logsumexp(log_l, 0) - math.log(num)
        assert value.item() == pytest.approx(dense.item(), abs=1e-3)


@pytest.mark.parametrize(
    ("task_cls", "theta", "shift"),
    [(DampedOscillator, [1.91, 0.02], -0.84), (SineGaussian, [0.27, 3.39], 1.9)],
)
def test_shift_grid_is_converged_in_num_offsets(task_cls, theta, shift):
    # Hardest cases found: a long, fast oscillator (sharp switch-on) and a pulse at the prior
    # edge. log Z(2M) - log Z(M) = log E_{p_M(theta|x)}[p_2M(x|theta) / p_M(x|theta)].
    task = task_cls()
    x = observe(task, theta, shift)
    ref = quadrature_posterior(task, x, num_samples=1000, num_offsets=8, tv_tol=0.05)
    samples = ref.samples.double()
    values = {m: ShiftMarginal(task, x, num_offsets=m)(samples) for m in (8, 16, 32)}
    for m in (8, 16):
        delta = values[2 * m] - values[m]
        log_ratio = torch.logsumexp(delta, 0).item() - math.log(len(delta))
        assert abs(log_ratio) < (2e-3 if m == 8 else 1e-3)
        assert delta.abs().max().item() < 2e-2  # the posterior's shape agrees pointwise too


def test_samples_statistics_agree_between_m_and_2m():
    # The oscillator (jumps at every switch-on) is where M matters; the pulse converges faster.
    task = DampedOscillator()
    x = observe(task, [1.0, 0.1], 0.5)
    runs = [
        quadrature_posterior(task, x, num_samples=20_000, num_offsets=m, tv_tol=3e-3)
        for m in (8, 16)
    ]
    coarse, fine = runs
    assert coarse.log_evidence == pytest.approx(fine.log_evidence, abs=1e-3)
    std = fine.samples.std(0)
    assert ((coarse.samples.mean(0) - fine.samples.mean(0)).abs() < 0.05 * std).all()
    assert ((coarse.samples.std(0) / std - 1).abs() < 0.03).all()
