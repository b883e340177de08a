"""Retrain Embed and Emulate's emulator and data-tower head on frozen features: which loss?

For a finished ``sbi-symmetry run`` folder with a trained Embed and Emulate, run
:func:`sbi_symmetry.emulate.refine_emulator` on the run's training set (the backbone's features
encoded once and cached; the emulator, the data tower's head MLP (``--emulator-only``: not the
head) and the temperature trained further, early stopping on a random 10% validation split,
patience 30 epochs, batch ``--batch``, Adam) with one of two losses:

* ``row`` (the library's refinement): the ``x -> theta`` half of symmetric InfoNCE only
  (NRE-B's classification with the batch as candidates);
* ``symmetric``: the training loss itself (:mod:`sbi_symmetry.losses.infonce`), for comparison;
* ``nrec``: NRE-C's loss (:mod:`sbi_symmetry.losses.nrec`), whose optimum has no free ``c(x)``.

Both posteriors (before and after) are sampled with the run's ``TwoTowerPosterior`` and scored
against the run's exact references, and checked for calibration (SBC KS p-values and the largest
coverage error on the run's first ``--pairs`` calibration pairs, 200 posterior samples each).
No simulation; the backbone never runs again after the cache, so a refinement takes seconds.

    .venv/bin/python benchmarks/ee_emulator_polish.py RUN_FOLDER --loss row --pairs 100

(The ``--local K`` variants of ``benchmarks/results/ee_loss_side.md`` ran with this script at
commit f563346.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ee_summary_check import score

from sbi_symmetry.emulate import refine_emulator
from sbi_symmetry.evaluation import calibrate
from sbi_symmetry.tasks import get_task
from sbi_symmetry.workflow.checkpoints import STAGES_DIR
from sbi_symmetry.workflow.saved import load_posterior
from sbi_symmetry.workflow.stages import reference_samples


def polish(
    run: Path,
    row_weight: float,
    learning_rate: float,
    pairs: int,
    batch: int,
    refine: bool = True,
    tune_head: bool = True,
    loss: str = "row",
) -> None:
    """Print the scores before and after retraining the emulator of ``run``."""
    torch.manual_seed(0)
    stages = run / STAGES_DIR
    sims = torch.load(stages / "simulate.pt", weights_only=False)["value"]
    refs = [
        reference_samples(r)
        for r in torch.load(stages / "references.pt", weights_only=False)["value"]
    ]
    prior = get_task(json.loads((run / "config.json").read_text())["task"]).prior
    post = load_posterior(run / "posteriors" / "embed_emulate.pt")
    est = post.estimator.eval()

    def scored() -> str:
        est.clear_cache()
        with torch.random.fork_rng():
            torch.manual_seed(1)
            got = [post.sample((2000,), x=x[None], show_progress_bars=False) for x in sims.x_o]
        s = score(got, refs)
        widths = ", ".join(f"{v:.2f}" for v in s["std_mean"])
        cal = calibrate(
            post, prior, sims.theta_cal[:pairs], sims.x_cal[:pairs], num_posterior_samples=200
        )
        ks = ", ".join(f"{p:.3f}" for p in cal.ks_pvals)
        return (
            f"C2ST {s['c2st']:.3f}, std / reference {widths} (largest {s['std_largest']:.2f}), "
            f"SBC KS p {ks}, coverage error {cal.max_coverage_error():.2f}"
        )

    print(f"{run}: before: {scored()}, T {float(est.temperature.detach()):.4f}")
    if not refine:
        return
    done = refine_emulator(
        est,
        sims.theta,
        sims.x,
        training_batch_size=batch,
        learning_rate=learning_rate,
        row_weight=row_weight,
        tune_head=tune_head,
        loss="nrec" if loss == "nrec" else "row",
    )
    print(
        f"{run}: after {done.epochs} epochs ({done.seconds:.0f} s, loss {loss}, "
        f"row weight {row_weight}, "
        f"head tuned {done.tuned_head}, "
        f"batch {batch}): "
        f"{scored()}, T {float(est.temperature.detach()):.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--loss", choices=("symmetric", "row", "nrec"), default="row")
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--pairs", type=int, default=100, help="calibration pairs for SBC")
    parser.add_argument("--batch", type=int, default=200, help="pairs per batch (candidates)")
    parser.add_argument("--emulator-only", action="store_true", help="leave the head frozen")
    parser.add_argument("--score-only", action="store_true", help="score the run; no refining")
    args = parser.parse_args()
    for run in args.runs:
        polish(
            run,
            0.5 if args.loss == "symmetric" else 1.0,
            args.learning_rate,
            args.pairs,
            args.batch,
            not args.score_only,
            not args.emulator_only,
            args.loss,
        )


if __name__ == "__main__":
    main()
