"""Tests of ``benchmarks/convergence.py``: resuming, kept settings, pages and joined stores."""

from __future__ import annotations

import dataclasses
import json

import pytest
from _helpers_benchmarks import load_script

from sbi_symmetry.workflow.report import RANDOM_STREAMS


def test_convergence_keeps_finished_budgets_and_writes_table_and_plot(tmp_path, monkeypatch):
    """An interrupted convergence run resumes: budgets already in the JSON are not run again."""
    script = load_script("convergence")
    ran: list[int] = []

    def fake_run(config):
        budget, max_epochs = config.num_simulations, config.npe_train["max_num_epochs"]
        ran.append(budget)
        entry = {
            "c2st": {"mean": 0.9 - budget / 1e6, "sem": 0.01, "per_observation": [0.8, 0.7]},
            "std_over_reference": [[1.5, 1.2]],
            "costs": {
                "simulator_calls": {"total": budget, "training_set": budget, "views": 0},
                "epochs": max_epochs,
                "train_seconds": 1.0,
            },
        }
        metrics = {"methods": dict.fromkeys(config.methods, entry), "config": config.to_dict()}
        metrics["random_streams"] = RANDOM_STREAMS
        return {"metrics": json.loads(json.dumps(metrics)), "seconds": 1.0}

    monkeypatch.setattr(script, "run_budget", fake_run)
    out = tmp_path / "conv"
    script.main(["--budgets", "1000", "--out", str(out)])
    page = out.with_suffix(".md")
    page.write_text(page.read_text() + "\n## Reading\n\nWritten by hand.\n")
    script.main(["--budgets", "1000", "10000", "--out", str(out)])
    assert ran == [1000, 10000]
    assert set(json.loads(out.with_suffix(".json").read_text())["budgets"]) == {"1000", "10000"}
    table = out.with_suffix(".md").read_text()
    assert table.endswith("## Reading\n\nWritten by hand.\n")  # kept
    assert "--budgets 1000 10000 --out" in table  # the command remakes every budget shown
    assert "| 10,000 | raw_npe | 0.890 ± 0.010 |" in table and "--max-epochs 7" not in table
    assert "| 1,000 | +0.000 ± 0.000 (2/2) | +0.000 ± 0.000 (2/2) |" in table  # paired
    assert out.with_suffix(".png").stat().st_size > 0
    with pytest.raises(SystemExit, match="max_epochs"):  # other settings: not mixed in
        script.main(["--budgets", "1000", "--out", str(out), "--max-epochs", "7"])
    preset = script.budget_config  # a kept budget whose preset changed since: refused

    def changed(*args):
        return dataclasses.replace(preset(*args), frozen_epochs=5)

    monkeypatch.setattr(script, "budget_config", changed)
    with pytest.raises(SystemExit, match="frozen_epochs"):
        script.main(["--budgets", "1000", "--out", str(out)])


def test_convergence_of_other_methods_has_its_own_page_and_no_paired_rows(tmp_path, monkeypatch):
    script = load_script("convergence")
    seen: list[tuple[str, ...]] = []

    def fake_run(config):
        seen.append(config.methods)
        entry = {
            "c2st": {"mean": 0.7, "sem": 0.01, "per_observation": [0.7, 0.7]},
            "std_over_reference": [[1.5, 1.2]],
            "costs": {
                "simulator_calls": {"total": 1000, "training_set": 1000, "views": 0},
                "epochs": 5,
                "train_seconds": 1.0,
            },
        }
        metrics = {"methods": {"embed_emulate": entry}, "config": config.to_dict()}
        return {"metrics": json.loads(json.dumps(metrics)), "seconds": 1.0}

    monkeypatch.setattr(script, "run_budget", fake_run)
    monkeypatch.chdir(tmp_path)
    script.main(["--budgets", "1000", "--settings", "current", "--methods", "embed_emulate"])
    assert seen == [("embed_emulate",)]
    page = tmp_path / "benchmarks/results/convergence_damped-oscillator_current_embed_emulate.md"
    text = page.read_text()
    assert "--settings current --methods embed_emulate" in text
    assert "| 1,000 | embed_emulate | 0.700 ± 0.010 |" in text
    assert "minus end-to-end" not in text  # no paired differences without symmetry NPE
    with pytest.raises(SystemExit, match="methods"):  # the same store, other methods: refused
        script.main(
            ["--budgets", "1000", "--settings", "current", "--out", str(page.with_suffix(""))]
        )


def test_convergence_joins_a_method_run_alone_into_the_page_of_the_others(tmp_path, monkeypatch):
    """``--with``: rows, plot and paired differences of another store's runs of the same data."""
    script = load_script("convergence")

    def fake_run(config):
        c2st = {"symmetry_npe": [0.6, 0.7], "end_to_end_npe": [0.7, 0.6], "raw_npe": [0.9, 0.9]}
        methods = {
            method: {
                "c2st": {"mean": 0.65, "sem": 0.05, "per_observation": c2st[method]},
                "std_over_reference": [[1.5, 1.2]],
                "costs": {
                    "simulator_calls": {"total": 1000, "training_set": 1000, "views": 0},
                    "epochs": 5,
                    "train_seconds": 1.0,
                },
            }
            for method in config.methods
        }
        observations = {"theta": [[float(config.seed)]]}
        metrics = {"methods": methods, "config": config.to_dict(), "observations": observations}
        metrics["random_streams"] = RANDOM_STREAMS
        return {"metrics": json.loads(json.dumps(metrics)), "seconds": 1.0}

    monkeypatch.setattr(script, "run_budget", fake_run)
    ours, alone = tmp_path / "ours", tmp_path / "alone"
    common = ["--settings", "current", "--budgets", "1000"]
    script.main([*common, "--methods", "end_to_end_npe", "--out", str(alone)])
    script.main([*common, "10000", "--methods", "symmetry_npe", "--out", str(ours)])
    join_with = [*common, "--methods", "symmetry_npe", "--out", str(ours), "--with"]
    script.main([*join_with, f"{alone}.json"])
    text = ours.with_suffix(".md").read_text()
    assert "| 1,000 | end_to_end_npe | 0.650 ± 0.050 |" in text  # its row beside ours
    assert "| 1,000 | +0.000 ± 0.100 (1/2) | – |" in text  # paired: no raw NPE run at 1,000
    assert "| 10,000 | +" not in text  # nothing to pair with at 10,000
    assert f"--with {alone}.json" in text  # the command remakes the joined page
    saved = json.loads(alone.with_suffix(".json").read_text())
    saved["budgets"]["1000"]["metrics"]["observations"]["theta"] = [[9.0]]
    (tmp_path / "other_data.json").write_text(json.dumps(saved))
    with pytest.raises(SystemExit, match="other data"):
        script.main([*join_with, str(tmp_path / "other_data.json")])
    for other, match in (("symmetry_npe", "repeats"), ("raw_npe", "made with")):
        extra = ["--anneal", "0.1"] if other == "raw_npe" else []
        store = tmp_path / other
        script.main([*common, *extra, "--methods", other, "--out", str(store)])
        with pytest.raises(SystemExit, match=match):
            script.main([*join_with, f"{store}.json"])


def test_config_changes_compares_a_stored_run_with_what_would_run_now():
    script = load_script("convergence")
    cfg = script.budget_config("damped-oscillator", 10, 1000, 400, "current")
    stored = json.loads(json.dumps(cfg.to_dict()))
    assert script.config_changes(stored, cfg) == ({}, [])
    older = {k: v for k, v in stored.items() if k not in ("frozen_epochs", "ee")}
    older["pretrain"] = {k: v for k, v in stored["pretrain"].items() if k != "freeze"}
    changes, unnamed = script.config_changes(older, cfg)
    assert changes == {  # not named then: their defaults ran (no E&E pretraining)
        "frozen_epochs": (0, "auto"),
        "ee": ({"pretrain": False}, {"pretrain": "auto"}),
    }
    assert unnamed == ["pretrain.freeze", "ee.emulator_kwargs"]  # cannot be checked: said
    same_ee = dataclasses.replace(cfg, frozen_epochs=0, ee={})  # "ee" not named: its default
    assert script.config_changes(older, same_ee)[0] == {}
    other = {**stored, "pretrain": {**stored["pretrain"], "learning_rate": 1.0}}
    assert list(script.config_changes(other, cfg)[0]) == ["pretrain"]
    # a run stored before npe_train had "anneal" ran without it: a change, not an unknown
    before_anneal = {**stored, "npe_train": {k: v for k, v in stored["npe_train"].items()}}
    del before_anneal["npe_train"]["anneal"]
    changes, unnamed = script.config_changes(before_anneal, cfg)
    assert list(changes) == ["npe_train"] and "npe_train.anneal" not in unnamed
    assert changes["npe_train"][0]["anneal"] == 0.0 and changes["npe_train"][1]["anneal"] == 0.1


@pytest.mark.parametrize(("num_simulations", "same"), [(1_000, True), (100_000, False)])
def test_a_stored_frozen_start_matches_auto_where_auto_trains_as_many_epochs(num_simulations, same):
    script = load_script("convergence")
    cfg = script.budget_config("damped-oscillator", 10, num_simulations, 400, "current")
    assert cfg.frozen_epochs == "auto"
    stored = {**json.loads(json.dumps(cfg.to_dict())), "frozen_epochs": 20}
    changes = script.config_changes(stored, cfg)[0]
    assert changes == ({} if same else {"frozen_epochs": (20, "auto")})  # 20, then 10 epochs
    assert script.config_changes({**stored, "frozen_epochs": 10}, cfg)[0] == (
        {"frozen_epochs": (10, "auto")} if same else {}
    )
    others = {**stored, "methods": ["embed_emulate"]}  # frozen_epochs: symmetry NPE's alone
    assert script.config_changes(others, dataclasses.replace(cfg, methods=("embed_emulate",))) == (
        {},
        [],
    )


def test_a_run_stored_before_per_method_streams_is_not_reused(tmp_path):
    script = load_script("convergence")
    cfg = script.budget_config("damped-oscillator", 10, 1000, 400, "current")
    run = {"metrics": {"config": json.loads(json.dumps(cfg.to_dict()))}}
    with pytest.raises(SystemExit, match=r"own random stream.*c79cd9b"):
        script.check_kept(run, cfg, "1000", tmp_path / "store.json")
    run["metrics"]["random_streams"] = RANDOM_STREAMS
    script.check_kept(run, cfg, "1000", tmp_path / "store.json")  # the same settings: kept
