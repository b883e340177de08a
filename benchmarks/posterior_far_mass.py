"""Why is one posterior too wide: a broad core, or mass far from the exact posterior?

For a finished ``sbi-symmetry run`` folder, draws ``--samples`` samples of one method's saved
posterior for observation ``--observation`` and compares them with the run's exact reference:
per-parameter quantiles of both, the fraction of samples more than ``--sigmas`` reference
standard deviations from the reference mean in some parameter ("far"), where the far samples
lie, and the std over the reference's of the samples that are not far (the "core"). No
simulation and no training.

``--grid N`` (two parameters, a box prior) also integrates the method's own density (its
``log_prob``; unnormalised for a ratio posterior) over an ``N x N`` grid of the prior's box and
prints its far mass: equal to the sampled fraction (up to sampling noise) when the far mass
belongs to the trained estimator, not to its sampler.

    .venv/bin/python benchmarks/posterior_far_mass.py RUN_FOLDER --observation 2 [--grid 600]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sbi_symmetry.tasks import get_task
from sbi_symmetry.workflow.checkpoints import STAGES_DIR
from sbi_symmetry.workflow.saved import load_posterior
from sbi_symmetry.workflow.stages import reference_samples

LEVELS = torch.tensor([0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])


def _numbers(values: Tensor, digits: int = 4) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values.tolist())


def _quantiles(samples: Tensor) -> str:
    return "; ".join(
        " ".join(f"{v:.3f}" for v in samples[:, j].quantile(LEVELS).tolist())
        for j in range(samples.shape[1])
    )


def grid_far_mass(
    run: Path, post: Any, x_o: Tensor, far: Callable[[Tensor], Tensor], num: int
) -> float:
    """The far mass of ``post``'s own density by quadrature on the prior box's ``num^2`` grid."""
    task = get_task(json.loads((run / "config.json").read_text())["task"])
    low, high = getattr(task, "theta_low", None), getattr(task, "theta_high", None)
    if low is None or len(low) != 2:
        raise SystemExit("--grid needs a task with two parameters and a box prior.")
    axes = [
        lo + (hi - lo) * (torch.arange(num) + 0.5) / num for lo, hi in zip(low, high, strict=True)
    ]
    grid = torch.cartesian_prod(*axes)
    with torch.no_grad():
        log_p = torch.cat([post.log_prob(part, x=x_o) for part in grid.split(2**16)])
    weight = (log_p - log_p.max()).exp()
    return float(weight[far(grid)].sum() / weight.sum())


def far_mass(
    run: Path, method: str, observation: int, samples: int, sigmas: float, grid: int = 0
) -> None:
    """Print the comparison for one observation of one run."""
    stages = run / STAGES_DIR
    sims = torch.load(stages / "simulate.pt", weights_only=False)["value"]
    refs = torch.load(stages / "references.pt", weights_only=False)["value"]
    if not 0 <= observation < len(refs):
        raise SystemExit(f"--observation must be in [0, {len(refs) - 1}]; got {observation}.")
    ref = reference_samples(refs[observation]).float()
    post = load_posterior(run / "posteriors" / f"{method}.pt")
    torch.manual_seed(1)
    got = post.sample((samples,), x=sims.x_o[observation][None], show_progress_bars=False)
    mean, std = ref.mean(0), ref.std(0)

    def is_far(theta: Tensor) -> Tensor:
        return ((theta - mean).abs() / std > sigmas).any(1)

    far = is_far(got)
    core = got[~far]
    truth = ", ".join(f"{v:.4g}" for v in sims.theta_o[observation].tolist())
    print(f"{run}, {method}, observation {observation} (true parameters {truth})")
    print(f"  quantiles {', '.join(f'{v:g}' for v in LEVELS.tolist())} of each parameter")
    print(f"  reference: std {_numbers(std)}; {_quantiles(ref)}")
    print(f"  {method}: std {_numbers(got.std(0))}; {_quantiles(got)}")
    print(f"  far (> {sigmas:g} reference std in some parameter): {float(far.float().mean()):.3f}")
    if grid:
        mass = grid_far_mass(run, post, sims.x_o[observation][None], is_far, grid)
        print(f"  far mass of its density on a {grid}^2 grid: {mass:.4f}")
    if far.sum() > 1:
        print(f"  far samples: {_quantiles(got[far])}")
    if len(core) > 1:
        print(f"  core std / reference: {_numbers(core.std(0) / std, 2)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--method", default="embed_emulate")
    parser.add_argument("--observation", type=int, default=0)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--sigmas", type=float, default=5.0)
    parser.add_argument("--grid", type=int, default=0, help="grid points per parameter (0: off)")
    args = parser.parse_args()
    far_mass(args.run, args.method, args.observation, args.samples, args.sigmas, args.grid)


if __name__ == "__main__":
    main()
