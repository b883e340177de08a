"""The run's settings, the method registry and the CLI's --methods / --config (no training)."""

from __future__ import annotations

import json

import pytest

from sbi_symmetry import cli
from sbi_symmetry.workflow import pipeline, registry
from sbi_symmetry.workflow.config import PRESETS, RunConfig
from sbi_symmetry.workflow.settings import SUB_SETTINGS

TASKS = ("damped-oscillator", "sine-gaussian", "lorenz96")


@pytest.mark.parametrize("field", sorted(SUB_SETTINGS))
def test_a_misspelt_sub_setting_is_refused_when_the_config_is_built(field):
    with pytest.raises(ValueError, match=rf"`{field}` setting\(s\) \['not_a_setting'\] unknown"):
        RunConfig.from_preset("damped-oscillator", "fast", **{field: {"not_a_setting": 1}})


@pytest.mark.parametrize("field", sorted(SUB_SETTINGS))
def test_sub_settings_take_every_key_their_target_takes(field):
    kind = SUB_SETTINGS[field]
    key = sorted(kind.valid_keys())[0]
    assert kind({key: None})[key] is None
    for supplied in kind.supplied:  # set by the run itself, never by a preset
        with pytest.raises(ValueError, match="unknown"):
            kind({supplied: 1})


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_round_trips_through_json(task, preset, tmp_path):
    cfg = RunConfig.from_preset(task, preset)
    cfg.save(tmp_path / "config.json")
    again = RunConfig.from_json(tmp_path / "config.json")
    assert again == cfg
    assert json.dumps(again.to_dict()) == json.dumps(cfg.to_dict())
    assert isinstance(again.pretrain, SUB_SETTINGS["pretrain"])


def test_unknown_top_level_settings_and_bad_files_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown run setting\(s\) \['simulatons'\]"):
        RunConfig.from_dict({**RunConfig().to_dict(), "simulatons": 3})
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="does not hold a run config"):
        RunConfig.from_json(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="cannot read a run config"):
        RunConfig.from_json(tmp_path / "missing.json")


def test_every_registered_method_has_a_label_a_kind_and_a_trainer():
    assert list(registry.METHODS) == [
        "symmetry_npe",
        "raw_npe",
        "end_to_end_npe",
        "embed_emulate",
        "nre_c",
    ]
    kinds = [spec.kind for spec in registry.METHODS.values()]
    assert kinds == sorted(kinds, key=["npe", "ratio"].index)  # trained grouped by kind
    for name, spec in registry.METHODS.items():
        assert spec.name == name and spec.label and callable(spec.train)
    labels = [spec.label for spec in registry.METHODS.values()]
    assert len(set(labels)) == len(labels)


def _no_run(monkeypatch):
    calls = []
    monkeypatch.setattr(pipeline, "run", lambda config, out, **kw: calls.append((config, out)))
    return calls


@pytest.mark.parametrize("methods", ["magic", "raw_npe,magic", ","])
def test_unknown_methods_exit_2_before_any_work(methods, monkeypatch, capsys):
    calls = _no_run(monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--methods", methods, "--no-progress"])
    assert exit_info.value.code == 2 and not calls
    assert "--methods must be a comma-separated list of" in capsys.readouterr().err


def test_methods_are_passed_to_the_run(monkeypatch, tmp_path):
    calls = _no_run(monkeypatch)
    argv = ["run", "--methods", "symmetry_npe,end_to_end_npe", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 0
    assert calls[0][0].methods == ("symmetry_npe", "end_to_end_npe")


def test_a_saved_config_is_rerun_with_explicit_overrides_only(monkeypatch, tmp_path):
    saved = RunConfig.from_preset("sine-gaussian", "fast", num_simulations=700, seed=5)
    saved.save(tmp_path / "config.json")
    calls = _no_run(monkeypatch)
    assert cli.main(["run", "--config", str(tmp_path / "config.json"), "--seed", "9"]) == 0
    config = calls[0][0]
    assert (config.task, config.num_simulations, config.seed) == ("sine-gaussian", 700, 9)
    assert config.pretrain == saved.pretrain


def test_config_with_task_or_preset_is_refused(monkeypatch, tmp_path, capsys):
    RunConfig().save(tmp_path / "config.json")
    calls = _no_run(monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--config", str(tmp_path / "config.json"), "--task", "lorenz96"])
    assert exit_info.value.code == 2 and not calls
    assert "--config sets the task and preset" in capsys.readouterr().err
