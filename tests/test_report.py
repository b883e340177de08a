"""The report a referee trusts: flags next to the numbers (their rules: ``test_flags.py``), a
self-contained HTML page, readable figures, and ``--task module:Object`` for a task of your own
(no training here)."""

from __future__ import annotations

import json
import sys
import textwrap

import matplotlib.pyplot as plt
import pytest
import torch
from sbi.utils import BoxUniform

from sbi_symmetry import cli
from sbi_symmetry.evaluation import Stopwatch
from sbi_symmetry.evaluation.calibration import CalibrationResult
from sbi_symmetry.reference.result import ReferencePosterior
from sbi_symmetry.tasks import DampedOscillator, get_task
from sbi_symmetry.workflow import pipeline, stages
from sbi_symmetry.workflow.config import RunConfig
from sbi_symmetry.workflow.document import Document
from sbi_symmetry.workflow.plots import (
    plot_loss_curves,
    plot_posteriors,
    plot_tarp,
    posterior_limits,
    prior_bounds,
)
from sbi_symmetry.workflow.report import RunResults, write_report
from sbi_symmetry.workflow.saved import read_stamp
from sbi_symmetry.workflow.stages import Accuracy, Simulations
from sbi_symmetry.workflow.trained import TrainedMethod

NAMES = ["w0", "beta"]


class ToyTask:
    """A Gaussian bump at a random circular shift: only the task protocol, no reference."""

    parameter_names = ("amplitude", "width")
    theta_dim = 2

    def __init__(self) -> None:
        self.low, self.high = torch.tensor([0.5, 1.0]), torch.tensor([2.0, 4.0])
        self.prior = BoxUniform(self.low, self.high)
        self.nuisance_prior = BoxUniform(torch.tensor([0.0]), torch.tensor([64.0]))

    def sample_prior(self, num, generator=None):
        return self.low + (self.high - self.low) * torch.rand(num, 2, generator=generator)

    def simulate(self, theta, nuisance=None, generator=None):
        if nuisance is None:
            nuisance = 64.0 * torch.rand(theta.shape[0], 1, generator=generator)
        d = (torch.arange(64.0) - nuisance + 32.0) % 64.0 - 32.0  # circular distance
        bump = theta[:, :1] * torch.exp(-0.5 * (d / theta[:, 1:]) ** 2)
        return bump + 0.1 * torch.randn(bump.shape, generator=generator)

    def sample_joint(self, num, generator=None):
        theta = self.sample_prior(num, generator=generator)
        return theta, self.simulate(theta, generator=generator)


class NoSimulator:
    parameter_names = ("a",)
    theta_dim = 1
    prior = None

    def sample_prior(self, num, generator=None):
        return torch.zeros(num, 1)


# ----------------------------------------------------------------------------- document
def test_html_embeds_every_figure_and_markdown_links_it(tmp_path):
    fig = plot_loss_curves({"m": {"train": [2, 1], "validation": [2.5, 1.5]}})
    fig.savefig(tmp_path / "x.png")
    doc = Document()
    doc.bullets(["a `code` note"])
    doc.figure("x.png", "a figure")
    page = doc.html("report", tmp_path)
    assert 'src="x.png"' not in page and "data:image/png;base64," in page
    assert "<li>a <code>code</code> note</li>" in page
    assert "![a figure](x.png)" in doc.markdown() and "- a `code` note" in doc.markdown()
    with pytest.raises(FileNotFoundError):
        Document([("figure", ("missing.png", "gone"))]).html("report", tmp_path)


# ----------------------------------------------------------------------------- the report
def _calibration(pvals, width=1.0, pairs=200):
    levels = torch.linspace(0, 1, 11)
    return CalibrationResult(
        ranks=torch.randint(0, 100, (pairs, 2)),
        ks_pvals=torch.tensor(pvals),
        c2st_ranks=torch.full((2,), 0.5),
        alpha=levels,
        coverage=levels[:, None].repeat(1, 2) ** (1 / width),
        tarp_atc=0.0,
        tarp_ks_pval=0.5,
        tarp_ecp=levels ** (1 / width),
        tarp_alpha=levels,
        num_posterior_samples=100,
    )


def _trained(name, epochs, validation):
    history = {"train": validation, "validation": validation}
    return TrainedMethod(name, None, torch.nn.Identity(), 1.0, 0.0, 10, 10, 100, epochs, history)


def _results():
    """What the stages of a run would hand the report, made up: two methods, one too wide."""
    task, g = DampedOscillator(), torch.Generator().manual_seed(0)
    theta_o = torch.tensor([[1.0, 0.2], [1.5, 0.4]])
    x = torch.zeros(2, 200)
    sims = Simulations(theta_o, x, theta_o, torch.zeros(2, 1), x, theta_o, x)
    refs = [
        ReferencePosterior(
            t + 0.02 * torch.randn(800, 2, generator=g), -1.0, 0.0, "quadrature", 1.0, 10
        )
        for t in theta_o
    ]
    wide = [r.samples.mean(0) + 10 * (r.samples - r.samples.mean(0)) for r in refs]
    samples = {"raw_npe": [r.samples * 1.01 for r in refs], "embed_emulate": wide}
    costs = {
        "trainable_parameters": 10,
        "macs_per_1000": 100,
        "train_seconds": 1,
        "pretrain_seconds": 0,
        "simulator_calls": {},
    }
    trained = {
        "raw_npe": _trained("raw_npe", 151, [3.0, 2.0, 1.0]),
        "embed_emulate": _trained("embed_emulate", 30, [3.0, 2.0, 2.5]),
    }
    metrics = {
        name: {
            "costs": {**costs, "epochs": trained[name].epochs},
            "seconds_per_10k_samples": 1.0,
            "c2st": {"mean": 0.55, "sem": 0.01},
            "contraction": [[0.9, 0.9]],
            "std_over_reference": [[f, f]],
            "std_over_crb": [[0.8 * f, 1.2 * f]],
        }
        for name, f in (("raw_npe", 1.0), ("embed_emulate", 10.0))
    }
    calibration = {
        "raw_npe": _calibration([0.5, 0.0001]),
        "embed_emulate": _calibration([0.6, 0.7], 3),
    }
    config = RunConfig.from_preset("damped-oscillator", "fast", methods=tuple(trained))
    return RunResults(
        config,
        task,
        sims,
        trained,
        refs,
        Accuracy(samples, metrics, None),
        calibration,
        Stopwatch(),
    )


def test_the_epoch_cap_flag_reads_the_trend_of_the_capped_phase_alone():
    """Phases 21 (frozen), 151 (capped: best at its 50th epoch), 40 (annealed, still falling)."""
    from sbi_symmetry.workflow.report import _flags

    results = _results()
    curve = [float(-e) for e in range(21)] + [-21.0 - min(e, 49) for e in range(151)]
    curve += [-100.0 - e for e in range(40)]
    results.trained["raw_npe"] = _trained("raw_npe", 212, curve)
    entry = results.accuracy.metrics["raw_npe"]
    entry = {**entry, "calibration": _calibration([0.5, 0.5]).to_dict()}
    entry["costs"] = {**entry["costs"], "epochs": 212, "epochs_per_phase": [21, 151, 40]}
    (flag,) = [f for f in _flags("raw_npe", entry, results) if f["code"] == "epoch_cap"]
    assert flag["summary"].startswith("151 epochs with `npe_train.max_num_epochs=150`")
    assert flag["summary"].endswith("best validation loss at epoch 50")


def test_the_report_flags_its_numbers_and_embeds_its_figures(tmp_path):
    metrics = write_report(tmp_path, _results())
    md, page = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    raw, ee = saved["methods"]["raw_npe"], saved["methods"]["embed_emulate"]
    assert [f["code"] for f in raw["flags"]] == ["epoch_cap", "below_cramer_rao", "sbc_pvalue"]
    assert [f["code"] for f in ee["flags"]] == ["too_wide"]  # ee_train caps at 600: 30 is fine
    assert metrics["methods"]["raw_npe"]["flags"] == raw["flags"]
    assert "| 0.50, <0.01 |" in md  # never a bare 0.00
    assert f"`sbi-symmetry run --config {tmp_path} --out NEW_FOLDER`" in md  # every setting
    assert "| calibrated but 10.0 x too wide |" in md
    notes_part = md.split("### Notes")[1].split("\n\n")[1]
    bullets = [line.split(".")[0] for line in notes_part.splitlines()]
    assert bullets == [
        "- Epoch cap",
        "- std / Cramér-Rao below 1",
        "- SBC p-value <0",
        "- Too wide",
    ]
    assert "prior truncates the posterior" in notes_part
    for name in (
        "posterior_0.png",
        "posterior_1.png",
        "loss_curves.png",
        "coverage.png",
        "tarp.png",
        "sbc_ranks.png",
    ):
        assert (tmp_path / name).stat().st_size > 5_000
        assert f"]({name})" in md and f'src="{name}"' not in page
    assert page.count("data:image/png;base64,") == 6
    assert plt.get_fignums() == []
    for name in ("raw_npe", "embed_emulate"):  # the posteriors, stamped with their versions
        stamp = read_stamp(tmp_path / "posteriors" / f"{name}.pt")
        assert stamp["method"] == name and stamp["task"] == "damped-oscillator"
        assert stamp == json.loads((tmp_path / "posteriors" / f"{name}.json").read_text())
    assert "posteriors/<method>.pt" in md


# ----------------------------------------------------------------------------- figures
def test_posterior_limits_follow_the_reference_within_the_prior():
    ref = 0.3 + 0.01 * torch.randn(2000, 2)
    limits = posterior_limits(ref, bounds=[(0.0, 2.0), (0.29, None)])
    assert 0.2 < limits[0][0] < 0.27 and 0.33 < limits[0][1] < 0.4
    assert limits[1][0] == 0.29  # clipped to the prior
    wide = torch.rand(2000, 2) * 2  # a method across the whole prior does not move them
    fig = plot_posteriors({"wide": wide, "good": ref}, ref, labels=NAMES, limits=limits)
    axes = fig.axes
    assert axes[0].get_xlim() == pytest.approx(limits[0], abs=1e-4)  # diagonal
    assert axes[1].get_xlim() == pytest.approx(limits[1], abs=1e-6)  # contours, shared limits
    assert axes[1].get_ylim() == pytest.approx(limits[0], abs=1e-6)
    assert [axes[0].get_xlabel(), axes[3].get_xlabel()] == NAMES
    assert plt.get_fignums() == []


def test_default_limits_are_shared_clipped_and_show_the_truth():
    ref = 0.5 + 0.05 * torch.randn(1000, 2)
    bounds = prior_bounds(BoxUniform(torch.zeros(2), torch.ones(2)))
    assert bounds == [(0.0, 1.0), (0.0, 1.0)]
    truth = torch.tensor([0.5, 0.98])
    fig = plot_posteriors(
        {"a": torch.rand(1000, 2)},
        ref,
        labels=NAMES,
        truth=truth,
        bounds=bounds,
        title="observation 0",
    )
    low, high = fig.axes[3].get_xlim()
    assert 0.0 <= low + 1e-4 and high - 1e-4 <= 1.0 and high > 0.98
    assert fig.axes[1].get_ylim() == pytest.approx(fig.axes[0].get_xlim(), abs=1e-4)


def test_tarp_and_loss_figures_have_labelled_axes():
    res = CalibrationResult(
        ranks=torch.zeros(10, 2),
        ks_pvals=torch.ones(2),
        c2st_ranks=torch.ones(2) / 2,
        alpha=torch.linspace(0, 1, 5),
        coverage=torch.linspace(0, 1, 5)[:, None].repeat(1, 2),
        tarp_atc=0.01,
        tarp_ks_pval=0.001,
        tarp_ecp=torch.linspace(0, 1, 11),
        tarp_alpha=torch.linspace(0, 1, 11),
        num_posterior_samples=10,
    )
    ax = plot_tarp({"NPE": res}).axes[0]
    assert ax.get_xlabel() == "credibility level" and "coverage" in ax.get_ylabel()
    assert any("KS p <0.01" in t.get_text() for t in ax.get_legend().get_texts())
    fig = plot_loss_curves(
        {"NPE": {"train": [2, 1]}, "VICReg": {"train": [3, 2]}},
        ylabels={"NPE": "−log q(θ | x)"},
    )
    assert [a.get_ylabel() for a in fig.axes] == ["−log q(θ | x)", "loss"]


# ----------------------------------------------------------------------------- --task
def _spec(name: str) -> str:
    return f"{__name__}:{name}"


def test_your_own_task_class_goes_through_the_cli_with_the_default_preset(monkeypatch):
    calls = []
    monkeypatch.setattr(pipeline, "run", lambda config, out, **kw: calls.append(config))
    assert cli.main(["run", "--task", _spec("ToyTask"), "--out", "unused", "--seed", "3"]) == 0
    config = calls[0]
    default = RunConfig.from_preset("damped-oscillator", "fast", seed=3)
    assert config.task == _spec("ToyTask")
    assert config.to_dict() == {**default.to_dict(), "task": _spec("ToyTask")}
    assert RunConfig.from_dict(config.to_dict()) == config  # a saved config.json re-runs it


def test_a_task_with_only_the_protocol_gets_what_the_run_reads():
    task = get_task(_spec("ToyTask"))
    assert task.x_shape == (64,) and task.parameter_labels == ("amplitude", "width")
    assert task.sample_nuisance(5).shape == (5, 1)
    x_a, x_b = task.views(task.sample_prior(3))
    assert x_a.shape == x_b.shape == (3, 64)
    instance = get_task(_spec("TOY"))  # an instance is used as it is
    assert instance is TOY


def test_a_task_module_on_the_path_is_imported(tmp_path, monkeypatch):
    (tmp_path / "my_tasks.py").write_text(
        textwrap.dedent(f"""
        from {__name__} import ToyTask as Imported
        class MyTask(Imported):
            def __init__(self, device="cpu"):
                super().__init__()
                self.device = device
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_tasks", raising=False)
    assert get_task("my_tasks:MyTask", device="cpu").device == "cpu"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_here:Task", "cannot import module no_such_module_here"),
        (f"{__name__}:Missing", f"module {__name__} has no attribute 'Missing'"),
        (f"{__name__}:NoSimulator", "NoSimulator lacks simulate, sample_joint, nuisance_prior or"),
        (":", "give a task as module:Object"),
    ],
)
def test_a_bad_task_exits_2_with_one_line_before_any_work(spec, message, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(pipeline, "run", lambda config, out, **kw: calls.append(config))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--task", spec, "--out", "unused"])
    assert exit_info.value.code == 2 and not calls
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in last and last.startswith("sbi-symmetry: error: --task")


def test_a_misspelt_built_in_task_is_still_an_invalid_choice(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--task", "lorenz-96"])
    assert "invalid choice: 'lorenz-96'" in capsys.readouterr().err


TOY = ToyTask()


class ToyWithReference(ToyTask):
    """The toy task with a reference of its own (here: prior draws, shape is what counts)."""

    def reference_posterior(self, x_o, num_samples, seed):
        return self.sample_prior(num_samples, generator=torch.Generator().manual_seed(seed))


class ToyWithBadReference(ToyTask):
    def reference_posterior(self, x_o, num_samples, seed):
        return torch.zeros(num_samples)


def test_a_task_of_your_own_brings_its_reference_for_c2st():
    config = RunConfig.from_preset("damped-oscillator", "fast", posterior_samples=50)
    x_o = torch.zeros(config.num_observations, 64)
    sims = Simulations(*[torch.zeros(1)] * 3, torch.zeros(1, 1), x_o, torch.zeros(1), x_o)
    refs = stages.references(ToyWithReference(), sims, config, False)
    assert len(refs) == config.num_observations
    assert all(stages.reference_samples(r).shape == (50, 2) for r in refs)
    assert stages.references(ToyTask(), sims, config, False) == []  # none: calibration only
    with pytest.raises(ValueError, match=r"reference_posterior must return samples \(num_sampl"):
        stages.references(ToyWithBadReference(), sims, config, False)
