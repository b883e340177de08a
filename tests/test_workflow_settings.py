"""Typed run settings: every sub-setting is checked when the config is built; presets round-trip."""

from __future__ import annotations

import json

import pytest

from sbi_symmetry.workflow.config import PRESETS, RunConfig
from sbi_symmetry.workflow.settings import SUB_SETTINGS

TASKS = ("damped-oscillator", "sine-gaussian", "lorenz96")

# One key each sub-setting takes and one it does not (a neighbour's key, the classic slip).
KEYS = {
    "encoder": ("channels", "hidden_features"),
    "ee_encoder": ("kernel_size", "max_epochs"),
    "expander": ("hidden_dims", "channels"),
    "flow": ("hidden_features", "output_dim"),
    "pretrain": ("max_epochs", "max_num_epochs"),
    "npe_train": ("max_num_epochs", "max_epochs"),
    "ee_train": ("training_batch_size", "batch_size"),
    "ee": ("temperature", "learning_rate"),
}


def test_every_sub_setting_is_covered():
    assert sorted(KEYS) == sorted(SUB_SETTINGS)


@pytest.mark.parametrize("field", sorted(KEYS))
def test_a_typo_is_refused_by_the_constructor_naming_the_key_and_the_valid_ones(field):
    good, bad = KEYS[field]
    valid = sorted(SUB_SETTINGS[field].valid_keys())
    with pytest.raises(ValueError) as error:
        RunConfig(**{field: {good: 3, bad: 3}})
    message = str(error.value)
    assert f"`{field}` setting(s) ['{bad}'] unknown" in message
    assert f"valid: {valid}" in message
    assert getattr(RunConfig(**{field: {good: 3}}), field) == {good: 3}


@pytest.mark.parametrize("field", sorted(KEYS))
def test_a_typo_is_refused_by_from_preset_and_from_dict(field):
    bad = KEYS[field][1]
    with pytest.raises(ValueError, match=rf"`{field}` setting\(s\) \['{bad}'\] unknown"):
        RunConfig.from_preset("sine-gaussian", "paper", **{field: {bad: 1}})
    saved = {**RunConfig().to_dict(), field: {bad: 1}}
    with pytest.raises(ValueError, match=rf"\['{bad}'\] unknown"):
        RunConfig.from_dict(json.loads(json.dumps(saved)))


def test_ratio_training_settings_must_suit_nre_c_too_when_it_runs():
    """``ee_train`` goes to ``EmbedEmulate.train`` and, with ``nre_c`` selected, ``NRE_C.train``."""
    only_ee = {"refine_emulator": False}
    assert RunConfig.from_preset("damped-oscillator", ee_train=only_ee)  # no nre_c: fine
    with pytest.raises(ValueError, match=r"\['refine_emulator'\] go to NRE_C.train too"):
        RunConfig.from_preset("damped-oscillator", "paper", ee_train=only_ee)
    both = {"max_num_epochs": 5, "anneal": 0.1}
    assert RunConfig.from_preset("damped-oscillator", "paper", ee_train=both).ee_train == both


def test_settings_the_run_supplies_itself_are_refused():
    with pytest.raises(ValueError, match=r"\['input_length'\] unknown"):
        RunConfig(encoder={"input_length": 200})
    with pytest.raises(ValueError, match=r"\['seed'\] unknown"):
        RunConfig(pretrain={"seed": 1})


def test_unknown_top_level_settings_are_named():
    with pytest.raises(ValueError, match=r"unknown run setting\(s\) \['simulations'\]"):
        RunConfig.from_preset("damped-oscillator", "fast", simulations=600)
    with pytest.raises(ValueError, match="`sbc_pairs` must be an integer >= 1"):
        RunConfig.from_preset("damped-oscillator", "fast", sbc_pairs=0)
    with pytest.raises(ValueError, match="`task` must be one of"):
        RunConfig.from_dict({**RunConfig().to_dict(), "task": "pendulum"})


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("preset", PRESETS)
def test_to_dict_from_dict_round_trips_every_preset(task, preset, tmp_path):
    cfg = RunConfig.from_preset(task, preset)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    text = json.dumps(cfg.to_dict())  # JSON-serialisable; tuples come back as tuples
    again = RunConfig.from_dict(json.loads(text))
    assert again == cfg and json.dumps(again.to_dict()) == text
    for field, kind in SUB_SETTINGS.items():
        assert type(getattr(again, field)) is kind
    cfg.save(tmp_path / "config.json")
    assert RunConfig.from_json(tmp_path / "config.json") == cfg


def test_the_default_fast_preset_keeps_its_values():
    cfg = RunConfig.from_preset("damped-oscillator", "fast")
    conv = {"downsample": 8, "kernel_size": 5, "hidden_dim": 32}
    dilated = {"num_blocks": 2, "dilation": (1, 2)}
    assert cfg.encoder == {"output_dim": 8, "channels": 16, **dilated, **conv}
    ee_tower = {"num_blocks": 3, "dilation": (1, 2, 4)}  # a third block dilated 4
    assert cfg.ee_encoder == {"output_dim": 16, "channels": 16, **ee_tower, **conv}
    assert cfg.expander == {"output_dim": 32, "hidden_dims": (64, 64)}
    assert cfg.flow == {"hidden_features": 50}
    assert cfg.frozen_epochs == "auto"  # 20 epochs at its 10^4 simulations
    assert cfg.pretrain == {
        "max_epochs": 40,
        "batch_size": 256,
        "learning_rate": 3e-3,
        "stop_after_epochs": 40,
        "freeze": "none",
        "supervised_weight": 10.0,  # the hybrid loss (symmetry NPE; E&E's tower: plain VICReg)
    }
    assert cfg.npe_train == {
        "max_num_epochs": 150,
        "training_batch_size": 200,
        "learning_rate": 1e-3,
        "anneal": 0.1,
    }
    assert cfg.ee_train == {"max_num_epochs": 600, "training_batch_size": 200}
    assert cfg.ee == {"emulator_kwargs": {"hidden_dim": 128, "num_blocks": 3}, "pretrain": "auto"}
    assert (cfg.num_simulations, cfg.pretrain_simulations) == (10_000, 30_000)
    assert cfg.methods == ("symmetry_npe", "raw_npe", "end_to_end_npe", "embed_emulate")
    assert cfg.pretrain_views == "auto"


def test_the_lorenz96_fast_preset_trains_on_ten_thousand_simulations():
    cfg = RunConfig.from_preset("lorenz96", "fast")
    # 10^4 training simulations (at 5,000 every NPE was too narrow), 5,000 re-simulated view pairs
    assert (cfg.num_simulations, cfg.pretrain_simulations) == (10_000, 5_000)
    assert cfg.encoder["padding_mode"] == "circular" and cfg.pretrain_views == "auto"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_observations": 1}, "`num_observations` must be an integer >= 2"),
        ({"posterior_samples": 1}, "`posterior_samples` must be an integer >= 10"),
    ],
)
def test_too_few_observations_or_samples_for_the_metrics_are_refused(changes, message):
    """One observation has no standard error (NaN in metrics.json); C2ST needs 5 folds."""
    with pytest.raises(ValueError, match=message):
        RunConfig.from_preset("damped-oscillator", **changes)
