"""The run's report: ``report.md``, ``report.html``, ``metrics.json``, ``config.json``, figures.

:func:`write_report` takes one :class:`RunResults` (everything the stages produced) and writes the
folder; the tables and figures read method labels from the registry, so a new method appears in
the report without edits here. Next to the table, a "Notes" list says where a number misleads on
its own (:mod:`sbi_symmetry.workflow.flags`; the same flags are in ``metrics.json``, per method).
``report.html`` embeds its figures, so it is one file that can be mailed; ``report.md`` links the
PNG files beside it.

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
from sbi_symmetry.reference.protocol import is_signal_model
from sbi_symmetry.symmetry.diagnostics import collapse_statistics, invariance_error, plot_summaries
from sbi_symmetry.symmetry.pretrain.config import PretrainConfig
from sbi_symmetry.workflow import flags
from sbi_symmetry.workflow.config import CONFIG_FILE, RunConfig
from sbi_symmetry.workflow.document import Document
from sbi_symmetry.workflow.plots import (
    format_pvalue,
    plot_coverage,
    plot_loss_curves,
    plot_posteriors,
    plot_sbc_ranks,
    plot_tarp,
    prior_bounds,
)
from sbi_symmetry.workflow.registry import METHODS, label
from sbi_symmetry.workflow.saved import POSTERIORS_DIR, save_posterior
from sbi_symmetry.workflow.stages import Accuracy, Simulations, reference_samples
from sbi_symmetry.workflow.trained import TrainedMethod

#: The file that marks a folder as a finished run (``--overwrite`` only replaces such folders).
MARKER = "metrics.json"
_HEADER = [
    "method",
    "C2ST vs reference (mean ± sem)",
    "std / reference",
    "90% interval / reference",
    "std / Cramér-Rao",
    "SBC (KS p-values)",
    "max coverage error",
    "TARP ATC",
    "calibration verdict",
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
    names = list(results.task.parameter_names)
    for name, result in results.calibration.items():
        methods[name]["calibration"] = result.to_dict()
    for name, entry in methods.items():
        entry["flags"] = _flags(name, entry, results)
    doc = Document()
    doc.heading(f"sbi-symmetry run: {config.task} ({config.preset} preset)", 1)
    doc.paragraph(
        f"{budget_text(config)}, {config.num_observations} held-out "
        f"observations (theta and nuisance drawn from their priors), seed {config.seed}. "
        f"Re-run with every setting of this run ({CONFIG_FILE} here): "
        f"`sbi-symmetry run --config {folder} --out NEW_FOLDER`."
    )
    doc.heading("Metrics")
    doc.table(*_table(methods, names, bool(results.references)))
    doc.heading("Notes", 3)
    doc.bullets(notes(methods))
    doc.paragraph(_metrics_note(results.task, bool(results.references)))
    doc.heading("Wall time per stage")
    doc.table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in results.watch.seconds.items()])
    _save_posteriors(folder, results, doc)
    figures = _embedding_section(folder, results, doc) + _figures(results)
    doc.heading("Figures")
    for fname, caption, fig in figures:
        fig.savefig(folder / fname, dpi=100, bbox_inches="tight")
        doc.figure(fname, caption)
    metrics = _metrics(results)
    atomic_write_text(folder / "report.md", doc.markdown())
    atomic_write_text(folder / "report.html", doc.html(f"sbi-symmetry: {config.task}", folder))
    config.save(folder / CONFIG_FILE)
    atomic_write_text(folder / MARKER, json.dumps(metrics, indent=2))
    return metrics


def _table(
    methods: dict[str, dict[str, Any]], names: list[str], reference: bool
) -> tuple[list[str], list[list[str]]]:
    """Header and rows; without a reference, contraction replaces C2ST and the widths."""
    rows = [_row(name, entry, names) for name, entry in methods.items()]
    if reference:
        return _HEADER, rows
    header = [_HEADER[0], "posterior contraction", *_HEADER[5:]]  # no C2ST, no widths
    return header, [
        [row[0], _mean_columns(methods[name].get("contraction")), *row[5:]]
        for name, row in zip(methods, rows, strict=True)
    ]


def budget_text(config: RunConfig) -> str:
    """The run's simulation budget in words.

    Example:
        >>> budget_text(RunConfig(num_simulations=2000, view_fraction=0.25))  # doctest: +ELLIPSIS
        '2000 simulator calls per method (symmetry NPE spends a share 0.25 of them on ...'
    """
    split = config.view_fraction
    if split is None:
        return f"{config.num_simulations} training simulations"
    return (
        f"{config.num_simulations} simulator calls per method (symmetry NPE spends a share "
        f"{split} of them on re-simulated views, the rest on its training set)"
    )


def _row(name: str, entry: dict[str, Any], names: list[str]) -> list[str]:
    c, cal, costs = entry.get("c2st"), entry["calibration"], entry["costs"]
    return [
        label(name),
        f"{c['mean']:.3f} ± {c['sem']:.3f}" if c else "n/a",
        _mean_columns(entry.get("std_over_reference")),
        _mean_columns(entry.get("interval_over_reference")),
        _mean_columns(entry.get("std_over_crb")),
        ", ".join(format_pvalue(p) for p in cal["ks_pvals"]),
        f"{cal['max_coverage_error']:.3f}",
        f"{cal['tarp_atc']:+.3f}",
        flags.verdict(entry, names),
        _calls(costs.get("simulator_calls", {})),
        f"{costs['trainable_parameters']:,}",
        f"{costs['macs_per_1000']:.2e}",
        f"{costs['train_seconds']:.0f}",
        f"{costs['pretrain_seconds']:.0f}",
        f"{entry['seconds_per_10k_samples']:.1f}",
    ]


def notes(methods: dict[str, dict[str, Any]]) -> list[str]:
    """The "Notes" list next to the table: one line per kind of flag raised.

    Args:
        methods: Per method name, its ``metrics.json`` entry with ``flags``.

    Returns:
        The lines (:func:`sbi_symmetry.workflow.flags.notes`), or one saying there is none.

    Example:
        >>> flag = {"code": "sbc_pvalue", "summary": "beta", "explanation": "Miscalibrated."}
        >>> notes({"raw_npe": {"flags": [flag]}})
        ['SBC p-value <0.01. NPE (raw data): beta. Miscalibrated.']
    """
    lines = flags.notes({label(k): v.get("flags", []) for k, v in methods.items()})
    return lines or ["No number in the table needs a caveat: none of the report's flags is raised."]


def _flags(name: str, entry: dict[str, Any], results: RunResults) -> list[dict[str, str]]:
    """The flags of method ``name``: its numbers, loss curves and training caps."""
    config, method = results.config, results.trained.get(name)
    setting = "ee_train" if METHODS[name].kind == "ratio" else "npe_train"
    pretrain_cap = None
    if method is not None and "pretrain_val_total" in method.history:
        pretrain_cap = config.pretrain.get("max_epochs", PretrainConfig.max_epochs)
    frozen_epochs = entry["costs"].get("frozen_epochs", config.frozen_epochs)  # as trained
    frozen = name == "symmetry_npe" and frozen_epochs != "auto" and frozen_epochs > 0
    phases = list(entry["costs"].get("epochs_per_phase", []))
    history = {} if method is None else dict(method.history)
    if phases:  # each phase has its own cap (sbi runs cap + 1 epochs when it hits it)
        started_frozen = frozen and len(phases) > 1 and phases[0] == frozen_epochs + 1
        longest = phases.index(max(phases[int(started_frozen) :]), int(started_frozen))
        entry = {**entry, "costs": {**entry["costs"], "epochs": phases[longest]}}
        curve = list(history.get("validation", ()))  # the trend of that phase alone
        start = sum(phases[:longest])
        fits = len(curve) == sum(phases)
        history["validation"] = curve[start : start + phases[longest]] if fits else []
    elif frozen:  # older metrics: the cap counts after the frozen start, its frozen + 1 epochs
        tuned = int(entry["costs"]["epochs"]) - frozen_epochs - 1
        entry = {**entry, "costs": {**entry["costs"], "epochs": tuned}}
    return flags.method_flags(
        entry,
        names=list(results.task.parameter_names),
        max_epochs=getattr(config, setting).get("max_num_epochs"),
        setting=setting,
        history=history,
        pretrain_max_epochs=pretrain_cap,
    )


def _metrics_note(task: Any, reference: bool) -> str:
    order = ", ".join(task.parameter_names)
    if reference:
        accuracy = (
            "C2ST: random-forest classifier two-sample test (sbi's default) between each "
            "method's samples and the reference posterior; 0.5 is indistinguishable. Widths are "
            "per-parameter posterior standard deviations, and widths of the central 90% "
            "interval (blind to a small mass far away, which can inflate a std), over the "
            f"reference's, averaged over observations (order: {order}). "
        )
        if is_signal_model(task):
            how = "holds the shift known" if getattr(task, "onset_jump", 0) else "profiles it out"
            accuracy += f"The Cramér-Rao bound {how} (and ignores the prior). "
    else:
        accuracy = (
            "No reference posterior for this task (no tractable likelihood), so no C2ST and no "
            "widths against one: posterior contraction is 1 - posterior variance / prior "
            f"variance per parameter, averaged over observations (order: {order}; 0: no more "
            "than the prior, 1: a point), and calibration says whether to trust it. "
        )
    return (
        accuracy + "SBC: "
        "Kolmogorov-Smirnov p-values of rank uniformity per parameter (sbi's check_sbc; below "
        "0.01 printed as <0.01); coverage error is the largest gap between empirical and nominal "
        "coverage of central credible intervals; TARP ATC near 0 is ideal (sbi's check_tarp). "
        "Calibration verdict: no SBC p-value below 0.05 / d (Bonferroni), with the width "
        f"against the reference when it exceeds {flags.TOO_WIDE:g} x. Simulator calls: every "
        "data set a method's training used, "
        "counted as sbi-benchmark counts a budget: the training set all methods share plus the "
        "views simulated for pretraining (a pair of views counts two); the observations and the "
        "calibration pairs are counted apart in metrics.json."
    )


def _save_posteriors(folder: Path, results: RunResults, doc: Document) -> None:
    """Save every trained posterior in ``posteriors/`` (loadable in a fresh process)."""
    config = results.config
    about = {"task": config.task, "preset": config.preset, "seed": config.seed}
    for name, method in results.trained.items():
        save_posterior(folder, name, method.posterior, about | {"label": label(name)})
    if results.trained:
        doc.paragraph(
            f"Trained posteriors: `{POSTERIORS_DIR}/<method>.pt` with the versions that wrote "
            "them (`<method>.json`); load one with `sbi_symmetry.workflow.load_posterior(path)`."
        )


def _embedding_section(folder: Path, results: RunResults, doc: Document) -> list[tuple]:
    """Save the pretrained embedding, describe its invariance, plot its summaries (paper Fig. 2)."""
    if "symmetry_npe" not in results.trained:
        return []
    task = results.task
    emb = results.trained["symmetry_npe"].extra["pretrained_embedding"]
    emb.save(folder / "embedding", overwrite=True)
    dims, which = _summary_dims(emb, results.sims.x)
    fig = plot_summaries(emb, task, task.sample_prior(6), num_nuisance=150, dims=dims)
    shown = ", ".join(f"$z_{{{d}}}$" for d in dims)
    fig.suptitle(f"Summaries of six fixed θ under random nuisance\n{shown}: {which}", fontsize=11)
    for legend in fig.legends:  # below the two-line title, in the grid's empty upper triangle
        legend.set_bbox_to_anchor((0.99, 0.9), transform=fig.transFigure)
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
        f"Summaries {', '.join(f'z_{d}' for d in dims)} ({which}) of six fixed parameter sets "
        "under random nuisance, coloured by parameter set (paper Fig. 2); one tight cluster per "
        "set means the summary ignores the nuisance"
    )
    return [("summaries.png", caption, fig)]


def _summary_dims(emb: Any, x: torch.Tensor, most: int = 4) -> tuple[tuple[int, ...], str]:
    """The (at most ``most``) summary dimensions with the largest spread, and how to say so.

    The spread is measured on the training data already simulated, so choosing draws nothing
    from the random stream and calls no simulator.
    """
    with torch.no_grad():
        spread = emb(x[:500]).double().std(0)
    width = int(spread.numel())
    top = tuple(sorted(torch.argsort(spread, descending=True)[:most].tolist()))
    if width <= most:
        return top, f"all D = {width} summary dimensions"
    return top, f"the {most} of D = {width} summary dimensions with the largest spread"


def _figures(results: RunResults) -> list[tuple]:
    """Posteriors of the first observations, loss curves, coverage, TARP and SBC ranks."""
    labels = list(results.task.parameter_labels)
    calibration = {label(k): v for k, v in results.calibration.items()}
    return [
        *_posterior_figures(results),
        (
            "loss_curves.png",
            "Training (solid) and validation (dashed) losses per epoch; a panel title says when "
            "sbi stopped at the epoch cap rather than by early stopping",
            _loss_figure(results),
        ),
        (
            "coverage.png",
            "Expected coverage of central credible intervals, with 1-, 2-, 3-sigma bands "
            "(paper Fig. 4)",
            plot_coverage(calibration, labels=labels),
        ),
        (
            "tarp.png",
            "TARP: expected coverage probability against credibility level (sbi's run_tarp); "
            "on the diagonal is calibrated, above it too wide, below it too narrow",
            plot_tarp(calibration),
        ),
        (
            "sbc_ranks.png",
            "SBC rank histograms with the 99% band of uniform ranks",
            plot_sbc_ranks(calibration, labels=labels),
        ),
    ]


def _posterior_figures(results: RunResults) -> list[tuple]:
    """Pairplots (sbi's) of the first three observations: every method over the reference."""
    figures, labels = [], list(results.task.parameter_labels)
    samples, refs = results.accuracy.samples, results.references
    bounds = prior_bounds(results.task.prior)
    for i in range(min(3, len(results.sims.theta_o))):
        ref = reference_samples(refs[i]) if refs else None  # a result, or samples
        fig = plot_posteriors(
            {label(k): v[i] for k, v in samples.items()},
            ref,
            labels=labels,
            truth=results.sims.theta_o[i],
            title=f"observation {i}",
            bounds=bounds,
        )
        if ref is not None:
            what = "black: exact reference; limits: the reference's 99% interval widened, within "
        else:
            what = "no reference; limits: the methods' central 95% widened, within "
        caption = (
            f"Posteriors for observation {i}: densities and 68%/95% contours ({what}the prior; "
            "red: truth) (paper Fig. 3)"
        )
        figures.append((f"posterior_{i}.png", caption, fig))
    return figures


def _loss_figure(results: RunResults) -> Any:
    """Loss curves of every method (and of VICReg pretraining), labelled with their loss."""
    curves, ylabels, titles = {}, {}, {}
    for name, method in results.trained.items():
        curves[label(name)] = method.history
        ylabels[label(name)] = _LOSS_LABELS.get(name, _LOSS_LABELS[METHODS[name].kind])
        entry = results.accuracy.metrics[name]
        if any(f["code"] == "epoch_cap" for f in entry.get("flags", [])):
            titles[label(name)] = f"{label(name)} (stopped at its epoch cap)"
        if method.extra.get("members", 1) > 1:  # a product: the members' curves in turn
            titles[label(name)] = f"{label(name)} ({method.extra['members']} members in turn)"
    if "symmetry_npe" in results.trained:
        h = results.trained["symmetry_npe"].history
        curves["VICReg pretraining"] = {
            "train": h.get("pretrain_train_total", []),
            "validation": h.get("pretrain_val_total", []),
        }
        ylabels["VICReg pretraining"] = "VICReg loss (total)"
    return plot_loss_curves(curves, ylabels=ylabels, titles=titles)


#: How the run's draws are organised (``metrics.json``): each method trains from its own stream
#: (:mod:`sbi_symmetry.workflow.parallel`); runs whose metrics lack it drew from one shared stream.
RANDOM_STREAMS = "one per method"

#: The y-axis label of a loss curve, by method name or else by kind.
_LOSS_LABELS = {
    "npe": "NPE loss: mean −log q(θ | x)",
    "ratio": "ratio-estimator loss",
    "embed_emulate": "symmetric InfoNCE loss",
    "nre_c": "NRE-C loss (cross-entropy)",
}


def _metrics(results: RunResults) -> dict[str, Any]:
    crb, refs, sims = results.accuracy.crb, results.references, results.sims
    return {
        "config": results.config.to_dict(),
        "versions": {**versions(), "torch_threads": str(torch.get_num_threads())},
        "random_streams": RANDOM_STREAMS,
        "wall_seconds": dict(results.watch.seconds),
        "observations": {"theta": sims.theta_o.tolist(), "nuisance": sims.shift_o.tolist()},
        "simulator_calls": {**sims.calls, "total": sum(sims.calls.values())},
        "cramer_rao_bound": None if crb is None else crb.tolist(),
        "reference": [
            {
                "method": getattr(r, "method", type(r).__name__),
                "seconds": getattr(r, "wall_time_s", None),
                "log_evidence": getattr(r, "log_evidence", None),
            }
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
