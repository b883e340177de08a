"""The two paper problems: shapes, noise, translation by the shift, switch-on, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sbi.utils.user_input_checks import process_prior

from sbi_symmetry.tasks import DampedOscillator, SineGaussian, get_task

TASKS = [DampedOscillator, SineGaussian]


@pytest.mark.parametrize("cls", TASKS)
def test_simulate_shapes_dtype_and_setup(cls):
    task = cls()
    g = torch.Generator().manual_seed(1)
    theta = task.sample_prior(7, generator=g)
    x = task.simulate(theta, generator=g)
    assert x.shape == (7, task.num_samples) and x.dtype == torch.float32
    assert task.times.shape == (task.num_samples,)
    assert task.noise_std == 0.4
    assert task.x_shape == (task.num_samples,)
    assert len(task.parameter_names) == len(task.parameter_labels) == task.theta_dim == 2
    assert task.prior.sample((5,)).shape == (5, 2)
    assert task.nuisance_prior.sample((5,)).shape == (5, 1)
    assert task(theta).shape == x.shape  # usable as an sbi simulator
    process_prior(task.prior)  # sbi accepts the prior as it is


def test_exact_setups_from_design():
    sho, sg = DampedOscillator(), SineGaussian()
    assert torch.allclose(sho.times, torch.linspace(-1, 10, 200))
    assert torch.allclose(sg.times, torch.linspace(-10, 10, 500))
    assert (sho.theta_low, sho.theta_high) == ((0.1, 0.0), (2.0, 0.5))
    assert (sg.theta_low, sg.theta_high) == ((0.1, 1.0), (1.0, 4.0))
    assert (sho.nuisance_low, sho.nuisance_high) == ((-4.0,), (4.0,))
    assert (sg.nuisance_low, sg.nuisance_high) == ((-2.0,), (2.0,))


@pytest.mark.parametrize("cls", TASKS)
def test_generator_makes_simulations_reproducible(cls):
    task = cls()
    theta = task.sample_prior(4, generator=torch.Generator().manual_seed(0))
    a = task.simulate(theta, generator=torch.Generator().manual_seed(3))
    b = task.simulate(theta, generator=torch.Generator().manual_seed(3))
    c = task.simulate(theta, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("cls", TASKS)
def test_noise_is_white_gaussian_with_sigma(cls):
    task = cls()
    g = torch.Generator().manual_seed(2)
    theta = task.sample_prior(400, generator=g)
    shift = task.sample_nuisance(400, generator=g)
    noise = (task.simulate(theta, shift, generator=g) - task.signal(theta, shift)).double()
    n = noise.numel()
    assert abs(noise.mean().item()) < 4 * 0.4 / math.sqrt(n)
    assert abs(noise.std().item() - 0.4) < 4 * 0.4 / math.sqrt(2 * n)
    # no correlation between neighbouring samples
    lag1 = (noise[:, 1:] * noise[:, :-1]).mean() / noise.var()
    assert abs(lag1.item()) < 4 / math.sqrt(n)
    # fourth moment of a Gaussian: kurtosis 3
    kurt = ((noise - noise.mean()) ** 4).mean() / noise.var() ** 2
    assert abs(kurt.item() - 3.0) < 0.1


@given(
    p0=st.floats(0.0, 1.0),
    p1=st.floats(0.0, 1.0),
    shift=st.floats(-1.0, 1.0),
    k=st.integers(1, 20),
)
@pytest.mark.parametrize("cls", TASKS)
def test_shift_translates_the_waveform(cls, p0, p1, shift, k):
    task = cls()
    lo, hi = torch.tensor(task.theta_low), torch.tensor(task.theta_high)
    theta = (lo + (hi - lo) * torch.tensor([p0, p1])).double()[None]
    s0 = torch.tensor([[shift]], dtype=torch.float64)
    s1 = s0 + k * task.dt
    a = task.signal(theta, s0)[0]
    b = task.signal(theta, s1)[0]
    # moving the signal by k samples: b[i + k] == a[i] wherever both are on the grid
    assert torch.allclose(b[k:], a[:-k], atol=1e-5)


@given(w0=st.floats(0.1, 2.0), beta=st.floats(0.0, 0.5), shift=st.floats(-4.0, 4.0))
def test_damped_oscillator_is_zero_before_switch_on(w0, beta, shift):
    task = DampedOscillator()
    x = task.signal(torch.tensor([[w0, beta]]), torch.tensor([[shift]]))[0]
    before = task.times < shift
    assert torch.all(x[before] == 0)
    after = task.times >= shift
    if after.any():  # starts at exp(0) cos(0) = 1
        first = int(after.nonzero()[0])
        u = task.times[first] - shift
        assert (
            abs(
                x[first].item()
                - math.exp(-beta * w0 * u) * math.cos(math.sqrt(1 - beta**2) * w0 * u)
            )
            < 1e-5
        )


def test_waveforms_match_the_formulas():
    t = SineGaussian()
    theta, shift = torch.tensor([[0.3, 2.5]]), torch.tensor([[0.7]])
    u = t.times - 0.7
    expect = torch.exp(-((u / 2.5) ** 2)) * torch.sin(2 * math.pi * 0.3 * u)
    assert torch.allclose(t.signal(theta, shift)[0], expect, atol=1e-6)


@pytest.mark.parametrize("cls", TASKS)
def test_log_likelihood_is_the_gaussian_density(cls):
    from scipy.stats import norm

    task = cls()
    g = torch.Generator().manual_seed(5)
    theta, shift = task.sample_prior(3, generator=g), task.sample_nuisance(3, generator=g)
    x = task.simulate(theta, shift, generator=g)
    got = task.log_likelihood(theta, shift, x)
    clean = task.signal(theta.double(), shift.double())
    want = norm.logpdf(x.double().numpy(), clean.numpy(), 0.4).sum(-1)
    assert torch.allclose(got, torch.from_numpy(want), rtol=1e-9, atol=1e-8)


@pytest.mark.parametrize("cls", TASKS)
def test_bad_inputs_raise_clear_errors(cls):
    task = cls()
    theta = task.sample_prior(2)
    with pytest.raises(ValueError, match=r"`theta` must have shape \(n, 2\)"):
        task.simulate(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"`theta` must have shape \(n, 2\)"):
        task.simulate(torch.ones(2))
    with pytest.raises(ValueError, match="NaN/inf"):
        task.simulate(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        task.simulate([[1.0, 1.0]])
    with pytest.raises(ValueError, match=r"`nuisance` must have shape \(n, 1\)"):
        task.simulate(theta, torch.zeros(2))
    with pytest.raises(ValueError, match="rows"):
        task.simulate(theta, torch.zeros(3, 1))
    with pytest.raises(ValueError, match="`x_o` must have shape"):
        task.check_observation(torch.zeros(task.num_samples + 1))
    with pytest.raises(ValueError, match="`x_o` must have shape"):
        task.check_observation(torch.zeros(2, task.num_samples))
    with pytest.raises(ValueError, match="NaN/inf"):
        task.check_observation(torch.full((task.num_samples,), float("inf")))
    with pytest.raises(ValueError, match="`num` must be a positive integer"):
        task.sample_prior(0)


def test_domain_errors_where_the_simulator_is_undefined():
    with pytest.raises(ValueError, match="0 <= beta < 1"):
        DampedOscillator().simulate(torch.tensor([[1.0, 1.2]]))
    with pytest.raises(ValueError, match="tau > 0"):
        SineGaussian().simulate(torch.tensor([[0.5, -1.0]]))
    # outside the prior but physically fine: allowed
    DampedOscillator().simulate(torch.tensor([[3.0, 0.8]]))


def test_get_task():
    assert isinstance(get_task("damped-oscillator"), DampedOscillator)
    with pytest.raises(ValueError, match="`name` must be one of"):
        get_task("nope")
