"""Extra prior draws as InfoNCE candidates (``negatives`` / ``EmbedEmulate(prior_negatives=K)``):
the loss against its definition, its value when nothing is learnt, the trainer's use of it."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sbi.utils import BoxUniform

from sbi_symmetry.emulate import EmbedEmulate
from sbi_symmetry.losses.infonce import symmetric_infonce
from sbi_symmetry.nets.mlp import ResidualMLP

pytestmark = pytest.mark.usefixtures("one_thread")


def _naive(f_x, g_theta, negatives, temperature):
    """Per-pair loss from the definition: rows over batch + extra candidates, columns over batch."""
    out = []
    for i in range(f_x.shape[0]):
        pos = float(f_x[i] @ g_theta[i]) / temperature
        row = [float(f_x[i] @ g) / temperature for g in torch.cat([g_theta, negatives])]
        col = [float(f @ g_theta[i]) / temperature for f in f_x]
        ce_row = -pos + math.log(sum(math.exp(v) for v in row))
        ce_col = -pos + math.log(sum(math.exp(v) for v in col))
        out.append(0.5 * (ce_row + ce_col))
    return torch.tensor(out, dtype=torch.float64)


@given(
    batch=st.integers(2, 7),
    extra=st.integers(0, 9),
    width=st.integers(1, 5),
    temperature=st.floats(0.1, 3.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_extra_candidates_enter_the_row_softmax_only(batch, extra, width, temperature, seed):
    gen = torch.Generator().manual_seed(seed)
    f_x, g_theta = (torch.randn(batch, width, generator=gen, dtype=torch.float64) for _ in "ab")
    negatives = torch.randn(extra, width, generator=gen, dtype=torch.float64)
    loss = symmetric_infonce(f_x, g_theta, temperature, negatives=negatives)
    torch.testing.assert_close(loss, _naive(f_x, g_theta, negatives, temperature))
    if extra == 0:  # no candidate added: the batch-only loss
        torch.testing.assert_close(loss, symmetric_infonce(f_x, g_theta, temperature))


@given(st.integers(2, 40), st.integers(0, 300), st.floats(0.05, 5.0))
def test_all_equal_embeddings_give_the_guessing_loss_of_both_softmaxes(batch, extra, temperature):
    f_x = torch.ones(batch, 3, dtype=torch.float64)
    loss = symmetric_infonce(f_x, f_x, temperature, negatives=torch.ones(extra, 3).double())
    expected = 0.5 * (math.log(batch + extra) + math.log(batch))
    torch.testing.assert_close(loss, torch.full((batch,), expected, dtype=torch.float64))


def test_negatives_of_another_width_are_refused():
    f_x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"`negatives` must be \(K, 3\)"):
        symmetric_infonce(f_x, f_x, 1.0, negatives=torch.randn(5, 2))
    with pytest.raises(ValueError, match="negatives"):
        symmetric_infonce(f_x, f_x, 1.0, negatives=torch.full((5, 3), math.nan))


# ------------------------------------------------------------------------------- the trainer
def _trainer(prior_negatives: int) -> tuple[EmbedEmulate, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    prior = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))
    theta = prior.sample((400,))
    x = theta + 0.3 * torch.randn(400, 2)
    trainer = EmbedEmulate(
        prior,
        encoder=ResidualMLP(2, 8, hidden_dim=16, num_blocks=1),
        emulator=ResidualMLP(2, 8, hidden_dim=16, num_blocks=1),
        prior_negatives=prior_negatives,
        show_progress_bars=False,
    )
    return trainer, theta, x


def test_the_trainer_adds_fresh_prior_draws_to_every_batch():
    trainer, theta, x = _trainer(prior_negatives=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.append_simulations(theta, x).train(max_num_epochs=1)
    net = trainer._neural_net
    torch.manual_seed(5)
    losses = trainer._loss(theta[:16], x[:16])
    torch.manual_seed(5)  # the same prior draws, made by hand
    negatives = net.emulate(trainer._prior.sample((64,)))
    expected = symmetric_infonce(
        net.encode(x[:16]), net.emulate(theta[:16]), net.temperature, negatives=negatives
    )
    torch.testing.assert_close(losses, expected)
    assert not torch.allclose(losses, trainer._loss(theta[:16], x[:16]))  # fresh each call


def test_training_with_prior_negatives_is_seeded_and_learns():
    runs = []
    for _ in range(2):
        trainer, theta, x = _trainer(prior_negatives=128)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.append_simulations(theta, x).train(max_num_epochs=4)
        runs.append(trainer.summary["validation_loss"])
    assert runs[0] == runs[1]
    assert runs[0][-1] < runs[0][0] - 0.1  # 5.60 -> 5.39 when written


def test_prior_negatives_are_checked():
    prior = BoxUniform(-torch.ones(2), torch.ones(2))
    with pytest.raises(ValueError, match="`prior_negatives` must be an integer >= 0"):
        EmbedEmulate(prior, prior_negatives=-1)
    with pytest.raises(ValueError, match="`prior_negatives` > 0 draws from the prior"):
        EmbedEmulate(None, prior_negatives=10)
