"""The method registry: one entry per method, read by the config, the stages and the CLI."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from _helpers_pretrain import shift_view_symmetry_npe, train_ratio_method

from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.simulation.counting import count_simulator_calls
from sbi_symmetry.tasks import DampedOscillator, Lorenz96
from sbi_symmetry.workflow import registry, stages
from sbi_symmetry.workflow.config import RunConfig
from sbi_symmetry.workflow.registry import METHODS, MethodSpec, label, parse_methods


def test_every_method_has_a_name_a_label_a_kind_and_a_trainer():
    assert list(METHODS) == ["symmetry_npe", "raw_npe", "end_to_end_npe", "embed_emulate", "nre_c"]
    for name, spec in METHODS.items():
        assert spec.name == name
        assert isinstance(spec.label, str) and spec.label and label(name) == spec.label
        assert spec.kind in ("npe", "ratio") and spec.tower_setting in ("encoder", "ee_encoder")
        assert callable(spec.train)
    assert len({spec.label for spec in METHODS.values()}) == len(METHODS)


def test_mcmc_sampling_decides_the_calibration_budget_and_the_kind_the_tower():
    cfg = RunConfig(sbc_pairs=120, sbc_pairs_ratio=40)
    pairs = {name: spec.calibration_pairs(cfg) for name, spec in METHODS.items()}
    assert pairs == {
        "symmetry_npe": 120,
        "raw_npe": 120,
        "end_to_end_npe": 120,
        "embed_emulate": 120,  # its own sampler: as fast as a flow's
        "nre_c": 40,
    }
    assert METHODS["end_to_end_npe"].tower_setting == "encoder"
    assert METHODS["nre_c"].tower_setting == "ee_encoder"


def test_parse_methods_keeps_the_order_and_names_unknown_ones():
    assert parse_methods(" nre_c ,raw_npe") == ("nre_c", "raw_npe")
    with pytest.raises(ValueError, match=r"--methods must be .*'nre_c'\]; got 'npe' \(unknown"):
        parse_methods("npe")
    with pytest.raises(ValueError, match="--methods"):
        parse_methods(" , ")


def test_the_config_accepts_registered_methods_only():
    assert RunConfig.from_preset("lorenz96", methods=["nre_c"]).methods == ("nre_c",)
    with pytest.raises(ValueError, match=r"`methods` must be one or more of .*unknown: \['npe'\]"):
        RunConfig.from_preset("lorenz96", methods=("npe",))
    with pytest.raises(ValueError, match="`methods` must be one or more"):
        RunConfig.from_preset("lorenz96", methods=())


def _fake(name: str, calls: list[str] | None = None):
    def train(ctx: registry.TrainingContext) -> SimpleNamespace:
        assert isinstance(ctx.theta, torch.Tensor) and ctx.config.methods
        if calls is not None:
            calls.append(name)
        ctx.task.simulate(torch.full((3, 2), 0.5))  # three simulated views, say
        return SimpleNamespace(name=f"trained {name}", extra={})

    return train


def test_a_new_method_is_one_entry(monkeypatch):
    spec = MethodSpec("toy_npe", "toy NPE", "npe", _fake("toy_npe"))
    monkeypatch.setitem(METHODS, "toy_npe", spec)
    cfg = RunConfig.from_preset("damped-oscillator", methods=parse_methods("toy_npe"))
    assert cfg.methods == ("toy_npe",) and label("toy_npe") == "toy NPE"
    task = count_simulator_calls(DampedOscillator())
    sims = stages.Simulations(*[torch.zeros(1)] * 7)
    ctx = stages.training_context(task, sims, cfg, show_progress=False)
    trained = stages.train_methods(ctx, "npe")
    assert list(trained) == ["toy_npe"] and trained["toy_npe"].name == "trained toy_npe"
    calls = trained["toy_npe"].extra["simulator_calls"]
    assert calls == {"training_set": 1, "views": 3, "total": 4}


def test_selected_methods_train_in_registry_order_with_the_towers_built_in_place(monkeypatch):
    calls: list[str] = []
    for name in METHODS:
        fake = _fake(name, calls)
        monkeypatch.setitem(METHODS, name, dataclasses.replace(METHODS[name], train=fake))
    methods = ("nre_c", "raw_npe", "symmetry_npe")
    cfg = RunConfig.from_preset("damped-oscillator", methods=methods, workers=1)  # fakes stay here
    sims = stages.Simulations(*[torch.zeros(1)] * 7)
    torch.manual_seed(0)
    ctx = stages.training_context(DampedOscillator(), sims, cfg, show_progress=False)
    assert list(stages.train_methods(ctx, "npe")) == ["symmetry_npe", "raw_npe"]
    assert "ratio" not in ctx.towers  # the ratio tower is drawn when its turn comes
    assert list(stages.train_methods(ctx, "ratio")) == ["nre_c"]
    assert calls == ["symmetry_npe", "raw_npe", "nre_c"]
    assert ctx.towers["ratio"].output_dim == cfg.ee_encoder["output_dim"]
    # the same seed gives the same initial towers, whatever methods are selected
    torch.manual_seed(0)
    alone = RunConfig.from_preset("damped-oscillator", methods=("raw_npe",))
    other = stages.training_context(DampedOscillator(), sims, alone, show_progress=False)
    for a, b in zip(ctx.towers["npe"].parameters(), other.towers["npe"].parameters(), strict=True):
        assert torch.equal(a, b)


def test_shift_views_pretrain_symmetry_npe_without_a_simulator_call():
    from sbi_symmetry.simulation.counting import simulator_calls

    task = DampedOscillator()
    theta, x = task.sample_joint(400, generator=torch.Generator().manual_seed(0))
    task = count_simulator_calls(task)
    trained = shift_view_symmetry_npe(task, theta, x)
    assert simulator_calls(task) == 0 and trained.pretrain_seconds > 0
    assert trained.extra["pretrain_views"] == "shift"
    with pytest.raises(ValueError, match="`pretrain_views` must be one of"):
        RunConfig.from_preset("damped-oscillator", pretrain_views="bank").validate()


@pytest.mark.parametrize(
    ("task", "expected"), [(DampedOscillator(), "shift"), (Lorenz96(), "resimulated")]
)
def test_auto_views_are_shifts_where_the_task_allows_them(task, expected):
    from sbi_symmetry.simulation.counting import simulator_calls
    from sbi_symmetry.workflow import methods as M

    theta, x = task.sample_joint(200, generator=torch.Generator().manual_seed(0))
    task = count_simulator_calls(task)
    encoder = ConvEncoder1D.for_task(task, output_dim=3, channels=2, num_blocks=1)
    trained = M.symmetry_npe(
        task,
        theta,
        x,
        encoder,
        pretrain_simulations=64,
        pretrain_kwargs={"max_epochs": 1, "batch_size": 32, "show_progress_bar": False},
        show_progress_bars=False,
        max_num_epochs=1,
    )
    assert trained.extra["pretrain_views"] == expected
    # shifts of x cost nothing; re-simulated views are one bank: two calls per draw, once
    assert simulator_calls(task) == (0 if expected == "shift" else 2 * 64)


def test_shift_views_on_a_task_without_a_time_shift_fail_before_any_work():
    with pytest.raises(ValueError, match=r"pretrain_views='shift'.*lorenz96 is not one"):
        RunConfig.from_preset("lorenz96", pretrain_views="shift")
    cfg = RunConfig.from_preset("lorenz96", pretrain_views="shift", methods=("raw_npe",))
    assert cfg.pretrain_views == "shift"  # no symmetry NPE: nothing uses the views


def test_view_fraction_gives_every_method_the_same_total(monkeypatch):
    """Symmetry NPE splits ``num_simulations`` (views + first training rows); the others use all."""
    from sbi_symmetry.workflow import methods as M

    seen: dict[str, tuple[int, int]] = {}

    def fake_symmetry_npe(task, theta, x, encoder, *, pretrain_simulations, **_):
        seen["symmetry_npe"] = (len(theta), pretrain_simulations)
        task.simulate(torch.full((2 * pretrain_simulations, 4), 8.0))  # one bank of view pairs
        return SimpleNamespace(extra={})

    monkeypatch.setattr(M, "symmetry_npe", fake_symmetry_npe)
    raw = dataclasses.replace(METHODS["raw_npe"], train=lambda ctx: SimpleNamespace(extra={}))
    monkeypatch.setitem(METHODS, "raw_npe", raw)
    cfg = RunConfig.from_preset(
        "lorenz96",
        num_simulations=1000,
        view_fraction=0.25,
        pretrain={"batch_size": 64},  # 125 view pairs: 112 to train on
        methods=("symmetry_npe", "raw_npe"),
        workers=1,  # the fakes live in this process
    )
    task = count_simulator_calls(Lorenz96())
    theta = torch.arange(1000.0)[:, None].expand(-1, 4)
    sims = stages.Simulations(theta, torch.zeros(1000, 1, 8), *[torch.zeros(1)] * 5)
    trained = stages.train_methods(stages.training_context(task, sims, cfg, False), "npe")
    assert seen["symmetry_npe"] == (750, 125)  # 250 calls: 125 view pairs
    calls = trained["symmetry_npe"].extra["simulator_calls"]
    assert calls == {"training_set": 750, "views": 250, "total": 1000}
    assert trained["raw_npe"].extra["simulator_calls"]["training_set"] == 1000


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"view_fraction": 0.0}, r"`view_fraction` must be None or a number in \(0, 1\)"),
        ({"view_fraction": 1.0}, r"`view_fraction` must be None or a number in \(0, 1\)"),
        ({"view_fraction": float("nan")}, "`view_fraction` must be"),
        ({"view_fraction": True}, "`view_fraction` must be"),
        ({"view_fraction": "0.2"}, "`view_fraction` must be"),
        ({"view_fraction": 0.05, "num_simulations": 500}, "`num_simulations` with `view_fraction`"),
        ({"view_fraction": 0.2, "pretrain": {"fresh_views": True}}, "fresh views"),
        ({"view_fraction": 0.25, "num_simulations": 1000}, r"125 view pairs .*batch_size=256"),
        (
            {"view_fraction": 0.25, "num_simulations": 1000, "methods": ("embed_emulate",)}
            | {"ee": {"pretrain": {"batch_size": 200}}},
            r"125 view pairs .*batch_size=200",
        ),
    ],
)
def test_view_fraction_is_refused_where_it_cannot_split(changes, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_preset("lorenz96", **changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"pretrain_views": "resimulated", "pretrain_simulations": 100},
            "pretrain_simulations=100",
        ),
        ({"num_simulations": 500, "pretrain": {"batch_size": 512}}, "num_simulations=500 stored"),
        (
            {"methods": ("embed_emulate",), "num_simulations": 600}
            | {"ee": {"pretrain": {"batch_size": 600}}},
            "batch_size=600",
        ),
    ],
)
def test_a_pretraining_batch_larger_than_its_views_is_refused_when_built(changes, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_preset("damped-oscillator", **changes)
    few = {"pretrain_views": "resimulated", "pretrain_simulations": 100, "methods": ("raw_npe",)}
    assert RunConfig.from_preset("damped-oscillator", **few)  # nothing pretrains


def test_view_fraction_needs_re_simulated_views():
    with pytest.raises(ValueError, match=r"damped-oscillator's views are shifts .*no simulator"):
        RunConfig.from_preset("damped-oscillator", view_fraction=0.25)
    chosen = RunConfig.from_preset(
        "damped-oscillator", view_fraction=0.25, pretrain_views="resimulated"
    )
    assert chosen.view_fraction == 0.25
    # no symmetry NPE: nothing spends views, nothing to refuse
    assert RunConfig.from_preset("sine-gaussian", view_fraction=0.25, methods=("raw_npe",))
    few = {"num_simulations": 1000, "view_fraction": 0.25, "methods": ("raw_npe",)}
    assert RunConfig.from_preset("lorenz96", **few)  # 125 pairs, but nothing pretrains


@pytest.mark.parametrize(
    ("task", "expected"), [(DampedOscillator(), "shift"), (Lorenz96(), "resimulated")]
)
def test_embed_emulate_can_pretrain_its_data_tower_first(task, expected):
    from sbi_symmetry.symmetry.embedding import SymmetryEmbedding

    cfg = RunConfig.from_preset(
        task.name,
        "fast",
        methods=("embed_emulate",),
        pretrain_simulations=48,
        pretrain={"max_epochs": 1, "batch_size": 32},
        ee={"pretrain": {"stop_after_epochs": 1, "supervised_weight": 1.0}},
        ee_train={"max_num_epochs": 1, "training_batch_size": 50},
        workers=1,
    )
    trained, made, _ = train_ratio_method(task, cfg)
    tower = trained.estimator.encoder
    assert isinstance(tower, SymmetryEmbedding) and tower.freeze == "none"
    assert trained.pretrain_seconds > 0 and trained.extra["pretrain_views"] == expected
    assert tower.history["val_supervised"][0] > 0  # the hybrid term, asked for in `ee.pretrain`
    calls = 0 if expected == "shift" else 2 * 48  # one bank of re-simulated view pairs
    assert made == calls
    assert trained.extra["simulator_calls"] == {
        "training_set": 200,
        "views": calls,
        "total": 200 + calls,
    }


@pytest.mark.parametrize(("task", "pretrains"), [(DampedOscillator(), True), (Lorenz96(), False)])
def test_embed_emulate_pretrains_on_auto_only_where_views_are_free(task, pretrains):
    """``ee={"pretrain": "auto"}`` (the fast presets): shift views yes, re-simulated ones no.

    The preset's ``pretrain`` has the hybrid loss (symmetry NPE's); E&E's tower pretrains
    without its supervised term.
    """
    cfg = RunConfig.from_preset(task.name, "fast", methods=("embed_emulate",), workers=1)
    assert cfg.ee["pretrain"] == "auto" and cfg.pretrain["supervised_weight"] > 0
    cfg = dataclasses.replace(
        cfg,
        pretrain={**cfg.pretrain, "max_epochs": 1, "batch_size": 32},
        ee_train={"max_num_epochs": 1, "training_batch_size": 50},
    )
    trained, made, _ = train_ratio_method(task, cfg)
    assert made == 0  # never a call for views under "auto"
    assert (trained.pretrain_seconds > 0) is pretrains
    assert trained.extra.get("pretrain_views") == ("shift" if pretrains else None)
    if pretrains:
        assert set(trained.estimator.encoder.history["val_supervised"]) == {0.0}


@pytest.mark.parametrize(
    ("pretrain", "message"),
    [
        ("yes", r"`ee.pretrain` must be True, False, 'auto' .* or a dict"),
        ({"max_epoch": 2}, r"`pretrain` setting\(s\) \['max_epoch'\] unknown"),
    ],
)
def test_a_bad_embed_emulate_pretrain_choice_is_named(pretrain, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_preset("damped-oscillator", ee={"pretrain": pretrain})


def test_view_fraction_counts_embed_emulate_pretraining():
    with pytest.raises(ValueError, match=r"views are shifts .*no simulator"):
        RunConfig.from_preset(
            "damped-oscillator",
            view_fraction=0.25,
            methods=("embed_emulate",),
            ee={"pretrain": True},
        )
