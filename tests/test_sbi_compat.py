"""Each shim of ``_sbi_compat`` against the installed sbi: these fail first when sbi changes."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from sbi.inference import NPE
from sbi.inference.trainers.nre.nre_base import RatioEstimatorTrainer
from sbi.neural_nets import posterior_nn
from sbi.utils import BoxUniform

from sbi_symmetry._sbi_compat import (
    FlattenEmbedding,
    LossArgsNRE,
    LossArgsNRE_C,
    NullTracker,
    RatioTrainerHooks,
    training_summary,
)

# The private hooks RatioTrainerHooks overrides, with the parameters it relies on.
HOOKS = {
    "_initialize_neural_network": ["retrain_from_scratch", "start_idx"],
    "_loss": ["theta", "x", "num_atoms"],
    "_train_epoch": ["train_loader", "clip_max_norm", "loss_args"],
    "_validate_epoch": ["val_loader", "loss_args"],
    "_summarize": ["round_"],
    "_report_convergence_at_end": ["epoch", "max_num_epochs"],
    "_maybe_show_progress": ["show", "epoch"],
}


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_each_overridden_private_hook_still_exists_with_its_parameters(hook):
    assert hook in vars(RatioTrainerHooks), f"{hook} is not overridden in one place any more"
    params = list(inspect.signature(getattr(RatioEstimatorTrainer, hook)).parameters)
    params = [p for p in params if p not in ("self", "args", "kwargs")]
    assert params[: len(HOOKS[hook])] == HOOKS[hook] or hook == "_loss", params
    if hook == "_loss":  # NRE's abstract loss: (theta, x, num_atoms)
        assert params[:3] == ["theta", "x", "num_atoms"], params


def test_train_still_takes_the_loss_arguments_we_pass():
    assert "loss_kwargs" in inspect.signature(RatioEstimatorTrainer.train).parameters
    assert [f.name for f in dataclasses.fields(LossArgsNRE)] == ["num_atoms"]
    assert "num_atoms" in {f.name for f in dataclasses.fields(LossArgsNRE_C)}


def test_the_trainer_keeps_its_network_where_the_shim_reads_it():
    prior = BoxUniform(torch.zeros(2), torch.ones(2))
    trainer = RatioTrainerHooks.__new__(RatioTrainerHooks)
    RatioEstimatorTrainer.__init__(trainer, prior=prior, classifier="mlp", tracker=NullTracker())
    assert hasattr(trainer, "_neural_net") and trainer.neural_net is None


def _trained_npe(tmp_path, monkeypatch, embedding=None):
    monkeypatch.chdir(tmp_path)
    prior = BoxUniform(torch.zeros(1), torch.ones(1))
    theta = prior.sample((200,))
    x = theta.repeat(1, 6).reshape(200, 2, 3) + 0.05 * torch.randn(200, 2, 3)
    builder = posterior_nn("mdn", embedding_net=embedding) if embedding else "mdn"
    trainer = NPE(prior, density_estimator=builder, tracker=NullTracker(), show_progress_bars=False)
    data = x if embedding else x.reshape(200, -1)
    trainer.append_simulations(theta, data).train(max_num_epochs=1)
    return trainer


def test_training_summary_has_the_keys_the_workflow_reads(tmp_path, monkeypatch):
    summary = training_summary(_trained_npe(tmp_path, monkeypatch))
    for key in ("epochs_trained", "training_loss", "validation_loss", "epoch_durations_sec"):
        assert len(summary[key]) >= 1, key
    with pytest.raises(TypeError, match="train it first"):
        training_summary(object())


def test_null_tracker_keeps_sbi_from_writing_logs(tmp_path, monkeypatch):
    _trained_npe(tmp_path, monkeypatch)
    assert not (tmp_path / "sbi-logs").exists()
    assert list(tmp_path.iterdir()) == []


def test_flatten_embedding_serves_as_an_embedding_net(tmp_path, monkeypatch):
    trainer = _trained_npe(tmp_path, monkeypatch, embedding=FlattenEmbedding())
    posterior = trainer.build_posterior()
    x_o = torch.full((1, 2, 3), 0.5)
    assert posterior.sample((7,), x=x_o, show_progress_bars=False).shape == (7, 1)
