"""Why is one posterior too wide: a broad core, or mass far from the exact posterior?

For a finished ``sbi-symmetry run`` folder, draws ``--samples`` samples of one method's saved
posterior for observation ``--observation`` and compares them with the run's exact reference:
per-parameter quantiles of both, the fraction of samples more than ``--sigmas`` reference
standard deviations from the reference mean in some parameter ("far"), where the far samples
lie, and the std over the reference's of the samples that are not far (the "core"). No
simulation and no training.

    .venv/bin/python benchmarks/posterior_far_mass.py RUN_FOLDER --observation 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor

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


def far_mass(run: Path, method: str, observation: int, samples: int, sigmas: float) -> None:
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
    far = ((got - mean).abs() / std > sigmas).any(1)
    core = got[~far]
    truth = ", ".join(f"{v:.4g}" for v in sims.theta_o[observation].tolist())
    print(f"{run}, {method}, observation {observation} (true parameters {truth})")
    print(f"  quantiles {', '.join(f'{v:g}' for v in LEVELS.tolist())} of each parameter")
    print(f"  reference: std {_numbers(std)}; {_quantiles(ref)}")
    print(f"  {method}: std {_numbers(got.std(0))}; {_quantiles(got)}")
    print(f"  far (> {sigmas:g} reference std in some parameter): {float(far.float().mean()):.3f}")
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
    args = parser.parse_args()
    far_mass(args.run, args.method, args.observation, args.samples, args.sigmas)


if __name__ == "__main__":
    main()
