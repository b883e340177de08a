"""The command line and the end-to-end run: arguments, output-folder safety, the report folder."""

from __future__ import annotations

import json
import subprocess
import sys
from fnmatch import fnmatch

import pytest
import torch

from sbi_symmetry.cli import main
from sbi_symmetry.workflow.config import RunConfig
from sbi_symmetry.workflow.pipeline import RUN_OUTPUTS, prepare_output, run


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--task", "nope"], "invalid choice"),
        (["run", "--preset", "huge"], "invalid choice"),
        (["run", "--simulations", "10"], "at least 500"),
        (["run", "--threads", "0"], "at least 1"),
        ([], "required"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_existing_output_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert main(["run", "--out", str(out), "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err
    # --overwrite still refuses a folder that is not an earlier run
    assert main(["run", "--out", str(out), "--overwrite", "--no-progress"]) == 2
    assert "holds no earlier run" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "precious"


def test_prepare_output_accepts_new_empty_and_earlier_runs(tmp_path):
    assert prepare_output(tmp_path / "new", overwrite=False).is_dir()
    (tmp_path / "empty").mkdir()
    prepare_output(tmp_path / "empty", overwrite=False)
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "metrics.json").write_text("{}")
    prepare_output(earlier, overwrite=True)
    (earlier / "metrics.json").write_text("{}")  # the new run's
    with pytest.raises(FileExistsError):
        prepare_output(earlier, overwrite=False)


def test_overwrite_removes_the_earlier_runs_files_and_nothing_else(tmp_path):
    earlier = tmp_path / "earlier"
    (earlier / "posteriors").mkdir(parents=True)
    (earlier / "posteriors" / "embed_emulate.pt").write_text("old")
    for name in ("metrics.json", "posterior_3.png", "tarp.png", "notes.txt"):
        (earlier / name).write_text("old")
    prepare_output(earlier, overwrite=True)
    assert sorted(p.name for p in earlier.iterdir()) == ["notes.txt"]


def test_resume_refuses_a_folder_without_the_runs_stages(tmp_path):
    finished = tmp_path / "finished"  # its .stages/ deleted: resuming would replace its report
    finished.mkdir()
    (finished / "metrics.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"--resume: .* holds no \.stages/"):
        prepare_output(finished, overwrite=False, resume=True)
    assert prepare_output(tmp_path / "new", overwrite=False, resume=True).is_dir()  # starts one


def test_presets_exist_for_every_task_and_validate():
    for task in ("damped-oscillator", "sine-gaussian", "lorenz96"):
        for preset in ("fast", "paper"):
            assert RunConfig.from_preset(task, preset).task == task
    with pytest.raises(ValueError, match="`preset` must be one of"):
        RunConfig.from_preset("damped-oscillator", "huge")
    with pytest.raises(ValueError, match="unknown"):
        RunConfig.from_preset("damped-oscillator", methods=("magic",))


def test_module_entry_point_shows_help():
    done = subprocess.run(
        [sys.executable, "-m", "sbi_symmetry", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and "--preset" in done.stdout


def _tiny(task: str, **overrides) -> RunConfig:
    settings = {
        "num_simulations": 600,
        "pretrain_simulations": 600,
        "num_observations": 2,
        "posterior_samples": 300,
        "sbc_pairs": 60,
        "sbc_pairs_ratio": 30,
        "sbc_posterior_samples": 50,
        "pretrain": {"max_epochs": 2, "batch_size": 128},
        "npe_train": {"max_num_epochs": 2},
        "frozen_epochs": 2,
        "ee_train": {"max_num_epochs": 2},
    }
    return RunConfig.from_preset(task, "fast", **{**settings, **overrides})


@pytest.mark.slow
def test_end_to_end_run_writes_every_artefact(tmp_path):
    lines: list[str] = []
    config = _tiny("damped-oscillator")
    metrics = run(config, tmp_path / "out", show_progress=False, log=lines.append)
    out = tmp_path / "out"
    for name in (
        "report.md",
        "report.html",
        "metrics.json",
        "config.json",
        "summaries.png",
        "posterior_0.png",
        "loss_curves.png",
        "coverage.png",
        "sbc_ranks.png",
        "embedding/config.json",
        "embedding/weights.pt",
    ):
        assert (out / name).exists(), name
    assert [line.split()[0] for line in lines] == [f"[{i}/7]" for i in range(1, 8)]
    for path in out.iterdir():  # --overwrite knows every file a run writes
        assert any(fnmatch(path.name, pattern) for pattern in RUN_OUTPUTS), path.name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert RunConfig.from_json(out / "config.json") == config  # `run --config` re-runs it
    assert RunConfig.from_dict(saved["config"]) == config
    for name in ("symmetry_npe", "raw_npe", "embed_emulate"):
        entry = saved["methods"][name]
        assert 0.4 <= entry["c2st"]["mean"] <= 1.0
        assert entry["costs"]["macs_per_1000"] > 0
        assert len(entry["calibration"]["ks_pvals"]) == 2
        widths = torch.tensor(entry["interval_over_reference"])  # one row per observation
        assert widths.shape == (config.num_observations, 2) and bool((widths > 0).all())
    assert "| symmetry NPE |" in (out / "report.md").read_text()
    assert "| 90% interval / reference |" in (out / "report.md").read_text()
    assert "<table>" in (out / "report.html").read_text()
    # rerunning into the same folder needs --overwrite
    with pytest.raises(FileExistsError):
        run(_tiny("damped-oscillator"), out, show_progress=False, log=lines.append)


@pytest.mark.slow
def test_run_on_lorenz96_reports_contraction_without_reference(tmp_path):
    metrics = run(
        _tiny("lorenz96", methods=("symmetry_npe", "raw_npe"), npe_train={"max_num_epochs": 30}),
        tmp_path / "l96",
        show_progress=False,
        log=lambda _: None,
    )
    entry = metrics["methods"]["symmetry_npe"]
    assert "c2st" not in entry and len(entry["contraction"]) == 2
    assert metrics["reference"] == []
    # no reference: contraction stands in for C2ST and every width column
    assert (
        "| method | posterior contraction | SBC (KS p-values) |"
        in (tmp_path / "l96" / "report.md").read_text()
    )
