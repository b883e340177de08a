"""Reference posteriors: shift marginalisation, adaptive quadrature, nested sampling, caching."""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import ClassVar

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sbi_symmetry.reference as reference
from sbi_symmetry.reference import (
    ReferencePosterior,
    ShiftMarginal,
    nested_sampling_posterior,
    quadrature_posterior,
    reference_posterior,
)
from sbi_symmetry.reference.cache import cache_key
from sbi_symmetry.reference.grid import CellTree
from sbi_symmetry.reference.nested import bilby_priors
from sbi_symmetry.reference.shift import _fast_fft_size
from sbi_symmetry.tasks import DampedOscillator, SignalInNoiseTask, SineGaussian

TASKS = [DampedOscillator, SineGaussian]
# Cheap but accurate settings for tests that only need a sensible posterior.
QUICK = {"num_offsets": 4, "tv_tol": 1e-2}


class Silent(SignalInNoiseTask):
    """A task whose signal is identically zero: the posterior is the prior, Z is analytic."""

    name: ClassVar[str] = "silent"
    parameter_names: ClassVar[tuple[str, ...]] = ("a", "b")
    parameter_labels: ClassVar[tuple[str, ...]] = ("a", "b")
    theta_low: ClassVar[tuple[float, ...]] = (0.0, -1.0)
    theta_high: ClassVar[tuple[float, ...]] = (2.0, 3.0)
    nuisance_low: ClassVar[tuple[float, ...]] = (-1.0,)
    nuisance_high: ClassVar[tuple[float, ...]] = (1.0,)
    t_start: ClassVar[float] = 0.0
    t_stop: ClassVar[float] = 5.0
    num_samples: ClassVar[int] = 50

    def waveform(self, theta, u):
        return 0.0 * theta[..., 0:1] * u


def observe(task: SignalInNoiseTask, theta, shift, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return task.simulate(torch.tensor([theta]), torch.tensor([[shift]]), generator=g)


def random_observation(task: SignalInNoiseTask, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    theta = task.sample_prior(1, generator=g)
    return theta[0], task.simulate(theta, generator=g)


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


# ----------------------------------------------------------------------------- quadrature
def test_quadrature_known_answer_for_a_silent_signal():
    # h = 0: p(x | theta, shift) = N(x; 0, sigma^2) for all parameters, so the posterior is the
    # uniform prior and log Z is the Gaussian log-density of x.
    task = Silent()
    x = torch.randn(1, task.num_samples, generator=torch.Generator().manual_seed(0))
    ref = quadrature_posterior(task, x, num_samples=40_000)
    norm = -0.5 * task.num_samples * math.log(2 * math.pi * task.noise_std**2)
    expected = norm - 0.5 * float((x.double() ** 2).sum()) / task.noise_std**2
    assert ref.log_evidence == pytest.approx(expected, abs=1e-9)
    low, high = torch.tensor(task.theta_low), torch.tensor(task.theta_high)
    torch.testing.assert_close(ref.samples.mean(0), (low + high) / 2, rtol=0, atol=0.02)
    torch.testing.assert_close(ref.samples.std(0), (high - low) / 12**0.5, rtol=0.02, atol=0)


def test_quadrature_evidence_matches_brute_force_sum_with_task_log_likelihood():
    # Brute force: a midpoint sum of task.log_likelihood over a dense (w0, beta, shift) grid of
    # the region holding the posterior (w0 std 0.015, beta std 0.014, shift within 0.4-0.6).
    task = DampedOscillator()
    x = observe(task, [1.0, 0.1], 0.5)
    ref = quadrature_posterior(task, x, num_samples=100, tv_tol=3e-3)
    lows, highs, counts = (0.94, 0.0, 0.4), (1.07, 0.16, 0.6), (12, 12, 600)
    axes = [
        lo + (torch.arange(n, dtype=torch.float64) + 0.5) * (hi - lo) / n
        for lo, hi, n in zip(lows, highs, counts, strict=True)
    ]
    grid = torch.cartesian_prod(*axes)
    log_l = torch.cat([task.log_likelihood(c[:, :2], c[:, 2:], x) for c in grid.split(50_000)])
    cell = math.prod((hi - lo) / n for lo, hi, n in zip(lows, highs, counts, strict=True))
    prior_volume = 1.9 * 0.5 * 8.0
    brute = torch.logsumexp(log_l, 0).item() + math.log(cell / prior_volume)
    assert ref.log_evidence == pytest.approx(brute, abs=2e-3)


@pytest.mark.parametrize("task_cls", TASKS)
def test_true_parameter_lies_in_the_bulk_of_the_posterior(task_cls):
    task = task_cls()
    quantiles = []
    for seed in range(4):
        theta, x = random_observation(task, seed)
        ref = quadrature_posterior(task, x, num_samples=4000, seed=seed, **QUICK)
        quantiles.append((ref.samples < theta).double().mean(0))
    q = torch.stack(quantiles)
    assert ((q > 0.001) & (q < 0.999)).all(), q
    assert int(((q < 0.025) | (q > 0.975)).sum()) <= 1, q  # ~5 % expected outside


def test_quadrature_result_fields_and_determinism():
    task = DampedOscillator()
    x = observe(task, [0.8, 0.2], 1.0)
    ref = quadrature_posterior(task, x, num_samples=500, seed=3, **QUICK)
    again = quadrature_posterior(task, x, num_samples=500, seed=3, **QUICK)
    other = quadrature_posterior(task, x, num_samples=500, seed=4, **QUICK)
    assert ref.samples.shape == (500, 2) and ref.samples.dtype == torch.float32
    assert torch.equal(ref.samples, again.samples) and ref.log_evidence == again.log_evidence
    assert not torch.equal(ref.samples, other.samples)
    assert ref.method == "quadrature" and ref.settings["converged"]
    assert ref.num_likelihood_evaluations == (
        ref.settings["num_theta_evaluations"] * ref.settings["num_shift_nodes"]
    )
    low, high = torch.tensor(task.theta_low), torch.tensor(task.theta_high)
    assert ((ref.samples >= low) & (ref.samples <= high)).all()
    assert 0 <= ref.log_evidence_error < 1e-2
    json.dumps(ref.settings)


def test_quadrature_warns_at_the_evaluation_cap():
    task = SineGaussian()
    x = observe(task, [0.5, 2.0], 0.0)
    with pytest.warns(RuntimeWarning, match="max_evaluations"):
        ref = quadrature_posterior(task, x, num_samples=10, max_evaluations=5000, num_offsets=2)
    assert not ref.settings["converged"]
    assert ref.settings["num_theta_evaluations"] <= 5000


def test_quadrature_restores_torch_threads():
    before = torch.get_num_threads()
    task = DampedOscillator()
    quadrature_posterior(task, observe(task, [1.0, 0.3], 0.0), num_samples=10, **QUICK)
    assert torch.get_num_threads() == before


@settings(deadline=None)
@given(st.lists(st.tuples(st.floats(0, 0.999), st.floats(0, 0.999)), min_size=1, max_size=20))
def test_grid_leaves_partition_the_box_and_locate_finds_them(points):
    tree = CellTree(torch.tensor([0.0, -1.0]), torch.tensor([2.0, 1.0]), initial_cells=4)
    zero = lambda c: torch.zeros(c.shape[0], dtype=torch.float64)  # noqa: E731
    leaves = tree.root(zero)
    for dims in ([True, False], [False, True], [True, True]):  # refine around the first leaf
        first = torch.zeros(leaves.size, dtype=torch.bool)
        first[0] = True
        kids = tree.split(leaves.take(first), torch.tensor([dims]), zero)
        leaves = type(leaves).cat([leaves.take(~first), kids])
    assert leaves.log_mass.exp().sum().item() == pytest.approx(1.0, abs=1e-12)
    pts = torch.tensor(points, dtype=torch.float64) * torch.tensor([2.0, 2.0]) + tree.low
    rows = tree.locate(leaves, pts)
    assert (rows >= 0).all()
    centre = tree.centres(leaves.level[rows], leaves.index[rows])
    half = tree.sizes(leaves.level[rows]) / 2
    assert ((pts - centre).abs() <= half + 1e-12).all()


# ----------------------------------------------------------------------------- nested sampling
def test_bilby_priors_are_the_task_priors():
    for task in (DampedOscillator(), SineGaussian()):
        priors = bilby_priors(task)
        names = [*task.parameter_names, "shift"]
        lows = [*task.theta_low, task.nuisance_low[0]]
        highs = [*task.theta_high, task.nuisance_high[0]]
        for name, low, high in zip(names, lows, highs, strict=True):
            assert (priors[name].minimum, priors[name].maximum) == (low, high)


def test_dynesty_warns_when_samples_must_repeat():
    task = DampedOscillator()
    x = observe(task, [1.0, 0.3], 0.5)
    with pytest.warns(UserWarning, match="independent samples"):
        ref = nested_sampling_posterior(task, x, num_samples=5_000, seed=0, nlive=40, dlogz=1.0)
    assert ref.settings["independent_samples"] < 5_000
    assert torch.unique(ref.samples, dim=0).shape[0] < 5_000  # the repeats the warning names


def test_dynesty_is_seeded_and_leaves_no_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    task = DampedOscillator()
    x = observe(task, [1.0, 0.3], 0.5)
    prefix = "sbi-symmetry-dynesty-"
    before = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith(prefix)}
    runs = [
        nested_sampling_posterior(task, x, num_samples=200, seed=s, nlive=40, dlogz=1.0)
        for s in (5, 5, 6)
    ]
    assert torch.equal(runs[0].samples, runs[1].samples)
    assert runs[0].log_evidence == runs[1].log_evidence
    assert not torch.equal(runs[0].samples, runs[2].samples)
    ref = runs[0]
    assert ref.samples.shape == (200, 2) and ref.samples.dtype == torch.float32
    assert ref.method == "dynesty" and ref.log_evidence_error > 0
    assert ref.num_likelihood_evaluations > 0
    assert ref.settings["independent_samples"] > 0 and ref.settings["effective_samples"] > 0
    json.dumps(ref.settings)
    assert os.listdir(tmp_path) == []  # the working directory
    after = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith(prefix)}
    assert after <= before


# ----------------------------------------------------------------------------- result and cache
def make_result(**changes) -> ReferencePosterior:
    fields = {
        "samples": torch.arange(6.0).reshape(3, 2),
        "log_evidence": -12.5,
        "log_evidence_error": 0.1,
        "method": "dynesty",
        "wall_time_s": 1.5,
        "num_likelihood_evaluations": 77,
        "settings": {"nlive": 10, "nested": [1, 2]},
    }
    return ReferencePosterior(**{**fields, **changes})


def test_result_save_load_round_trip_and_refuses_overwrite(tmp_path):
    ref = make_result()
    path = ref.save(tmp_path / "ref.npz")
    loaded = ReferencePosterior.load(path)
    assert torch.equal(loaded.samples, ref.samples) and loaded.samples.dtype == torch.float32
    assert loaded.settings == ref.settings and loaded.log_evidence == ref.log_evidence
    assert (loaded.method, loaded.num_likelihood_evaluations) == ("dynesty", 77)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_result(log_evidence=0.0).save(path)
    assert ReferencePosterior.load(path).log_evidence == -12.5
    make_result(log_evidence=0.0).save(path, overwrite=True)
    assert ReferencePosterior.load(path).log_evidence == 0.0
    assert sorted(os.listdir(tmp_path)) == ["ref.npz"]


def test_result_rejects_bad_fields_and_files(tmp_path):
    with pytest.raises(ValueError, match="method"):
        make_result(method="mcmc")
    with pytest.raises(ValueError, match="samples"):
        make_result(samples=torch.zeros(3))
    with pytest.raises(ValueError, match="log_evidence"):
        make_result(log_evidence=float("nan"))
    with pytest.raises(ValueError, match=r"\.npz"):
        make_result().save(tmp_path / "ref.json")
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not a saved ReferencePosterior"):
        ReferencePosterior.load(tmp_path / "other.npz")


def test_cache_loads_on_second_call_and_touches_nothing_else(tmp_path, monkeypatch):
    task = SineGaussian()
    x = observe(task, [0.5, 2.0], 0.2)
    cache = tmp_path / "cache"
    cache.mkdir()
    foreign = cache / "notes.txt"
    foreign.write_text("keep me")
    stamp = foreign.stat().st_mtime_ns
    first = reference_posterior(task, x, num_samples=300, cache_dir=cache, **QUICK)
    files = sorted(os.listdir(cache))
    assert (
        len(files) == 2
        and files[1] == "reference-" + cache_key(task, x, "quadrature", 300, 0, QUICK) + ".npz"
    )

    def fail(*args, **kwargs):
        raise AssertionError("the cached result should have been loaded")

    monkeypatch.setattr(reference, "quadrature_posterior", fail)
    second = reference_posterior(task, x[0].double(), num_samples=300, cache_dir=cache, **QUICK)
    assert torch.equal(first.samples, second.samples)
    assert second.log_evidence == first.log_evidence and second.settings == first.settings
    assert sorted(os.listdir(cache)) == files
    assert foreign.read_text() == "keep me" and foreign.stat().st_mtime_ns == stamp
    with pytest.raises(AssertionError, match="cached"):  # a new seed is a new computation
        reference_posterior(task, x, num_samples=300, seed=1, cache_dir=cache, **QUICK)


def test_cache_key_depends_on_every_input():
    task = SineGaussian()
    x = torch.zeros(500)
    base = cache_key(task, x, "quadrature", 10, 0, {"tv_tol": 1e-3})
    assert base == cache_key(
        SineGaussian(), x.reshape(1, -1).double(), "quadrature", 10, 0, {"tv_tol": 1e-3}
    )
    variants = [
        cache_key(Silent(), torch.zeros(50), "quadrature", 10, 0, {"tv_tol": 1e-3}),
        cache_key(task, x + 1e-6, "quadrature", 10, 0, {"tv_tol": 1e-3}),
        cache_key(task, x, "dynesty", 10, 0, {"tv_tol": 1e-3}),
        cache_key(task, x, "quadrature", 11, 0, {"tv_tol": 1e-3}),
        cache_key(task, x, "quadrature", 10, 1, {"tv_tol": 1e-3}),
        cache_key(task, x, "quadrature", 10, 0, {"tv_tol": 2e-3}),
    ]
    assert len({base, *variants}) == len(variants) + 1


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"x_o": torch.zeros(199)}, ValueError, "x_o"),
        ({"x_o": torch.zeros(2, 200)}, ValueError, "x_o"),
        ({"x_o": torch.zeros(1, 1, 200)}, ValueError, "x_o"),
        ({"x_o": torch.full((200,), float("nan"))}, ValueError, "NaN"),
        ({"x_o": torch.zeros(200).index_fill(0, torch.tensor([3]), math.inf)}, ValueError, "inf"),
        ({"x_o": np.zeros(200)}, TypeError, "x_o"),
        ({"method": "mcmc"}, ValueError, "method"),
        ({"num_samples": 0}, ValueError, "num_samples"),
        ({"num_samples": -3}, ValueError, "num_samples"),
        ({"num_samples": 2.5}, ValueError, "num_samples"),
        ({"num_samples": True}, ValueError, "num_samples"),
        ({"seed": -1}, ValueError, "seed"),
        ({"task": object()}, TypeError, "task"),
        ({"tv_tol": 0.0}, ValueError, "tv_tol"),
        ({"mass_tol": 1.5}, ValueError, "mass_tol"),
        ({"initial_cells": 0}, ValueError, "initial_cells"),
        ({"num_offsets": 0}, ValueError, "num_offsets"),
        ({"num_threads": 0}, ValueError, "num_threads"),
        ({"method": "dynesty", "nlive": 0}, ValueError, "nlive"),
        ({"method": "dynesty", "dlogz": -1.0}, ValueError, "dlogz"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, error, match):
    args = {"task": DampedOscillator(), "x_o": torch.zeros(200), "num_samples": 10, **kwargs}
    with pytest.raises(error, match=match):
        reference_posterior(**args)


def test_task_method_delegates_to_reference_posterior():
    task = DampedOscillator()
    x = observe(task, [1.2, 0.2], 0.5)
    ref = task.reference_posterior(x, num_samples=50, **QUICK)
    assert isinstance(ref, ReferencePosterior) and ref.samples.shape == (50, 2)


# ----------------------------------------------------------------------------- slow agreement
@pytest.mark.slow
@pytest.mark.parametrize("task_cls", TASKS)
@pytest.mark.parametrize("seed", [0, 1])
def test_dynesty_agrees_with_quadrature(task_cls, seed):
    # C2ST with sbi's default random-forest classifier (5-fold), 800 samples a side; dynesty's
    # samples are independent (no repeats) because 800 <= its rejection-sampled count.
    from sbi.utils.metrics import c2st

    task = task_cls()
    _, x = random_observation(task, seed)
    nested = reference_posterior(task, x, num_samples=800, method="dynesty", seed=seed, nlive=400)
    exact = reference_posterior(task, x, num_samples=800, seed=seed)
    assert nested.settings["independent_samples"] >= 800
    accuracy = c2st(nested.samples, exact.samples, seed=1, classifier="rf").item()
    assert accuracy <= 0.6, accuracy
    std = exact.samples.std(0)
    assert ((nested.samples.mean(0) - exact.samples.mean(0)).abs() < 0.25 * std).all()
    assert ((nested.samples.std(0) / std - 1).abs() < 0.15).all()
    gap = abs(nested.log_evidence - exact.log_evidence)
    assert gap < 3 * nested.log_evidence_error + 0.05, (gap, nested.log_evidence_error)
