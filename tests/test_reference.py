"""Reference posteriors: adaptive quadrature, nested sampling, results, caching and input checks
(the shift marginal: test_reference_shift.py)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import ClassVar

import numpy as np
import pytest
import torch
from _helpers_reference import TASKS, observe
from hypothesis import given, settings
from hypothesis import strategies as st

import sbi_symmetry.reference as reference
from sbi_symmetry.reference import (
    ReferencePosterior,
    nested_sampling_posterior,
    quadrature_posterior,
    reference_posterior,
)
from sbi_symmetry.reference.cache import cache_key
from sbi_symmetry.reference.grid import CellTree
from sbi_symmetry.reference.nested import bilby_priors
from sbi_symmetry.tasks import DampedOscillator, SignalInNoiseTask, SineGaussian

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


def random_observation(task: SignalInNoiseTask, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    theta = task.sample_prior(1, generator=g)
    return theta[0], task.simulate(theta, generator=g)


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
    for member, value in [("noise_std", 0.5), ("t_start", -0.1), ("theta_high", (1.5, 2.0))]:
        other = SineGaussian()  # the same class, configured differently
        setattr(other, member, value)
        variants.append(cache_key(other, x, "quadrature", 10, 0, {"tv_tol": 1e-3}))
    louder = SineGaussian()
    louder.waveform = lambda theta, u: 2 * SineGaussian.waveform(task, theta, u)
    variants.append(cache_key(louder, x, "quadrature", 10, 0, {"tv_tol": 1e-3}))
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
        ({"initial_cells": 64, "max_evaluations": 4000}, ValueError, "first grid alone"),
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
