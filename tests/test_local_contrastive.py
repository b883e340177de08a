"""The local contrastive loss (``sbi_symmetry.losses.local``, ``EmbedEmulate(local_negatives=K)``):
its definition, its invariances, its optimum at the true ratio, and the trainer's use of it."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sbi.utils import BoxUniform
from torch.distributions import Independent, Normal

from sbi_symmetry.emulate import EmbedEmulate
from sbi_symmetry.losses.local import (
    LocalCandidates,
    local_candidates,
    local_contrastive,
    prior_log_prob,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _naive(logits, candidates, log_prior, width):
    """Cross-entropy of index 0 from the definition, one row and one candidate at a time."""
    out = []
    for i in range(logits.shape[0]):
        c, w = candidates[i], width[i]
        total = []
        for j in range(c.shape[0]):
            spread = sum(float((((c[k] - c[j]) / w) ** 2).sum()) for k in range(c.shape[0]))
            total.append(float(logits[i, j]) + float(log_prior[i, j]) - 0.5 * spread)
        finite = [v for v in total if v != -math.inf]
        top = max(finite)
        out.append(top + math.log(sum(math.exp(v - top) for v in finite)) - total[0])
    return torch.tensor(out, dtype=torch.float64)


@st.composite
def problems(draw: st.DrawFn) -> tuple[torch.Tensor, ...]:
    batch, num, dim = draw(st.integers(1, 5)), draw(st.integers(1, 6)), draw(st.integers(1, 3))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    logits = torch.randn(batch, num + 1, generator=gen, dtype=torch.float64)
    candidates = torch.randn(batch, num + 1, dim, generator=gen, dtype=torch.float64)
    log_prior = torch.randn(batch, num + 1, generator=gen, dtype=torch.float64)
    outside = torch.rand(batch, num + 1, generator=gen) < 0.3
    outside[:, 0] = False  # the true parameter is always in the support
    log_prior[outside] = -math.inf
    width = 0.2 + torch.rand(batch, dim, generator=gen, dtype=torch.float64)
    return logits, candidates, log_prior, width


@given(problems())
def test_loss_matches_its_definition(problem):
    torch.testing.assert_close(local_contrastive(*problem), _naive(*problem))


@given(problems(), st.floats(-50, 50))
def test_a_function_of_x_added_to_the_critic_changes_nothing(problem, shift):
    logits, *rest = problem
    moved = logits + shift * torch.arange(1, logits.shape[0] + 1, dtype=logits.dtype)[:, None]
    torch.testing.assert_close(local_contrastive(moved, *rest), local_contrastive(logits, *rest))


@given(problems(), st.floats(-1e3, 1e3))
def test_candidates_outside_the_support_never_count(problem, value):
    logits, candidates, log_prior, width = problem
    outside = log_prior == -math.inf
    changed = logits.masked_fill(outside, value)
    torch.testing.assert_close(
        local_contrastive(changed, candidates, log_prior, width),
        local_contrastive(logits, candidates, log_prior, width),
    )


@given(problems(), st.floats(-5, 5))
def test_a_common_shift_of_all_candidates_changes_nothing(problem, offset):
    logits, candidates, log_prior, width = problem
    moved = candidates + offset
    torch.testing.assert_close(
        local_contrastive(logits, moved, log_prior, width),
        local_contrastive(logits, candidates, log_prior, width),
    )


def test_the_true_ratio_has_the_smallest_expected_loss():
    """Gaussian toy: prior N(0, 1), x | theta ~ N(theta, 0.1^2); the exact log-ratio beats a
    critic whose posterior is twice too wide and one twice too narrow."""
    gen = torch.Generator().manual_seed(0)
    prior = Independent(Normal(torch.zeros(1), torch.ones(1)), 1)
    theta = torch.randn(20_000, 1, generator=gen, dtype=torch.float64)
    x = theta + 0.1 * torch.randn(theta.shape, generator=gen, dtype=torch.float64)
    c, width = local_candidates(theta, 8, (0.02, 0.5), torch.ones(1), generator=gen)
    log_prior = prior_log_prob(prior, c.float()).double()

    def mean_loss(noise_std: float) -> float:
        logits = -0.5 * ((x[:, None, :] - c) / noise_std).square().sum(-1)
        return float(local_contrastive(logits, c, log_prior, width).mean())

    exact = mean_loss(0.1)
    assert exact < mean_loss(0.2) - 0.02
    assert exact < mean_loss(0.05) - 0.02


def test_candidates_and_prior_density():
    gen = torch.Generator().manual_seed(1)
    theta = torch.full((400, 2), 0.5)
    c, width = local_candidates(theta, 5, (0.01, 1.0), torch.tensor([1.0, 10.0]), generator=gen)
    assert c.shape == (400, 6, 2) and torch.equal(c[:, 0], theta)
    assert width.shape == (400, 2) and bool((width[:, 1] == 10 * width[:, 0]).all())
    assert 0.01 <= float(width[:, 0].min()) and float(width[:, 0].max()) <= 1.0
    prior = BoxUniform(torch.zeros(2), torch.ones(2))
    log_p = prior_log_prob(prior, c)
    inside = ((c > 0) & (c < 1)).all(-1)
    assert bool(torch.isfinite(log_p[inside]).all()) and bool((log_p[~inside] == -math.inf).all())
    assert bool(inside[:, 0].all()) and bool((~inside).any())


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="scales"):
        local_candidates(torch.zeros(3, 2), 2, (0.5, 0.1), torch.ones(2))
    with pytest.raises(ValueError, match="theta"):
        local_candidates(torch.zeros(3), 2, (0.1, 0.5), torch.ones(2))
    with pytest.raises(ValueError, match="candidates"):
        local_contrastive(
            torch.zeros(3, 4), torch.zeros(3, 5, 2), torch.zeros(3, 4), torch.ones(3, 2)
        )
    prior = BoxUniform(torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError, match="prior"):
        EmbedEmulate(None, local_negatives=4)
    with pytest.raises(ValueError, match="local_negatives"):
        EmbedEmulate(prior, local_negatives=-1)
    with pytest.raises(ValueError, match="local_scales"):
        EmbedEmulate(prior, local_negatives=4, local_scales=(0.0, 1.0))
    with pytest.raises(TypeError, match="local_scales"):
        EmbedEmulate(prior, local_negatives=4, local_scales="wide")
    theta = torch.tensor([[0.5, 0.5], [1.5, 0.5], [0.2, 0.3]])  # row 1 outside the box
    with pytest.raises(ValueError, match=r"`theta` rows \[1\] lie outside the prior's support"):
        EmbedEmulate(prior, local_negatives=4).append_simulations(theta, torch.randn(3, 4))
    EmbedEmulate(prior).append_simulations(theta, torch.randn(3, 4))  # no prior density needed


def test_trainer_adds_the_local_term_to_each_pair():
    torch.manual_seed(0)
    prior = BoxUniform(torch.zeros(2), torch.ones(2))
    theta = prior.sample((300,))
    x = theta.repeat(1, 4) + 0.05 * torch.randn(300, 8)
    local = EmbedEmulate(prior, local_negatives=6, show_progress_bars=False)
    local.append_simulations(theta, x)
    local.train(max_num_epochs=1)
    net = local.neural_net
    net.eval()
    batch_theta, batch_x = theta[:32], x[:32]
    torch.manual_seed(3)
    with_local = local.pair_loss(batch_theta, batch_x)
    alone = net.loss(batch_theta, batch_x)
    torch.manual_seed(3)
    c, width = local_candidates(batch_theta, 6, (0.02, 0.5), net.theta_scale)
    logits = (net.encode(batch_x)[:, None] * net.emulate(c)).sum(-1) / net.temperature
    extra = local_contrastive(logits, *LocalCandidates(c, prior_log_prob(prior, c), width))
    torch.testing.assert_close(with_local, alone + extra)
    assert bool((extra > 0).all())
