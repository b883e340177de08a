"""Cost of one exact reference posterior: grid quadrature against bilby + dynesty, per task.

For one observation per task (theta and shift drawn from their priors, seed 0), computes the
shift-marginalised posterior twice, by quadrature (the default) and by dynesty nested sampling
(shift free), and prints the wall time of each, dynesty's likelihood calls and independent
samples, the C2ST between the two sample sets and the two log-evidences. Quadrature is the
baseline: dynesty's cost is reported as a ratio to it.

    .venv/bin/python benchmarks/reference_timing.py
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from sbi_symmetry.evaluation import c2st_score
from sbi_symmetry.tasks import DampedOscillator, SineGaussian


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000, help="samples of each reference")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, {args.threads} thread")
    print(
        "| task | theta | quadrature s | dynesty s | ratio | likelihood calls | independent "
        "| C2ST | log Z quadrature | log Z dynesty |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for task in (DampedOscillator(), SineGaussian()):
        g = torch.Generator().manual_seed(0)
        theta = task.sample_prior(1, generator=g)
        x_o = task.simulate(theta, generator=g)
        start = time.perf_counter()
        quad = task.reference_posterior(x_o, num_samples=args.samples, seed=0)
        t_quad = time.perf_counter() - start
        start = time.perf_counter()
        nest = task.reference_posterior(x_o, num_samples=args.samples, method="dynesty", seed=0)
        t_nest = time.perf_counter() - start
        c2st = c2st_score(quad.samples, nest.samples, seed=0)
        print(
            f"| {type(task).__name__} | {', '.join(f'{v:.3f}' for v in theta[0].tolist())} "
            f"| {t_quad:.1f} | {t_nest:.1f} | {t_nest / t_quad:.1f} "
            f"| {nest.num_likelihood_evaluations} | {nest.settings['independent_samples']} "
            f"| {c2st:.3f} | {quad.log_evidence:.3f} "
            f"| {nest.log_evidence:.3f} ± {nest.log_evidence_error:.3f} |"
        )


if __name__ == "__main__":
    main()
