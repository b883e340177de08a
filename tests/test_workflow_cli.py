"""``sbi-symmetry run --methods`` and ``--config``: checked before any work, saved runs re-run."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from sbi_symmetry import cli
from sbi_symmetry.workflow import pipeline, stages
from sbi_symmetry.workflow.checkpoints import StageCheckpoints
from sbi_symmetry.workflow.config import RunConfig
from sbi_symmetry.workflow.registry import METHODS


@pytest.fixture
def captured(monkeypatch):
    """Replace the run (and its first stage) by recorders: nothing is trained or written."""
    calls: list[tuple[RunConfig, object]] = []
    monkeypatch.setattr(pipeline, "run", lambda config, out, **kw: calls.append((config, out)))
    monkeypatch.setattr(stages, "simulate", lambda *a, **k: pytest.fail("work started"))
    return calls


@pytest.mark.parametrize("methods", ["raw", "raw_npe,NRE_C", ",", ""])
def test_unknown_methods_exit_2_naming_the_option_and_the_valid_names(
    methods, captured, capsys, tmp_path
):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--methods", methods, "--out", str(out)])
    assert exit_info.value.code == 2 and captured == [] and not out.exists()
    err = capsys.readouterr().err
    assert "--methods" in err and all(name in err for name in METHODS)


def test_chosen_methods_reach_the_run_in_the_order_given(captured, tmp_path):
    argv = ["run", "--methods", "end_to_end_npe,symmetry_npe", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 0
    ((config, out),) = captured
    assert config.methods == ("end_to_end_npe", "symmetry_npe") and out == tmp_path / "o"
    assert config.preset == "fast" and config.num_simulations == 10_000  # the preset's


def _saved(tmp_path) -> RunConfig:
    saved = RunConfig.from_preset(
        "lorenz96", "paper", num_simulations=900, seed=7, methods=("raw_npe", "nre_c")
    )
    (tmp_path / "run").mkdir()
    saved.save(tmp_path / "run" / "config.json")
    return saved


def test_config_rerun_reads_the_file_and_keeps_its_values(captured, tmp_path):
    saved = _saved(tmp_path)
    assert cli.main(["run", "--config", str(tmp_path / "run" / "config.json")]) == 0
    assert captured[0][0] == saved


def test_config_accepts_the_run_folder_and_explicit_options_override(captured, tmp_path):
    saved = _saved(tmp_path)
    argv = ["run", "--config", str(tmp_path / "run"), "--seed", "2", "--methods", "raw_npe"]
    assert cli.main([*argv, "--simulations", "1500", "--device", "cpu"]) == 0
    config = captured[0][0]
    assert (config.seed, config.methods, config.num_simulations) == (2, ("raw_npe",), 1500)
    assert config.encoder == saved.encoder and config.pretrain == saved.pretrain
    assert (config.task, config.preset, config.posterior_samples) == ("lorenz96", "paper", 5_000)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "holds no config.json"),
        ("{not json", "cannot read a run config"),
        ('{"encoder": {"chanels": 4}}', "`encoder` setting(s) ['chanels'] unknown"),
        ('{"simulations": 600}', "unknown run setting(s) ['simulations']"),
    ],
)
def test_bad_saved_configs_exit_2_before_any_work(content, message, captured, capsys, tmp_path):
    (tmp_path / "run").mkdir()
    if content is not None:
        (tmp_path / "run" / "config.json").write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--config", str(tmp_path / "run")])
    assert exit_info.value.code == 2 and captured == []
    assert message in capsys.readouterr().err


def test_config_does_not_combine_with_task_or_preset(captured, capsys, tmp_path):
    _saved(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--config", str(tmp_path / "run"), "--preset", "fast"])
    assert exit_info.value.code == 2 and captured == []
    assert "--config sets the task and preset" in capsys.readouterr().err


def _interrupted(tmp_path) -> RunConfig:
    """A run folder as an interrupted run leaves it: ``.stages/config.json`` and nothing else."""
    saved = RunConfig.from_preset("sine-gaussian", "fast", seed=3, methods=("raw_npe",))
    StageCheckpoints(tmp_path / "cut", saved, resume=False)
    return saved


def test_resume_repeating_the_original_task_and_preset_goes_on(captured, capsys, tmp_path):
    saved = _interrupted(tmp_path)
    argv = ["run", "--out", str(tmp_path / "cut"), "--resume"]
    assert cli.main([*argv, "--task", "sine-gaussian", "--preset", "fast"]) == 0
    assert captured[0][0] == saved
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--task", "damped-oscillator"])
    assert exit_info.value.code == 2 and len(captured) == 1
    assert "has task 'sine-gaussian', not 'damped-oscillator'" in capsys.readouterr().err


def test_resume_may_change_the_workers_only(tmp_path):
    saved = _interrupted(tmp_path)
    folder = tmp_path / "cut"
    assert StageCheckpoints(folder, dataclasses.replace(saved, workers=1), resume=True)
    with pytest.raises(ValueError, match=r"other settings \(seed: was 3, now 4\)"):
        StageCheckpoints(folder, dataclasses.replace(saved, seed=4), resume=True)


def test_a_device_this_machine_lacks_is_refused_before_the_folder_is_touched(tmp_path):
    config = RunConfig.from_preset("damped-oscillator", device="gpu")
    with pytest.raises(ValueError, match="`device` 'gpu' is not a torch device"):
        pipeline.run(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # about 85 s on a loaded 2-core machine (reference posteriors, C2ST, SBC)
def test_one_method_runs_end_to_end_and_its_folder_reruns(tmp_path, monkeypatch):
    out = tmp_path / "raw"
    argv = ["run", "--methods", "raw_npe", "--simulations", "500", "--no-progress"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["methods"]) == ["raw_npe"]
    assert json.loads((out / "config.json").read_text()) == metrics["config"]
    # the trained posterior loads back in a fresh process and samples
    script = (
        "import torch; from sbi_symmetry.workflow import load_posterior; "
        f"p = load_posterior({str(out / 'posteriors' / 'raw_npe.pt')!r}); "
        "print(tuple(p.sample((7,), x=torch.zeros(1, 200), show_progress_bars=False).shape))"
    )
    fresh = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.strip() == "(7, 2)"
    captured: list[RunConfig] = []
    monkeypatch.setattr(pipeline, "run", lambda config, out, **kw: captured.append(config))
    assert cli.main(["run", "--config", str(out), "--out", str(tmp_path / "again")]) == 0
    assert captured[0].to_dict() == RunConfig.from_dict(metrics["config"]).to_dict()
    assert captured[0].methods == ("raw_npe",) and captured[0].num_simulations == 500


def test_view_fraction_reaches_the_run_and_bad_ones_exit_2(captured, capsys, tmp_path):
    argv = ["run", "--task", "lorenz96", "--view-fraction", "0.25", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 0
    assert captured[0][0].view_fraction == 0.25
    argv = ["run", "--view-fraction", "0.25", "--out", str(tmp_path / "p")]  # shift views
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2 and len(captured) == 1 and not (tmp_path / "p").exists()
    assert "view_fraction" in capsys.readouterr().err
