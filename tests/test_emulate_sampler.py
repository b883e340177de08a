"""``TwoTowerPosterior``: Embed and Emulate's posterior sampled through its two towers.

Two estimators with hand-set towers have exactly known posteriors:

* cosine similarity, ``f(x) = g(x) = (cos x, sin x) / sqrt(d)`` on the box ``[-pi, pi]^d``:
  ``log r = sum_i cos(theta_i - x_i) / (d T)``, a product of von Mises densities with
  concentration ``1 / (d T)`` (the box is the whole circle, so no truncation);
* dot similarity, ``f(x) = (x, 1)``, ``g(theta) = (theta, -|theta|^2 / 2)``, ``T = sigma^2``:
  ``log r = (x . theta - |theta|^2 / 2) / sigma^2``, a Gaussian ``N(x, sigma^2 I)`` (in a box far
  wider than ``sigma``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sbi.diagnostics import check_sbc, check_tarp, run_sbc, run_tarp
from sbi.inference import MCMCPosterior
from sbi.inference.posteriors.posterior_parameters import MCMCPosteriorParameters
from sbi.utils import BoxUniform
from scipy.stats import ks_2samp
from torch import Tensor, nn

from sbi_symmetry.emulate import (
    EmbedEmulate,
    EmbedEmulateRatioEstimator,
    TwoTowerPosterior,
    build_two_tower_posterior,
)

FAST_MCMC = {"num_chains": 4, "warmup_steps": 10, "init_strategy": "proposal"}
X_O = torch.tensor([[0.3, -1.0]])


class Trig(nn.Module):
    """``(cos v, sin v) / sqrt(d)``: a unit vector."""

    def forward(self, v: Tensor) -> Tensor:
        return torch.cat([v.cos(), v.sin()], -1) / math.sqrt(v.shape[-1])


class Affine(nn.Module):
    """``x -> (x, 1)``."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, torch.ones_like(x[:, :1])], -1)


class Quadratic(nn.Module):
    """``theta -> (theta, -|theta|^2 / 2)``."""

    def forward(self, theta: Tensor) -> Tensor:
        return torch.cat([theta, -0.5 * theta.square().sum(-1, keepdim=True)], -1)


class Scaled(nn.Module):
    """``v -> 2 (cos v, sin v) / sqrt(d)``: a vector of norm 2."""

    def forward(self, v: Tensor) -> Tensor:
        return 2 * Trig()(v)


def von_mises(
    temperature: float, similarity: str = "cosine", **kwargs
) -> tuple[BoxUniform, TwoTowerPosterior]:
    """Cosine: concentration ``1 / (d T)``; scaled (data tower of norm 2): ``2 / (d T)``."""
    prior = BoxUniform(-math.pi * torch.ones(2), math.pi * torch.ones(2))
    theta = prior.sample((20,))
    # learn_temperature: a Parameter, which sbi's ratio potential (the MCMC fallback) needs
    est = EmbedEmulateRatioEstimator(
        Scaled() if similarity == "scaled" else Trig(),
        Trig(),
        theta,
        theta.clone(),
        similarity=similarity,
        temperature=temperature,
        z_score_theta=False,
        learn_temperature=True,
    )
    return prior, TwoTowerPosterior(est, prior, mcmc_parameters=FAST_MCMC, **kwargs)


def gaussian(sigma: float = 0.2) -> tuple[BoxUniform, TwoTowerPosterior]:
    prior = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))
    theta = prior.sample((20,))
    est = EmbedEmulateRatioEstimator(
        Affine(),
        Quadratic(),
        theta,
        theta.clone(),
        similarity="dot",
        temperature=sigma**2,
        z_score_theta=False,
        learn_temperature=True,
    )
    return prior, TwoTowerPosterior(est, prior, mcmc_parameters=FAST_MCMC)


def von_mises_moments(x: Tensor, kappa: float) -> tuple[Tensor, Tensor]:
    """Mean and variance of ``exp(kappa cos(theta - x))`` on ``[-pi, pi]``, per coordinate."""
    grid = torch.linspace(-math.pi, math.pi, 100_001, dtype=torch.float64)
    dens = torch.exp(kappa * torch.cos(grid[:, None] - x.double()))
    dens = dens / dens.sum(0)
    mean = (grid[:, None] * dens).sum(0)
    return mean, ((grid[:, None] - mean) ** 2 * dens).sum(0)


def assert_moments(samples: Tensor, mean: Tensor, var: Tensor, z: float = 5.0) -> None:
    """Sample mean and variance within ``z`` standard errors of the exact ones."""
    n, s = samples.shape[0], samples.double()
    assert torch.all((s.mean(0) - mean).abs() < z * (var / n).sqrt()), (s.mean(0), mean)
    assert torch.all((s.var(0) - var).abs() < z * var * math.sqrt(2 / n)), (s.var(0), var)


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize(
    ("temperature", "method", "chosen"),
    [
        (0.25, "auto", "rejection"),  # acceptance ~ 0.09: exact rejection from the prior
        (0.02, "auto", "importance"),  # acceptance ~ 0.006: mixture proposals
        (0.25, "importance", "importance"),
        (0.05, "rejection", "rejection"),
    ],
)
def test_samples_match_the_exact_von_mises_posterior(temperature, method, chosen):
    prior, post = von_mises(temperature, method=method)
    samples = post.sample((20_000,), x=X_O)
    assert post.last_method == [chosen]
    assert samples.shape == (20_000, 2)
    assert bool(torch.all(prior.support.check(samples)))
    assert_moments(samples, *von_mises_moments(X_O[0], 1 / (2 * temperature)))
    assert (float(post.last_ess[0]) == 20_000) == (chosen == "rejection")  # i.i.d.: all count
    assert samples.unique(dim=0).shape[0] == 20_000  # resampled without duplicates


@pytest.mark.parametrize("method", ["rejection", "importance"])
def test_scaled_similarity_samples_match_the_exact_von_mises_posterior(method):
    """Only the emulator on the unit sphere: |f(x)| / T bounds log r, so rejection is exact."""
    _, post = von_mises(0.5, similarity="scaled", method=method)
    samples = post.sample((20_000,), x=X_O)
    assert post.last_method == [method]
    assert_moments(samples, *von_mises_moments(X_O[0], 2 / (2 * 0.5)))


def test_dot_similarity_gaussian_posterior_needs_proposals_and_matches():
    _, post = gaussian(sigma=0.2)
    x = torch.tensor([[0.3, -0.5]])
    samples = post.sample((20_000,), x=x)
    assert post.last_method == ["importance"]
    assert_moments(samples, x[0].double(), torch.full((2,), 0.04, dtype=torch.float64))


def test_sample_batched_equals_per_observation_sampling_in_distribution():
    _, post = von_mises(0.05)
    xs = torch.tensor([[0.3, -1.0], [2.5, 3.0], [-3.0, 0.0]])
    batched = post.sample_batched((4_000,), x=xs)
    assert batched.shape == (4_000, 3, 2)
    for j in range(3):
        single = post.sample((4_000,), x=xs[j : j + 1])
        mean, var = von_mises_moments(xs[j], 10.0)
        for dim in range(2):  # circular quantity: compare the wrapped distance to x_j
            a = torch.remainder(batched[:, j, dim] - xs[j, dim] + math.pi, 2 * math.pi)
            b = torch.remainder(single[:, dim] - xs[j, dim] + math.pi, 2 * math.pi)
            assert ks_2samp(a.numpy(), b.numpy()).pvalue > 1e-3
        if j == 0:
            assert_moments(batched[:, 0], mean, var)


def test_sample_batched_shares_prior_draws_among_many_observations():
    _, post = von_mises(0.05)
    xs = BoxUniform(-3 * torch.ones(2), 3 * torch.ones(2)).sample((40,))
    post.sample_batched((2_000,), x=xs)
    assert post.last_method == ["rejection"] * 40  # the pool is cheap per observation
    assert post.last_ess.shape == (40,) and bool(torch.all(post.last_ess >= 1_000))


def test_copies_of_one_observation_share_prior_draws_not_their_samples():
    _, post = von_mises(0.25)  # acceptance about 0.09
    torch.manual_seed(0)
    draws = post.sample_batched((2_000,), x=X_O.repeat(2, 1))
    assert post.last_method == ["rejection"] * 2
    shared = (draws[:, 0, None] == draws[None, :, 1]).all(-1).any(1).float().mean()
    # a draw one copy kept, the other keeps with probability E_post[r / B] = (I0(4) e^-4 /
    # (I0(2) e^-2))^2 = 0.450 under independent uniforms; with the same uniforms, always
    assert 0.40 < shared < 0.50


def test_copies_of_one_observation_do_not_share_their_first_sample():
    """sbi's SBC takes each observation's first sample as a data-averaged posterior draw."""
    _, post = von_mises(0.25)
    torch.manual_seed(1)
    draws = post.sample_batched((200,), x=X_O.repeat(50, 1))
    assert draws[0].unique(dim=0).shape[0] >= 45  # in candidate order: nearly all one draw


def test_many_observations_are_sampled_in_blocks_with_the_same_result_shape():
    _, post = von_mises(0.25)
    xs = BoxUniform(-3 * torch.ones(2), 3 * torch.ones(2)).sample((600,))  # two blocks
    draws = post.sample_batched((30,), x=xs)
    assert draws.shape == (30, 600, 2) and post.last_ess.shape == (600,)
    assert post.last_method == ["rejection"] * 600
    # each observation's samples sit around it (von Mises concentration 2: within ~pi/2)
    gap = torch.remainder(draws - xs + math.pi, 2 * math.pi) - math.pi
    assert float(gap.abs().mean()) < 1.0


def test_prior_draws_are_sized_to_what_is_still_missing():
    # acceptance I0(0.1)^2 exp(-0.2) = 0.823: 21,000 samples need about 25,500 prior draws
    prior, post = von_mises(5.0, method="rejection")
    sizes, sample = [], prior.sample
    prior.sample = lambda shape: sizes.append(shape[0]) or sample(shape)
    torch.manual_seed(0)
    assert post.sample((21_000,), x=X_O).shape == (21_000, 2)
    assert sizes[:3] == [8_192] * 3  # full chunks while much is missing
    assert sum(sizes) < 21_000 / 0.823 + 4_000  # then a top-up, not a fourth full chunk


def test_iid_trials_add_their_log_ratios():
    _, post = von_mises(0.1)
    trials = torch.tensor([[0.2, 0.1], [0.4, -0.1]])
    theta = torch.randn(7, 2)
    est = post.estimator
    expected = sum(est.unnormalized_log_ratio(theta, t.expand(7, 2)) for t in trials)
    got = post.log_prob(theta, x=trials) - post.prior.log_prob(theta)
    torch.testing.assert_close(got, expected)
    samples = post.sample((10_000,), x=trials)  # von Mises of the mean direction 0.3, 0
    assert_moments(samples, *von_mises_moments(torch.tensor([0.3, 0.0]), 2 * 5 * math.cos(0.1)))


# ----------------------------------------------------------------------------- sbi's API
def test_log_prob_differences_are_log_ratio_differences_and_match_sbi_potential():
    prior, post = gaussian()
    theta = prior.sample((50,))
    x = torch.tensor([[0.1, 0.2]])
    ratio = post.estimator.unnormalized_log_ratio(theta, x.expand(50, 2))
    log_prob = post.log_prob(theta, x=x)
    torch.testing.assert_close(log_prob - log_prob[0], ratio - ratio[0])
    torch.testing.assert_close(log_prob, post.potential(theta, x=x))
    outside = torch.tensor([[3.0, 0.0], [0.0, -2.5]])
    assert torch.isneginf(post.log_prob(outside, x=x)).all()
    grad = post.log_prob(theta[:3], x=x, track_gradients=True).sum()
    assert grad.requires_grad


def test_default_x_map_and_builder():
    prior, post = von_mises(0.05)
    est = post.estimator
    built = build_two_tower_posterior(est, prior, x_o=X_O[0])  # no batch dimension
    assert built.default_x.shape == (1, 2)
    assert built.sample((5,)).shape == (5, 2)
    best = built.map(num_iter=20, num_init_samples=200, show_progress_bars=False)
    assert best.shape == (1, 2) and torch.allclose(best, X_O, atol=0.1)
    with pytest.raises(ValueError, match="set_default_x"):
        post.sample((5,))


def test_reproducible_under_torch_manual_seed_without_numpy_state():
    _, post = von_mises(0.02)
    xs = torch.tensor([[0.3, -1.0], [1.0, 2.0]])
    state = np.random.get_state()
    draws = []
    for _ in range(2):
        torch.manual_seed(3)
        draws.append((post.sample((500,), x=xs[:1]), post.sample_batched((300,), x=xs)))
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])
    assert all(
        np.array_equal(a, b) for a, b in zip(state[1:3], np.random.get_state()[1:3], strict=True)
    )


@pytest.mark.parametrize("trigger", ["theta_dim", "budget"])
def test_fallback_to_sbi_mcmc_warns_and_is_reproducible(trigger):
    kwargs = {"max_theta_dim": 1} if trigger == "theta_dim" else {}
    if trigger == "budget":
        kwargs = {"max_rounds": 0, "max_draws_per_sample": 1}
    prior, post = von_mises(0.02, **kwargs)
    draws = []
    for _ in range(2):
        torch.manual_seed(1)
        with pytest.warns(UserWarning, match="MCMC"):
            draws.append(post.sample((50,), x=X_O))
    assert post.last_method == ["mcmc"] and torch.isnan(post.last_ess).all()
    assert torch.equal(draws[0], draws[1])
    assert bool(torch.all(prior.support.check(draws[0])))


def test_explicit_mcmc_does_not_warn():
    _, post = von_mises(0.1, method="mcmc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert post.sample_batched((20,), x=X_O.expand(2, 2)).shape == (20, 2, 2)
    assert post.last_method == ["mcmc", "mcmc"]


def test_sbi_sbc_coverage_and_tarp_run_and_pass_on_the_exact_posterior():
    prior, post = von_mises(0.1)
    torch.manual_seed(0)
    thetas = prior.sample((100,))
    xs = torch.distributions.VonMises(thetas, torch.full_like(thetas, 5.0)).sample()
    ranks, dap = run_sbc(thetas, xs, post, num_posterior_samples=100, show_progress_bar=False)
    checks = check_sbc(ranks, prior.sample((100,)), dap, num_posterior_samples=100)
    assert ranks.shape == (100, 2) and bool(torch.all(checks["ks_pvals"] > 1e-3))
    ranks_lp, _ = run_sbc(
        thetas,
        xs,
        post,
        num_posterior_samples=100,
        reduce_fns=post.log_prob,
        show_progress_bar=False,
    )
    assert ranks_lp.shape == (100, 1)  # expected coverage (Deistler et al.)
    ecp, alpha = run_tarp(thetas, xs, post, num_posterior_samples=100, show_progress_bar=False)
    atc, ks_pval = check_tarp(ecp, alpha)
    assert abs(float(atc)) < 0.2 and float(ks_pval) > 1e-3


def test_agrees_with_sbi_mcmc_on_a_trained_embed_emulate():
    prior = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))
    theta = prior.sample((1_000,))
    x = theta + 0.3 * torch.randn(1_000, 2)
    trainer = EmbedEmulate(prior, embedding_dim=8, show_progress_bars=False)
    est = trainer.append_simulations(theta, x).train(max_num_epochs=5, training_batch_size=100)
    mcmc = trainer.build_posterior(
        est, posterior_parameters=MCMCPosteriorParameters(num_chains=10, warmup_steps=30, thin=1)
    )
    fast = trainer.build_posterior()  # the default: the two-tower sampler
    assert isinstance(fast, TwoTowerPosterior) and fast.estimator is est
    assert isinstance(trainer.build_posterior(sample_with="mcmc"), MCMCPosterior)
    x_o = torch.tensor([[0.5, -0.5]])
    a = mcmc.sample((2_000,), x=x_o, show_progress_bars=False)
    b = fast.sample((2_000,), x=x_o)
    assert torch.allclose(a.mean(0), b.mean(0), atol=0.1)
    assert torch.allclose(a.std(0), b.std(0), rtol=0.25)


# ----------------------------------------------------------------------------- contracts
@given(
    shape=st.lists(st.integers(0, 3), min_size=0, max_size=2).map(tuple),
    count=st.integers(1, 3),
    chunk=st.sampled_from([256, 2**16]),
)
def test_shapes_and_support(shape, count, chunk):
    prior, post = von_mises(0.25, chunk_size=chunk)
    xs = prior.sample((count,))
    single = post.sample(shape, x=xs[:1])
    batched = post.sample_batched(shape, x=xs)
    assert single.shape == (*shape, 2) and batched.shape == (*shape, count, 2)
    if batched.numel():
        assert bool(torch.all(prior.support.check(batched.reshape(-1, 2))))
        assert len(post.last_method) == count


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda p: p.sample(5, x=X_O), TypeError, "sample_shape"),
        (lambda p: p.sample((2.5,), x=X_O), TypeError, "sample_shape"),
        (lambda p: p.sample((-1,), x=X_O), ValueError, "negative"),
        (lambda p: p.sample((5,), x=X_O.numpy()), TypeError, "torch.Tensor"),
        (lambda p: p.sample((5,), x=torch.zeros(1, 3)), ValueError, "shape"),
        (lambda p: p.sample_batched((5,), x=torch.zeros(2, 2, 2)), ValueError, "shape"),
        (lambda p: p.sample_batched((5,), x=torch.zeros(0, 2)), ValueError, "shape"),
        (lambda p: p.sample((5,), x=torch.tensor([[0.0, math.nan]])), ValueError, "NaN/inf"),
        (lambda p: p.log_prob(torch.zeros(3, 3), x=X_O), ValueError, "theta"),
        (lambda p: p.set_default_x(torch.tensor([math.inf, 0.0])), ValueError, "NaN/inf"),
    ],
)
def test_bad_inputs_raise_named_errors(call, error, match):
    _, post = von_mises(0.25)
    with pytest.raises(error, match=match):
        call(post)


def test_bad_settings_raise_named_errors():
    prior, post = gaussian()
    est = post.estimator
    with pytest.raises(TypeError, match="EmbedEmulateRatioEstimator"):
        TwoTowerPosterior(nn.Linear(2, 2), prior)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cosine"):
        TwoTowerPosterior(est, prior, method="rejection")
    with pytest.raises(ValueError, match="method"):
        TwoTowerPosterior(est, prior, method="slice")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_acceptance"):
        TwoTowerPosterior(est, prior, min_acceptance=0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        TwoTowerPosterior(est, prior, chunk_size=0)
