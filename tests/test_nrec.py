"""NRE-C's loss on a two-tower batch (``sbi_symmetry.losses.nrec``): its definition, what it does
not forgive (a function of ``x`` added to the critic), its optimum at the true ratio, bad input,
and ``refine_emulator(loss="nrec")``."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sbi_symmetry.emulate import EmbedEmulateRatioEstimator, refine_emulator
from sbi_symmetry.losses import contrastive_nrec
from sbi_symmetry.nets import ResidualMLP

pytestmark = pytest.mark.usefixtures("one_thread")


def _naive(logits, offsets, gamma):
    """The cross-entropies of the module docstring, one row and one class at a time."""
    batch, k = logits.shape[0], len(offsets)
    out = []
    for i in range(batch):
        marginal = [float(logits[i, (i + o) % batch]) for o in offsets]
        joint = [float(logits[i, i]), *marginal[: k - 1]]
        none = k / (k + gamma * sum(math.exp(h) for h in marginal))
        true = gamma * math.exp(joint[0]) / (k + gamma * sum(math.exp(h) for h in joint))
        p0 = 1 / (1 + gamma)
        out.append(-(p0 * math.log(none) + (1 - p0) * math.log(true)))
    return torch.tensor(out, dtype=torch.float64)


@st.composite
def batches(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int, float, int]:
    batch, width = draw(st.integers(2, 7)), draw(st.integers(1, 4))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    f = torch.randn(batch, width, generator=gen, dtype=torch.float64)
    g = torch.randn(batch, width, generator=gen, dtype=torch.float64)
    k = draw(st.integers(1, batch - 1))
    return f, g, k, draw(st.floats(0.1, 10.0)), draw(st.integers(0, 1000))


@given(batches(), st.floats(0.05, 5.0))
def test_loss_matches_its_definition(problem, tau):
    f, g, k, gamma, seed = problem
    got = contrastive_nrec(
        f, g, tau, num_contrast=k, gamma=gamma, generator=torch.Generator().manual_seed(seed)
    )
    offsets = torch.randperm(f.shape[0] - 1, generator=torch.Generator().manual_seed(seed))[:k] + 1
    torch.testing.assert_close(got, _naive(f @ g.T / tau, offsets.tolist(), gamma))


@given(st.integers(2, 9), st.floats(0.1, 10.0))
def test_guessing_costs_what_the_docstring_says(batch, gamma):
    zeros = torch.zeros(batch, 3, dtype=torch.float64)
    k = batch - 1
    want = (math.log(1 + gamma) + gamma * math.log((1 + gamma) * k / gamma)) / (1 + gamma)
    torch.testing.assert_close(
        contrastive_nrec(zeros, zeros, gamma=gamma), torch.full((batch,), want, dtype=torch.float64)
    )


def test_a_function_of_x_added_to_the_critic_is_not_forgiven():
    """Unlike InfoNCE, the 'none of them' class fixes the scale: shifting one row's logits (an
    extra embedding coordinate that only ``f`` uses) changes the loss."""
    gen = torch.Generator().manual_seed(0)
    f, g = torch.randn(6, 3, generator=gen), torch.randn(6, 3, generator=gen)
    shifted_f = torch.cat([f, torch.full((6, 1), 2.0)], 1)  # + 2 on every logit of every row
    shifted_g = torch.cat([g, torch.ones(6, 1)], 1)
    a = contrastive_nrec(f, g, generator=torch.Generator().manual_seed(1))
    b = contrastive_nrec(shifted_f, shifted_g, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a, b)


def test_the_true_ratio_has_the_smallest_expected_loss():
    """Gaussian toy, prior N(0, 1), x | theta ~ N(theta, 0.3^2): the exact log r beats the same
    critic shifted by a constant (which InfoNCE could not tell), and a too wide one."""
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(4000, 1, generator=gen, dtype=torch.float64)
    x = theta + 0.3 * torch.randn(theta.shape, generator=gen, dtype=torch.float64)
    s2, v = 0.09, 1.09  # noise variance, evidence variance

    def mean_loss(scale: float, shift: float) -> float:
        # log r = log N(x; theta, s2) - log N(x; 0, v), as an inner product of 4 features
        f = torch.cat([x / s2, -0.5 * x.square() * (1 / s2 - 1 / v), torch.ones_like(x)], 1)
        g = torch.cat([theta, torch.ones_like(theta), -0.5 * theta.square() / s2], 1)
        f[:, 1] -= 0.5 * math.log(s2 / v)
        total = 0.0
        for part in range(20):
            rows = slice(200 * part, 200 * (part + 1))
            fp = torch.cat([scale * f[rows], torch.ones(200, 1, dtype=f.dtype)], 1)
            gp = torch.cat([g[rows], torch.full((200, 1), shift, dtype=g.dtype)], 1)
            total += float(
                contrastive_nrec(fp, gp, generator=torch.Generator().manual_seed(part)).mean()
            )
        return total / 20

    exact = mean_loss(1.0, 0.0)
    assert exact < mean_loss(1.0, 1.0) - 0.01
    assert exact < mean_loss(1.0, -1.0) - 0.01
    assert exact < mean_loss(0.5, 0.0) - 0.01


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_contrast": 0}, "num_contrast"),
        ({"num_contrast": 4}, "at most"),
        ({"gamma": 0.0}, "gamma"),
        ({"temperature": -1.0}, "temperature"),
    ],
)
def test_bad_input_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        contrastive_nrec(torch.zeros(4, 2), torch.zeros(4, 2), **kwargs)
    with pytest.raises(ValueError, match="same shape"):
        contrastive_nrec(torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="at least 2"):
        contrastive_nrec(torch.zeros(1, 2), torch.zeros(1, 2))


def test_refine_with_nrec_trains_the_emulator_and_keeps_the_best_state():
    gen = torch.Generator().manual_seed(0)
    theta = 4 * torch.rand(300, 2, generator=gen) - 2
    x = theta + 0.1 * torch.randn(300, 2, generator=gen)
    torch.manual_seed(0)
    est = EmbedEmulateRatioEstimator(
        ResidualMLP(2, 6, hidden_dim=16), ResidualMLP(2, 6, hidden_dim=16), theta, x
    )
    encoder = {k: v.clone() for k, v in est.embedding_net_x.state_dict().items()}
    summary = refine_emulator(est, theta, x, training_batch_size=32, max_num_epochs=5, loss="nrec")
    assert summary.best_validation_loss < summary.initial_validation_loss
    for name, value in est.embedding_net_x.state_dict().items():
        assert torch.equal(value, encoder[name]), name
    with pytest.raises(ValueError, match="loss"):
        refine_emulator(est, theta, x, loss="nre_b")
