"""Embed and Emulate against sbi's NRE_C with the same encoder and against symmetry-NPE.

For each task, in one process and from the same seeded simulations:

* ``embed_emulate``: :class:`~sbi_symmetry.emulate.EmbedEmulate` (symmetric InfoNCE, two towers);
* ``embed_emulate_vicreg``: the same plus the VICReg symmetry regulariser on the encoder
  (``views=task.views, symmetry_weight=w``), on the tasks whose views are cheap to simulate;
* ``nre_c``: sbi's ``NRE_C`` with the same encoder (same architecture and initial weights) as
  x-embedding, sbi's default classifier (``resnet``) and default ``num_classes=5``;
* ``symmetry_npe``: VICReg-pretrained embedding with the same encoder architecture + sbi's NPE.

Measured: C2ST against the exact quadrature reference (damped oscillator, sine-Gaussian) over
prior-drawn observations (theta and nuisance both from their priors); SBC (KS p-values), the
largest coverage error and TARP (ATC, KS p) over calibration pairs; posterior contraction
``1 - posterior var / prior var``; trainable parameters and multiply-accumulates at batch 1000;
training time per epoch, in all and up to the best epoch; the wall time of one optimisation step
at sbi's default batch of 200 (E&E and NRE_C timed alternately on the same batches); and the
wall time for 10^4 posterior samples (slice MCMC with the same settings for both ratio methods,
sbi's direct sampling for NPE).

    .venv/bin/python benchmarks/embed_emulate.py                # the full run (results/ files)
    .venv/bin/python benchmarks/embed_emulate.py --quick --out /tmp/ee.md   # smoke test

The settings come from the workflow's ``fast`` preset with this benchmark's overrides
(``benchmarks/plans.py``); training from :mod:`sbi_symmetry.workflow.methods`
(``benchmarks/_ee_methods.py``); the results file from ``benchmarks/_ee_report.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however loaded

from _common import (
    Log,
    add_shared_flags,
    c2st_scores,
    command_line,
    make_log,
    reference_samples,
    write_text,
)
from _ee_methods import (
    LABELS,
    METHODS,
    TASKS,
    Settings,
    draw_observation_samples,
    epoch_statistics,
    make_task,
    sbc_samples,
    speed_check,
    time_training_steps,
    train_methods,
)
from _ee_report import machine_notes, markdown_tables, render_markdown, write_results
from plans import EE_PLANS, TRAINING

from sbi_symmetry.emulate import EmbedEmulateRatioEstimator
from sbi_symmetry.evaluation import calibrate, summarise
from sbi_symmetry.symmetry.diagnostics import invariance_error
from sbi_symmetry.tasks import NuisanceTask, SignalInNoiseTask
from sbi_symmetry.workflow import methods as M

NO_REFERENCE_OBS = 3
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "embed_emulate.md"


# ----------------------------------------------------------------------------------- evaluation
@dataclass
class TaskData:
    """One task's seeded simulations: training pairs, observations, calibration pairs."""

    theta: Tensor
    x: Tensor
    theta_o: Tensor
    nuisance_o: Tensor
    x_o: Tensor
    theta_cal: Tensor
    x_cal: Tensor
    gen: torch.Generator
    simulate_seconds: float
    references: list[Tensor] = field(default_factory=list)


def simulate(task: NuisanceTask, cfg: Settings, num_obs: int) -> TaskData:
    """Every simulation of a task from one seeded generator (which later draws continue)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    theta, x = task.sample_joint(cfg.simulations, generator=gen)
    theta_o = task.sample_prior(num_obs, generator=gen)
    nuisance_o = task.sample_nuisance(num_obs, generator=gen)
    x_o = task.simulate(theta_o, nuisance_o, generator=gen)
    theta_cal, x_cal = task.sample_joint(cfg.sbc_pairs, generator=gen)
    seconds = time.perf_counter() - start
    return TaskData(theta, x, theta_o, nuisance_o, x_o, theta_cal, x_cal, gen, seconds)


class _Encoded(nn.Module):
    """E&E's data tower as the critic sees it: ``f(x)`` on the unit sphere (cosine)."""

    def __init__(self, estimator: EmbedEmulateRatioEstimator) -> None:
        super().__init__()
        self.estimator = estimator

    def forward(self, x: Tensor) -> Tensor:
        """The unit-norm embedding ``f(x)`` (the estimator's public ``encode``)."""
        return self.estimator.encode(x)


def summary_network(m: M.TrainedMethod) -> nn.Module:
    """The learned data summary of a method, for the invariance error."""
    if isinstance(m.estimator, EmbedEmulateRatioEstimator):
        return _Encoded(m.estimator)
    if m.name == "symmetry_npe":
        return m.extra["embedding"]
    return m.estimator.embedding_net_x  # NRE_C: z-scoring + the encoder


def calibration_entry(
    m: M.TrainedMethod, task: NuisanceTask, data: TaskData, prior_var: Tensor, cfg: Settings
) -> dict[str, Any]:
    """SBC/coverage/TARP over the calibration pairs, the contraction, the invariance error."""
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*batched sampling.*")
        draws = sbc_samples(m, data.x_cal, cfg)
    sbc_seconds = time.perf_counter() - start
    cal = calibrate(
        m.posterior,
        task.prior,
        data.theta_cal,
        data.x_cal,
        num_posterior_samples=cfg.sbc_samples,
        samples=draws,
        seed=cfg.seed,
    )
    contraction = 1 - draws.double().var(0) / prior_var  # (N, d)
    return {
        "calibration": {**cal.to_dict(), "sampling_seconds": sbc_seconds},
        "contraction": {
            "per_parameter": contraction.mean(0).tolist(),
            "mean": float(contraction.mean()),
        },
        "invariance_error": invariance_error(
            summary_network(m),
            task.views,
            task.sample_prior(50 if cfg.quick else 1000, generator=data.gen),
        ),
    }


def method_entry(
    m: M.TrainedMethod,
    samples: list[Tensor],
    seconds: list[float],
    step: dict[str, float] | None,
    data: TaskData,
    cfg: Settings,
) -> dict[str, Any]:
    """Costs, epochs, sampling times, the training step and C2ST of one method."""
    entry: dict[str, Any] = {
        "costs": dict(m.summary()),
        "epochs": epoch_statistics(m, cfg.max_epochs),
        "history": {k: list(v) for k, v in m.history.items()},
        "sample_seconds": seconds,
        "seconds_per_10k_samples": statistics.mean(seconds) * 10_000 / cfg.timed_samples,
    }
    if step is not None:
        entry["step"] = step
    if data.references:
        seeds = [cfg.seed] * len(samples)
        scores = c2st_scores(samples, data.references, cfg.posterior_samples, seeds)
        entry["c2st"] = {**summarise(scores), "per_observation": scores}
    return entry


def targets(methods: dict[str, Any]) -> dict[str, Any]:
    """E&E over NRE_C: step and MCMC speed-ups (on the same observations) and the C2ST gap."""
    if "embed_emulate" not in methods or "nre_c" not in methods:
        return {}
    ee, nre = methods["embed_emulate"], methods["nre_c"]
    k = len(nre["sample_seconds"])
    ee_subset = statistics.mean(ee["sample_seconds"][:k])
    result: dict[str, Any] = {
        "step_speedup": nre["step"]["median_ms"] / ee["step"]["median_ms"],
        "epoch_speedup": nre["epochs"]["seconds_per_epoch_median"]
        / ee["epochs"]["seconds_per_epoch_median"],
        "mcmc_speedup": statistics.mean(nre["sample_seconds"]) / ee_subset,
        "mcmc_observations": k,
    }
    if "c2st" in ee and "c2st" in nre:
        # the same observations: the sem of the per-observation differences (paired)
        diff = [
            a - b for a, b in zip(*(m["c2st"]["per_observation"] for m in (ee, nre)), strict=True)
        ]
        result["c2st_difference"] = statistics.mean(diff)
        result["c2st_sem_difference"] = (
            statistics.stdev(diff) / math.sqrt(len(diff)) if len(diff) > 1 else math.nan
        )
    return result


# ----------------------------------------------------------------------------------- one task
def run_task(name: str, cfg: Settings, cache_dir: Path, log: Log) -> dict[str, Any]:
    """Everything for one task; returns a JSON-friendly dictionary."""
    task = make_task(name, cfg.quick)
    plan = EE_PLANS[name]
    methods = tuple(
        m
        for m in cfg.methods
        if not (m == "embed_emulate_vicreg" and (not plan.vicreg or cfg.symmetry_weight <= 0))
    )
    # Without a reference the observations serve only the sampling times (contraction and
    # calibration come from the calibration pairs).
    has_reference = isinstance(task, SignalInNoiseTask)
    num_obs = cfg.observations if has_reference else min(cfg.observations, NO_REFERENCE_OBS)
    log(f"{name}: simulating")
    data = simulate(task, cfg, num_obs)
    trained = train_methods(task, plan, data.theta, data.x, cfg, methods, log)
    steps = time_training_steps(task, plan, trained, data.theta, data.x, cfg)
    log("  step ms: " + ", ".join(f"{LABELS[k]} {v['median_ms']:.1f}" for k, v in steps.items()))
    if has_reference:
        seeds = [cfg.seed + i for i in range(num_obs)]
        data.references, took = reference_samples(
            task, data.x_o, cfg.posterior_samples, seeds, cache_dir
        )
        log(f"  references: {num_obs} in {sum(took):.0f} s")
    samples, sample_seconds = draw_observation_samples(trained, data.x_o, cfg, log)
    prior_var = task.sample_prior(20_000, generator=data.gen).double().var(0)
    out: dict[str, Any] = {
        "task": name,
        "task_repr": repr(task),
        "x_shape": list(task.x_shape),
        "encoder": plan.encoder,
        "npe_output_dim": plan.npe_output_dim,
        "pretrain": plan.pretrain,
        "simulate_seconds": data.simulate_seconds,
        "num_observations": num_obs,
        "observations": {"theta": data.theta_o.tolist(), "nuisance": data.nuisance_o.tolist()},
        "methods": {},
    }
    for mname, m in trained.items():
        entry = method_entry(m, samples[mname], sample_seconds[mname], steps.get(mname), data, cfg)
        entry.update(calibration_entry(m, task, data, prior_var, cfg))
        out["methods"][mname] = entry
        log(
            f"  evaluated {LABELS[mname]}"
            + (f": C2ST {entry['c2st']['mean']:.3f}" if "c2st" in entry else "")
            + f", SBC sampling {entry['calibration']['sampling_seconds']:.0f} s"
        )
    out["targets"] = targets(out["methods"])
    if plan.speed_encoder is not None and {"embed_emulate", "nre_c"} <= set(methods):
        out["speed_check"] = speed_check(task, plan, (data.theta, data.x, data.x_o), cfg, log)
    return out


# ----------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    helps = {
        "observations": "for C2ST (reference tasks)",
        "posterior_samples": "per C2ST",
        "cache_dir": "reference cache (default: temp)",
        "quick": "tiny sizes: a smoke test",
    }
    add_shared_flags(p, TASKS, helps, cache_type=Path)
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--simulations", type=int, default=10_000)
    p.add_argument("--sbc-samples", type=int, default=200, help="posterior samples per pair")
    p.add_argument("--timed-samples", type=int, default=10_000)
    p.add_argument(
        "--timing-observations",
        type=int,
        default=None,
        help="draw NRE_C's timed samples only on this many observations (default: all)",
    )
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=TRAINING["batch_size"])
    p.add_argument("--symmetry-weight", type=float, default=0.05)
    p.add_argument(
        "--pretrain-simulations", type=int, default=None, help="default: per task (plans.py)"
    )
    p.add_argument("--step-repeats", type=int, default=30)
    p.add_argument("--speed-epochs", type=int, default=10, help="training of the speed check")
    p.add_argument("--speed-observations", type=int, default=1)
    p.add_argument(
        "--render",
        type=Path,
        default=None,
        help="only rewrite the markdown from this JSON of an earlier run (into --out)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"markdown results (JSON beside it); default {DEFAULT_OUT} (none with --quick)",
    )
    return p.parse_args(argv)


QUICK: dict[str, Any] = {
    "simulations": 200,
    "observations": 1,
    "sbc_pairs": 10,
    "sbc_samples": 8,
    "posterior_samples": 50,
    "timed_samples": 50,
    "timing_observations": 1,
    "max_epochs": 2,
    "batch_size": 50,
    "pretrain_simulations": 200,
    "step_repeats": 1,
    "speed_epochs": 2,
}


def settings(args: argparse.Namespace) -> Settings:
    """Sizes from the flags; ``--quick`` shrinks everything (to :data:`QUICK`)."""
    fields = {k: v for k, v in vars(args).items() if k in Settings.__dataclass_fields__}
    cfg = Settings(**{**fields, "methods": tuple(m for m in METHODS if m in args.methods)})
    if args.quick:
        for name, value in QUICK.items():
            setattr(cfg, name, value)
    for name in ("simulations", "observations", "sbc_pairs", "sbc_samples", "step_repeats"):
        if getattr(cfg, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    if cfg.max_epochs < 2 or cfg.speed_epochs < 2:
        raise SystemExit("--max-epochs and --speed-epochs must be >= 2 (sbi trains at least two)")
    if cfg.posterior_samples > cfg.timed_samples:
        raise SystemExit("--posterior-samples must not exceed --timed-samples")
    return cfg


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the tables; write the results unless ``--quick`` without --out."""
    args = parse_args(argv)
    if args.render is not None:
        out = args.out if args.out is not None else args.render.with_suffix(".md")
        write_text(out, render_markdown(json.loads(args.render.read_text()), args.render.name))
        print(f"wrote {out}")
        return {}
    torch.set_num_threads(args.threads)
    cfg = settings(args)
    out = args.out if args.out is not None else (None if args.quick else DEFAULT_OUT)
    command = command_line("embed_emulate.py", sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    log = make_log()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ee-bench-ref-") as tmp:
        cache = args.cache_dir if args.cache_dir is not None else Path(tmp)
        for name in args.tasks:
            results[name] = run_task(name, cfg, cache, log)
    wall = time.perf_counter() - start
    notes = machine_notes(args.threads)
    print(markdown_tables(results, cfg))
    if out is not None:
        write_results(out, command, cfg, results, wall, notes)
        print(f"wrote {out} and {out.with_suffix('.json')}")
    return results


if __name__ == "__main__":
    main()
