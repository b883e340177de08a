"""``ee={"members": K}``: K Embed-and-Emulate estimators on the same simulations, one product."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from _helpers_pretrain import train_ratio_method

from sbi_symmetry import cli
from sbi_symmetry.emulate import EmbedEmulateRatioEstimator
from sbi_symmetry.tasks import DampedOscillator, Lorenz96
from sbi_symmetry.workflow.config import RunConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(members: int):
    """The fast preset's Embed and Emulate (shift-view pretraining), shrunk, with ``members``."""
    task = DampedOscillator()
    cfg = RunConfig.from_preset(task.name, "fast", methods=("embed_emulate",), workers=1)
    cfg = dataclasses.replace(
        cfg,
        ee={**cfg.ee, "members": members},
        pretrain={**cfg.pretrain, "max_epochs": 1, "batch_size": 32},
        ee_train={"max_num_epochs": 2, "training_batch_size": 50},
    )
    cfg.validate()
    trained, calls, x = train_ratio_method(task, cfg)
    return trained, calls, x[:3]


def test_members_train_one_after_another_and_their_costs_add_up():
    one, one_calls, _ = _train(1)
    two, two_calls, x_o = _train(2)
    assert one_calls == two_calls == 0  # shift views: pretraining costs no simulator call
    assert "member_epochs" not in one.extra and "members" not in one.extra
    assert two.extra["members"] == 2 and two.summary()["members"] == 2
    assert len(two.extra["member_epochs"]) == 2 and sum(two.extra["member_epochs"]) == two.epochs
    assert sum(two.phase_epochs) == two.epochs == len(two.history["train"])
    assert two.macs_per_1000 == 2 * one.macs_per_1000
    assert two.trainable_parameters == 2 * one.trainable_parameters
    assert two.extra["pretrain_views"] == "shift" and two.pretrain_seconds > 0
    assert two.extra["simulator_calls"] == one.extra["simulator_calls"]
    product = two.estimator
    assert isinstance(product, EmbedEmulateRatioEstimator) and product.similarity == "scaled"
    members = [part.member for part in product.embedding_net_x.parts]
    theta = DampedOscillator().prior.sample((4,))
    ratios = [m.unnormalized_log_ratio(theta, x_o[:1].expand(4, -1)) for m in members]
    assert not torch.allclose(ratios[0], ratios[1])  # two trainings, not one copied
    both = product.unnormalized_log_ratio(theta, x_o[:1].expand(4, -1))
    assert torch.allclose(both, (ratios[0] + ratios[1]) / 2, atol=1e-4)
    samples = two.posterior.sample((50,), x=x_o[:1], show_progress_bars=False)
    assert samples.shape == (50, 2) and torch.isfinite(samples).all()


def test_each_member_pretrains_on_views_of_its_own_and_every_view_is_counted():
    """Re-simulated views (Lorenz-96): two members draw two banks, both in the total."""
    task = Lorenz96()
    cfg = RunConfig.from_preset(
        task.name,
        "fast",
        methods=("embed_emulate",),
        pretrain_simulations=48,
        pretrain={"max_epochs": 1, "batch_size": 32},
        ee={"pretrain": {"stop_after_epochs": 1}, "members": 2},
        ee_train={"max_num_epochs": 1, "training_batch_size": 50},
        workers=1,
    )
    trained, calls, _ = train_ratio_method(task, cfg)
    views = 2 * (2 * 48)  # two members, each a bank of 48 re-simulated view pairs
    assert calls == views
    assert trained.extra["simulator_calls"] == {
        "training_set": 200,
        "views": views,
        "total": 200 + views,
    }


@pytest.mark.parametrize("members", [0, -1, 1.5, True, "2"])
def test_a_bad_member_count_is_named(members):
    with pytest.raises(ValueError, match=r"`ee\.members` must be an integer >= 1"):
        RunConfig.from_preset("damped-oscillator", ee={"members": members})


def test_the_method_function_refuses_a_bad_member_count_before_training():
    from torch import nn

    from sbi_symmetry.workflow.methods import embed_emulate

    task = DampedOscillator()
    theta, x = task.sample_joint(20, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"`members` must be an integer >= 1; got 0"):
        embed_emulate(task, theta, x, nn.Linear(200, 4), members=0)


def test_the_cli_sets_members_and_keeps_the_presets_other_settings():
    parser = cli.build_parser()
    cfg = cli.run_config(parser.parse_args(["run", "--ee-members", "3"]))
    preset = RunConfig.from_preset("damped-oscillator", "fast")
    assert cfg.ee == {**preset.ee, "members": 3}
    assert dataclasses.replace(cfg, ee=preset.ee) == preset
    with pytest.raises(ValueError, match=r"`ee\.members`"):
        cli.run_config(parser.parse_args(["run", "--ee-members", "0"]))
