"""Posterior sampling speed: sbi's MCMC against the two-tower sampler of Embed and Emulate.

For each task, in one process and from the same seeded simulations: Embed and Emulate and sbi's
``NRE_C`` with the same encoder (``plans.py``'s tower and initial weights, trained as in
``embed_emulate.py`` but briefly: this is a speed benchmark), then 10^4 posterior samples of the
same observations with

* (a) sbi's MCMC on NRE_C and (b) sbi's MCMC on E&E (``embed_emulate.py``'s settings: vectorised
  slice sampling, 20 chains, 50 warm-up steps, sbi's ``resample`` start; prior start and 200
  warm-up steps for Lorenz-96's multi-channel data);
* (c) :class:`~sbi_symmetry.emulate.TwoTowerPosterior` ``.sample`` on the same E&E estimator;
* (d) its ``.sample_batched`` over ``--observations`` observations at once (time per observation),
  against (c) on each of those observations one at a time (the mean, "(c) all"): the target's
  "faster again per observation";

and sbi's random-forest C2ST between (b) and (c) (and between (b) and (d) on the first
observation): the fast sampler should agree with MCMC on the same estimator.

    .venv/bin/python benchmarks/ee_sampling.py                           # results/ee_sampling.md
    .venv/bin/python benchmarks/ee_sampling.py --quick --out /tmp/ees.md  # smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however loaded

from _common import command_line, make_log, platform_stamp, table, write_text
from _ee_methods import TASKS, Settings, make_task, sample_one, train_methods, with_mcmc
from plans import EE_KWARGS, EE_PLANS, TRAINING, TaskPlan

from sbi_symmetry.emulate import build_two_tower_posterior
from sbi_symmetry.evaluation import c2st_score
from sbi_symmetry.workflow.config import RunConfig

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "ee_sampling.md"
QUICK = {"simulations": 300, "epochs": 2, "samples": 300, "observations": 5, "timed": 1}
HEADER = [
    "task",
    "theta dim",
    "(a) NRE_C MCMC s",
    "(b) E&E MCMC s",
    "(c) two-tower s",
    "(d) batched s / obs",
    "(a) / (c)",
    "(b) / (c)",
    "(c) all s",
    "(c) all / (d)",
    "C2ST (b) vs (c)",
    "C2ST (b) vs (d)",
    "(c) sampler, ESS",
    "(d) samplers",
]


def settings(args: argparse.Namespace) -> Settings:
    """``embed_emulate.py``'s training settings, with this script's budget."""
    return Settings(
        simulations=args.simulations,
        observations=args.observations,
        sbc_pairs=1,
        sbc_samples=1,
        posterior_samples=args.c2st_samples,
        timed_samples=args.samples,
        timing_observations=None,
        max_epochs=args.epochs,
        stop_after_epochs=args.epochs,
        learning_rate=TRAINING["learning_rate"],
        batch_size=TRAINING["batch_size"],
        symmetry_weight=0.0,
        pretrain_simulations=None,
        step_repeats=1,
        speed_epochs=2,
        speed_observations=1,
        seed=args.seed,
        quick=args.quick,
        emulator=_emulator_size(args),
    )


def _emulator_size(args: argparse.Namespace) -> dict[str, int]:
    """E&E's emulator: the ``fast`` preset's of today (``--current-emulator``) or as recorded."""
    if args.current_emulator:
        return RunConfig.from_preset("damped-oscillator", "fast").ee["emulator_kwargs"]
    return EE_KWARGS["emulator_kwargs"]


def _plan(name: str, args: argparse.Namespace) -> TaskPlan:
    """``plans.py``'s plan; with ``--current-tower``, the ``fast`` preset's E&E tower of today."""
    if not args.current_tower:
        return EE_PLANS[name]
    tower = dict(RunConfig.from_preset(name, "fast").ee_encoder)
    return dataclasses.replace(EE_PLANS[name], encoder=tower)


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Tensor, float]:
    """``fn(*args, **kwargs)`` and its wall time."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def subset(samples: Tensor, num: int, seed: int) -> Tensor:
    """A seeded random subset (MCMC draws come chain by chain)."""
    return samples[
        torch.randperm(samples.shape[0], generator=torch.Generator().manual_seed(seed))[:num]
    ]


def run_task(name: str, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """Train both estimators, time the four samplers, compare (b) with (c) and (d)."""
    task, cfg = make_task(name, args.quick), settings(args)
    gen = torch.Generator().manual_seed(args.seed)
    theta, x = task.sample_joint(args.simulations, generator=gen)
    _, x_o = task.sample_joint(args.observations, generator=gen)
    log(f"{name}: {args.simulations} simulations, x {tuple(x.shape[1:])}")
    plan = _plan(name, args)
    trained = train_methods(task, plan, theta, x, cfg, ("embed_emulate", "nre_c"), log)
    ee, nre = trained["embed_emulate"], trained["nre_c"]
    ee_mcmc = with_mcmc(ee, task.prior, args.quick)  # (b): the same estimator, sbi's MCMC
    fast = build_two_tower_posterior(ee.estimator, task.prior)
    fast.sample((100,), x=x_o[-1:])  # warm-up (first calls of torch kernels), not timed
    rows: dict[str, list[Any]] = {k: [] for k in ("a", "b", "c", "c2st", "method", "ess")}
    for i in range(args.timed):
        torch.manual_seed(args.seed + i)
        _, seconds = timed(sample_one, nre, x_o[i : i + 1], args.samples, args.quick)
        rows["a"].append(seconds)
        mcmc, seconds = timed(sample_one, ee_mcmc, x_o[i : i + 1], args.samples, args.quick)
        rows["b"].append(seconds)
        two, seconds = timed(fast.sample, (args.samples,), x=x_o[i : i + 1])
        rows["c"].append(seconds)
        rows["method"].append(fast.last_method[0])
        rows["ess"].append(float(fast.last_ess[0]))
        num = min(args.c2st_samples, args.samples)
        rows["c2st"].append(c2st_score(subset(mcmc, num, i), subset(two, num, i), seed=i))
        if i == 0:
            first_mcmc = mcmc
        log(
            f"  obs {i}: (a) {rows['a'][-1]:.2f} s, (b) {rows['b'][-1]:.2f} s, "
            f"(c) {rows['c'][-1]:.3f} s [{rows['method'][-1]}], C2ST {rows['c2st'][-1]:.3f}"
        )
    each = []  # (c) on every observation of (d), one at a time
    for i in range(x_o.shape[0]):
        torch.manual_seed(args.seed + i)
        each.append(timed(fast.sample, (args.samples,), x=x_o[i : i + 1])[1])
    torch.manual_seed(args.seed)
    batched, seconds = timed(fast.sample_batched, (args.samples,), x=x_o)
    num = min(args.c2st_samples, args.samples)
    c2st_d = c2st_score(subset(first_mcmc, num, 0), subset(batched[:, 0], num, 0), seed=0)
    out = {
        "task": name,
        "theta_dim": task.theta_dim,
        "encoder": plan.encoder,
        "epochs": {"embed_emulate": ee.epochs, "nre_c": nre.epochs},
        "train_seconds": {"embed_emulate": ee.train_seconds, "nre_c": nre.train_seconds},
        "a": statistics.mean(rows["a"]),
        "b": statistics.mean(rows["b"]),
        "c": statistics.mean(rows["c"]),
        "c_all": statistics.mean(each),
        "d": seconds / x_o.shape[0],
        "c2st_bc": rows["c2st"],
        "c2st_bd": c2st_d,
        "c_methods": rows["method"],
        "c_ess": rows["ess"],
        "d_methods": dict(Counter(fast.last_method)),
        "d_ess_min": float(fast.last_ess.nan_to_num(float("inf")).min()),
    }
    log(f"  (d) {out['d'] * 1e3:.1f} ms per observation {out['d_methods']}, C2ST {c2st_d:.3f}")
    return out


def row(r: dict[str, Any]) -> list[str]:
    """One task's row."""
    ess = ", ".join(f"{m} {e:,.0f}" for m, e in zip(r["c_methods"], r["c_ess"], strict=True))
    return [
        r["task"],
        str(r["theta_dim"]),
        f"{r['a']:.2f}",
        f"{r['b']:.2f}",
        f"{r['c']:.3f}",
        f"{r['d']:.4f}",
        f"{r['a'] / r['c']:.0f}x",
        f"{r['b'] / r['c']:.0f}x",
        f"{r['c_all']:.3f}",
        f"{r['c_all'] / r['d']:.1f}x",
        ", ".join(f"{v:.3f}" for v in r["c2st_bc"]),
        f"{r['c2st_bd']:.3f}",
        ess,
        ", ".join(f"{k} {v}" for k, v in r["d_methods"].items()),
    ]


def render(
    results: list[dict[str, Any]], args: argparse.Namespace, command: str, wall: float
) -> str:
    """The results file."""
    lines = ["# Two-tower posterior sampling against sbi's MCMC", ""]
    lines += [f"Command: `{command}`", ""]
    lines += [
        f"Machine: {platform_stamp(sbi=True)}; {torch.get_num_threads()} torch thread(s) on a "
        f"2-core machine shared with other jobs (wall times are noisy). Total {wall / 60:.1f} min.",
        "",
        "## Times for 10^4 posterior samples" if args.samples == 10_000 else "## Times",
        "",
    ]
    lines += table(HEADER, [row(r) for r in results])
    lines += ["", "## Targets", ""]
    for r in results:
        ac, cd = r["a"] / r["c"], r["c_all"] / r["d"]
        lines.append(
            f"- **{r['task']}**: (c) {ac:.0f}x faster than (a) (target >= 10x: "
            f"{'met' if ac >= 10 else 'missed'}); sample_batched {cd:.1f}x faster again per "
            f"observation (target >= 10x: {'met' if cd >= 10 else 'missed'})."
        )
    lines += ["", "## Protocol", ""]
    lines += [
        f"- {args.simulations} simulations per task (seed {args.seed}); E&E and NRE_C trained "
        f"{args.epochs} epochs each from the same encoder weights "
        "(`_ee_methods.train_methods`, `plans.py`'s towers); training times: "
        + "; ".join(
            f"{r['task']} E&E {r['train_seconds']['embed_emulate']:.0f} s, "
            f"NRE_C {r['train_seconds']['nre_c']:.0f} s"
            for r in results
        )
        + ". E&E's emulator: a `ResidualMLP` with {hidden_dim} hidden units and {num_blocks} "
        "blocks.".format(**_emulator_size(args)),
        "- The data tower (E&E's, and NRE_C's x-embedding), `ConvEncoder1D` arguments"
        + (" (the `fast` preset's of today)" if args.current_tower else "")
        + ": "
        + "; ".join(f"{r['task']} `{r['encoder']}`" for r in results)
        + ".",
        f"- (a), (b), (c): {args.samples} samples for each of the first {args.timed} "
        "observations (theta and nuisance from their priors), mean wall time; (a) and (b) "
        "through `_ee_methods.sample_one` (the MCMC settings of `embed_emulate.py`).",
        f"- (d): `sample_batched` of {args.samples} samples for each of {args.observations} "
        "observations in one call; its wall time divided by the number of observations. "
        "(c) all: `sample` on each of those observations in turn, mean wall time; the "
        "per-observation speed-up of (d) is (c) all / (d) (the first observations alone are a "
        "noisy estimate: a single draw costs 30-250 ms depending on the observation's "
        "acceptance rate and sampler).",
        "- (c) and (d): `build_two_tower_posterior(estimator, prior)` with its defaults; "
        "'rejection' is exact rejection from the prior (cosine bound), 'importance' the "
        "adaptive mixture proposal; ESS is the Kish effective sample size of the weighted "
        "draw (for exact rejection, i.i.d. draws: the number of samples). One untimed warm-up "
        "call of 100 samples first.",
        f"- C2ST: sbi's random forest (`sbi_symmetry.evaluation.c2st_score`) on seeded random "
        f"subsets of {min(args.c2st_samples, args.samples)} samples of each; 0.5 is "
        "indistinguishable. (b) vs (d) on the first observation.",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--simulations", type=int, default=3_000)
    p.add_argument("--epochs", type=int, default=20, help="training epochs (no early stop)")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--observations", type=int, default=100, help="for sample_batched")
    p.add_argument("--timed", type=int, default=2, help="observations timed for (a)-(c)")
    p.add_argument("--c2st-samples", type=int, default=5_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument(
        "--current-emulator",
        action="store_true",
        help="the fast preset's emulator of today instead of the recorded 64-wide one",
    )
    p.add_argument(
        "--current-tower",
        action="store_true",
        help="the fast preset's E&E data tower of today instead of plans.py's recorded one",
    )
    p.add_argument("--out", type=Path, default=None, help=f"default {DEFAULT_OUT} (none: --quick)")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.epochs < 2 or min(args.samples, args.observations, args.timed) < 1:
        raise SystemExit("--epochs must be >= 2; --samples, --observations, --timed >= 1")
    args.timed = min(args.timed, args.observations)
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; print the table; write it unless ``--quick`` without ``--out``."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out if args.out is not None else (None if args.quick else DEFAULT_OUT)
    command = command_line("ee_sampling.py", sys.argv[1:] if argv is None else argv)
    start, log = time.perf_counter(), make_log()
    results = [run_task(name, args, log) for name in args.tasks]
    text = render(results, args, command, time.perf_counter() - start)
    print(text)
    if out is not None:
        write_text(out, text)
        print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
