"""Embed and Emulate, several training runs as one: the product of their ratios, scored.

Takes finished ``sbi-symmetry run`` folders that trained Embed and Emulate on the same
simulations (the same ``--seed``, different ``training_seed``, e.g. from
``benchmarks/training_noise.py``), groups them ``--members`` at a time in the order given, and
for each group scores every member's posterior and the posterior of
:func:`sbi_symmetry.emulate.product_estimator` (their log-ratios averaged, sampled by the same
``TwoTowerPosterior``): mean C2ST on the run's observations against its exact references
(``--samples`` each), mean std and central 90% interval over the reference's in every
parameter, observations with a std over 2x the reference's, SBC KS p-values and the largest
coverage error on the first ``--pairs`` calibration pairs (200 posterior samples each), and the
product's seconds per 10^4 samples. No simulation and no training.

    .venv/bin/python benchmarks/ee_product.py RUNS/training_seed_{0,1,2,3} --members 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import page_head, stage_value, table, write_page

from sbi_symmetry.emulate import build_two_tower_posterior, product_estimator
from sbi_symmetry.evaluation import c2st_score, calibrate, interval_ratio, std_ratio
from sbi_symmetry.workflow.saved import load_posterior
from sbi_symmetry.workflow.stages import reference_samples

HEADER = [
    "group",
    "posterior",
    "C2ST (mean)",
    "std / reference",
    "90% interval / reference",
    "observations over 2x",
    "SBC KS p",
    "max coverage error",
    "s per 10^4 samples",
]


def score(
    posterior: Any, sims: Any, refs: list[torch.Tensor], samples: int, pairs: int
) -> list[str]:
    """The table cells of one posterior (fixed seeds: members and product see the same draws)."""
    with torch.random.fork_rng():
        torch.manual_seed(1)
        start = time.perf_counter()
        got = [posterior.sample((samples,), x=x[None], show_progress_bars=False) for x in sims.x_o]
        seconds = (time.perf_counter() - start) / (samples * len(got)) * 10_000
        c2st = [c2st_score(s, r, seed=0) for s, r in zip(got, refs, strict=True)]
        stds = torch.stack([std_ratio(s, r) for s, r in zip(got, refs, strict=True)])
        intervals = torch.stack([interval_ratio(s, r) for s, r in zip(got, refs, strict=True)])
        cal = calibrate(
            posterior,
            posterior.prior,
            sims.theta_cal[:pairs],
            sims.x_cal[:pairs],
            num_posterior_samples=200,
        )
    return [
        f"{sum(c2st) / len(c2st):.3f}",
        ", ".join(f"{v:.2f}" for v in stds.mean(0).tolist()),
        ", ".join(f"{v:.2f}" for v in intervals.mean(0).tolist()),
        f"{int((stds > 2).any(1).sum())} of {len(got)}",
        ", ".join(f"{p:.3f}" for p in cal.ks_pvals),
        f"{cal.max_coverage_error():.2f}",
        f"{seconds:.2f}",
    ]


def group_rows(runs: list[Path], samples: int, pairs: int) -> list[list[str]]:
    """Every member's row, then the product's."""
    sims = stage_value(runs[0], "simulate")
    for run in runs[1:]:
        if not torch.equal(stage_value(run, "simulate").theta, sims.theta):
            raise SystemExit(f"{run} was not trained on the simulations of {runs[0]}.")
    refs = [reference_samples(r) for r in stage_value(runs[0], "references")]
    posteriors = [load_posterior(run / "posteriors" / "embed_emulate.pt") for run in runs]
    name = " + ".join(run.name for run in runs)
    rows = [
        [name, run.name, *score(p, sims, refs, samples, pairs)]
        for run, p in zip(runs, posteriors, strict=True)
    ]
    both = product_estimator([p.estimator for p in posteriors])
    product = build_two_tower_posterior(both, posteriors[0].prior)
    rows.append(
        [name, f"**product** ({both.similarity})", *score(product, sims, refs, samples, pairs)]
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ee_product.md"))
    args = parser.parse_args()
    if args.members < 2 or len(args.runs) % args.members:
        raise SystemExit("--members must be >= 2 and divide the number of runs.")
    rows: list[list[str]] = []
    for i in range(0, len(args.runs), args.members):
        rows += group_rows(args.runs[i : i + args.members], args.samples, args.pairs)
        print("\n".join(table(HEADER, rows)), flush=True)
    title = "Embed and Emulate: the product of several training runs"
    text = "\n".join([*page_head(title, "ee_product.py", sys.argv[1:]), *table(HEADER, rows), ""])
    write_page(args.out, text)


if __name__ == "__main__":
    main()
