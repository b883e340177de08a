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
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sbi_symmetry.evaluation import c2st_score, calibrate, std_ratio, summarise
from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.nets.heads import Expander
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
from sbi_symmetry.symmetry.pretrain import pretrain_vicreg
from sbi_symmetry.tasks import SignalInNoiseTask, get_task
from sbi_symmetry.workflow.config import RunConfig
from sbi_symmetry.workflow.methods import (
    TrainedMethod,
    end_to_end_npe,
    raw_npe,
    symmetry_npe,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "symmetry_npe.md"
TASKS = ("damped-oscillator", "sine-gaussian")

#: ConvEncoder1D settings (both tasks): average the input over windows of 8 samples (SHO: >= 57
#: samples per period, SG: >= 25), then one residual block of 6-channel convolutions of width 5,
#: mean pooling and a small head to an 8-D summary. Sized so that the whole NPE forward pass
#: (encoder + flow) stays under a quarter of sbi's raw NPE; see the results file for the choice.
#: These are the fast preset's settings (the same for both tasks).
_FAST = RunConfig.from_preset("damped-oscillator", "fast")
ENCODER: dict[str, Any] = dict(_FAST.encoder)
#: The VICReg expander (pretraining only): 8 -> 64 -> 64 -> 32.
EXPANDER: dict[str, Any] = dict(_FAST.expander)
#: ``posterior_nn`` arguments of the flow behind an embedding (both embedding methods).
FLOW: dict[str, Any] = dict(_FAST.flow)
#: VICReg pretraining settings (``PretrainConfig`` overrides); fresh views every epoch. The fast
#: preset's, trained three times as long (120 epochs, no early stop).
PRETRAIN: dict[str, Any] = {**_FAST.pretrain, "max_epochs": 120, "stop_after_epochs": 120}
PRETRAIN_SIMULATIONS = 100_000
#: Budgets above this run only the ``--freeze-large`` modes of symmetry NPE.
LARGE = 10_000
#: Learning rate of sbi's training for every method (sbi's default is 5e-4).
LEARNING_RATE = 1e-3


@dataclass
class Settings:
    """Sizes of one benchmark run."""

    tasks: list[str]
    simulations: list[int]
    observations: int
    sbc_pairs: int
    posterior_samples: int
    reference_samples: int
    sbc_posterior_samples: int
    freeze: list[str]
    freeze_large: list[str]
    pretrain_simulations: int
    pretrain: dict[str, Any]
    max_num_epochs: list[int]
    training_batch_size: int
    learning_rate: float
    stop_after_epochs: int
    seed: int
    threads: int
    cache_dir: str
    reference_kwargs: dict[str, Any] = field(default_factory=dict)
    sample_timing_draws: int = 10_000


class CountingViews:
    """The task's re-simulated views, counting simulator calls (two views per parameter)."""

    input_kind = "theta"

    def __init__(self, task: SignalInNoiseTask) -> None:
        self.views = task.views
        self.simulator_calls = 0

    def __call__(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        self.simulator_calls += 2 * theta.shape[0]
        return self.views(theta)


# ------------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """Held-out observations with references, and SBC pairs, for one task."""

    theta_o: Tensor
    shift_o: Tensor
    x_o: Tensor
    references: list[Tensor]
    reference_seconds: list[float]
    crb: Tensor
    sbc_theta: Tensor
    sbc_x: Tensor


def make_evaluation(task: SignalInNoiseTask, cfg: Settings) -> Evaluation:
    g = torch.Generator().manual_seed(cfg.seed + 1_000)
    theta_o = task.sample_prior(cfg.observations, generator=g)
    shift_o = task.sample_nuisance(cfg.observations, generator=g)
    x_o = task.simulate(theta_o, shift_o, generator=g)
    refs, seconds = [], []
    for i in range(cfg.observations):
        start = time.perf_counter()
        ref = task.reference_posterior(
            x_o[i : i + 1],
            num_samples=cfg.reference_samples,
            seed=i,
            cache_dir=cfg.cache_dir,
            **cfg.reference_kwargs,
        )
        seconds.append(time.perf_counter() - start)
        refs.append(ref.samples)
    crb = task.cramer_rao_bound(theta_o.double(), shift_o.double())  # shift profiled out
    gs = torch.Generator().manual_seed(cfg.seed + 2_000)
    sbc_theta = task.sample_prior(cfg.sbc_pairs, generator=gs)
    sbc_x = task.simulate(sbc_theta, generator=gs)
    return Evaluation(theta_o, shift_o, x_o, refs, seconds, crb, sbc_theta, sbc_x)


def evaluate(
    method: TrainedMethod, task: SignalInNoiseTask, ev: Evaluation, cfg: Settings
) -> dict[str, Any]:
    torch.manual_seed(cfg.seed + 3_000)
    c2st, ratios, crb_ratios = [], [], []
    for i in range(ev.x_o.shape[0]):
        samples = method.sample(ev.x_o[i : i + 1], cfg.posterior_samples)
        c2st.append(c2st_score(samples, ev.references[i], max_samples=None, seed=i))
        ratios.append(std_ratio(samples, ev.references[i]).tolist())
        crb_ratios.append((samples.double().std(0) / ev.crb[i]).tolist())
    cal = calibrate(
        method.posterior,
        task.prior,
        ev.sbc_theta,
        ev.sbc_x,
        num_posterior_samples=cfg.sbc_posterior_samples,
        seed=cfg.seed,
    )
    x_one = ev.x_o[:1]
    method.sample(x_one, 100)  # warm-up
    start = time.perf_counter()
    method.sample(x_one, cfg.sample_timing_draws)
    sample_seconds = time.perf_counter() - start
    return {
        "c2st": summarise(c2st),
        "c2st_per_observation": c2st,
        "std_ratio_per_observation": ratios,
        "std_ratio_mean": torch.tensor(ratios).mean(0).tolist(),
        "std_over_crb_per_observation": crb_ratios,
        "std_over_crb_mean": torch.tensor(crb_ratios).mean(0).tolist(),
        "calibration": cal.to_dict(),
        "sample_seconds_10k": sample_seconds,
        "costs": method.summary(),
        "val_loss_best": float(min(method.history["validation"])),
    }


# ------------------------------------------------------------------------------- one task
def pretrain(
    task: SignalInNoiseTask, cfg: Settings, encoder: ConvEncoder1D
) -> tuple[SymmetryEmbedding, dict[str, Any]]:
    views = CountingViews(task)
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    embedding = pretrain_vicreg(
        copy.deepcopy(encoder),
        views,
        task.prior,
        num_simulations=cfg.pretrain_simulations,
        expander=Expander(encoder.output_dim, **EXPANDER),
        seed=cfg.seed,
        show_progress_bar=False,
        **cfg.pretrain,
    )
    seconds = time.perf_counter() - start
    h = embedding.history
    info = {
        "pretrain_seconds": seconds,
        "pretrain_simulator_calls": views.simulator_calls,
        "pretrain_parameter_draws": cfg.pretrain_simulations,
        "epochs": len(h["epoch"]),
        "final_effective_rank": h["effective_rank"][-1],
        "final_summary_std": h["summary_std"][-1],
        "final_val_invariance_error": h["val_invariance_error"][-1],
        "history": {k: v for k, v in h.items() if k != "summary_std"},
    }
    return embedding, info


def run_task(name: str, cfg: Settings, log: Any) -> dict[str, Any]:
    task = get_task(name)
    assert isinstance(task, SignalInNoiseTask)
    encoder_kwargs = ENCODER
    torch.manual_seed(cfg.seed)
    encoder = ConvEncoder1D.for_task(task, **encoder_kwargs)

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
    n_max = max(cfg.simulations)
    theta_all, x_all = task.sample_joint(n_max, generator=g)
    rows: list[dict[str, Any]] = []
    for n, max_epochs in zip(cfg.simulations, cfg.max_num_epochs, strict=True):
        theta, x = theta_all[:n], x_all[:n]
        train = {
            "max_num_epochs": max_epochs,
            "training_batch_size": cfg.training_batch_size,
            "stop_after_epochs": cfg.stop_after_epochs,
            "learning_rate": cfg.learning_rate,
            "show_progress_bars": False,
        }
        modes = cfg.freeze if n <= LARGE else cfg.freeze_large
        labels = ["raw_npe", "end_to_end_npe", *(f"symmetry_npe[{m}]" for m in modes)]
        for label in labels:
            torch.manual_seed(cfg.seed + n)
            if label == "raw_npe":
                method = raw_npe(task, theta, x, **train)
            elif label == "end_to_end_npe":
                method = end_to_end_npe(task, theta, x, encoder, flow_kwargs=FLOW, **train)
            else:
                frozen = copy.deepcopy(embedding)
                frozen.freeze = label[len("symmetry_npe[") : -1]
                method = symmetry_npe(
                    task, theta, x, encoder, embedding=frozen, flow_kwargs=FLOW, **train
                )
            result = evaluate(method, task, ev, cfg)
            result.update({"task": name, "simulations": n, "method": label, "train": train})
            if label.startswith("symmetry_npe"):
                result["costs"]["pretrain_seconds"] = pre["pretrain_seconds"]
            rows.append(result)
            log(
                f"[{name}] n={n} {label}: C2ST {result['c2st']['mean']:.3f} "
                f"+- {result['c2st']['sem']:.3f}, train {method.train_seconds:.0f} s "
                f"({method.epochs} epochs), MACs {method.macs_per_1000:.3g}"
            )
    ref_std_over_crb = [
        (ref.double().std(0) / ev.crb[i]).tolist() for i, ref in enumerate(ev.references)
    ]
    return {
        "task": name,
        "encoder": {"input_length": task.x_shape[-1], **encoder_kwargs},
        "pretraining": pre,
        "reference_seconds": ev.reference_seconds,
        "reference_std_over_crb_mean": torch.tensor(ref_std_over_crb).mean(0).tolist(),
        "observations": {"theta": ev.theta_o.tolist(), "shift": ev.shift_o.tolist()},
        "rows": rows,
    }


# ------------------------------------------------------------------------------- report
def _fmt_pair(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| task | sims | method | C2ST mean +- sem | std / ref | std / CRB | SBC KS p (min) "
        "| max cov. err | TARP ATC | trainable params | MACs @1000 | train s (epochs) "
        "| pretrain s | 10^4 samples s |"
    )
    lines = [head, "|" + "---|" * 14]
    for res in results:
        for r in res["rows"]:
            c, cal, cost = r["c2st"], r["calibration"], r["costs"]
            pre = cost.get("pretrain_seconds", 0.0)
            lines.append(
                f"| {res['task']} | {r['simulations']} | {r['method']} "
                f"| {c['mean']:.3f} +- {c['sem']:.3f} | {_fmt_pair(r['std_ratio_mean'])} "
                f"| {_fmt_pair(r['std_over_crb_mean'])} | {min(cal['ks_pvals']):.3f} "
                f"| {cal['max_coverage_error']:.3f} | {cal['tarp_atc']:+.3f} "
                f"| {cost['trainable_parameters']} | {cost['macs_per_1000']:.3g} "
                f"| {cost['train_seconds']:.0f} ({cost['epochs']}) "
                f"| {pre:.0f} | {r['sample_seconds_10k']:.2f} |"
            )
    return "\n".join(lines)


def machine_notes(threads: int) -> str:
    return (
        f"{platform.platform()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPU cores shared with other jobs (timings are noisy), "
        f"torch.set_num_threads({threads})."
    )


def targets(results: list[dict[str, Any]]) -> list[str]:
    """Issue 3's targets against the measured rows (best symmetry-NPE freeze mode and each)."""
    lines = [
        "| task | sims | symmetry NPE | C2ST (target) | met | MACs / raw NPE (<= 0.25) "
        "| SBC calibrated (KS, Bonferroni 5%) |",
        "|---|---|---|---|---|---|---|",
    ]
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
            lines.append(
                f"| {res['task']} | {n} | {r['method']} | {c2st:.3f} ({goal:.2f}) | {met} "
                f"| {ratio:.3f} | {'yes' if r['calibration']['calibrated'] else 'no'} |"
            )
    return lines


def settings_lines(cfg: Settings) -> list[str]:
    return [
        f"- Encoder (both embedding methods, both tasks): `ConvEncoder1D(L, **{ENCODER})`; "
        f"flow behind it: `posterior_nn('maf', **{FLOW})`. Raw NPE: sbi's default "
        "`posterior_nn('maf')` (5 transforms, 50 hidden units, per-index z-scoring).",
        f"- Pretraining: `pretrain_vicreg(..., num_simulations={cfg.pretrain_simulations}, "
        f"expander=Expander(8, **{EXPANDER}), **{cfg.pretrain})`, fresh views every epoch; "
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
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_suffix(".json")
    payload = {
        "command": command,
        "machine": machine_notes(cfg.threads),
        "settings": cfg.__dict__,
        "flow": FLOW,
        "total_seconds": seconds,
        "results": results,
    }
    json_path.write_text(json.dumps(payload, indent=1, default=float))
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
    text = "\n".join(
        [
            "# Symmetry NPE benchmark (issue 3)",
            "",
            f"Command: `{command}`",
            "",
            f"Machine: {machine_notes(cfg.threads)} Total wall time {seconds / 60:.1f} min.",
            "",
            table(results),
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
    )
    out.write_text(text)


# ------------------------------------------------------------------------------- CLI
def parse(argv: list[str] | None = None) -> tuple[Settings, Path]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--simulations", nargs="+", type=int, default=[10_000, 100_000])
    p.add_argument("--observations", type=int, default=10)
    p.add_argument("--sbc-pairs", type=int, default=200)
    p.add_argument("--posterior-samples", type=int, default=2_000)
    modes = ["backbone", "none", "all"]
    p.add_argument("--freeze", nargs="+", default=modes, choices=modes, help="up to 10^4 sims")
    p.add_argument(
        "--freeze-large",
        nargs="+",
        default=["backbone", "none"],
        choices=modes,
        help=f"freeze modes at budgets above {LARGE}",
    )
    p.add_argument("--pretrain-simulations", type=int, default=PRETRAIN_SIMULATIONS)
    p.add_argument("--pretrain-epochs", type=int, default=PRETRAIN["max_epochs"])
    p.add_argument(
        "--max-epochs",
        nargs="+",
        type=int,
        default=None,
        help="cap on sbi's training epochs, one per --simulations (default 300 up to 10^4 "
        "simulations, 100 above)",
    )
    p.add_argument("--learning-rate", type=float, default=LEARNING_RATE)
    p.add_argument("--training-batch-size", type=int, default=200)
    p.add_argument("--stop-after-epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="reference cache (default: temp folder)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)
    cache = a.cache_dir or str(Path(tempfile.gettempdir()) / "sbi_symmetry_references")
    pre = {**PRETRAIN, "max_epochs": a.pretrain_epochs, "stop_after_epochs": a.pretrain_epochs}
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
        pretrain=pre,
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
        cfg.pretrain = {**PRETRAIN, "batch_size": 64, "max_epochs": 2}
        cfg.max_num_epochs = [2]
        cfg.reference_kwargs = {"num_offsets": 2, "initial_cells": 16, "tv_tol": 0.05}
        cfg.sample_timing_draws = 200
    return cfg, a.out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    cfg, out = parse(argv)
    torch.set_num_threads(cfg.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    command = shlex.join(
        [".venv/bin/python", "benchmarks/symmetry_npe.py", *(argv or sys.argv[1:])]
    )
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"{(time.perf_counter() - start) / 60:6.1f} min  {msg}", flush=True)

    results = [run_task(name, cfg, log) for name in cfg.tasks]
    seconds = time.perf_counter() - start
    print(table(results))
    write_results(out, command, cfg, results, seconds)
    log(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
