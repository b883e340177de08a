"""Tests of the embedding diagnostics: invariance error, collapse statistics, summary plots."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from sbi_symmetry.symmetry.diagnostics import (
    collapse_statistics,
    invariance_error,
    plot_summaries,
    summary_invariance,
)
from sbi_symmetry.tasks import DampedOscillator
from sbi_symmetry.views import ResimulatedViews

matplotlib.use("Agg")


class PairedViews:
    """x -> (x + a * noise, x + a * noise'): perfect invariance at a = 0."""

    input_kind = "x"

    def __init__(self, noise: float) -> None:
        self.noise = noise

    def __call__(self, x):
        return x + self.noise * torch.randn_like(x), x + self.noise * torch.randn_like(x)


class IndependentViews:
    """Ignores its input: two independent draws, so no invariance at all."""

    input_kind = "x"

    def __call__(self, x):
        return torch.randn_like(x), torch.randn_like(x)


# --------------------------------------------------------------------------------- invariance
def test_invariance_error_is_zero_for_identical_views():
    assert invariance_error(nn.Linear(6, 3), PairedViews(0.0), torch.randn(100, 6)) == 0.0


def test_invariance_error_is_about_two_for_independent_views():
    torch.manual_seed(0)
    error = invariance_error(nn.Linear(6, 3), IndependentViews(), torch.zeros(4000, 6))
    assert error == pytest.approx(2.0, abs=0.1)


def test_invariance_error_grows_with_view_noise_and_ignores_summary_scale():
    torch.manual_seed(0)
    x = torch.randn(2000, 6)
    lin = nn.Linear(6, 3)
    small = invariance_error(lin, PairedViews(0.1), x)
    torch.manual_seed(1)
    large = invariance_error(lin, PairedViews(1.0), x)
    assert 0 < small < large < 2.5
    scaled = nn.Sequential(lin, nn.Identity())
    torch.manual_seed(1)
    plain = invariance_error(scaled, PairedViews(1.0), x)
    with torch.no_grad():
        lin.weight *= 7.0
        lin.bias *= 7.0
    torch.manual_seed(1)
    assert invariance_error(scaled, PairedViews(1.0), x) == pytest.approx(plain, rel=1e-6)


def test_invariance_error_restores_the_training_mode():
    emb = nn.Sequential(nn.Linear(4, 2), nn.Dropout(0.5)).train()
    invariance_error(emb, PairedViews(0.0), torch.randn(20, 4))
    assert emb.training
    # Dropout was off during the measurement: identical views give exactly 0.
    assert invariance_error(emb, PairedViews(0.0), torch.randn(20, 4)) == 0.0


def test_invariance_error_of_a_collapsed_embedding_is_nan_with_a_warning():
    const = nn.Linear(4, 2)
    with torch.no_grad():
        const.weight.zero_()
    with pytest.warns(UserWarning, match="collapsed"):
        assert math.isnan(invariance_error(const, PairedViews(1.0), torch.randn(20, 4)))


def test_invariance_error_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2 rows"):
        invariance_error(nn.Linear(4, 2), PairedViews(0.0), torch.randn(1, 4))
    with pytest.raises(TypeError, match=r"nn\.Module"):
        invariance_error(lambda x: x, PairedViews(0.0), torch.randn(5, 4))
    with pytest.raises(ValueError, match="shape"):
        summary_invariance(torch.randn(5, 2), torch.randn(5, 3))


def test_invariance_error_with_resimulated_views_of_a_task():
    task = DampedOscillator()
    views = ResimulatedViews(task.simulate, task.nuisance_prior)
    torch.manual_seed(0)
    error = invariance_error(nn.Linear(200, 3), views, task.sample_prior(500))
    assert 0.0 < error < 2.5


# --------------------------------------------------------------------------------- collapse
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(8, 60),
    d=st.integers(1, 6),
    scale=st.floats(1e-3, 1e3),
    shift=st.floats(-100, 100),
)
def test_effective_rank_bounds_and_invariances(seed, n, d, scale, shift):
    z = torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)))
    stats = collapse_statistics(z)
    assert 1.0 - 1e-9 <= stats["effective_rank"] <= min(n, d) + 1e-9
    moved = collapse_statistics(scale * z + shift)
    assert moved["effective_rank"] == pytest.approx(stats["effective_rank"], rel=1e-6)
    assert moved["std"] == pytest.approx([scale * s for s in stats["std"]], rel=1e-6)
    assert stats["std"] == pytest.approx(z.std(dim=0).tolist())
    assert stats["min_std"] == pytest.approx(min(stats["std"]))


def test_effective_rank_of_special_cases():
    isotropic = torch.cat([torch.eye(4), -torch.eye(4)])
    assert collapse_statistics(isotropic)["effective_rank"] == pytest.approx(4.0)
    line = torch.randn(30, 1) * torch.tensor([[1.0, -2.0, 0.5]])
    assert collapse_statistics(line)["effective_rank"] == pytest.approx(1.0, abs=1e-6)
    constant = torch.ones(10, 3)
    stats = collapse_statistics(constant)
    assert stats["effective_rank"] == 0.0 and stats["std"] == [0.0, 0.0, 0.0]


def test_collapse_statistics_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(n, D\)"):
        collapse_statistics(torch.randn(5))
    with pytest.raises(ValueError, match="NaN"):
        collapse_statistics(torch.tensor([[1.0], [float("nan")]]))


# --------------------------------------------------------------------------------- plot
@pytest.mark.parametrize(("width", "num_axes"), [(1, 1), (2, 1), (3, 1), (5, 9)])
def test_plot_summaries_returns_a_figure_for_any_width(width, num_axes):
    import matplotlib.pyplot as plt

    task = DampedOscillator()
    fig = plot_summaries(nn.Linear(200, width), task, task.sample_prior(3), num_nuisance=10)
    assert len(fig.axes) == num_axes
    if width == 3:
        assert fig.axes[0].name == "3d"
    assert plt.get_fignums() == []  # no pyplot figure was opened (and nothing shown)


def test_plot_summaries_draws_into_given_axes_with_views():
    from matplotlib.figure import Figure

    task = DampedOscillator()
    views = ResimulatedViews(task.simulate, task.nuisance_prior)
    fig = Figure()
    ax = fig.add_subplot()
    out = plot_summaries(nn.Linear(200, 3), views, task.sample_prior(2), num_nuisance=5, ax=ax)
    assert out is fig
    assert len(ax.collections) == 2  # one scatter per theta


def test_plot_summaries_rejects_bad_input():
    task = DampedOscillator()
    with pytest.raises(ValueError, match="thetas"):
        plot_summaries(nn.Linear(200, 3), task, torch.rand(2))
    with pytest.raises(TypeError, match="simulate"):
        plot_summaries(nn.Linear(200, 3), object(), torch.rand(2, 2))
    with pytest.raises(ValueError, match="dims"):
        plot_summaries(nn.Linear(200, 3), task, task.sample_prior(2), num_nuisance=3, dims=(4,))
