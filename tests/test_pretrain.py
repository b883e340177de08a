"""Tests of the VICReg pretraining loop: a run and its history, schedule, early stopping,
determinism, configuration and devices (checkpoints: test_pretrain_checkpoint.py; checks
before training: test_pretrain_checks.py)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from _helpers_nets import assert_same, weights
from _helpers_pretrain import FAST, LENGTH, ToyViews, encoder, prior
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
from sbi_symmetry.symmetry.pretrain import PretrainConfig, pretrain_vicreg, scheduled_learning_rate
from sbi_symmetry.symmetry.pretrain import loop as pretrain_module
from sbi_symmetry.tasks import DampedOscillator
from sbi_symmetry.views import AugmentedViews, CircularShift, ResimulatedViews


# --------------------------------------------------------------------------------- basic run
def test_returns_embedding_with_scaling_freeze_and_history():
    views = ToyViews()
    emb = pretrain_vicreg(encoder(), views, prior(), num_simulations=200, **FAST)
    assert isinstance(emb, SymmetryEmbedding)
    assert emb.freeze == "none" and not emb.training  # NPE fine-tunes it by default
    assert emb.output_dim == 3
    # The toy data are 2 + 3 * (bump + noise): mean a bit above 2, std a bit above 0.3.
    assert 2.0 < float(emb.input_mean) < 2.5
    assert 0.3 < float(emb.input_std) < 1.5
    history = emb.history
    for key in (
        "train_total",
        "train_invariance",
        "train_variance",
        "train_covariance",
        "val_total",
        "val_invariance",
        "val_variance",
        "val_covariance",
        "lr",
        "effective_rank",
        "summary_std",
        "val_invariance_error",
    ):
        assert len(history[key]) == 2, key
    assert all(len(stds) == 3 for stds in history["summary_std"])
    assert all(0 <= r <= 3 for r in history["effective_rank"])
    assert history["epoch"] == [1, 2]
    theta = prior().sample((5,))
    assert emb(views(theta)[0]).shape == (5, 3)


def test_training_lowers_the_loss():
    torch.manual_seed(0)
    emb = pretrain_vicreg(
        encoder(),
        ToyViews(),
        prior(),
        num_simulations=400,
        batch_size=32,
        max_epochs=6,
        warmup_epochs=0,
        learning_rate=3e-3,
        schedule="constant",
        show_progress_bar=False,
    )
    val = emb.history["val_total"]
    assert min(val[1:]) < val[0]


@pytest.mark.parametrize("fresh_views", ["auto", False, True])
def test_fresh_views_resimulate_every_batch_and_a_bank_does_not(fresh_views):
    views = ToyViews()  # input_kind "theta": re-simulated, so "auto" draws one bank
    pretrain_vicreg(encoder(), views, prior(), num_simulations=200, fresh_views=fresh_views, **FAST)
    steps = (200 - 20) // 32  # training batches per epoch
    # bank: validation bank + training bank (one chunk each); fresh adds a scaling pass and
    # one call per batch per epoch.
    assert views.calls == (2 + 2 * steps if fresh_views is True else 2)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_fresh_views_must_be_a_bool_or_auto(value):
    with pytest.raises(ValueError, match="`fresh_views` must be True, False or 'auto'"):
        PretrainConfig(fresh_views=value)


def test_stored_x_with_augmented_views_and_channel_scaling():
    torch.manual_seed(1)
    x = torch.randn(160, 2, LENGTH) * torch.tensor([[1.0], [4.0]]) + torch.tensor([[0.0], [10.0]])
    views = AugmentedViews(CircularShift())
    emb = pretrain_vicreg(encoder(in_channels=2), views, x=x, input_scaling="channel", **FAST)
    assert emb.input_mean.shape == (2,)
    assert torch.allclose(emb.input_mean, torch.tensor([0.0, 10.0]), atol=0.3)
    assert torch.allclose(emb.input_std, torch.tensor([1.0, 4.0]), rtol=0.1)
    assert emb(x[:3]).shape == (3, 3)


def test_custom_encoder_without_output_dim_gets_a_probed_expander():
    torch.manual_seed(0)
    custom = nn.Sequential(nn.Linear(LENGTH, 8), nn.ReLU(), nn.Linear(8, 5))
    emb = pretrain_vicreg(custom, ToyViews(), prior(), num_simulations=200, freeze="none", **FAST)
    assert emb.output_dim == 5
    assert len(emb.history["summary_std"][0]) == 5


# --------------------------------------------------------------------------------- schedule
@given(
    peak=st.floats(1e-5, 1.0),
    total=st.integers(1, 200),
    warm_frac=st.floats(0, 0.99),
    schedule=st.sampled_from(["cosine", "constant"]),
)
def test_schedule_reaches_peak_after_warmup_and_never_exceeds_it(peak, total, warm_frac, schedule):
    warmup = int(warm_frac * total)
    rates = [
        scheduled_learning_rate(
            s, peak=peak, total_steps=total, warmup_steps=warmup, schedule=schedule
        )
        for s in range(total)
    ]
    assert all(0 <= r <= peak * (1 + 1e-12) for r in rates)
    first_after_warmup = rates[warmup - 1] if warmup > 0 else rates[0]
    assert first_after_warmup == pytest.approx(peak)
    if schedule == "constant":
        assert all(r == pytest.approx(peak) for r in rates[warmup:])
    else:
        tail = rates[warmup:]
        assert all(a >= b for a, b in itertools.pairwise(tail))


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_optimizer_runs_at_the_scheduled_rate(monkeypatch, schedule):
    applied: list[float] = []
    original_step = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        applied.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    lr = 2e-3
    emb = pretrain_vicreg(
        encoder(),
        ToyViews(),
        prior(),
        num_simulations=200,
        batch_size=32,
        max_epochs=4,
        warmup_epochs=1,
        learning_rate=lr,
        schedule=schedule,
        show_progress_bar=False,
    )
    steps = (200 - 20) // 32
    expected = [
        scheduled_learning_rate(
            s, peak=lr, total_steps=4 * steps, warmup_steps=steps, schedule=schedule
        )
        for s in range(4 * steps)
    ]
    assert applied == pytest.approx(expected, rel=1e-6)
    # The rate right after warm-up is exactly the configured one, and history records it.
    assert applied[steps - 1] == pytest.approx(lr)
    assert applied[steps] == pytest.approx(lr)
    assert emb.history["lr"] == pytest.approx([applied[(e + 1) * steps - 1] for e in range(4)])
    if schedule == "constant":
        assert emb.history["lr"] == pytest.approx([lr] * 4)


# --------------------------------------------------------------------------------- early stop
def test_early_stopping_restores_the_best_weights(monkeypatch):
    scripted = iter([3.0, 2.0, 4.0, 5.0, 6.0, 7.0])
    real_validate = pretrain_module._validate

    def fake_validate(*args, **kwargs):
        terms, stats = real_validate(*args, **kwargs)
        return {**terms, "total": next(scripted)}, stats

    monkeypatch.setattr(pretrain_module, "_validate", fake_validate)
    enc = encoder()
    snapshots = []
    emb = pretrain_vicreg(
        enc,
        ToyViews(),
        prior(),
        num_simulations=200,
        batch_size=32,
        max_epochs=6,
        warmup_epochs=0,
        stop_after_epochs=2,
        show_progress_bar=False,
        callback=lambda epoch, history: snapshots.append(weights(enc)),
    )
    assert emb.history["val_total"] == [3.0, 2.0, 4.0, 5.0]  # stopped after 2 bad epochs
    assert_same(weights(emb.encoder), snapshots[1])
    assert not all(torch.equal(snapshots[1][k], snapshots[3][k]) for k in snapshots[1])


# --------------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_weights_and_history():
    runs = []
    for _ in range(2):
        emb = pretrain_vicreg(encoder(), ToyViews(), prior(), num_simulations=200, seed=3, **FAST)
        runs.append(emb)
    assert_same(weights(runs[0]), weights(runs[1]))
    for key in runs[0].history:
        if key != "epoch_time_s":
            assert runs[0].history[key] == runs[1].history[key], key
    other = pretrain_vicreg(encoder(), ToyViews(), prior(), num_simulations=200, seed=4, **FAST)
    assert not torch.equal(
        weights(other)["encoder.head.3.weight"], weights(runs[0])["encoder.head.3.weight"]
    )


def test_config_object_and_overrides_combine():
    config = PretrainConfig(batch_size=32, max_epochs=3, show_progress_bar=False)
    emb = pretrain_vicreg(
        encoder(),
        ToyViews(),
        prior(),
        num_simulations=200,
        config=config,
        max_epochs=2,
        warmup_epochs=0,
        freeze="all",
    )
    assert len(emb.history["val_total"]) == 2
    assert emb.freeze == "all"
    assert config.max_epochs == 3  # the caller's config is not modified
    assert PretrainConfig(max_epochs=100).warmup == 5
    assert math.isclose(PretrainConfig().learning_rate, 1e-3)


def test_works_with_resimulated_views_of_a_task():
    task = DampedOscillator()
    views = ResimulatedViews(task.simulate, task.nuisance_prior)
    torch.manual_seed(0)
    enc = ConvEncoder1D(200, 3, channels=4, num_blocks=2, kernel_size=5)
    emb = pretrain_vicreg(enc, views, task.prior, num_simulations=150, **FAST)
    assert emb(task.simulate(task.sample_prior(4))).shape == (4, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_pretraining_on_cuda_follows_the_device():
    task = DampedOscillator(device="cuda")
    views = ResimulatedViews(task.simulate, task.nuisance_prior)
    torch.manual_seed(0)
    enc = ConvEncoder1D(200, 3, channels=4, num_blocks=2, kernel_size=5)
    emb = pretrain_vicreg(enc, views, task.prior, num_simulations=150, device="cuda", **FAST)
    assert emb.input_mean.device.type == "cuda"
    assert all(p.device.type == "cuda" for p in emb.parameters())
    x = task.simulate(task.sample_prior(4))
    assert emb(x).device.type == "cuda"
    with pytest.raises(ValueError, match="is on cpu"):
        emb(x.cpu())
    cpu_task = DampedOscillator()
    cpu_views = ResimulatedViews(cpu_task.simulate, cpu_task.nuisance_prior)
    with pytest.raises(ValueError, match="prior's samples is on cpu"):
        pretrain_vicreg(enc, cpu_views, cpu_task.prior, num_simulations=150, device="cuda", **FAST)
