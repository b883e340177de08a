"""How much training alone moves the numbers, and what an ensemble of the retrained runs gives.

One ``sbi-symmetry run`` of the shipped ``fast`` preset per training seed
(``RunConfig.training_seed``): the training set, the observations and their exact references
follow ``--seed`` and are the same in every run; only the methods' training streams (initial
weights, training/validation split, batch order, pretraining's views) differ. For each method
the page gives each run's mean C2ST over the observations, the spread of that mean over training
seeds, the per-observation spread, and the C2ST of the equal-weight mixture of the runs'
posteriors (an ensemble, costing one training per member): its samples are the first
``posterior_samples / K`` samples of each of the ``K`` runs, for the same observations.

Runs go to ``--runs`` (one folder per training seed) and are resumed there, so an interrupted
study goes on where it stopped (an NPE method within its training too, from its last minute's
save; ``<runs>/training_seed_<k>/.stages/progress_<method>.txt`` tells how far it got); the page
goes to ``<out>.md``.

    .venv/bin/python benchmarks/training_noise.py --task damped-oscillator --training-seeds 0 1 2 3

``--changes`` runs the preset with other settings (JSON; a dict-valued setting updates the
preset's), e.g. ``--changes '{"ee": {"similarity": "dot"}}' --name dot``: with the same
training seeds its runs start from the same data, initial weights and batch order as the
preset's, so the two pages pair run by run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import calibrated_cell, command_line, page_head, stage_value, write_json, write_page
from plans import merged

from sbi_symmetry.evaluation import c2st_score
from sbi_symmetry.workflow import pipeline
from sbi_symmetry.workflow.config import RunConfig
from sbi_symmetry.workflow.stages import reference_samples

RESULTS = Path(__file__).resolve().parent / "results"


def run_seed(args: argparse.Namespace, training_seed: int) -> tuple[dict[str, Any], Path]:
    """One run (resumed if its folder holds one); its metrics and folder."""
    base = RunConfig.from_preset(args.task, "fast")
    changes = merged(base, json.loads(args.changes))  # a dict updates the preset's dict
    cfg = RunConfig.from_preset(
        args.task,
        "fast",
        num_observations=args.observations,
        methods=tuple(args.methods),
        seed=args.seed,
        training_seed=training_seed,
        **changes,
    )
    folder = Path(args.runs) / f"training_seed_{training_seed}"
    start = time.perf_counter()
    metrics = pipeline.run(cfg, folder, resume=True, show_progress=False, log=print)
    print(f"training seed {training_seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return metrics, folder


#: What the page's JSON keeps of each method's metrics (the rest stays in the run folders).
KEPT = ("c2st", "std_over_reference", "calibration", "costs")


def compact(metrics: dict[str, Any]) -> dict[str, Any]:
    """A run's settings and, per method, the numbers its page and paired comparisons read."""
    methods = {
        name: {key: entry[key] for key in KEPT if key in entry}
        for name, entry in metrics["methods"].items()
    }
    return {"config": metrics["config"], "methods": methods}


def ensemble_scores(folders: list[Path], method: str, seed: int) -> list[float]:
    """C2ST per observation of the equal-weight mixture of the runs' posteriors.

    Member ``k`` gives its ``k``-th share of samples: every run samples from the same stream
    (seeded by the data seed), so the first shares of two runs are one set of random numbers
    through two networks, near-duplicate pairs a classifier can learn.
    """
    samples = [stage_value(folder, f"accuracy_{method}")[0] for folder in folders]
    refs = stage_value(folders[0], "references")
    scores = []
    for i, ref in enumerate(refs):
        draws = [run[i] for run in samples]
        share = draws[0].shape[0] // len(draws)
        mixture = torch.cat([d[k * share : (k + 1) * share] for k, d in enumerate(draws)])
        scores.append(c2st_score(mixture, reference_samples(ref), seed=seed))
    return scores


def method_rows(method: str, runs: list[dict[str, Any]], folders: list[Path], seed: int) -> list:
    """Table rows of one method: each training seed, the spread, the ensemble."""
    per_obs = torch.tensor([r["methods"][method]["c2st"]["per_observation"] for r in runs])
    means = per_obs.mean(1)
    rows = []
    for r, mean in zip(runs, means, strict=True):
        entry = r["methods"][method]
        cal = entry["calibration"]
        rows.append(
            f"| {method} | training seed {r['config']['training_seed']} | {mean:.3f} ± "
            f"{entry['c2st']['sem']:.3f} | {calibrated_cell(entry)} "
            f"({min(cal['ks_pvals']):.3f}) | {entry['costs']['epochs']} |"
        )
    spread = per_obs.std(0).mean() if len(runs) > 1 else float("nan")
    rows.append(
        f"| {method} | spread over {len(runs)} training seeds | std of the mean {means.std():.3f}"
        f" (range {means.min():.3f}-{means.max():.3f}); per observation {spread:.3f} | | |"
    )
    for k in range(2, len(runs) + 1):  # the first k runs' posteriors, equal weights
        scores = torch.tensor(ensemble_scores(folders[:k], method, seed))
        sem = scores.std() / len(scores) ** 0.5
        rows.append(
            f"| {method} | ensemble of the first {k} runs | {scores.mean():.3f} ± {sem:.3f} "
            f"(single runs: {means[:k].mean():.3f}) | | {k}x |"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="damped-oscillator")
    parser.add_argument("--methods", nargs="+", default=["symmetry_npe", "embed_emulate"])
    parser.add_argument("--training-seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--seed", type=int, default=0, help="data and observations")
    parser.add_argument("--observations", type=int, default=10)
    parser.add_argument("--runs", default=None, help="run folders (default /tmp/...)")
    parser.add_argument(
        "--changes", default="{}", help="settings over the preset, JSON: '{\"ee\": {...}}'"
    )
    parser.add_argument("--name", default="", help="suffix of the page and the run folders")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    name = f"training_noise_{args.task}{'_' + args.name if args.name else ''}"
    args.runs = args.runs or f"/tmp/{name}"
    out = Path(args.out or RESULTS / name)
    used = sys.argv[1:] if argv is None else argv  # the command that makes the page
    results = [run_seed(args, s) for s in args.training_seeds]
    runs, folders = [r for r, _ in results], [f for _, f in results]
    title = f"Training noise: {args.task}, fast preset, data seed {args.seed}"
    title += f", with {args.changes}" if args.changes != "{}" else ""
    lines = [
        *page_head(title, "training_noise.py", used),
        "| method | run | C2ST (mean ± sem over observations) | calibrated (SBC smallest p) | "
        "epochs (trainings) |",
        "|---|---|---|---|---|",
    ]
    for method in args.methods:
        lines += method_rows(method, runs, folders, args.seed)
    write_page(out.with_suffix(".md"), "\n".join(lines) + "\n")
    payload = {"command": command_line("training_noise.py", used), "runs": list(map(compact, runs))}
    write_json(out.with_suffix(".json"), payload, default=float)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
