"""The hybrid pretraining loss: VICReg plus a supervised read-out of the shared parameters
(``supervised_weight``): the term's identities, what a run records, checks and resume."""

from __future__ import annotations

import pytest
import torch
from _helpers_nets import assert_same, weights
from _helpers_pretrain import FAST, ToyViews, encoder, prior
from hypothesis import given, settings
from hypothesis import strategies as st

from sbi_symmetry.losses.supervised import supervised_term
from sbi_symmetry.symmetry.pretrain import PretrainConfig, pretrain_vicreg
from sbi_symmetry.views import AugmentedViews, CircularShift


# ------------------------------------------------------------------------------- the term
@settings(max_examples=30, deadline=None)
@given(
    rows=st.integers(1, 8),
    dims=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_supervised_term_is_the_mean_of_both_views_squared_errors(rows, dims, seed):
    gen = torch.Generator().manual_seed(seed)
    a, b, t = (torch.randn(rows, dims, generator=gen, dtype=torch.float64) for _ in range(3))
    expected = 0.5 * (((a - t) ** 2).mean() + ((b - t) ** 2).mean())
    assert torch.allclose(supervised_term(a, b, t), expected)
    assert torch.allclose(supervised_term(a, b, t), supervised_term(b, a, t))  # symmetric
    assert float(supervised_term(t, t, t)) == 0.0


def test_supervised_term_refuses_a_prediction_of_another_shape():
    with pytest.raises(ValueError, match="`pred_b` has shape \\(4, 1\\); expected"):
        supervised_term(torch.zeros(4, 2), torch.zeros(4, 1), torch.zeros(4, 2))


def test_supervised_weight_is_checked():
    with pytest.raises(ValueError, match="`supervised_weight` must be a finite number >= 0"):
        PretrainConfig(supervised_weight=-1.0)


# -------------------------------------------------------------------------------- a run
def _hybrid(weight: float, epochs: int = 2, **kwargs):
    settings_ = {**FAST, "max_epochs": epochs, "supervised_weight": weight, **kwargs}
    settings_.setdefault("num_simulations", 300)
    return pretrain_vicreg(encoder(), ToyViews(), prior(), **settings_)


def test_plain_vicreg_records_a_zero_supervised_term():
    history = _hybrid(0.0).history
    assert history["train_supervised"] == [0.0, 0.0] == history["val_supervised"]


def test_the_total_is_vicreg_plus_the_weighted_supervised_term():
    history = _hybrid(3.0).history
    for split in ("train", "val"):
        for epoch in range(2):
            vicreg = sum(
                weight * history[f"{split}_{term}"][epoch]
                for term, weight in (("invariance", 25), ("variance", 25), ("covariance", 1))
            )
            total = vicreg + 3.0 * history[f"{split}_supervised"][epoch]
            assert history[f"{split}_total"][epoch] == pytest.approx(total, rel=1e-5)
            assert history[f"{split}_supervised"][epoch] > 0


def test_the_supervised_term_teaches_the_summary_the_parameters():
    history = _hybrid(5.0, epochs=8, learning_rate=3e-3, num_simulations=1000).history
    # Standardised parameters: predicting their mean scores 1. The toy's bump position is
    # blurred by its nuisance shift (posterior std about 0.25 against the prior's 0.29), so the
    # best read-out scores about (0.75 + small) / 2; an untrained one about 1.
    assert history["val_supervised"][-1] < 0.7
    assert history["val_supervised"][-1] < 0.75 * history["val_supervised"][0]


def test_a_hybrid_run_changes_the_weights_and_is_deterministic():
    plain, first, second = _hybrid(0.0), _hybrid(1.0), _hybrid(1.0)
    assert_same(weights(first), weights(second))
    before, after = weights(plain), weights(first)
    assert any(not torch.equal(before[name], after[name]) for name in before)


# ------------------------------------------------------------------------ stored data (x)
def _stored(n: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    theta = prior().sample((n,))
    return theta, ToyViews()._one(theta)


def test_stored_data_need_their_parameters_for_the_supervised_term():
    theta, x = _stored()
    views = AugmentedViews(CircularShift())
    with pytest.raises(ValueError, match="pass `theta`"):
        pretrain_vicreg(encoder(), views, x=x, supervised_weight=1.0, **FAST)
    with pytest.raises(ValueError, match="`theta` must be a floating-point tensor of shape"):
        pretrain_vicreg(encoder(), views, x=x, theta=theta[:10], supervised_weight=1.0, **FAST)
    emb = pretrain_vicreg(encoder(), views, x=x, theta=theta, supervised_weight=1.0, **FAST)
    assert emb(x[:4]).shape == (4, 3) and emb.history["val_supervised"][0] > 0


def test_parameters_are_refused_with_views_that_draw_their_own():
    with pytest.raises(ValueError, match="`theta` was given but `views` simulate"):
        pretrain_vicreg(encoder(), ToyViews(), prior(), theta=torch.zeros(300, 2), **FAST)


def test_plain_vicreg_ignores_the_parameters_of_stored_data():
    theta, x = _stored()
    views = AugmentedViews(CircularShift())
    without = pretrain_vicreg(encoder(), views, x=x, **FAST)
    given_theta = pretrain_vicreg(encoder(), views, x=x, theta=theta, **FAST)
    assert_same(weights(without), weights(given_theta))


def test_a_hybrid_run_resumes_as_if_uninterrupted(tmp_path):
    full = _hybrid(1.0, epochs=3)
    path = tmp_path / "run.pt"

    def interrupt(epoch, history):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _hybrid(1.0, epochs=3, checkpoint_path=path, callback=interrupt)
    resumed = _hybrid(1.0, epochs=3, checkpoint_path=path, resume=True)
    assert_same(weights(full), weights(resumed))
    assert resumed.history["val_supervised"] == full.history["val_supervised"]


def test_the_workflow_gives_shift_view_pretraining_the_training_parameters():
    from _helpers_pretrain import shift_view_symmetry_npe

    from sbi_symmetry.tasks import DampedOscillator

    task = DampedOscillator()
    theta, x = task.sample_joint(300, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    trained = shift_view_symmetry_npe(task, theta, x, pretrain={"supervised_weight": 1.0})
    history = trained.extra["pretrained_embedding"].history
    assert trained.extra["pretrain_views"] == "shift" and history["val_supervised"][0] > 0


def test_resuming_with_other_parameters_of_the_stored_data_is_refused(tmp_path):
    theta, x = _stored()
    views, path = AugmentedViews(CircularShift()), tmp_path / "run.pt"
    settings_ = {**FAST, "supervised_weight": 1.0, "checkpoint_path": path}
    pretrain_vicreg(encoder(), views, x=x, theta=theta, **settings_)
    with pytest.raises(ValueError, match="the training data differ"):
        pretrain_vicreg(encoder(), views, x=x, theta=theta.flip(0), resume=True, **settings_)
