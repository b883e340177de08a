"""Evaluation helpers: MAC counting, coverage from ranks, calibration on exact posteriors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.distributions import MultivariateNormal

from sbi_symmetry.evaluation import (
    c2st_score,
    calibrate,
    count_macs,
    count_parameters,
    coverage_from_ranks,
    interval_ratio,
    std_ratio,
    summarise,
)


def test_count_macs_linear_and_conv_by_hand():
    net = nn.Sequential(nn.Conv1d(2, 4, kernel_size=3, padding=1), nn.Flatten(), nn.Linear(40, 5))
    x = torch.zeros(7, 2, 10)
    want = 7 * (4 * 10 * 2 * 3) + 7 * 40 * 5
    assert count_macs(net, lambda: net(x)) == want
    assert count_parameters(net) == (4 * 2 * 3 + 4) + (40 * 5 + 5)
    net[0].weight.requires_grad_(False)
    assert count_parameters(net) == 4 + 40 * 5 + 5
    assert count_parameters(net, trainable_only=False) == 4 * 2 * 3 + 4 + 40 * 5 + 5


def test_count_macs_sees_matrix_products_outside_layers_and_restores_the_mode():
    net = nn.Linear(3, 16).train()
    x = torch.zeros(100, 3)

    def logits():
        z = net(x)
        return z @ z.T  # a B x B product of two embeddings, as in InfoNCE

    assert count_macs(net, logits) == 100 * 3 * 16 + 100 * 100 * 16
    assert net.training and not net._forward_hooks
    frozen_inside = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).train()
    frozen_inside[1].eval()  # a part deliberately in eval mode stays there
    count_macs(frozen_inside, lambda: frozen_inside(x))
    assert frozen_inside.training and not frozen_inside[1].training


def test_coverage_from_uniform_ranks_is_diagonal():
    g = torch.Generator().manual_seed(0)
    ranks = torch.randint(0, 1001, (20_000, 2), generator=g)
    alpha, cov = coverage_from_ranks(ranks, 1000)
    assert torch.allclose(cov, alpha[:, None].expand_as(cov), atol=0.02)
    assert (cov[0] < 0.01).all() and cov[-1].eq(1).all()


class _GaussianPosterior:
    """Exact posterior of theta ~ N(0, I), x = theta + N(0, s^2 I), widened by `scale`."""

    def __init__(self, s: float, scale: float = 1.0) -> None:
        self.s, self.scale = s, scale

    def sample_batched(self, sample_shape, x, **_):
        var = self.s**2 / (1 + self.s**2)
        mean = x / (1 + self.s**2)
        n = torch.Size(sample_shape).numel()
        return mean + self.scale * var**0.5 * torch.randn(n, *x.shape)


@pytest.mark.parametrize("scale, calibrated", [(1.0, True), (0.5, False)])
def test_calibrate_flags_overconfident_posteriors(scale, calibrated):
    prior = MultivariateNormal(torch.zeros(2), torch.eye(2))
    torch.manual_seed(1)
    thetas = prior.sample((300,))
    xs = thetas + 0.5 * torch.randn_like(thetas)
    result = calibrate(_GaussianPosterior(0.5, scale), prior, thetas, xs, num_posterior_samples=200)
    assert result.ranks.shape == (300, 2)
    assert result.is_calibrated() is calibrated
    if calibrated:
        assert result.max_coverage_error() < 0.1 and abs(result.tarp_atc) < 0.15
    else:
        assert result.max_coverage_error() > 0.2 and result.tarp_atc < -0.03  # too narrow
    assert set(result.to_dict()) >= {"ks_pvals", "calibrated", "tarp_atc"}


def test_calibrate_checks_shapes():
    prior = MultivariateNormal(torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="same number of rows"):
        calibrate(_GaussianPosterior(0.5), prior, torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="`samples` must have shape"):
        calibrate(
            _GaussianPosterior(0.5),
            prior,
            torch.zeros(3, 2),
            torch.zeros(3, 2),
            num_posterior_samples=10,
            samples=torch.zeros(5, 3, 2),
        )


def test_c2st_separates_and_accepts():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1000, 2, generator=g), torch.randn(1000, 2, generator=g)
    assert c2st_score(a, b) < 0.6
    assert c2st_score(a + 3.0, b) > 0.95
    with pytest.raises(ValueError, match="same d"):
        c2st_score(a, b[:, :1])
    with pytest.raises(ValueError, match="NaN/inf"):
        c2st_score(a * float("nan"), b)


def test_c2st_score_is_the_same_on_any_number_of_threads():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(400, 2, generator=g), 1.3 * torch.randn(400, 2, generator=g)
    scores = {c2st_score(a, b, seed=3, n_jobs=n) for n in (1, 2, -1)}
    assert len(scores) == 1 and 0.5 < scores.pop() < 0.8


@given(st.integers(0, 10_000), st.floats(0.1, 10.0), st.floats(-100.0, 100.0))
def test_interval_ratio_follows_scale_and_ignores_shift(seed, scale, shift):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(2000, 2, generator=g, dtype=torch.float64)
    moved = scale * ref + shift
    torch.testing.assert_close(interval_ratio(moved, ref), torch.full((2,), scale).double())


def test_interval_ratio_is_blind_to_a_far_speck_that_the_std_sees():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(10_000, 2, generator=g)
    speck = torch.cat([ref[:9_950], torch.full((50, 2), 40.0)])  # 0.5% of the mass far away
    assert (std_ratio(speck, ref) > 2.5).all()
    assert ((interval_ratio(speck, ref) - 1).abs() < 0.05).all()
    with pytest.raises(ValueError, match="mass"):
        interval_ratio(ref, ref, mass=1.0)


@pytest.mark.parametrize("measure", [std_ratio, interval_ratio, c2st_score])
def test_width_and_accuracy_measures_refuse_what_would_broadcast_or_give_nan(measure):
    ref = torch.randn(100, 2)
    with pytest.raises(ValueError, match="same d"):
        measure(torch.randn(100, 2), ref[:, :1])  # (m, 1) would broadcast against (n, 2)
    with pytest.raises(ValueError, match="at least 2 rows"):
        measure(torch.randn(100, 2), ref[:1])
    with pytest.raises(ValueError, match="`samples` contains 1 NaN"):
        measure(torch.cat([torch.randn(99, 2), torch.tensor([[float("nan"), 0.0]])]), ref)
    with pytest.raises(TypeError, match="`samples`"):
        measure(ref.numpy(), ref)


def test_c2st_refuses_a_sample_cap_below_two():
    ref = torch.randn(100, 2)
    for bad in (-1, 0, 1):
        with pytest.raises(ValueError, match="`max_samples` must be an integer >= 2 or None"):
            c2st_score(ref, ref, max_samples=bad)


def test_std_ratio_and_summary():
    ref = torch.randn(5000, 2)
    assert torch.allclose(std_ratio(2 * ref, ref), torch.full((2,), 2.0, dtype=torch.float64))
    s = summarise([0.5, 0.6, 0.7])
    assert s["mean"] == pytest.approx(0.6) and s["n"] == 3 and s["min"] == 0.5


@pytest.mark.parametrize("values", [[], [0.5, float("nan")], [float("inf")]])
def test_summarise_refuses_no_scores_or_a_score_that_is_not_finite(values):
    with pytest.raises(ValueError, match="`values` must be one or more finite scores"):
        summarise(values)


def test_metrics_refuse_a_reference_without_spread_or_an_unknown_classifier():
    ref = torch.randn(100, 2)
    flat = torch.cat([ref[:, :1], torch.ones(100, 1)], dim=1)
    with pytest.raises(ValueError, match=r"`reference` has no spread in parameter\(s\) \[1\]"):
        std_ratio(ref, flat)
    with pytest.raises(ValueError, match="`classifier` must be one of"):
        c2st_score(ref, ref, classifier="MLP")
