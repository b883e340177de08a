"""What a two-tower posterior sample costs: emulator passes per observation, one by one and batched.

Every sample of :class:`~sbi_symmetry.emulate.TwoTowerPosterior` needs its own emulator pass, so
the emulator passes per observation set the sampler's speed. For each task this script trains
Embed and Emulate as ``ee_sampling.py --current-tower --current-emulator`` does (the ``fast``
preset's tower and emulator, 3,000 simulations, 20 epochs, seed 0), then counts them for

* ``sample`` on each of the first ``--single`` observations, one at a time;
* ``sample_batched`` on all ``--observations`` at once;

and, from ``--prior-draws`` prior draws, how concentrated each posterior is: ``max r / mean r``,
the prior draws per accepted sample (``max r`` the largest ratio among the draws), and the gap
between the cosine bound ``log B = ||z|| / T`` and ``max log r`` (nats). Prior draws shared by
``J`` observations cost ``num * max_j (max r_j / mean r_j) / J`` per observation.

    .venv/bin/python benchmarks/ee_sampling_cost.py --out /tmp/ee_sampling_cost.md
    .venv/bin/python benchmarks/ee_sampling_cost.py --quick    # smoke test, prints only
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however loaded

import ee_sampling
from _common import make_log, page_head, table, write_page
from _ee_methods import TASKS, make_task, train_methods

from sbi_symmetry.emulate import TwoTowerPosterior, build_two_tower_posterior

QUICK = {"simulations": 300, "epochs": 2, "samples": 300, "observations": 6, "single": 2}
QUICK |= {"prior_draws": 20_000}
HEADER = [
    "task",
    "`sample` passes / obs",
    "`sample` s / obs",
    "batched passes / obs",
    "batched s / obs",
    "passes ratio",
    "time ratio",
    "batched samplers",
    "max r / mean r: median, max",
    "shared prior draws / obs",
    "cosine bound gap, nats: median",
]


class EmulatorCount:
    """Counts the parameters a posterior's emulator sees (wraps ``estimator.emulate``)."""

    def __init__(self, posterior: TwoTowerPosterior) -> None:
        self.passes, self._emulate = 0, posterior.estimator.emulate
        posterior.estimator.emulate = self

    def __call__(self, theta: Tensor) -> Tensor:
        self.passes += len(theta)
        return self._emulate(theta)


def concentration(post: TwoTowerPosterior, x_o: Tensor, draws: int) -> tuple[Tensor, Tensor]:
    """Per observation, ``max r / mean r`` over ``draws`` prior draws, and the bound's gap."""
    z = post._encode(x_o)
    parts = post.prior.sample((draws,)).split(2**15)
    log_r = torch.cat([post._log_ratio(part.unsqueeze(0), z) for part in parts], dim=1)  # (J, N)
    top = log_r.max(-1).values
    mean = log_r.logsumexp(-1) - math.log(draws)
    with torch.no_grad():
        return (top - mean).exp(), z.norm(dim=-1) / post.estimator.temperature - top


def run_task(name: str, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """Train E&E, count the passes of ``sample`` and ``sample_batched``, measure the prior's."""
    flags = ["--current-tower", "--current-emulator", "--simulations", str(args.simulations)]
    flags += ["--epochs", str(args.epochs), "--seed", str(args.seed)]
    base = ee_sampling.parse_args(flags + (["--quick"] if args.quick else []))
    task = make_task(name, args.quick)
    gen = torch.Generator().manual_seed(args.seed)
    theta, x = task.sample_joint(args.simulations, generator=gen)
    _, x_o = task.sample_joint(args.observations, generator=gen)
    plan, cfg = ee_sampling._plan(name, base), ee_sampling.settings(base)
    ee = train_methods(task, plan, theta, x, cfg, ("embed_emulate",), log)["embed_emulate"]
    post = build_two_tower_posterior(ee.estimator, task.prior)
    post.sample((100,), x=x_o[-1:])  # warm-up, not counted
    count, single, seconds = EmulatorCount(post), [], []
    for i in range(args.single):
        torch.manual_seed(args.seed + i)
        before, start = count.passes, time.perf_counter()
        post.sample((args.samples,), x=x_o[i : i + 1])
        seconds.append(time.perf_counter() - start)
        single.append(count.passes - before)
    torch.manual_seed(args.seed)
    before, start = count.passes, time.perf_counter()
    post.sample_batched((args.samples,), x=x_o)
    batched_s = (time.perf_counter() - start) / len(x_o)
    batched = (count.passes - before) / len(x_o)
    factor, gap = concentration(post, x_o, args.prior_draws)
    out = {
        "task": name,
        "single": sum(single) / len(single),
        "single_s": sum(seconds) / len(seconds),
        "batched": batched,
        "batched_s": batched_s,
        "samplers": dict(Counter(post.last_method)),
        "factor": (float(factor.median()), float(factor.max())),
        "pool": args.samples * float(factor.max()) / len(x_o),
        "gap": float(gap.median()),
    }
    log(f"  {name}: {out}")
    return out


def row(r: dict[str, Any]) -> list[str]:
    """One task's row."""
    return [
        r["task"],
        f"{r['single']:,.0f}",
        f"{r['single_s']:.3f}",
        f"{r['batched']:,.0f}",
        f"{r['batched_s']:.3f}",
        f"{r['single'] / r['batched']:.1f}x",
        f"{r['single_s'] / r['batched_s']:.1f}x",
        ", ".join(f"{k} {v}" for k, v in r["samplers"].items()),
        f"{r['factor'][0]:,.0f}, {r['factor'][1]:,.0f}",
        f"{r['pool']:,.0f}",
        f"{r['gap']:.2f}",
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--simulations", type=int, default=3_000)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--observations", type=int, default=100, help="for sample_batched")
    p.add_argument("--single", type=int, default=10, help="observations sampled one by one")
    p.add_argument("--prior-draws", type=int, default=1_000_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument("--out", type=Path, default=None, help="the page (default: print only)")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if min(args.samples, args.observations, args.single, args.prior_draws) < 1 or args.epochs < 2:
        raise SystemExit("--epochs must be >= 2; the other sizes >= 1")
    args.single = min(args.single, args.observations)
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run, print the table, write it where ``--out`` says."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start, log = time.perf_counter(), make_log()
    results = [run_task(name, args, log) for name in args.tasks]
    argv = sys.argv[1:] if argv is None else argv
    lines = page_head("Emulator passes per two-tower posterior sample", "ee_sampling_cost.py", argv)
    lines += [f"{args.samples} samples per observation; {args.observations} observations from the "]
    lines[-1] += f"prior predictive; total {(time.perf_counter() - start) / 60:.1f} min.\n"
    lines += table(HEADER, [row(r) for r in results])
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        write_page(args.out, text)  # keeps a hand-written '## Reading' section
    return results


if __name__ == "__main__":
    main()
