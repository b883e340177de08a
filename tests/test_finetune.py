"""``train_npe``: sbi's NPE with the pretrained embedding frozen first, then fine-tuned."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sbi.inference import NPE
from sbi.neural_nets import posterior_nn
from sbi.utils import BoxUniform
from torch import nn

from sbi_symmetry._sbi_compat import NullTracker, training_summary
from sbi_symmetry.symmetry import SymmetryEmbedding, finetune, train_npe
from sbi_symmetry.symmetry.finetune import FROZEN_EPOCHS, FROZEN_STEPS, frozen_epochs_for


def _setup(freeze: str = "none", builder: str = "posterior_nn"):
    torch.manual_seed(0)
    prior = BoxUniform(torch.zeros(2), torch.ones(2))
    theta = prior.sample((300,))
    x = torch.cat([theta, theta.flip(-1)], dim=1) + 0.05 * torch.randn(300, 4)
    encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    embedding = SymmetryEmbedding(encoder, freeze=freeze)
    if builder == "posterior_nn":
        build = embedding.posterior_nn("mdn")
    else:  # sbi's own: it does not say which embedding it holds
        build = posterior_nn("mdn", embedding_net=embedding, z_score_x="none")
    npe = NPE(
        prior,
        density_estimator=build,
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    return npe.append_simulations(theta, x), embedding


def _spy(trainer, embedding):
    """Record each ``train`` call's arguments and the encoder's weights when it starts."""
    calls, original = [], trainer.train

    def train(**kwargs):
        weights = [p.detach().clone() for p in embedding.encoder.parameters()]
        calls.append((kwargs, weights, embedding.freeze))
        return original(**kwargs)

    trainer.train = train
    return calls


def test_the_flow_trains_alone_first_then_the_embedding_is_fine_tuned():
    trainer, embedding = _setup()
    calls = _spy(trainer, embedding)
    start = [p.detach().clone() for p in embedding.encoder.parameters()]
    train_npe(trainer, embedding, frozen_epochs=3, max_num_epochs=4, learning_rate=1e-3)
    (first, _, mode_1), (second, at_resume, mode_2) = calls
    assert first == {"max_num_epochs": 3, "learning_rate": 1e-3} and mode_1 == "all"
    assert all(torch.equal(a, b) for a, b in zip(start, at_resume, strict=True))  # frozen
    assert second["resume_training"] and mode_2 == "none" and embedding.freeze == "none"
    done = training_summary(trainer)["epochs_trained"]
    assert second["max_num_epochs"] == done[0] + 4 and done[-1] > done[0]
    after = list(embedding.encoder.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(start, after, strict=True))  # fine-tuned


@pytest.mark.parametrize(("frozen_epochs", "freeze"), [(0, "none"), (5, "all")])
def test_nothing_to_warm_up_is_one_plain_train_call(frozen_epochs, freeze):
    trainer, embedding = _setup(freeze)
    calls = _spy(trainer, embedding)
    train_npe(trainer, embedding, frozen_epochs=frozen_epochs, max_num_epochs=2)
    assert [c[0] for c in calls] == [{"max_num_epochs": 2}] and embedding.freeze == freeze


def test_bad_input_is_refused_and_the_freeze_mode_restored():
    trainer, embedding = _setup()
    with pytest.raises(ValueError, match="`frozen_epochs` must be"):
        train_npe(trainer, embedding, frozen_epochs=-1)
    with pytest.raises(ValueError, match="`resume_training` is train_npe's"):
        train_npe(trainer, embedding, resume_training=True)
    other = SymmetryEmbedding(nn.Linear(4, 2), freeze="none")
    with pytest.raises(ValueError, match="`embedding` is not part of the trainer's network"):
        train_npe(trainer, other, frozen_epochs=1, max_num_epochs=1)
    assert other.freeze == "none"


@pytest.mark.parametrize("builder", ["posterior_nn", "sbi"])
def test_a_wrong_embedding_is_refused_before_any_training_where_it_can_tell(builder):
    """``embedding.posterior_nn`` names its embedding: refused before training; any other
    builder only once sbi has built the network (after the frozen start)."""
    trainer, embedding = _setup(builder=builder)
    other = SymmetryEmbedding(nn.Linear(4, 2), freeze="none")
    calls = _spy(trainer, embedding)
    with pytest.raises(ValueError, match="`embedding` is not part of the trainer's network"):
        train_npe(trainer, other, frozen_epochs=1, max_num_epochs=1)
    assert len(calls) == (0 if builder == "posterior_nn" else 1)
    trainer, embedding = _setup()
    _ = trainer.train(max_num_epochs=1)  # a built network tells before training too
    calls = _spy(trainer, embedding)
    with pytest.raises(ValueError, match="`embedding` is not part of the trainer's network"):
        train_npe(trainer, other, frozen_epochs=0, max_num_epochs=1)
    assert calls == []


def test_the_workflow_passes_frozen_epochs_to_symmetry_npe():
    from _helpers_pretrain import shift_view_symmetry_npe

    from sbi_symmetry.tasks import DampedOscillator
    from sbi_symmetry.workflow.config import RunConfig

    task = DampedOscillator()
    theta, x = task.sample_joint(300, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    trained = shift_view_symmetry_npe(task, theta, x, max_num_epochs=2, frozen_epochs=2)
    assert trained.epochs > 3  # two frozen epochs (and sbi's epoch 0), then fine-tuning
    assert trained.extra["embedding"].freeze == "none"
    assert trained.summary()["frozen_epochs"] == 2  # the metrics say how many ran
    auto = shift_view_symmetry_npe(
        task, theta, x, max_num_epochs=1, frozen_epochs="auto", training_batch_size=90
    )
    assert auto.summary()["frozen_epochs"] == frozen_epochs_for(300, 90) == 20  # 3 steps each
    assert RunConfig.from_preset("damped-oscillator", frozen_epochs=20).frozen_epochs == 20
    for bad in (-2, "sometimes"):
        with pytest.raises(ValueError, match='`frozen_epochs` must be an integer >= 0 or "auto"'):
            RunConfig.from_preset("damped-oscillator", frozen_epochs=bad)


@given(
    num_simulations=st.integers(1, 10**7),
    batch=st.integers(1, 2000),
    validation_fraction=st.sampled_from([0.0, 0.1, 0.25]),
)
def test_auto_frozen_epochs_are_the_most_within_both_caps(
    num_simulations, batch, validation_fraction
):
    epochs = frozen_epochs_for(num_simulations, batch, validation_fraction)
    rows = max(1, int((1 - validation_fraction) * num_simulations))
    steps = rows // min(batch, rows)  # sbi's batches per epoch (it drops a partial one)
    assert 1 <= epochs <= FROZEN_EPOCHS
    assert epochs == 1 or epochs * steps <= FROZEN_STEPS  # one epoch even if it is longer
    assert epochs == FROZEN_EPOCHS or (epochs + 1) * steps > FROZEN_STEPS  # no fewer than fit


def test_train_npe_resolves_auto_from_the_appended_simulations(monkeypatch):
    trainer, embedding = _setup()  # 300 rows: 270 for training, batches of 90 -> 3 steps
    monkeypatch.setattr(finetune, "FROZEN_STEPS", 7)  # 2 epochs of 3 steps fit, not 3
    calls = _spy(trainer, embedding)
    with pytest.warns(UserWarning, match="max_num_epochs"):
        train_npe(trainer, embedding, training_batch_size=90, max_num_epochs=1)
    assert calls[0][0]["max_num_epochs"] == 2 and calls[0][2] == "all"
    monkeypatch.undo()
    assert [frozen_epochs_for(n) for n in (10_000, 100_000, 1_000_000)] == [20, 10, 1]


@pytest.mark.parametrize(
    ("rows", "batch", "validation_fraction"),
    [(300, 90, 0.1), (300, 400, 0.1), (1_001, 50, 0.25), (2_000, 7, 0.05)],
)
def test_auto_counts_the_steps_sbi_trains_an_epoch(rows, batch, validation_fraction):
    torch.manual_seed(0)
    prior = BoxUniform(torch.zeros(2), torch.ones(2))
    theta = prior.sample((rows,))
    npe = NPE(prior, tracker=NullTracker(), show_progress_bars=False)
    npe.append_simulations(theta, theta + 0.1)
    loader, _ = npe.get_dataloaders(0, batch, validation_fraction)
    expected = max(1, min(FROZEN_EPOCHS, FROZEN_STEPS // len(loader)))
    assert frozen_epochs_for(rows, batch, validation_fraction) == expected


def test_train_npe_needs_simulations_before_it_can_choose_the_frozen_epochs():
    prior = BoxUniform(torch.zeros(2), torch.ones(2))
    embedding = SymmetryEmbedding(nn.Linear(2, 2), freeze="none")
    npe = NPE(prior, density_estimator=embedding.posterior_nn("mdn"), tracker=NullTracker())
    with pytest.raises(ValueError, match="`trainer` holds no simulations"):
        train_npe(npe, embedding)


def _report_entry(epochs: int) -> dict:
    """A calibrated, well-sized method's metrics after ``epochs`` epochs (for its flags)."""
    return {
        "costs": {"epochs": epochs},
        "calibration": {"calibrated": True, "ks_pvals": [0.4, 0.3], "num_pairs": 200},
        "std_over_reference": [[1.1, 0.9], [1.0, 1.2]],
        "std_over_crb": [[1.3, 1.1], [1.2, 1.4]],
    }


@pytest.mark.parametrize(("epochs", "flagged"), [(172, True), (171, False), (60, False)])
def test_the_epoch_cap_of_symmetry_npe_counts_after_its_frozen_start(epochs, flagged):
    from types import SimpleNamespace

    from sbi_symmetry.workflow import report
    from sbi_symmetry.workflow.config import RunConfig

    config = RunConfig(frozen_epochs=20, npe_train={"max_num_epochs": 150})
    results = SimpleNamespace(
        config=config, trained={}, task=SimpleNamespace(parameter_names=("w0", "beta"))
    )
    found = report._flags("symmetry_npe", _report_entry(epochs), results)
    assert ("epoch_cap" in [f["code"] for f in found]) == flagged  # 21 frozen + 151 at the cap
    assert not flagged or "151 epochs with `npe_train.max_num_epochs=150`" in found[0]["summary"]
    raw = report._flags("raw_npe", _report_entry(160), results)  # no frozen start
    assert [f["code"] for f in raw] == ["epoch_cap"]


@pytest.mark.parametrize(
    ("name", "phases", "flagged"),
    [
        ("symmetry_npe", [21, 151, 40], True),  # fine-tuning hit its cap
        ("symmetry_npe", [21, 120, 151], True),  # the annealed phase hit its cap
        ("symmetry_npe", [21, 150, 150], False),  # each phase stopped early
        ("raw_npe", [140, 90], False),  # 230 epochs in all, but two phases under the cap
        ("raw_npe", [151], True),
    ],
)
@pytest.mark.parametrize("setting", [20, "auto"])  # "auto": the run records the epochs (20)
def test_every_training_phase_has_its_own_epoch_cap(name, phases, flagged, setting):
    from types import SimpleNamespace

    from sbi_symmetry.workflow import report
    from sbi_symmetry.workflow.config import RunConfig

    config = RunConfig(frozen_epochs=setting, npe_train={"max_num_epochs": 150, "anneal": 0.1})
    results = SimpleNamespace(
        config=config, trained={}, task=SimpleNamespace(parameter_names=("w0", "beta"))
    )
    entry = _report_entry(sum(phases))
    entry["costs"]["epochs_per_phase"] = phases
    if setting == "auto" and name == "symmetry_npe":
        entry["costs"]["frozen_epochs"] = 20
    found = report._flags(name, entry, results)
    assert ("epoch_cap" in [f["code"] for f in found]) == flagged


def test_the_workflow_anneals_each_kind_of_method_as_its_training_settings_say():
    from sbi_symmetry.tasks import DampedOscillator
    from sbi_symmetry.workflow import methods
    from sbi_symmetry.workflow.config import RunConfig

    task = DampedOscillator()
    theta, x = task.sample_joint(300, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="max_num_epochs"):
        trained = methods.raw_npe(
            task, theta, x, max_num_epochs=2, anneal=0.5, show_progress_bars=False
        )
    assert trained.phase_epochs == (3, 3) and trained.summary()["epochs_per_phase"] == [3, 3]
    config = RunConfig(npe_train={"anneal": 0.5}, ee_train={"anneal": 0.2})
    assert config.npe_train["anneal"] == 0.5 and config.ee_train["anneal"] == 0.2
    for name in ("npe_train", "ee_train"):
        for bad in (-0.1, 1.0, "0.1"):
            with pytest.raises(ValueError, match=f"`{name}.anneal` must be a number in"):
                RunConfig(**{name: {"anneal": bad}}).validate()


@pytest.mark.parametrize("frozen_epochs", [0, 3])
def test_train_npe_anneals_last_at_the_lower_rate(frozen_epochs):
    trainer, embedding = _setup()
    calls = _spy(trainer, embedding)
    with pytest.warns(UserWarning, match="max_num_epochs"):
        train_npe(trainer, embedding, frozen_epochs=frozen_epochs, anneal=0.1, max_num_epochs=2)
    assert len(calls) == (3 if frozen_epochs else 2)
    assert calls[-1][0] == {
        "max_num_epochs": training_summary(trainer)["epochs_trained"][-2] + 2,
        "resume_training": True,
    }
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(5e-5)  # sbi's 5e-4 x 0.1
    with pytest.raises(ValueError, match=r"`anneal` must be in \[0, 1\)"):
        train_npe(trainer, embedding, anneal=1.0)


def test_the_workflow_anneals_symmetry_npe_after_its_frozen_start_and_fine_tuning():
    from _helpers_pretrain import shift_view_symmetry_npe

    from sbi_symmetry.tasks import DampedOscillator

    task = DampedOscillator()
    theta, x = task.sample_joint(300, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="max_num_epochs"):
        trained = shift_view_symmetry_npe(
            task, theta, x, max_num_epochs=2, frozen_epochs=2, anneal=0.5
        )
    assert trained.phase_epochs == (3, 3, 3)  # frozen start, fine-tuning, the last phase


@pytest.mark.parametrize(
    ("ends", "newline"),
    [([60], True), ([151], False), ([21, 170], True), ([21, 172], False), ([21, 80, 90], True)],
)
def test_sbis_convergence_line_is_ended_when_the_last_phase_stopped_early(ends, newline, capsys):
    from types import SimpleNamespace

    from sbi_symmetry.workflow.methods import _end_line

    trainer = SimpleNamespace(_summary={"epochs_trained": ends})  # each train call's last epoch
    _end_line(trainer, {"max_num_epochs": 150})  # each phase's cap counts from its start
    assert (capsys.readouterr().out == "\n") == newline
