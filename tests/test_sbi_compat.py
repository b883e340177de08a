"""Each shim of ``_sbi_compat`` against the installed sbi: these fail first when sbi changes."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from sbi.inference import NPE, NRE_C
from sbi.inference.trainers.nre.nre_base import RatioEstimatorTrainer
from sbi.neural_nets import posterior_nn
from sbi.sbi_types import Tracker as SbiTracker
from sbi.utils import BoxUniform
from torch import Tensor, nn

from sbi_symmetry._sbi_compat import (
    FlattenEmbedding,
    LossArgsNRE,
    LossArgsNRE_C,
    NullTracker,
    RatioTrainerHooks,
    Tracker,
    anneal,
    batch_losses,
    get_neural_net,
    restart_patience,
    set_neural_net,
    training_summary,
)

# The private hooks RatioTrainerHooks overrides, with the parameters (after ``self``) it relies on.
HOOKS = {
    "_initialize_neural_network": ["retrain_from_scratch", "start_idx"],
    "_loss": ["theta", "x", "num_atoms"],
    "_train_epoch": ["train_loader", "clip_max_norm", "loss_args"],
    "_validate_epoch": ["val_loader", "loss_args"],
    "_summarize": ["round_"],
    "_report_convergence_at_end": ["epoch", "max_num_epochs"],
    "_maybe_show_progress": ["show", "epoch"],
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _prior() -> BoxUniform:
    return BoxUniform(torch.zeros(1), torch.ones(1))


# ---------------------------------------------------------------- RatioTrainerHooks
@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_each_overridden_private_hook_still_exists_with_its_parameters(hook):
    assert hook in vars(RatioTrainerHooks), f"{hook} is not overridden in one place any more"
    assert hook in dir(RatioEstimatorTrainer), f"sbi's trainer has no {hook} any more"
    params = list(inspect.signature(getattr(RatioEstimatorTrainer, hook)).parameters)
    params = [p for p in params if p != "self"]
    assert params[: len(HOOKS[hook])] == HOOKS[hook], params


def test_progress_hook_is_still_static_in_sbi():
    # The shim calls RatioEstimatorTrainer._maybe_show_progress(show, epoch) without an instance.
    kind = inspect.getattr_static(RatioEstimatorTrainer, "_maybe_show_progress")
    assert isinstance(kind, staticmethod)


class _Recording(RatioTrainerHooks):
    """Counts the named hooks sbi's loop reaches through the shim."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def pair_loss(self, theta: Tensor, x: Tensor) -> Tensor:
        self._count("pair_loss")
        return self.neural_net.unnormalized_log_ratio(theta, x) ** 2

    def network_built(self, net: nn.Module) -> None:
        self._count("network_built")
        assert net is self.neural_net is not None

    def reduce_epoch_loss(self, value: float) -> float:
        self._count("reduce_epoch_loss")
        return value + 1000.0  # visible in sbi's record

    def reports_here(self) -> bool:
        self._count("reports_here")
        return False


def test_sbi_training_loop_reaches_every_named_hook(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    theta = _prior().sample((60,))
    trainer = _Recording(_prior(), tracker=NullTracker(), show_progress_bars=True)
    assert trainer.neural_net is None
    net = trainer.append_simulations(theta, theta).train_nre(
        max_num_epochs=1, training_batch_size=20, show_train_summary=True
    )
    assert net is trainer.neural_net
    epochs = len(training_summary(trainer)["training_loss"])  # sbi: max_num_epochs=1 runs 2
    assert epochs == 2
    assert trainer.calls["network_built"] == 1
    assert trainer.calls["pair_loss"] >= 2 * epochs  # training and validation batches
    assert trainer.calls["reduce_epoch_loss"] == 2 * epochs
    # per epoch (_maybe_show_progress), then _report_convergence_at_end and _summarize
    assert trainer.calls["reports_here"] == epochs + 2
    summary = training_summary(trainer)
    assert min(summary["training_loss"] + summary["validation_loss"]) >= 1000.0
    assert "Training neural network" not in capsys.readouterr().out  # progress silenced
    assert list(tmp_path.iterdir()) == []


def test_train_still_takes_the_loss_arguments_we_pass():
    assert "loss_kwargs" in inspect.signature(RatioEstimatorTrainer.train).parameters
    assert [f.name for f in dataclasses.fields(LossArgsNRE)] == ["num_atoms"]
    assert {"num_atoms", "gamma"} <= {f.name for f in dataclasses.fields(LossArgsNRE_C)}
    assert issubclass(LossArgsNRE_C, LossArgsNRE)
    assert dataclasses.asdict(LossArgsNRE(num_atoms=2)) == {"num_atoms": 2}


def test_batch_losses_and_network_accessors_follow_sbi(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    theta = _prior().sample((60,))
    x = theta + 0.1 * torch.randn(60, 1)
    trainer = NRE_C(_prior(), tracker=NullTracker(), show_progress_bars=False)
    assert get_neural_net(trainer) is None
    with pytest.warns(UserWarning, match="max_num_epochs"):
        estimator = trainer.append_simulations(theta, x).train(max_num_epochs=1)
    assert get_neural_net(trainer) is estimator
    args = LossArgsNRE_C(num_atoms=6, gamma=1.0)  # as the benchmark's step timing passes them
    losses = batch_losses(trainer, theta[:12], x[:12], args)
    assert losses.shape == () and torch.isfinite(losses)  # NRE-C's loss is a batch mean
    copy = type(estimator)(
        net=estimator.net, theta_shape=estimator.theta_shape, x_shape=estimator.x_shape
    )
    set_neural_net(trainer, copy)
    assert get_neural_net(trainer) is copy
    # sbi's loop calls the trainer's loss, which reads the network set above.
    recording = _Recording(_prior(), tracker=NullTracker(), show_progress_bars=False)
    recording.append_simulations(theta, x).train_nre(max_num_epochs=1)
    ours = batch_losses(recording, theta[:5], x[:5], LossArgsNRE(num_atoms=2))
    assert torch.equal(ours, recording.pair_loss(theta[:5], x[:5]))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- trackers, summary, embedding
def test_null_tracker_has_every_member_of_sbi_tracker_protocol():
    assert Tracker is SbiTracker
    members = [m for m in vars(SbiTracker) if not m.startswith("_")]
    assert {"log_dir", "log_metric", "log_metrics", "log_params", "add_figure", "flush"} <= set(
        members
    )
    for member in members:
        ours, theirs = getattr(NullTracker, member), getattr(SbiTracker, member)
        if isinstance(theirs, property):
            assert isinstance(ours, property), member
        else:
            assert list(inspect.signature(ours).parameters) == list(
                inspect.signature(theirs).parameters
            ), member


def _trained_npe(tmp_path, monkeypatch, embedding=None):
    monkeypatch.chdir(tmp_path)
    prior = _prior()
    theta = prior.sample((200,))
    x = theta.repeat(1, 6).reshape(200, 2, 3) + 0.05 * torch.randn(200, 2, 3)
    builder = posterior_nn("mdn", embedding_net=embedding) if embedding else "mdn"
    trainer = NPE(prior, density_estimator=builder, tracker=NullTracker(), show_progress_bars=False)
    data = x if embedding else x.reshape(200, -1)
    with pytest.warns(UserWarning, match="max_num_epochs"):  # sbi: "not yet fully converged"
        trainer.append_simulations(theta, data).train(max_num_epochs=1)
    return trainer


def test_training_summary_has_the_keys_the_workflow_reads(tmp_path, monkeypatch):
    summary = training_summary(_trained_npe(tmp_path, monkeypatch))
    for key in ("epochs_trained", "training_loss", "validation_loss", "epoch_durations_sec"):
        assert len(summary[key]) >= 1, key
    assert summary["epochs_trained"][-1] == len(summary["training_loss"])
    with pytest.raises(TypeError, match="train it first"):
        training_summary(object())


def test_restart_patience_resets_the_count_sbi_stops_on(tmp_path, monkeypatch):
    trainer = _trained_npe(tmp_path, monkeypatch)
    trainer._epochs_since_last_improvement = 7  # the field sbi's _converged reads
    restart_patience(trainer)
    assert trainer._epochs_since_last_improvement == 0
    assert "_epochs_since_last_improvement" in inspect.getsource(type(trainer)._converged)
    with pytest.raises(TypeError, match="train it first"):
        restart_patience(object())


def test_anneal_resumes_the_same_run_at_the_lower_rate_and_keeps_the_best_weights(
    tmp_path, monkeypatch
):
    trainer = _trained_npe(tmp_path, monkeypatch)
    first = training_summary(trainer)["epochs_trained"][-1]
    best = trainer._best_val_loss
    with pytest.warns(UserWarning, match="max_num_epochs"):
        anneal(trainer, 0.1, max_num_epochs=3, learning_rate=1.0)  # ignored when resuming
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(5e-5)  # sbi's 5e-4 x 0.1
    summary = training_summary(trainer)
    assert summary["epochs_trained"][-1] == first + 3 + 1  # its own cap, counted from its start
    assert len(summary["validation_loss"]) == first + 3 + 1  # one run, not a new one
    assert trainer._best_val_loss <= best


@pytest.mark.parametrize("factor", [0.0, 1.0, 2.0, -0.1])
def test_anneal_refuses_a_factor_that_does_not_lower_the_rate(tmp_path, monkeypatch, factor):
    trainer = _trained_npe(tmp_path, monkeypatch)
    with pytest.raises(ValueError, match=r"`factor` must be in \(0, 1\)"):
        anneal(trainer, factor)
    with pytest.raises(ValueError, match="`resume_training` is anneal's"):
        anneal(trainer, 0.5, resume_training=True)
    untrained = NPE(_prior(), tracker=NullTracker(), show_progress_bars=False)
    with pytest.raises(TypeError, match="train it first"):
        anneal(untrained, 0.5)


def test_null_tracker_keeps_sbi_from_writing_logs(tmp_path, monkeypatch):
    _trained_npe(tmp_path, monkeypatch)
    assert not (tmp_path / "sbi-logs").exists()
    assert list(tmp_path.iterdir()) == []


def test_flatten_embedding_serves_as_an_embedding_net(tmp_path, monkeypatch):
    trainer = _trained_npe(tmp_path, monkeypatch, embedding=FlattenEmbedding())
    posterior = trainer.build_posterior()
    x_o = torch.full((1, 2, 3), 0.5)
    assert posterior.sample((7,), x=x_o, show_progress_bars=False).shape == (7, 1)
    assert sum(p.numel() for p in FlattenEmbedding().parameters() if p.requires_grad) == 0


def test_the_training_state_fields_are_those_sbi_keeps_and_the_epoch_hook_fires(
    tmp_path, monkeypatch
):
    from sbi_symmetry._sbi_compat.state import _FIELDS, on_epoch_end, trainer_state

    trainer = _trained_npe(tmp_path, monkeypatch)
    for name in (*_FIELDS, "_theta_roundwise", "_x_roundwise", "_data_round_index", "_device"):
        assert hasattr(trainer, name), name
    assert callable(trainer._initialize_neural_network)
    epochs: list[int] = []
    with on_epoch_end(trainer, lambda: epochs.append(trainer.epoch)):
        trainer.train(max_num_epochs=trainer.epoch + 2, resume_training=True)
    assert epochs == [3, 4, 5] and "_maybe_show_progress" not in vars(trainer)
    assert trainer_state(trainer)["epoch"] == 5
