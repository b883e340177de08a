"""Symmetry-NPE benchmark (issue 3): VICReg-pretrained embedding + NPE against two baselines.

For each task (damped oscillator, sine-Gaussian) and each training budget (default 10^4 and 10^5
simulations), in one process and from the same seeded simulations:

* ``raw_npe``: sbi's NPE on the raw data with its default network (MAF, 5 transforms, 50 hidden
  units, per-index z-scoring);
* ``end_to_end_npe``: sbi's NPE with the same ``ConvEncoder1D`` as embedding, trained jointly with
  the flow from scratch (no pretraining);
* ``symmetry_npe[<freeze>]``: the encoder pretrained once per task with VICReg on re-simulated
  views (the same pretrained weights for every budget and freeze mode), then NPE with the
  embedding frozen entirely (``all``), frozen up to its head (``backbone``, the paper's choice)
  or fine-tuned entirely (``none``).

Measured per method: C2ST (sbi's random forest, 5 folds) against the exact quadrature reference
(shift marginalised) over observations drawn from the prior (theta and shift), with the mean, its
standard error and every per-observation value in the JSON; SBC, expected coverage and TARP from
sbi over test pairs from the joint; the posterior standard deviation against the reference's and
against the Cramer-Rao bound with the shift profiled out; trainable parameters; multiply-
accumulates of one training forward pass at batch 1000 (linear and convolution layers; the
parameter-free input average pooling is not counted); wall time of training, of pretraining, and
of drawing 10^4 posterior samples for one observation.

References are cached on disk in ``--cache-dir`` (default: a folder under the system's temporary
directory), never in the repository.

    .venv/bin/python benchmarks/symmetry_npe.py                  # the full benchmark
    .venv/bin/python benchmarks/symmetry_npe.py --quick --out /tmp/quick.md   # smoke run

The encoder, expander, flow and pretraining are the workflow's ``fast`` preset's with this
benchmark's overrides (``benchmarks/plans.py``); training is :mod:`sbi_symmetry.workflow.methods`'.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however loaded

from _common import (
    Log,
    add_shared_flags,
    command_line,
    make_log,
    platform_stamp,
    table,
    write_json,
    write_text,
)
from _npe_eval import LARGE, Evaluation, Settings, evaluate, make_evaluation, pretrain
from plans import QUICK_PRETRAIN, SYMMETRY_NPE, TRAINING

from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.simulation.counting import call_budget
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
from sbi_symmetry.tasks import SignalInNoiseTask, get_task
from sbi_symmetry.workflow.methods import TrainedMethod, end_to_end_npe, raw_npe, symmetry_npe

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "symmetry_npe.md"
TASKS = ("damped-oscillator", "sine-gaussian")
PLAN = SYMMETRY_NPE


# ------------------------------------------------------------------------------- one task
def train_method(
    label: str,
    task: SignalInNoiseTask,
    data: tuple[Tensor, Tensor],
    encoder: ConvEncoder1D,
    embedding: SymmetryEmbedding,
    train: dict[str, Any],
) -> TrainedMethod:
    """Train ``raw_npe``, ``end_to_end_npe`` or ``symmetry_npe[<freeze>]`` (shared embedding)."""
    theta, x = data
    if label == "raw_npe":
        return raw_npe(task, theta, x, **train)
    if label == "end_to_end_npe":
        return end_to_end_npe(task, theta, x, encoder, flow_kwargs=PLAN.flow, **train)
    frozen = copy.deepcopy(embedding)
    frozen.freeze = label[len("symmetry_npe[") : -1]
    return symmetry_npe(task, theta, x, encoder, embedding=frozen, flow_kwargs=PLAN.flow, **train)


def budget_rows(
    name: str,
    task: SignalInNoiseTask,
    budget: tuple[int, int],
    data: tuple[Tensor, Tensor],
    shared: tuple[ConvEncoder1D, SymmetryEmbedding, dict[str, Any], Evaluation],
    cfg: Settings,
    log: Log,
) -> list[dict[str, Any]]:
    """Every method at one budget (``n`` simulations, at most ``max_epochs``), evaluated."""
    (n, max_epochs), (encoder, embedding, pre, ev) = budget, shared
    train = {
        "max_num_epochs": max_epochs,
        "training_batch_size": cfg.training_batch_size,
        "stop_after_epochs": cfg.stop_after_epochs,
        "learning_rate": cfg.learning_rate,
        "show_progress_bars": False,
    }
    modes = cfg.freeze if n <= LARGE else cfg.freeze_large
    rows = []
    for label in ["raw_npe", "end_to_end_npe", *(f"symmetry_npe[{m}]" for m in modes)]:
        torch.manual_seed(cfg.seed + n)
        method = train_method(label, task, data, encoder, embedding, train)
        result = evaluate(method, task, ev, cfg)
        result.update({"task": name, "simulations": n, "method": label, "train": train})
        if label.startswith("symmetry_npe"):
            result["costs"]["pretrain_seconds"] = pre["pretrain_seconds"]
        result["costs"]["simulator_calls"] = call_budget(n, view_calls(label, pre))
        rows.append(result)
        log(
            f"[{name}] n={n} {label}: C2ST {result['c2st']['mean']:.3f} "
            f"+- {result['c2st']['sem']:.3f}, train {method.train_seconds:.0f} s "
            f"({method.epochs} epochs), MACs {method.macs_per_1000:.3g}"
        )
    return rows


def run_task(name: str, cfg: Settings, log: Log) -> dict[str, Any]:
    """References, pretraining once, then every method at every budget, for one task."""
    task = get_task(name)
    assert isinstance(task, SignalInNoiseTask)
    torch.manual_seed(cfg.seed)
    encoder = ConvEncoder1D.for_task(task, **PLAN.encoder)
    start = time.perf_counter()
    ev = make_evaluation(task, cfg)
    log(
        f"[{name}] references for {cfg.observations} observations: "
        f"{time.perf_counter() - start:.0f} s"
    )
    embedding, pre = pretrain(task, cfg, encoder)
    log(
        f"[{name}] pretraining: {pre['pretrain_seconds']:.0f} s, {pre['epochs']} epochs, "
        f"{pre['pretrain_simulator_calls']} simulator calls, effective rank "
        f"{pre['final_effective_rank']:.2f}"
    )
    g = torch.Generator().manual_seed(cfg.seed)
    theta_all, x_all = task.sample_joint(max(cfg.simulations), generator=g)
    rows: list[dict[str, Any]] = []
    for budget in zip(cfg.simulations, cfg.max_num_epochs, strict=True):
        data = (theta_all[: budget[0]], x_all[: budget[0]])
        rows += budget_rows(name, task, budget, data, (encoder, embedding, pre, ev), cfg, log)
    ref_std_over_crb = [
        (ref.double().std(0) / ev.crb[i]).tolist() for i, ref in enumerate(ev.references)
    ]
    return {
        "task": name,
        "encoder": {"input_length": task.x_shape[-1], **PLAN.encoder},
        "pretraining": pre,
        "reference_seconds": ev.reference_seconds,
        "reference_std_over_crb_mean": torch.tensor(ref_std_over_crb).mean(0).tolist(),
        "observations": {"theta": ev.theta_o.tolist(), "shift": ev.shift_o.tolist()},
        "rows": rows,
    }


def view_calls(label: str, pretraining: dict[str, Any]) -> int:
    """Simulator calls a method made besides its training set: symmetry NPE's pretraining views.

    Every symmetry-NPE row shares the task's one pretraining, so each is charged all of it.
    """
    return pretraining["pretrain_simulator_calls"] if label.startswith("symmetry_npe") else 0


# ------------------------------------------------------------------------------- report
def _fmt_pair(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def results_table(results: list[dict[str, Any]]) -> str:
    """One row per task, budget and method; 'sims' as sbi counts them, 'simulator calls' all."""
    header = [
        "task",
        "sims",
        "simulator calls",
        "method",
        "C2ST mean +- sem",
        "std / ref",
        "std / CRB",
        "SBC KS p (min)",
        "max cov. err",
        "TARP ATC",
        "trainable params",
        "MACs @1000",
        "train s (epochs)",
        "pretrain s",
        "10^4 samples s",
    ]
    rows = []
    for res in results:
        for r in res["rows"]:
            c, cal, cost = r["c2st"], r["calibration"], r["costs"]
            rows.append(
                [
                    res["task"],
                    str(r["simulations"]),
                    f"{r['simulations'] + view_calls(r['method'], res['pretraining']):,}",
                    r["method"],
                    f"{c['mean']:.3f} +- {c['sem']:.3f}",
                    _fmt_pair(r["std_ratio_mean"]),
                    _fmt_pair(r["std_over_crb_mean"]),
                    f"{min(cal['ks_pvals']):.3f}",
                    f"{cal['max_coverage_error']:.3f}",
                    f"{cal['tarp_atc']:+.3f}",
                    str(cost["trainable_parameters"]),
                    f"{cost['macs_per_1000']:.3g}",
                    f"{cost['train_seconds']:.0f} ({cost['epochs']})",
                    f"{cost.get('pretrain_seconds', 0.0):.0f}",
                    f"{r['sample_seconds_10k']:.2f}",
                ]
            )
    return "\n".join(table(header, rows))


def machine_notes(threads: int) -> str:
    """What the numbers were measured on."""
    return (
        f"{platform_stamp()}, {os.cpu_count()} CPU cores shared with other jobs (timings are "
        f"noisy), torch.set_num_threads({threads})."
    )


def targets(results: list[dict[str, Any]]) -> list[str]:
    """Issue 3's targets against the measured rows (best symmetry-NPE freeze mode and each)."""
    header = [
        "task",
        "sims",
        "symmetry NPE",
        "C2ST (target)",
        "met",
        "MACs / raw NPE (<= 0.25)",
        "SBC calibrated (KS, Bonferroni 5%)",
    ]
    rows = []
    for res in results:
        raw = {r["simulations"]: r for r in res["rows"] if r["method"] == "raw_npe"}
        for r in res["rows"]:
            if not r["method"].startswith("symmetry_npe"):
                continue
            n = r["simulations"]
            goal = 0.60 if n <= LARGE else 0.55
            c2st = r["c2st"]["mean"]
            ratio = r["costs"]["macs_per_1000"] / raw[n]["costs"]["macs_per_1000"]
            met = "yes" if c2st <= goal else f"no (+{c2st - goal:.3f})"
            calibrated = "yes" if r["calibration"]["calibrated"] else "no"
            cells = [f"{c2st:.3f} ({goal:.2f})", met, f"{ratio:.3f}", calibrated]
            rows.append([res["task"], str(n), r["method"], *cells])
    return table(header, rows)


def settings_lines(cfg: Settings) -> list[str]:
    """The settings paragraph of the results file."""
    return [
        f"- Encoder (both embedding methods, both tasks): `ConvEncoder1D(L, **{PLAN.encoder})`; "
        f"flow behind it: `posterior_nn('maf', **{PLAN.flow})`. Raw NPE: sbi's default "
        "`posterior_nn('maf')` (5 transforms, 50 hidden units, per-index z-scoring).",
        f"- Pretraining: `pretrain_vicreg(..., num_simulations={cfg.pretrain_simulations}, "
        f"expander=Expander(8, **{PLAN.expander}), **{cfg.pretrain})`, fresh views every epoch; "
        "once per task, shared by every budget and freeze mode.",
        f"- sbi training (every method): learning rate {cfg.learning_rate}, batch "
        f"{cfg.training_batch_size}, early stopping after {cfg.stop_after_epochs} epochs "
        f"without improvement, at most {cfg.max_num_epochs} epochs per budget "
        f"{cfg.simulations} (sbi counts one more).",
        f"- Accuracy: {cfg.observations} observations with theta and shift drawn from their "
        f"priors; C2ST with sbi's random forest (5-fold) on {cfg.posterior_samples} posterior "
        f"against {cfg.reference_samples} exact-quadrature reference samples (shift "
        "marginalised). std / ref: posterior std over the reference's, mean over observations; "
        "std / CRB: over the Cramer-Rao bound with the shift profiled out (the reference "
        "itself is listed below).",
        f"- Calibration: {cfg.sbc_pairs} test pairs from the joint, "
        f"{cfg.sbc_posterior_samples} posterior samples each; sbi's `run_sbc`/`check_sbc` "
        "(KS p-values; the smallest is shown), expected coverage error of central intervals "
        "(largest gap), TARP area to curve (0 is ideal).",
        "- Costs: trainable parameters during sbi's training; multiply-accumulates of one "
        "training forward pass (embedding + flow log-probability) at batch 1000, counting "
        "linear and convolution layers only (the input average pooling and element-wise "
        "operations are not counted, as is customary); train wall time excludes pretraining; "
        "10^4 samples: one observation, after a warm-up.",
    ]


def write_results(
    out: Path, command: str, cfg: Settings, results: list[dict[str, Any]], seconds: float
) -> None:
    """Write the JSON of raw numbers and the markdown results beside it."""
    json_path = out.with_suffix(".json")
    payload = {
        "command": command,
        "machine": machine_notes(cfg.threads),
        "settings": cfg.__dict__,
        "flow": PLAN.flow,
        "total_seconds": seconds,
        "results": results,
    }
    write_json(json_path, payload, default=float)
    pre_lines = [
        f"- {r['task']}: {r['pretraining']['pretrain_seconds']:.0f} s, "
        f"{r['pretraining']['epochs']} epochs, "
        f"{r['pretraining']['pretrain_simulator_calls']} simulator calls "
        f"({r['pretraining']['pretrain_parameter_draws']} parameter draws), final effective "
        f"rank {r['pretraining']['final_effective_rank']:.2f}, validation invariance error "
        f"{r['pretraining']['final_val_invariance_error']:.3f}; reference std / CRB "
        f"{_fmt_pair(r['reference_std_over_crb_mean'])}"
        for r in results
    ]
    text = [
        "# Symmetry NPE benchmark (issue 3)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine_notes(cfg.threads)} Total wall time {seconds / 60:.1f} min.",
        "",
        results_table(results),
        "",
        "Targets of issue 3:",
        "",
        *targets(results),
        "",
        "Settings:",
        "",
        *settings_lines(cfg),
        "",
        "Pretraining (once per task, shared by every budget and freeze mode):",
        "",
        *pre_lines,
        "",
        f"Raw numbers (per-observation C2ST, coverage, histories): `{json_path.name}`.",
        "",
    ]
    write_text(out, "\n".join(text))


# ------------------------------------------------------------------------------- CLI
def parse(argv: list[str] | None = None) -> tuple[Settings, Path]:
    """The run's settings and the results file from the flags; ``--quick`` shrinks the run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    helps = {"cache_dir": "reference cache (default: temp folder)", "quick": "tiny smoke run"}
    add_shared_flags(p, TASKS, helps)
    p.add_argument("--simulations", nargs="+", type=int, default=[10_000, 100_000])
    modes = ["backbone", "none", "all"]
    p.add_argument("--freeze", nargs="+", default=modes, choices=modes, help="up to 10^4 sims")
    p.add_argument(
        "--freeze-large",
        nargs="+",
        default=["backbone", "none"],
        choices=modes,
        help=f"freeze modes at budgets above {LARGE}",
    )
    p.add_argument("--pretrain-simulations", type=int, default=PLAN.pretrain_simulations)
    p.add_argument("--pretrain-epochs", type=int, default=PLAN.pretrain["max_epochs"])
    p.add_argument(
        "--max-epochs",
        nargs="+",
        type=int,
        default=None,
        help="cap on sbi's training epochs, one per --simulations (default 300 up to 10^4 "
        "simulations, 100 above)",
    )
    p.add_argument("--training-batch-size", type=int, default=TRAINING["batch_size"])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)
    cache = a.cache_dir or str(Path(tempfile.gettempdir()) / "sbi_symmetry_references")
    epochs = {"max_epochs": a.pretrain_epochs, "stop_after_epochs": a.pretrain_epochs}
    max_epochs = a.max_epochs or [300 if n <= LARGE else 100 for n in a.simulations]
    if len(max_epochs) == 1:
        max_epochs = max_epochs * len(a.simulations)
    if len(max_epochs) != len(a.simulations):
        p.error("--max-epochs takes one value, or one per --simulations")
    cfg = Settings(
        tasks=a.tasks,
        simulations=a.simulations,
        observations=a.observations,
        sbc_pairs=a.sbc_pairs,
        posterior_samples=a.posterior_samples,
        reference_samples=a.posterior_samples,
        sbc_posterior_samples=500,
        freeze=a.freeze,
        freeze_large=a.freeze_large,
        pretrain_simulations=a.pretrain_simulations,
        pretrain={**PLAN.pretrain, **epochs},
        max_num_epochs=max_epochs,
        training_batch_size=a.training_batch_size,
        learning_rate=a.learning_rate,
        stop_after_epochs=a.stop_after_epochs,
        seed=a.seed,
        threads=a.threads,
        cache_dir=cache,
    )
    if a.quick:
        cfg.tasks = a.tasks if "--tasks" in (argv or sys.argv) else ["damped-oscillator"]
        cfg.simulations = [300]
        cfg.observations = 2
        cfg.sbc_pairs = 20
        cfg.posterior_samples = cfg.reference_samples = 200
        cfg.sbc_posterior_samples = 50
        cfg.freeze = ["backbone"]
        cfg.pretrain_simulations = 400
        cfg.pretrain = {**PLAN.pretrain, **QUICK_PRETRAIN}
        cfg.max_num_epochs = [2]
        cfg.reference_kwargs = {"num_offsets": 2, "initial_cells": 16, "tv_tol": 0.05}
        cfg.sample_timing_draws = 200
    return cfg, a.out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark, print the table, write the results files."""
    cfg, out = parse(argv)
    torch.set_num_threads(cfg.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    command = command_line("symmetry_npe.py", argv or sys.argv[1:])
    log = make_log(minutes=True)
    start = time.perf_counter()
    results = [run_task(name, cfg, log) for name in cfg.tasks]
    seconds = time.perf_counter() - start
    print(results_table(results))
    write_results(out, command, cfg, results, seconds)
    log(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
