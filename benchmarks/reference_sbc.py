"""SBC of the exact posterior on a run's own calibration pairs: what a perfect method would score.

SBC's pairs are one random draw. A method's ranks are uniform on average over draws, but a run
whose parameters happen to lean one way (say a quarter of them in the top fifth of a prior) can
fail the KS test with an exact posterior too, and every method of that run shares the draw. This
script takes a finished ``sbi-symmetry run`` folder, draws exact quadrature reference samples
(the task's ``reference_posterior``) for its first ``--pairs`` calibration pairs, as many per
pair as the run gave each method, and runs the package's own calibration on them (sbi's
``run_sbc``/``check_sbc``, coverage, TARP). It prints the reference's KS p-values and verdict
beside every method's from the run's ``metrics.json``, and how the true parameters of the
pairs fall in fifths of the prior box. No training; about 3 s per pair on one core.

    .venv/bin/python benchmarks/reference_sbc.py /tmp/aug/npebase/training_seed_0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import page_head, stage_value, table, write_page

from sbi_symmetry.evaluation import calibrate
from sbi_symmetry.tasks import get_task
from sbi_symmetry.workflow.stages import reference_samples

SCRIPT = "reference_sbc.py"


def reference_calibration(
    run: Path, task: Any, per_pair: int, pairs: int
) -> tuple[Any, torch.Tensor, float]:
    """Calibration of ``per_pair`` exact reference samples on the run's first ``pairs`` pairs."""
    sims = stage_value(run, "simulate")
    thetas, xs = sims.theta_cal[:pairs], sims.x_cal[:pairs]
    start = time.perf_counter()
    samples = torch.stack(
        [
            reference_samples(task.reference_posterior(xs[i : i + 1], num_samples=per_pair, seed=i))
            for i in tqdm(range(len(thetas)), desc="reference posteriors")
        ],
        dim=1,
    )
    result = calibrate(
        None, task.prior, thetas, xs, num_posterior_samples=per_pair, samples=samples
    )
    return result, thetas, time.perf_counter() - start


def _row(name: str, ks_pvals: list[float], calibrated: bool, coverage_error: float) -> list[str]:
    """One table row: the posterior, its SBC KS p-values, its verdict, its coverage error."""
    verdict = "yes" if calibrated else "**no**"
    return [name, ", ".join(f"{p:.3f}" for p in ks_pvals), verdict, f"{coverage_error:.3f}"]


def _fifths(thetas: torch.Tensor, prior: object) -> list[str]:
    """Per parameter: how many true values fall in each fifth of the prior box."""
    low, high = prior.support.base_constraint.lower_bound, prior.support.base_constraint.upper_bound
    fifth = ((thetas - low) / (high - low) * 5).long().clamp(0, 4)  # the upper edge: the last
    counts = [torch.bincount(fifth[:, j], minlength=5) for j in range(thetas.shape[1])]
    return [" / ".join(str(int(c)) for c in count) for count in counts]


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reference_sbc.md"))
    args = parser.parse_args(argv)
    if args.pairs < 10:
        parser.error(f"--pairs must be at least 10 (TARP's histogram); got {args.pairs}.")
    argv = sys.argv[1:] if argv is None else argv
    metrics = json.loads((args.run / "metrics.json").read_text())
    task = get_task(metrics["config"]["task"], device="cpu")
    per_pair = metrics["config"]["sbc_posterior_samples"]
    result, thetas, seconds = reference_calibration(args.run, task, per_pair, args.pairs)
    exact = result.ks_pvals.tolist(), result.is_calibrated(), result.max_coverage_error()
    rows = [_row("exact reference (quadrature)", *exact)]
    for name, entry in metrics["methods"].items():
        cal = entry["calibration"]
        rows.append(_row(name, cal["ks_pvals"], cal["calibrated"], cal["max_coverage_error"]))
    lines = [
        *page_head(f"SBC of the exact posterior on a run's own pairs: {args.run}", SCRIPT, argv),
        f"{len(thetas)} pairs, {result.num_posterior_samples} samples each, references in "
        f"{seconds:.0f} s. True parameters per fifth of the prior box (expected "
        f"{len(thetas) / 5:.0f} each): " + "; ".join(_fifths(thetas, task.prior)) + ".",
        "",
        *table(["posterior", "SBC KS p-values", "calibrated", "largest coverage error"], rows),
        "",
    ]
    print("\n".join(lines))
    write_page(args.out, "\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
