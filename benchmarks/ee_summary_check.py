"""Is Embed and Emulate wide because of its data summary or because of its ratio?

Embed and Emulate's posterior is ``p(theta) exp(<f(x), g(theta)> / T)`` (normalised ``f``, ``g``
with cosine similarity): it can only be as sharp as the summary ``f(x) / |f(x)|`` is
informative, and as the emulator and the contrastive loss make use of it. This check takes a
finished ``sbi-symmetry run`` folder with a trained Embed and Emulate, freezes its data tower,
and trains ``sbi``'s NPE (the run's flow settings) on the cached unit-norm summaries of the same
training set (:func:`sbi_symmetry.symmetry.cached.cached_npe`; no new simulation). Both
posteriors are then scored against the run's exact references on the run's observations.

If NPE on the frozen summary is much closer to the references than the ratio is, the summary
holds the information and the ratio (emulator, temperature, loss) loses it; if both are equally
wide, the data tower is the limit.

    .venv/bin/python benchmarks/ee_summary_check.py RUN_FOLDER [RUN_FOLDER ...]

Prints a Markdown table (per run: mean C2ST, mean and largest posterior std over the reference's)
and writes it with the command to ``--out`` if given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import c2st_scores, command_line, platform_stamp, table, write_page

from sbi_symmetry._random import seeded
from sbi_symmetry.emulate.estimator import Standardize
from sbi_symmetry.evaluation import std_ratio
from sbi_symmetry.symmetry.cached import cached_npe
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
from sbi_symmetry.tasks import get_task
from sbi_symmetry.workflow.checkpoints import STAGES_DIR
from sbi_symmetry.workflow.saved import load_posterior
from sbi_symmetry.workflow.stages import reference_samples


class _UnitNorm(nn.Module):
    """``z / |z|``: what a cosine similarity sees of the summary."""

    def forward(self, z: Tensor) -> Tensor:
        return nn.functional.normalize(z, dim=-1)


def summary_encoder(estimator: Any, x: Tensor) -> nn.Module:
    """The frozen data tower as the ratio sees it, standardised on ``x`` for the flow."""
    tower = estimator.embedding_net_x
    parts: list[nn.Module] = [tower]
    if estimator.similarity == "cosine":
        parts.append(_UnitNorm())
    net = nn.Sequential(*parts).eval()
    with torch.no_grad():
        z = torch.cat([net(chunk) for chunk in x.split(1024)])
    net.append(Standardize(z.mean(0), z.std(0).clamp_min(1e-8)))
    net.output_dim = int(z.shape[1])  # type: ignore[assignment]
    return net


def score(samples: list[Tensor], references: list[Tensor]) -> dict[str, Any]:
    """Mean C2ST and posterior std over the reference's (mean per parameter, largest)."""
    c2st = c2st_scores(samples, references, max_samples=5_000, seeds=[0] * len(samples))
    ratios = torch.stack([std_ratio(s, r) for s, r in zip(samples, references, strict=True)])
    return {
        "c2st": sum(c2st) / len(c2st),
        "per_observation": c2st,
        "std_mean": ratios.mean(0).tolist(),
        "std_largest": float(ratios.max()),
    }


def check(run: Path, posterior_samples: int) -> dict[str, dict[str, Any]]:
    """Score the run's Embed and Emulate and NPE on its frozen summary."""
    stages = run / STAGES_DIR
    sims = torch.load(stages / "simulate.pt", weights_only=False)["value"]
    refs = [
        reference_samples(r)
        for r in torch.load(stages / "references.pt", weights_only=False)["value"]
    ]
    config = json.loads((run / "config.json").read_text())
    task = get_task(config["task"])
    ratio_posterior = load_posterior(run / "posteriors" / "embed_emulate.pt")
    estimator = ratio_posterior.estimator
    train = {k: v for k, v in config["npe_train"].items() if k != "anneal"}
    train["max_num_epochs"] = max(int(train.get("max_num_epochs", 0)), 400)
    with seeded(config["seed"]):
        encoder = summary_encoder(estimator, sims.x)
        embedding = SymmetryEmbedding(encoder, freeze="all")
        _, npe_posterior = cached_npe(
            task.prior,
            embedding,
            sims.theta,
            sims.x,
            flow_kwargs=config["flow"],
            show_progress_bars=False,
            **train,
        )
        npe = [
            npe_posterior.sample((posterior_samples,), x=x_o[None], show_progress_bars=False)
            for x_o in sims.x_o
        ]
        ratio = [
            ratio_posterior.sample((posterior_samples,), x=x_o[None], show_progress_bars=False)
            for x_o in sims.x_o
        ]
    return {
        "Embed and Emulate (its ratio)": score(ratio, refs),
        "NPE on its frozen data summary": score(npe, refs),
    }


def results_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One row per run and posterior."""
    header = [
        "run",
        "posterior",
        "C2ST (mean)",
        "std / reference (mean per parameter)",
        "std / reference (largest)",
    ]
    rows = [
        [
            run,
            name,
            f"{s['c2st']:.3f}",
            ", ".join(f"{v:.2f}" for v in s["std_mean"]),
            f"{s['std_largest']:.2f}",
        ]
        for run, by_posterior in results.items()
        for name, s in by_posterior.items()
    ]
    return "\n".join(table(header, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--posterior-samples", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = {
        f"{run.parent.name}/{run.name}": check(run, args.posterior_samples) for run in args.runs
    }
    text = results_table(results)
    print(text)
    if args.out is not None:
        page = (
            f"# Embed and Emulate: summary or ratio?\n\nScript: "
            f"`benchmarks/ee_summary_check.py`. {platform_stamp(sbi=True)}\n\n"
            f"    {command_line('ee_summary_check.py', sys.argv[1:])}\n\n{text}\n"
        )
        write_page(args.out, page)


if __name__ == "__main__":
    main()
