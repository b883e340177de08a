"""The emulator's last phase on the frozen summary (``sbi_symmetry.emulate.refine``) and the
weighted InfoNCE it trains (``symmetric_infonce(row_weight=...)``)."""

from __future__ import annotations

import copy

import pytest
import torch
from _helpers_nets import weights
from hypothesis import given
from hypothesis import strategies as st
from sbi.utils import BoxUniform
from torch import nn

from sbi_symmetry.emulate import EmbedEmulate, EmbedEmulateRatioEstimator, refine_emulator
from sbi_symmetry.losses.infonce import symmetric_infonce
from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.nets.mlp import ResidualMLP
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding

pytestmark = pytest.mark.usefixtures("one_thread")


def _row_naive(f, g, tau):
    """-log softmax_j(<f_i, g_j> / tau) at j = i, row by row."""
    out = []
    for i in range(f.shape[0]):
        logits = torch.stack([f[i] @ g[j] / tau for j in range(g.shape[0])])
        out.append(torch.logsumexp(logits, 0) - logits[i])
    return torch.stack(out)


@given(st.integers(2, 6), st.integers(1, 4), st.floats(0.05, 2.0), st.integers(0, 2**31 - 1))
def test_row_weight_one_is_the_row_cross_entropy(batch, width, tau, seed):
    gen = torch.Generator().manual_seed(seed)
    f = torch.randn(batch, width, generator=gen, dtype=torch.float64)
    g = torch.randn(batch, width, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(symmetric_infonce(f, g, tau, row_weight=1.0), _row_naive(f, g, tau))


@given(st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_weighted_loss_interpolates_the_two_terms(weight, seed):
    gen = torch.Generator().manual_seed(seed)
    f, g = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen)
    rows = symmetric_infonce(f, g, 0.3, row_weight=1.0)
    columns = symmetric_infonce(f, g, 0.3, row_weight=0.0)
    torch.testing.assert_close(
        symmetric_infonce(f, g, 0.3, row_weight=weight), weight * rows + (1 - weight) * columns
    )
    torch.testing.assert_close(symmetric_infonce(f, g, 0.3), 0.5 * (rows + columns))
    torch.testing.assert_close(columns, _row_naive(g, f, 0.3))  # theta -> x: the transpose


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "1"])
def test_row_weight_outside_the_unit_interval_is_refused(bad):
    with pytest.raises(ValueError, match="row_weight"):
        symmetric_infonce(torch.randn(3, 2), torch.randn(3, 2), row_weight=bad)


def _problem(num: int = 400, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    theta = 4 * torch.rand(num, 2, generator=gen) - 2
    return theta, theta + 0.1 * torch.randn(num, 2, generator=gen)


def _estimator(theta, x, similarity="cosine", learn_temperature=True):
    torch.manual_seed(0)
    return EmbedEmulateRatioEstimator(
        ResidualMLP(2, 6, hidden_dim=16),
        ResidualMLP(2, 6, hidden_dim=16),
        theta,
        x,
        similarity=similarity,
        learn_temperature=learn_temperature,
    )


def _row_loss(est, theta, x, idx, batch):
    est.eval()
    with torch.no_grad():
        parts = [i for i in idx.split(batch) if len(i) > 1]
        total = sum(
            float(
                symmetric_infonce(
                    est.encode(x[i]), est.emulate(theta[i]), est.temperature, row_weight=1.0
                ).mean()
            )
            * len(i)
            for i in parts
        )
    return total / sum(len(i) for i in parts)


@pytest.mark.parametrize("similarity", ["cosine", "scaled", "dot"])
@pytest.mark.parametrize("learn_temperature", [True, False])
def test_refine_trains_only_the_emulator_and_keeps_its_best_state(similarity, learn_temperature):
    theta, x = _problem()
    est = _estimator(theta, x, similarity, learn_temperature)
    est.train()
    encoder, emulator = weights(est.embedding_net_x), weights(est.embedding_net_theta)
    temperature = float(est.temperature.detach())
    order = torch.randperm(400, generator=torch.Generator().manual_seed(1))
    train, val = order[40:], order[:40]
    summary = refine_emulator(est, theta, x, train, val, training_batch_size=32, max_num_epochs=15)

    assert est.training  # modes restored
    assert not summary.tuned_head  # a ResidualMLP has no head to split off
    for name, value in weights(est.embedding_net_x).items():
        assert torch.equal(value, encoder[name]), name
    assert any(not torch.equal(v, emulator[k]) for k, v in weights(est.embedding_net_theta).items())
    assert (float(est.temperature.detach()) != temperature) == learn_temperature
    assert 1 <= summary.epochs <= 15
    assert summary.best_validation_loss < summary.initial_validation_loss
    # The estimator holds the best epoch's weights: its validation row loss is the best one.
    assert _row_loss(est, theta, x, val, 32) == pytest.approx(
        summary.best_validation_loss, rel=1e-5
    )


def test_refine_that_cannot_improve_leaves_the_estimator_as_it_was():
    theta, x = _problem()
    est = _estimator(theta, x)
    before = weights(est)
    summary = refine_emulator(est, theta, x, learning_rate=1e-12, max_num_epochs=2)
    # Steps of 1e-12 may not beat the start: then the starting weights come back, bit for bit.
    if summary.best_validation_loss == summary.initial_validation_loss:
        for name, value in weights(est).items():
            assert torch.equal(value, before[name]), name
    assert summary.best_validation_loss <= summary.initial_validation_loss


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_indices": torch.arange(10)}, "both"),
        ({"train_indices": torch.arange(2, 50), "val_indices": torch.arange(1)}, "2 validation"),
        ({"train_indices": torch.arange(2, 60), "val_indices": torch.arange(2)}, r"\[0, 50\)"),
        ({"train_indices": torch.arange(2, 50), "val_indices": torch.arange(4)}, "disjoint"),
        ({"training_batch_size": 1}, "training_batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"stop_after_epochs": 0}, "stop_after_epochs"),
        ({"row_weight": 0.0}, "row_weight"),
    ],
)
def test_refine_refuses_bad_settings(kwargs, match):
    theta, x = _problem(50)
    with pytest.raises(ValueError, match=match):
        refine_emulator(_estimator(theta, x), theta, x, **kwargs)


def test_refine_refuses_simulations_that_do_not_pair_up():
    theta, x = _problem(50)
    est = _estimator(theta, x)
    with pytest.raises(ValueError, match=r"`x` must have one row per row of `theta`"):
        refine_emulator(est, theta, x[:40])  # once a bare IndexError
    with pytest.raises(ValueError, match=r"`x` must have one row per row of `theta`"):
        refine_emulator(est, theta[:40], x)  # once trained on rows that do not pair up
    bad = theta.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="`theta`"):
        refine_emulator(est, bad, x)


def test_refine_refuses_a_boolean_mask_for_row_numbers():
    theta, x = _problem(50)
    mask = torch.arange(50) >= 5
    with pytest.raises(TypeError, match="`train_indices` must be integer row numbers"):
        refine_emulator(_estimator(theta, x), theta, x, train_indices=mask, val_indices=~mask)


def _trainer(theta, x):
    prior = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))
    torch.manual_seed(0)
    net = ResidualMLP(2, 6, hidden_dim=16)
    return EmbedEmulate(prior, encoder=net, show_progress_bars=False).append_simulations(theta, x)


def test_train_with_refine_uses_the_training_split():
    theta, x = _problem()
    trainer = _trainer(theta, x)
    est = trainer.train(training_batch_size=50, max_num_epochs=5)  # refines by default
    assert trainer.refinement is not None
    assert trainer.refinement.best_validation_loss <= trainer.refinement.initial_validation_loss
    # Early stopping watched sbi's own validation rows.
    got = _row_loss(est, theta, x, trainer.val_indices, 1000)
    assert got == pytest.approx(trainer.refinement.best_validation_loss, rel=1e-5)
    assert trainer.build_posterior().sample((20,), x=x[:1], show_progress_bars=False).shape == (
        20,
        2,
    )
    trainer.train(max_num_epochs=1, retrain_from_scratch=True, refine_emulator=False)
    assert trainer.refinement is None  # a train without it forgets the last refinement


def test_refine_before_train_and_a_non_bool_flag_are_refused():
    theta, x = _problem(100)
    trainer = _trainer(theta, x)
    with pytest.raises(ValueError, match="train"):
        trainer.refine()
    with pytest.raises(TypeError, match="refine_emulator"):
        trainer.train(max_num_epochs=1, refine_emulator="yes")  # type: ignore[arg-type]


def test_refine_leaves_a_plain_module_encoder_untouched():
    theta, x = _problem(100)
    est = EmbedEmulateRatioEstimator(nn.Linear(2, 4), nn.Linear(2, 4), theta, x)
    encoder = weights(est.embedding_net_x)
    refine_emulator(est, theta, x, max_num_epochs=2)
    for name, value in weights(est.embedding_net_x).items():
        assert torch.equal(value, encoder[name])


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, True])
def test_trainer_row_weight_must_keep_both_terms(bad):
    with pytest.raises(ValueError, match="row_weight"):
        EmbedEmulate(BoxUniform(-torch.ones(2), torch.ones(2)), row_weight=bad)


def test_trainer_trains_the_weighted_loss():
    theta, x = _problem(100)
    prior = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))
    trainer = EmbedEmulate(prior, encoder=nn.Linear(2, 4), row_weight=0.8)
    trainer.append_simulations(theta, x).train(max_num_epochs=1, refine_emulator=False)
    net = trainer._neural_net
    with torch.no_grad():
        got = trainer.pair_loss(theta[:20], x[:20])
        f, g = net.encode(x[:20]), net.emulate(theta[:20])
        want = symmetric_infonce(f, g, net.temperature, row_weight=0.8)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, symmetric_infonce(f, g, net.temperature))


def _conv_estimator(pooling="mean", wrap=None):
    theta, _ = _problem(300)
    gen = torch.Generator().manual_seed(2)
    x = theta.repeat(1, 8) + 0.1 * torch.randn(300, 16, generator=gen)
    torch.manual_seed(0)
    encoder = ConvEncoder1D(16, 6, channels=3, num_blocks=1, kernel_size=3, pooling=pooling)
    tower = encoder if wrap is None else wrap(encoder)
    est = EmbedEmulateRatioEstimator(tower, ResidualMLP(2, 6, hidden_dim=16), theta, x)
    return est, encoder, theta, x


@pytest.mark.parametrize("pooling", ["mean", "max", "meanstd", "flatten"])
def test_tune_head_trains_the_head_mlp_on_cached_features_and_not_the_backbone(pooling):
    est, encoder, theta, x = _conv_estimator(pooling)
    backbone, head = weights(encoder.backbone), weights(encoder.head)
    order = torch.randperm(300, generator=torch.Generator().manual_seed(1))
    train, val = order[30:], order[:30]
    summary = refine_emulator(est, theta, x, train, val, training_batch_size=32, max_num_epochs=8)

    assert summary.tuned_head
    for name, value in weights(encoder.backbone).items():
        assert torch.equal(value, backbone[name]), name
    assert any(not torch.equal(v, head[k]) for k, v in weights(encoder.head).items())
    # The cached path scores what the whole tower scores: the kept state is the best one.
    assert _row_loss(est, theta, x, val, 32) == pytest.approx(
        summary.best_validation_loss, rel=1e-5
    )


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda enc: SymmetryEmbedding(enc, freeze="all"), id="frozen head"),
        pytest.param(lambda enc: _Wrapped(enc, 2.0), id="output changed after the head"),
        pytest.param(lambda enc: _Wrapped(enc, spare=True), id="two heads"),
    ],
)
def test_tune_head_falls_back_to_the_emulator_where_the_head_cannot_be_split(wrap):
    est, _, theta, x = _conv_estimator(wrap=wrap)
    before = weights(est.embedding_net_x)
    summary = refine_emulator(est, theta, x, max_num_epochs=2)
    assert not summary.tuned_head
    for name, value in weights(est.embedding_net_x).items():
        assert torch.equal(value, before[name]), name


def test_tune_head_false_leaves_the_whole_encoder_untouched():
    est, encoder, theta, x = _conv_estimator()
    before = weights(encoder)
    summary = refine_emulator(est, theta, x, max_num_epochs=2, tune_head=False)
    assert not summary.tuned_head
    for name, value in weights(encoder).items():
        assert torch.equal(value, before[name]), name


class _Wrapped(nn.Module):
    """``scale * encoder(x)``, with an unused copy of the encoder (a second head) if ``spare``."""

    def __init__(self, encoder: nn.Module, scale: float = 1.0, spare: bool = False) -> None:
        super().__init__()
        self.encoder, self.scale = encoder, scale
        self.spare = copy.deepcopy(encoder) if spare else None

    def forward(self, x):
        return self.scale * self.encoder(x)
