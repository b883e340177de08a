"""Is an Embed-and-Emulate SBC failure the model's or the sampler's? Re-run SBC with MCMC.

Runs one ``sbi-symmetry run`` (Embed and Emulate only) of a candidate from
``fast_encoder_seeds.py`` into ``--out`` (kept, so a second call only re-samples), then runs SBC
on the same calibration pairs twice: with ``TwoTowerPosterior``'s automatic sampler (rejection
or adaptive importance sampling, as the run did) and with ``method="rejection"``, which on
posteriors too sharp for rejection from the prior falls back to sbi's MCMC. If both fail alike,
the ratio itself is miscalibrated; if only the first fails, the sampler is. Prints the KS
p-values, the largest coverage error, which sampler drew each pair and the smallest
importance-sampling effective sample size. Then, for the first 100 pairs, the z-score of the
posterior mean, ``(mean - theta) / std`` (1,000 samples each): its mean and spread per parameter
and its mean per quartile of the true value (a posterior pulled towards the prior's centre shows
positive means in the low quartiles and negative ones in the high).

    .venv/bin/python benchmarks/ee_sampler_check.py --task damped-oscillator --seed 2 \\
        --candidate "E&E tower, 16 channels, 2 blocks" --out /tmp/ee_sampler_check
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import stage_value
from _levers import variant_config
from fast_encoder_seeds import CANDIDATES

from sbi_symmetry.evaluation.calibration import calibrate
from sbi_symmetry.tasks import get_task
from sbi_symmetry.workflow import pipeline
from sbi_symmetry.workflow.registry import METHODS


def main(argv: list[str] | None = None) -> None:
    """Train (or load) the run, then SBC with each sampler; print one line per sampler."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="damped-oscillator")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--candidate", choices=list(CANDIDATES), default=list(CANDIDATES)[-1])
    parser.add_argument("--out", type=Path, default=Path("/tmp/ee_sampler_check"))
    args = parser.parse_args(argv)
    changes = {"seed": args.seed, **CANDIDATES[args.candidate]}
    cfg = variant_config(args.task, 10, ("embed_emulate",), changes)
    run = args.out / "run"
    pipeline.run(cfg, run, resume=True, show_progress=False)  # loads a finished run
    sims, trained = stage_value(run, "simulate"), stage_value(run, "train_embed_emulate")
    posterior = trained.posterior
    pairs = METHODS["embed_emulate"].calibration_pairs(cfg)
    for method in ("auto", "rejection"):
        posterior.method = method
        result = calibrate(
            posterior,
            get_task(cfg.task).prior,
            sims.theta_cal[:pairs],
            sims.x_cal[:pairs],
            num_posterior_samples=cfg.sbc_posterior_samples,
            seed=cfg.seed,
        )
        weighted = posterior.last_ess[~posterior.last_ess.isnan()]  # NaN where MCMC drew
        ess = f"{float(weighted.min()):.0f}" if len(weighted) else "n/a (no weights)"
        print(
            f"{method}: {pairs} pairs, KS p {[round(float(p), 4) for p in result.ks_pvals]}, "
            f"coverage error {result.max_coverage_error():.3f}, samplers "
            f"{dict(collections.Counter(posterior.last_method))}, smallest ESS {ess}",
            flush=True,
        )
    posterior.method = "auto"
    z_scores(posterior, sims.theta_cal[:100], sims.x_cal[:100])


def z_scores(posterior: Any, theta: torch.Tensor, x: torch.Tensor) -> None:
    """Print the z-scores of the posterior means of ``(theta, x)`` pairs (see the docstring)."""
    torch.manual_seed(0)
    z = []
    for i in range(len(theta)):
        draws = posterior.sample((1000,), x=x[i : i + 1], show_progress_bars=False)
        z.append((draws.mean(0) - theta[i]) / draws.std(0))
    scores = torch.stack(z)
    for j in range(theta.shape[1]):
        order = theta[:, j].argsort()
        quarters = [float(scores[part, j].mean()) for part in order.chunk(4)]
        print(
            f"parameter {j}: z mean {float(scores[:, j].mean()):+.2f}, std "
            f"{float(scores[:, j].std()):.2f}; mean by quartile of the true value "
            + ", ".join(f"{q:+.2f}" for q in quarters),
            flush=True,
        )


if __name__ == "__main__":
    main()
