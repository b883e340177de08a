"""The pooled mixture proposal of ``TwoTowerPosterior`` and the observations that share it."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sbi.utils import BoxUniform
from test_emulate_sampler import assert_moments, von_mises, von_mises_moments
from torch.distributions import MultivariateNormal

from sbi_symmetry.emulate import TwoTowerPosterior, samplers
from sbi_symmetry.emulate.proposal import (
    MixtureProposal,
    gaussian_coefficients,
    quadratic_features,
)


@settings(max_examples=30, deadline=None)
@given(dim=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_quadratic_features_give_gaussian_log_densities(dim, seed):
    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn(3, dim, generator=gen, dtype=torch.float64)
    root = torch.randn(3, dim, dim, generator=gen, dtype=torch.float64)
    cov = root @ root.mT + 0.1 * torch.eye(dim, dtype=torch.float64)
    theta = 3 * torch.randn(50, dim, generator=gen, dtype=torch.float64)
    got = quadratic_features(theta) @ gaussian_coefficients(mean, cov).T  # (50, 3)
    want = MultivariateNormal(mean, cov).log_prob(theta[:, None])
    torch.testing.assert_close(got, want)


def test_pooled_weights_are_prior_times_ratio_over_the_pooled_density():
    prior, post = von_mises(0.01)
    torch.manual_seed(0)
    xs = torch.tensor([[0.3, -1.0], [0.5, -0.8], [2.0, 2.0]])
    z = post._encode(xs)
    theta = prior.sample((4_000,)).unsqueeze(0)
    proposal = MixtureProposal(post, z, theta, post._log_ratio(theta, z))
    rows = torch.tensor([0, 2])
    cand, log_w = proposal(rows)
    assert cand.shape[0] == 1 and log_w.shape == (2, cand.shape[1])
    gauss = MultivariateNormal(proposal.mean[rows], scale_tril=proposal.chol[rows])
    log_k = gauss.log_prob(cand[0, :, None, None]) + proposal.log_pi[rows]  # (C, 2, K)
    log_mix = log_k.flatten(1).logsumexp(-1) - math.log(2)
    log_p = prior.log_prob(cand[0])
    log_q = torch.logaddexp(math.log(0.1) + log_p, math.log(0.9) + log_mix)
    want = post._log_ratio(cand, z[rows]) + log_p - log_q
    torch.testing.assert_close(log_w, want, rtol=1e-4, atol=1e-3)
    # unbiased: E_Q[w_j] = int p r_j = I0(kappa)^2 on the whole circle (kappa = 1 / (2 T) = 50)
    log_z = 2 * (torch.special.i0e(torch.tensor(50.0, dtype=torch.float64)).log() + 50.0)
    mean_w = log_w.double().logsumexp(-1) - math.log(log_w.shape[1])
    assert torch.allclose(mean_w, log_z.expand(2), atol=0.1), (mean_w, log_z)


def count_emulations(post: TwoTowerPosterior) -> list[int]:
    """Wrap the emulator: the number of parameters it has seen so far, in a list."""
    seen, emulate = [0], post.estimator.emulate

    def counted(theta: torch.Tensor) -> torch.Tensor:
        seen[0] += len(theta)
        return emulate(theta)

    post.estimator.emulate = counted
    return seen


def test_overlapping_sharp_posteriors_share_mixture_candidates_and_stay_exact(monkeypatch):
    """40 nearby observations, concentration 100: mixtures, one pool, fewer emulator calls."""
    _, post = von_mises(0.005)
    pools = []

    class Spy(MixtureProposal):
        def __init__(self, post, z, theta, log_w):
            pools.append(len(z))
            super().__init__(post, z, theta, log_w)

    monkeypatch.setattr(samplers, "MixtureProposal", Spy)
    jitter = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    xs = torch.tensor([[0.3, -1.0]]) + 0.05 * jitter  # posterior std about 0.1
    seen = count_emulations(post)
    torch.manual_seed(0)
    batched = post.sample_batched((5_000,), x=xs)
    per_observation = seen[0] / len(xs)
    assert post.last_method == ["importance"] * 40 and pools and set(pools) == {40}
    for j in (0, 17, 39):
        assert_moments(batched[:, j], *von_mises_moments(xs[j], 100.0))
    seen[0] = 0
    post.sample((5_000,), x=xs[:1])
    assert post.last_method == ["importance"]
    assert per_observation < seen[0] / 3  # one at a time: three times as many or more


def test_broad_posteriors_share_prior_draws_under_the_importance_sampler():
    _, post = von_mises(0.05, method="importance")  # concentration 10: prior draws suffice
    torch.manual_seed(1)
    xs = BoxUniform(-3 * torch.ones(2), 3 * torch.ones(2)).sample((30,))
    seen = count_emulations(post)
    draws = post.sample_batched((2_000,), x=xs)
    assert post.last_method == ["importance"] * 30
    assert seen[0] / 30 < 2_000 * 5  # shared: below the 2,000 / acceptance each would need
    assert_moments(draws[:, 3], *von_mises_moments(xs[3], 10.0))


def test_many_sharp_posteriors_are_grouped_with_their_neighbours():
    torch.manual_seed(0)
    prior = BoxUniform(-5 * torch.ones(2), 5 * torch.ones(2))
    theta = prior.sample((20_000,)).unsqueeze(0)
    centres = torch.stack([torch.linspace(-4, 4, 150), torch.zeros(150)], -1)
    log_w = -((theta - centres[:, None]) ** 2).sum(-1) / 0.02  # narrow bumps along a line
    order = torch.randperm(150)
    groups = TwoTowerPosterior._groups(order, (theta, log_w))
    assert sorted(len(g) for g in groups) == [50, 50, 50]
    spans = sorted((float(centres[g, 0].min()), float(centres[g, 0].max())) for g in groups)
    assert all(a[1] < b[0] for a, b in pairwise(spans))  # contiguous along the line


def test_rows_of_a_batch_past_their_budget_fall_back_to_mcmc():
    _, post = von_mises(0.02, max_rounds=0, max_draws_per_sample=1)
    torch.manual_seed(2)
    with pytest.warns(UserWarning, match="2 of 2 observation"):
        draws = post.sample_batched((50,), x=torch.tensor([[0.3, -1.0], [2.0, 2.0]]))
    assert draws.shape == (50, 2, 2) and post.last_method == ["mcmc", "mcmc"]
