"""The run's report: ``report.md``, ``report.html``, ``metrics.json``, ``config.json``, figures.

:func:`write_report` takes one :class:`RunResults` (everything the stages produced) and writes the
folder; the tables and figures read method labels from the registry, so a new method appears in
the report without edits here.

Example:
    >>> _mean_columns([[1.0, 2.0], [3.0, 4.0]])
    '2.00, 3.00'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sbi_symmetry._io import atomic_write_text, versions
from sbi_symmetry.evaluation import Stopwatch
from sbi_symmetry.symmetry.diagnostics import collapse_statistics, invariance_error, plot_summaries
from sbi_symmetry.workflow.config import CONFIG_FILE, RunConfig
from sbi_symmetry.workflow.document import Document
from sbi_symmetry.workflow.methods import TrainedMethod
from sbi_symmetry.workflow.plots import (
    plot_coverage,
    plot_loss_curves,
    plot_posteriors,
    plot_sbc_ranks,
)
from sbi_symmetry.workflow.registry import label
from sbi_symmetry.workflow.stages import Accuracy, Simulations

#: The file that marks a folder as a finished run (``--overwrite`` only replaces such folders).
MARKER = "metrics.json"
_HEADER = [
    "method",
    "C2ST vs reference (mean ± sem)",
    "std / reference",
    "std / Cramér-Rao",
    "SBC (KS p-values)",
    "max coverage error",
    "TARP ATC",
    "simulator calls (training set + views)",
    "trainable params",
    "MACs (batch 1000)",
    "train s",
    "pretrain s",
    "s per 10⁴ samples",
]


@dataclass
class RunResults:
    """Everything the stages of one run produced."""

    config: RunConfig
    task: Any
    sims: Simulations
    trained: dict[str, TrainedMethod]
    references: list[Any]
    accuracy: Accuracy
    calibration: dict[str, Any]
    watch: Stopwatch


def write_report(folder: Path, results: RunResults) -> dict[str, Any]:
    """Write the report folder and return the metrics written to ``metrics.json``.

    Args:
        folder: The run's output folder (exists).
        results: The run's results.

    Returns:
        The metrics.
    """
    config, methods = results.config, results.accuracy.metrics
    for name, result in results.calibration.items():
        methods[name]["calibration"] = result.to_dict()
    doc = Document()
    doc.heading(f"sbi-symmetry run: {config.task} ({config.preset} preset)", 1)
    doc.paragraph(
        f"{config.num_simulations} training simulations, {config.num_observations} held-out "
        f"observations (theta and nuisance drawn from their priors), seed {config.seed}. "
        f"Command: `sbi-symmetry run --task {config.task} --preset {config.preset} "
        f"--simulations {config.num_simulations} --seed {config.seed}"
        f" --methods {','.join(results.trained)}`."
    )
    doc.heading("Metrics")
    doc.table(_HEADER, [_row(name, entry) for name, entry in methods.items()])
    doc.paragraph(_metrics_note(results.task))
    doc.heading("Wall time per stage")
    doc.table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in results.watch.seconds.items()])
    figures = _embedding_section(folder, results, doc) + _figures(results)
    doc.heading("Figures")
    for fname, caption, fig in figures:
        fig.savefig(folder / fname, dpi=100, bbox_inches="tight")
        doc.figure(fname, caption)
    metrics = _metrics(results)
    atomic_write_text(folder / "report.md", doc.markdown())
    atomic_write_text(folder / "report.html", doc.html(f"sbi-symmetry: {config.task}"))
    config.save(folder / CONFIG_FILE)
    atomic_write_text(folder / MARKER, json.dumps(metrics, indent=2))
    return metrics


def _row(name: str, entry: dict[str, Any]) -> list[str]:
    c, cal, costs = entry.get("c2st"), entry["calibration"], entry["costs"]
    return [
        label(name),
        f"{c['mean']:.3f} ± {c['sem']:.3f}" if c else "n/a",
        _mean_columns(entry.get("std_over_reference")),
        _mean_columns(entry.get("std_over_crb")),
        ", ".join(f"{p:.2f}" for p in cal["ks_pvals"]),
        f"{cal['max_coverage_error']:.3f}",
        f"{cal['tarp_atc']:+.3f}",
        _calls(costs.get("simulator_calls", {})),
        f"{costs['trainable_parameters']:,}",
        f"{costs['macs_per_1000']:.2e}",
        f"{costs['train_seconds']:.0f}",
        f"{costs['pretrain_seconds']:.0f}",
        f"{entry['seconds_per_10k_samples']:.1f}",
    ]


def _metrics_note(task: Any) -> str:
    return (
        "C2ST: random-forest classifier two-sample test (sbi's default) between each method's "
        "samples and the reference posterior; 0.5 is indistinguishable. Widths are per-parameter "
        "posterior standard deviations averaged over observations (order: "
        + ", ".join(task.parameter_names)
        + "). The Cramér-Rao bound profiles the nuisance out. SBC: Kolmogorov-Smirnov p-values "
        "of rank uniformity per parameter (sbi's check_sbc); coverage error is the largest gap "
        "between empirical and nominal coverage of central credible intervals; TARP ATC near 0 "
        "is ideal (sbi's check_tarp). Simulator calls: every data set a method's training used, "
        "counted as sbi-benchmark counts a budget: the training set all methods share plus the "
        "views simulated for pretraining (a pair of views counts two); the observations and the "
        "calibration pairs are counted apart in metrics.json."
    )


def _embedding_section(folder: Path, results: RunResults, doc: Document) -> list[tuple]:
    """Save the pretrained embedding, describe its invariance, plot its summaries (paper Fig. 2)."""
    if "symmetry_npe" not in results.trained:
        return []
    task = results.task
    emb = results.trained["symmetry_npe"].extra["pretrained_embedding"]
    emb.save(folder / "embedding", overwrite=True)
    fig = plot_summaries(emb, task, task.sample_prior(6), num_nuisance=150)
    with torch.no_grad():
        z = emb(task.simulate(task.sample_prior(500)))
    stats = collapse_statistics(z)
    inv = invariance_error(emb, task.views, task.sample_prior(500))
    results.accuracy.metrics["symmetry_npe"]["embedding"] = {
        "invariance_error": inv,
        "effective_rank": float(stats["effective_rank"]),
        "summary_std": [float(v) for v in stats["std"]],
    }
    doc.paragraph(
        f"Symmetry embedding: invariance error {inv:.3f} (0 = invariant, about 2 = none), "
        f"effective rank {float(stats['effective_rank']):.2f} of {z.shape[1]}; saved to "
        "`embedding/` (reload with `SymmetryEmbedding.load`)."
    )
    caption = (
        "Summaries of six fixed parameter sets under random nuisance, coloured by parameter set "
        "(paper Fig. 2)"
    )
    return [("summaries.png", caption, fig)]


def _figures(results: RunResults) -> list[tuple]:
    """Posteriors of the first observations, loss curves, coverage and SBC ranks."""
    labels, figures = list(results.task.parameter_labels), []
    samples, refs = results.accuracy.samples, results.references
    for i in range(min(3, len(results.sims.theta_o))):
        ref = refs[i].samples if refs else None
        fig = plot_posteriors(
            {label(k): v[i] for k, v in samples.items()},
            ref,
            labels=labels,
            truth=results.sims.theta_o[i],
            title=f"observation {i}",
        )
        what = "black: exact reference" if ref is not None else "no reference"
        caption = f"Posteriors for observation {i} ({what}; red: truth) (paper Fig. 3)"
        figures.append((f"posterior_{i}.png", caption, fig))
    curves = {label(k): v.history for k, v in results.trained.items()}
    if "symmetry_npe" in results.trained:
        h = results.trained["symmetry_npe"].history
        curves["VICReg pretraining"] = {
            "train": h.get("pretrain_train_total", []),
            "validation": h.get("pretrain_val_total", []),
        }
    calibration = {label(k): v for k, v in results.calibration.items()}
    return [
        *figures,
        (
            "loss_curves.png",
            "Training (solid) and validation (dashed) losses",
            plot_loss_curves(curves),
        ),
        (
            "coverage.png",
            "Expected coverage of central credible intervals, with 1-, 2-, 3-sigma bands "
            "(paper Fig. 4)",
            plot_coverage(calibration, labels=labels),
        ),
        (
            "sbc_ranks.png",
            "SBC rank histograms with the 99% band of uniform ranks",
            plot_sbc_ranks(calibration, labels=labels),
        ),
    ]


def _metrics(results: RunResults) -> dict[str, Any]:
    crb, refs, sims = results.accuracy.crb, results.references, results.sims
    return {
        "config": results.config.to_dict(),
        "versions": {**versions(), "torch_threads": str(torch.get_num_threads())},
        "wall_seconds": dict(results.watch.seconds),
        "observations": {"theta": sims.theta_o.tolist(), "nuisance": sims.shift_o.tolist()},
        "simulator_calls": {**sims.calls, "total": sum(sims.calls.values())},
        "cramer_rao_bound": None if crb is None else crb.tolist(),
        "reference": [
            {"method": r.method, "seconds": r.wall_time_s, "log_evidence": r.log_evidence}
            for r in refs
        ],
        "methods": results.accuracy.metrics,
    }


def _calls(calls: dict[str, int]) -> str:
    if not calls:
        return "n/a"
    return f"{calls['total']:,} ({calls['training_set']:,} + {calls['views']:,})"


def _mean_columns(values: list[list[float]] | None) -> str:
    if not values:
        return "n/a"
    mean = torch.tensor(values, dtype=torch.float64).mean(0)
    return ", ".join(f"{v:.2f}" for v in mean)
