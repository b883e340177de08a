"""Smoke tests of the benchmark scripts: each runs its ``--quick`` mode into a temporary folder."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from _helpers_benchmarks import load_script

from sbi_symmetry.workflow.report import RANDOM_STREAMS


def test_symmetry_npe_quick_run_writes_table_and_json(tmp_path):
    script = load_script("symmetry_npe")
    out = tmp_path / "symmetry_npe.md"
    argv = ["--quick", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    results = script.main(argv)
    text = out.read_text()
    assert "symmetry_npe[backbone]" in text and "raw_npe" in text and "end_to_end_npe" in text
    assert "--quick" in text  # the command that made it
    raw = json.loads(out.with_suffix(".json").read_text())
    rows = raw["results"][0]["rows"]
    assert [r["method"] for r in rows] == ["raw_npe", "end_to_end_npe", "symmetry_npe[backbone]"]
    for row in rows:
        assert len(row["c2st_per_observation"]) == 2
        assert 0.0 <= row["c2st"]["mean"] <= 1.0
        assert row["costs"]["macs_per_1000"] > 0
    # The embedding methods share one encoder and flow, cheaper than sbi's raw NPE.
    macs = {r["method"]: r["costs"]["macs_per_1000"] for r in rows}
    assert macs["symmetry_npe[backbone]"] < macs["raw_npe"]
    views = raw["results"][0]["pretraining"]["pretrain_simulator_calls"]
    assert views > 0
    # every call counts: symmetry NPE is charged its pretraining views, in the JSON and the table
    calls = {r["method"]: r["costs"]["simulator_calls"]["total"] for r in rows}
    assert calls == {"raw_npe": 300, "end_to_end_npe": 300, "symmetry_npe[backbone]": 300 + views}
    assert f"| 300 | {300 + views:,} | symmetry_npe[backbone] |" in text
    assert results[0]["task"] == "damped-oscillator"


def test_embed_emulate_quick_run_writes_results(tmp_path):
    """``embed_emulate.py --quick`` trains the ratio methods, samples, and writes table + JSON."""
    script = load_script("embed_emulate")
    out = tmp_path / "embed_emulate.md"
    ratio_methods = ["embed_emulate", "embed_emulate_vicreg", "nre_c"]
    argv = ["--quick", "--tasks", "damped-oscillator", "--methods", *ratio_methods, "symmetry_npe"]
    script.main([*argv, "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    result = json.loads(out.with_suffix(".json").read_text())["results"]["damped-oscillator"]
    assert list(result["methods"]) == [*ratio_methods, "symmetry_npe"]
    calls = {k: e["costs"]["simulator_calls"] for k, e in result["methods"].items()}
    settings = json.loads(out.with_suffix(".json").read_text())["settings"]
    n = settings["simulations"]
    assert calls["nre_c"] == calls["embed_emulate"] == {"training_set": n, "views": 0, "total": n}
    assert calls["embed_emulate_vicreg"]["total"] > n  # the regulariser's views count too
    # symmetry NPE pretrains on re-simulated views, as the recorded page did: two per draw
    assert calls["symmetry_npe"]["views"] >= 2 * settings["pretrain_simulations"] > 0
    for entry in result["methods"].values():
        assert 0.0 <= entry["c2st"]["mean"] <= 1.0
        assert entry["costs"]["trainable_parameters"] > 0
        assert len(entry["calibration"]["ks_pvals"]) == 2
        assert entry["seconds_per_10k_samples"] > 0
    for key in ("step_speedup", "epoch_speedup", "mcmc_speedup", "c2st_difference"):
        assert result["targets"][key] == result["targets"][key]  # present and not NaN
    assert result["speed_check"]["step_speedup"] > 0
    text = out.read_text()
    assert "--quick" in text and "## Targets" in text and "| E&E |" in text


def test_ee_sampling_cost_counts_emulator_passes_and_writes_its_page(tmp_path):
    script = load_script("ee_sampling_cost")
    out = tmp_path / "cost.md"
    [result] = script.main(["--quick", "--tasks", "damped-oscillator", "--out", str(out)])
    assert result["single"] >= 300 and result["batched"] >= 300  # a pass per sample at least
    assert sum(result["samplers"].values()) == 6  # every observation of the batch
    assert result["factor"][1] >= result["factor"][0] >= 1.0  # max r >= mean r
    assert result["pool"] == pytest.approx(300 * result["factor"][1] / 6)
    assert "| damped-oscillator | " in out.read_text() and "--quick" in out.read_text()


def test_lever_variants_are_valid_run_configs_and_rows_read_metrics():
    """Every variant of both ablation scripts builds a checked config; a row shows the widest."""
    scripts = [load_script(name) for name in ("symmetry_npe_levers", "ee_levers")]
    levers = sys.modules["_levers"]  # the scripts put benchmarks/ on sys.path and import it
    for script in scripts:
        for methods, changes in script.VARIANTS.values():
            cfg = levers.variant_config("damped-oscillator", 3, methods, changes)
            assert cfg.methods == methods and cfg.num_observations == 3
    cfg = levers.variant_config("damped-oscillator", 3, ("symmetry_npe",), {"pretrain": {}})
    assert cfg.pretrain["max_epochs"] == 40  # a dict change updates the preset's, not replaces
    # as recorded: plain VICReg and no E&E pretraining, whatever today's preset says ...
    assert cfg.pretrain["supervised_weight"] == 0.0 and cfg.ee["pretrain"] is False
    hybrid = {"pretrain": {"supervised_weight": 10.0}}  # ... unless a variant names them
    assert (
        levers.variant_config("damped-oscillator", 3, ("symmetry_npe",), hybrid).pretrain[
            "supervised_weight"
        ]
        == 10.0
    )
    plans = sys.modules["plans"]
    assert plans.EE_PLANS["damped-oscillator"].pretrain["freeze"] == "backbone"
    assert plans.SYMMETRY_NPE.pretrain["supervised_weight"] == 0.0
    entry = {
        "c2st": {"mean": 0.7, "sem": 0.01},
        "std_over_reference": [[1.0, 2.0], [3.0, 1.0]],
        "costs": {
            "simulator_calls": {"total": 10, "training_set": 10, "views": 0},
            "epochs": 5,
            **{"train_seconds": 12.4, "pretrain_seconds": 3.0, "torch_threads": 1},
        },
    }
    (row,) = levers.rows("v", {"methods": {"m": entry}})
    assert "| 2.00, 1.50 | 3.00 |" in row
    assert row.endswith("| 5 | 12 (+ 3), 1 |")  # the method's own seconds, not the run's


def test_the_readme_quick_start_blocks_are_found_and_import_real_names():
    """``readme_quickstart.py`` runs the README's two quick-start blocks; they must exist."""
    import ast

    import sbi_symmetry

    blocks = load_script("readme_quickstart").quickstart_blocks()
    assert len(blocks) == 2
    for code in blocks:
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and node.module == "sbi_symmetry":
                assert all(hasattr(sbi_symmetry, alias.name) for alias in node.names)


def test_the_quick_start_variant_adds_keywords_to_the_one_pretraining_call():
    script = load_script("readme_quickstart")
    block = script.quickstart_blocks()[0]
    variant = script.with_pretrain_kwargs(block, "theta=theta, supervised_weight=10")
    call = variant.split("pretrain_vicreg(", 1)[1].split(")  #", 1)[0]
    assert call.endswith(", theta=theta, supervised_weight=10") and "x=x" in call
    assert variant.replace(", theta=theta, supervised_weight=10", "") == block
    with pytest.raises(ValueError, match="expected one `pretrain_vicreg\\(` call"):
        script.with_pretrain_kwargs("npe = NPE(prior)", "theta=theta")


def test_fast_encoder_seeds_resumes_and_summarises_per_task_and_encoder(tmp_path, monkeypatch):
    """Runs already in the JSON are skipped; the summary counts calibrated runs per encoder."""
    script = load_script("fast_encoder_seeds")
    ran: list[tuple[str, int, str]] = []

    def fake_run(task, seed, candidate, methods):
        ran.append((task, seed, candidate))
        entry = {
            "c2st": {"mean": 0.6 + 0.1 * seed, "sem": 0.01, "per_observation": [0.6]},
            "std_over_reference": [[1.5, 1.2]],
            "calibration": {"calibrated": seed == 1, "ks_pvals": [0.3, 0.01]},
            "costs": {
                "simulator_calls": {"total": 10, "training_set": 10, "views": 0},
                "epochs": 5,
                "train_seconds": 2.0,
            },
        }
        entry["calibration"]["max_coverage_error"] = 0.05
        metrics = {"methods": {"symmetry_npe": entry}, "config": {"seed": seed}}
        metrics["random_streams"] = RANDOM_STREAMS
        return {"changes": script.CANDIDATES[candidate], "metrics": metrics, "seconds": 1.0}

    class Config:  # what check_kept reads of a RunConfig
        def __init__(self, seed):
            self.seed = seed

        def to_dict(self):
            return {"seed": self.seed}

    monkeypatch.setattr(script, "run_one", fake_run)
    monkeypatch.setattr(script, "candidate_config", lambda task, seed, *_: Config(seed))
    out = tmp_path / "seeds"
    script.main(["--tasks", "t", "--seeds", "1", "--out", str(out)])
    script.main(["--tasks", "t", "--seeds", "1", "2", "--out", str(out)])
    assert ran == [("t", s, c) for s in (1, 2) for c in script.DEFAULT]  # seed 1 ran once
    page = out.with_suffix(".md").read_text()
    assert "| t | 6 channels, 1 block | 2 | 0.750 | 1.50 | 1/2 |" in page
    assert "fast_encoder_seeds.py --tasks t --seeds 1 --out" in page  # each command that ran
    assert "fast_encoder_seeds.py --tasks t --seeds 1 2 --out" in page
    assert "| t / 2 / 16 channels, 2 blocks | symmetry_npe | 0.800 ± 0.010 |" in page
    monkeypatch.setattr(script, "candidate_config", lambda task, seed, *_: Config(seed + 1))
    with pytest.raises(SystemExit, match="other settings"):  # stored with another config
        script.main(["--tasks", "t", "--seeds", "1", "--out", str(out)])
    monkeypatch.setitem(script.CANDIDATES, script.DEFAULT[0], {"flow": {"hidden_features": 7}})
    with pytest.raises(SystemExit, match="other changes"):  # a candidate edited since
        script.main(["--tasks", "t", "--seeds", "1", "--out", str(out)])


@pytest.mark.parametrize("frozen_epochs", [None, 1])
def test_npe_warm_start_trains_the_flow_on_the_frozen_summary_then_fine_tunes(
    frozen_epochs, monkeypatch, capsys
):
    import torch
    from _helpers_pretrain import shift_view_symmetry_npe

    from sbi_symmetry.tasks import DampedOscillator
    from sbi_symmetry.workflow import methods as M

    script = load_script("npe_warm_start")
    monkeypatch.setattr(M, "_npe", script.two_phase_npe(0.1, frozen_epochs))
    task = DampedOscillator()
    theta, x = task.sample_joint(300, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    trained = shift_view_symmetry_npe(task, theta, x, max_num_epochs=2)
    first = int(capsys.readouterr().out.split("frozen phase: ")[1].split()[0])
    assert 0 < first < trained.epochs  # the second phase resumed the same trainer
    assert frozen_epochs is None or first <= frozen_epochs + 1  # sbi counts from epoch 0
    pretrained, tuned = trained.extra["pretrained_embedding"], trained.extra["embedding"]
    assert tuned.freeze == pretrained.freeze == "none"
    changed = [
        not torch.equal(a, b)
        for a, b in zip(pretrained.parameters(), tuned.parameters(), strict=True)
    ]
    assert any(changed)  # unfrozen in the second phase


def test_training_noise_scores_the_equal_weight_mixture_of_the_runs(tmp_path):
    """Two runs, each matching one half of a two-mode reference: only their mixture matches."""

    import torch

    script = load_script("training_noise")
    gen = torch.Generator().manual_seed(0)
    modes = [torch.randn(1000, 2, generator=gen) + shift for shift in (0.0, 4.0)]
    reference = torch.cat([m[:500] for m in modes])[torch.randperm(1000, generator=gen)]
    folders = []
    for i, mode in enumerate(modes):
        stages = tmp_path / f"run{i}" / ".stages"
        stages.mkdir(parents=True)
        # as the pipeline saves a method's accuracy: its samples per observation, its metrics
        torch.save({"value": ([torch.cat([mode[500:], mode[500:]])], {})}, stages / "accuracy_m.pt")
        torch.save({"value": [reference]}, stages / "references.pt")
        folders.append(stages.parent)
    (mixture,) = script.ensemble_scores(folders, "m", seed=0)
    (alone,) = script.ensemble_scores(folders[:1], "m", seed=0)
    assert mixture < 0.6 and alone > 0.65  # one mode alone: 0.75 at best


def test_training_noise_keeps_each_runs_numbers_beside_its_page(tmp_path, monkeypatch):
    """The page's JSON holds each run's settings and per-method numbers, not its histories."""
    script = load_script("training_noise")
    entry = {
        "c2st": {"mean": 0.6, "sem": 0.01, "per_observation": [0.59, 0.61]},
        "std_over_reference": [[1.1, 1.0], [1.2, 1.0]],
        "calibration": {"calibrated": True, "ks_pvals": [0.3, 0.4], "max_coverage_error": 0.05},
        "costs": {"epochs": 7, "train_seconds": 3.0},
        "history": {"validation": [1.0] * 100},
    }

    def fake_run(args, seed):
        metrics = {"config": {"training_seed": seed}, "methods": {"symmetry_npe": entry}}
        return metrics, tmp_path / f"run{seed}"

    monkeypatch.setattr(script, "run_seed", fake_run)
    out = tmp_path / "page"
    script.main(["--methods", "symmetry_npe", "--training-seeds", "0", "--out", str(out)])
    saved = json.loads(out.with_suffix(".json").read_text())
    assert "training_noise.py --methods symmetry_npe" in saved["command"]
    (run,) = saved["runs"]
    assert run["config"] == {"training_seed": 0}
    assert set(run["methods"]["symmetry_npe"]) == {
        "c2st",
        "std_over_reference",
        "calibration",
        "costs",
    }
    assert run["methods"]["symmetry_npe"]["c2st"]["per_observation"] == [0.59, 0.61]


def test_ee_summary_check_feeds_npe_the_standardised_direction_of_the_summary():
    """What NPE sees is ``f(x) / |f(x)|`` (all a cosine critic sees), standardised on ``x``."""
    import torch

    from sbi_symmetry.emulate import embed_emulate_classifier

    script = load_script("ee_summary_check")
    torch.manual_seed(0)
    x = torch.randn(300, 6)
    est = embed_emulate_classifier(torch.nn.Linear(6, 4))(torch.randn(300, 2), x)
    net = script.summary_encoder(est, x)
    with torch.no_grad():
        z = net(x)
        direction = torch.nn.functional.normalize(est.embedding_net_x(x), dim=-1)
    torch.testing.assert_close(z.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(4), atol=1e-4, rtol=0)
    assert torch.corrcoef(torch.stack([z[:, 0], direction[:, 0]]))[0, 1] > 0.999
    same = [torch.randn(500, 2)]
    scores = script.score(same, same)
    assert scores["c2st"] < 0.55 and scores["std_largest"] == pytest.approx(1.0)


def test_ee_members_runs_each_count_once_and_tabulates_the_metrics(tmp_path, monkeypatch):
    script = load_script("ee_members")
    calls = []

    def fake_run(cfg, folder, **kwargs):
        assert kwargs["resume"]  # a finished run loads its stages; other settings are refused
        calls.append((cfg.seed, cfg.ee["members"]))
        k = cfg.ee["members"]
        metrics = {
            "c2st": {"mean": 0.6 + 0.01 * k},
            "std_over_reference": [[1.5, 1.1], [2.5, 1.0]],
            "interval_over_reference": [[1.2, 1.0], [1.4, 1.2]],
            "calibration": {"calibrated": True, "ks_pvals": [0.3, 0.2], "max_coverage_error": 0.05},
            "costs": {
                "epochs": 10 * k,
                **({"epochs_per_phase": [10] * k} if k > 1 else {}),
                "train_seconds": 5.0 * k,
                "pretrain_seconds": 1.0 * k,
                "simulator_calls": {"total": 10_000},
            },
        }
        return {"methods": {"embed_emulate": metrics}}

    monkeypatch.setattr(script, "run", fake_run)
    argv = ["--seeds", "3", "--members", "1", "2", "--runs", str(tmp_path / "runs")]
    argv += ["--out", str(tmp_path / "page.md")]
    rows = script.main(argv)
    assert calls == [(3, 1), (3, 2)]
    assert rows[1][:6] == ["3", "2", "0.620", "2.00, 1.05", "1.30, 1.10", "1 of 2"]
    assert rows[1][6:] == ["yes (0.200, 0.05)", "10, 10", "12", "10,000"]
    assert rows[0][7] == "10"
    assert script.main(argv) == rows and len(calls) == 4  # resumed: each loads what finished
    assert "--members 1 2" in (tmp_path / "page.md").read_text()


def test_reference_sbc_counts_true_parameters_per_fifth_of_the_prior_box():
    from sbi.utils import BoxUniform

    script = load_script("reference_sbc")
    prior = BoxUniform(torch.tensor([0.0, 10.0]), torch.tensor([1.0, 20.0]))
    thetas = torch.tensor([[0.05, 10.0], [0.5, 19.99], [0.99, 20.0], [0.21, 14.5]])
    assert script._fifths(thetas, prior) == ["1 / 1 / 1 / 0 / 1", "1 / 0 / 1 / 0 / 2"]
    with pytest.raises(SystemExit):
        script.main(["/nonexistent", "--pairs", "5"])


@pytest.mark.parametrize(
    ("calibrated", "widths", "cell"),
    [
        (True, [[1.1, 0.9], [1.3, 1.0]], "yes"),
        (True, [[11.0, 3.0], [12.6, 3.1]], "yes, but 11.8x too wide"),  # SBC passes, far too wide
        (False, [[1.0, 1.0]], "**no**"),
        (False, [[2.5, 1.0]], "**no**, and 2.5x too wide"),
    ],
)
def test_benchmark_tables_say_when_a_calibrated_posterior_is_too_wide(calibrated, widths, cell):
    script = load_script("training_noise")  # puts benchmarks/ on the path; _common's helper
    entry = {"calibration": {"calibrated": calibrated}, "std_over_reference": widths}
    assert script.calibrated_cell(entry) == cell


def test_a_page_is_stamped_dirty_by_changed_source_not_by_changed_results(tmp_path):
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git not installed")
    load_script("training_noise")  # puts benchmarks/ on the path, with its _common
    common = sys.modules["_common"]
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("a = 1\n")
    (tmp_path / "benchmarks" / "results" / "page.md").write_text("old\n")
    for step in (["init", "-q"], ["add", "."], ["commit", "-qm", "start"]):
        subprocess.run([*git, *step], check=True, capture_output=True)
    clean = common.source_commit(tmp_path)
    assert clean is not None and not clean.endswith("-dirty")
    (tmp_path / "benchmarks" / "results" / "page.md").write_text("new\n")
    assert common.source_commit(tmp_path) == clean  # a page written: still clean
    (tmp_path / "code.py").write_text("a = 2\n")
    assert common.source_commit(tmp_path) == f"{clean}-dirty"


@pytest.mark.parametrize(
    ("calls", "cell"),
    [(None, "not counted"), ({"training_set": 10_000, "views": 0, "total": 10_000}, "10,000")],
)
def test_ee_tables_count_simulator_calls_and_say_when_a_stored_run_did_not(calls, cell):
    """``embed_emulate.py``'s rows: a run made before calls were counted reads 'not counted'."""
    load_script("embed_emulate")
    report = sys.modules["_ee_report"]
    costs = {"train_seconds": 30.0, "trainable_parameters": 1000, "macs_per_1000": 2e7}
    entry = {
        "c2st": {"mean": 0.6, "sem": 0.02},
        "calibration": {
            "ks_pvals": [0.3, 0.5],
            "max_coverage_error": 0.05,
            "tarp_atc": 0.01,
            "tarp_ks_pval": 0.9,
        },
        "epochs": {
            "stopped_early": True,
            "epochs": 40,
            "best_epoch": 20,
            "seconds_per_epoch_median": 0.5,
            "seconds_to_best_epoch": 10.0,
        },
        "costs": costs if calls is None else {**costs, "simulator_calls": calls},
        "contraction": {"mean": 0.9},
        "seconds_per_10k_samples": 0.1,
        "sample_seconds": [0.01],
    }
    row = report._method_row("embed_emulate", entry)
    assert row[:3] == ["E&E", cell, "0.600 ± 0.020"]
    assert len(row) == len(report.HEADER)
