"""The end-to-end run behind ``sbi-symmetry run``: simulate, train, compare, calibrate, report.

Stages (each prints one summary line and shows a progress bar where it loops):

1. simulate training pairs, held-out observations and calibration pairs (all seeded);
2. pretrain the symmetry embedding with VICReg and train sbi's NPE on it;
3. train the baselines (sbi's NPE on raw data; optionally NPE with the same encoder trained
   end to end) and Embed and Emulate (optionally sbi's NRE_C);
4. reference posteriors of the held-out observations (exact quadrature, shift marginalised);
5. accuracy: C2ST against the reference, posterior widths against the reference and the
   Cramer-Rao bound;
6. calibration with sbi's own diagnostics: SBC ranks, expected coverage, TARP;
7. the report: ``report.md``, ``report.html``, ``metrics.json``, figures, the saved embedding.

Example:
    >>> from sbi_symmetry.workflow.config import RunConfig
    >>> cfg = RunConfig.from_preset("damped-oscillator", "fast")
    >>> cfg.methods
    ('symmetry_npe', 'raw_npe', 'embed_emulate')
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from sbi.inference.posteriors import MCMCPosterior
from tqdm.auto import tqdm

from sbi_symmetry.evaluation import Stopwatch, c2st_score, calibrate, std_ratio, summarise
from sbi_symmetry.nets import ConvEncoder1D, Expander
from sbi_symmetry.symmetry.diagnostics import collapse_statistics, invariance_error, plot_summaries
from sbi_symmetry.tasks import SignalInNoiseTask, get_task
from sbi_symmetry.workflow import methods as M
from sbi_symmetry.workflow.config import RunConfig
from sbi_symmetry.workflow.plots import (
    plot_coverage,
    plot_loss_curves,
    plot_posteriors,
    plot_sbc_ranks,
)
from sbi_symmetry.workflow.report import Document

LABELS = {
    "symmetry_npe": "symmetry NPE",
    "raw_npe": "NPE (raw data)",
    "end_to_end_npe": "NPE (same encoder, no pretraining)",
    "embed_emulate": "Embed and Emulate",
    "nre_c": "NRE-C (same encoder)",
}
_MARKER = "metrics.json"
#: Seconds before sbi gives up rejecting an NPE's samples outside the prior (a badly trained
#: flow can put almost all its mass there; better a clear error than a run that never ends).
SAMPLING_TIME_LIMIT = 600.0


def prepare_output(out: Path, overwrite: bool) -> Path:
    """Create ``out``; refuse an existing non-empty folder unless ``overwrite`` and it is ours.

    Args:
        out: Output folder.
        overwrite: Replace the files of an earlier run in ``out``.

    Returns:
        The folder.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a folder.")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"--out {out} already exists and is not empty; choose another folder or pass "
                "--overwrite to replace an earlier run's results there."
            )
        if not (out / _MARKER).exists():
            raise FileExistsError(
                f"--out {out} is not empty and holds no earlier run ({_MARKER} missing); "
                "refusing to write into it even with --overwrite."
            )
    out.mkdir(parents=True, exist_ok=True)
    return out


def _encoder(task: Any, kwargs: dict[str, Any]) -> ConvEncoder1D:
    shape = task.x_shape
    channels = {"in_channels": shape[0]} if len(shape) == 2 else {}
    return ConvEncoder1D(input_length=shape[-1], **channels, **kwargs)


def run(
    config: RunConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every stage and write the report folder.

    Args:
        config: Settings (see :class:`RunConfig`).
        out: Output folder (must not exist, be empty, or be an earlier run with ``overwrite``).
        overwrite: Replace an earlier run's files in ``out``.
        show_progress: Progress bars (sbi's and ours).
        log: Where the one-line stage summaries go.

    Returns:
        The metrics written to ``metrics.json``.
    """
    config.validate()
    folder = prepare_output(Path(out), overwrite)
    torch.manual_seed(config.seed)
    gen = torch.Generator(device=config.device).manual_seed(config.seed)
    task = get_task(config.task, device=config.device)
    watch = Stopwatch()
    trained: dict[str, M.TrainedMethod] = {}
    num_stages = 7
    quiet = not show_progress

    def say(stage: int, text: str) -> None:
        log(f"[{stage}/{num_stages}] {text}")

    # 1. simulations -------------------------------------------------------------------------
    with watch("simulate"):
        theta, x = task.sample_joint(config.num_simulations, generator=gen)
        theta_o = task.sample_prior(config.num_observations, generator=gen)
        shift_o = task.sample_nuisance(config.num_observations, generator=gen)
        x_o = task.simulate(theta_o, shift_o, generator=gen)
        num_cal = max(config.sbc_pairs, config.sbc_pairs_ratio)
        theta_cal, x_cal = task.sample_joint(num_cal, generator=gen)
    say(
        1,
        f"simulate: {config.num_simulations} training pairs, {config.num_observations} "
        f"observations, {num_cal} calibration pairs ({watch.seconds['simulate']:.1f} s)",
    )

    # 2. symmetry embedding + NPE -----------------------------------------------------------
    encoder = _encoder(task, config.encoder)
    npe_kwargs = {"show_progress_bars": show_progress, **config.npe_train}
    flow = dict(config.flow)
    if "symmetry_npe" in config.methods:
        with watch("symmetry_npe"):
            trained["symmetry_npe"] = M.symmetry_npe(
                task,
                theta,
                x,
                encoder,
                pretrain_simulations=config.pretrain_simulations,
                pretrain_kwargs={
                    "seed": config.seed,
                    "device": config.device,
                    "expander": Expander(encoder.output_dim, **config.expander),
                    **config.pretrain,
                },
                flow_kwargs=flow,
                **npe_kwargs,
            )
        m = trained["symmetry_npe"]
        say(
            2,
            f"symmetry NPE: pretrained in {m.pretrain_seconds:.0f} s, NPE trained "
            f"{m.epochs} epochs in {m.train_seconds:.0f} s",
        )

    # 3. baselines and Embed and Emulate ----------------------------------------------------
    with watch("baselines"):
        if "raw_npe" in config.methods:
            trained["raw_npe"] = M.raw_npe(task, theta, x, **npe_kwargs)
        if "end_to_end_npe" in config.methods:
            trained["end_to_end_npe"] = M.end_to_end_npe(
                task, theta, x, encoder, flow_kwargs=flow, **npe_kwargs
            )
        ee_encoder = _encoder(task, config.ee_encoder)
        ee_kwargs = {"show_progress_bars": show_progress, **config.ee_train}
        if "embed_emulate" in config.methods:
            trained["embed_emulate"] = M.embed_emulate(
                task, theta, x, ee_encoder, estimator_kwargs=dict(config.ee), **ee_kwargs
            )
        if "nre_c" in config.methods:
            trained["nre_c"] = M.nre_c(task, theta, x, ee_encoder, **ee_kwargs)
    say(
        3,
        "trained "
        + ", ".join(
            f"{LABELS[k]} ({v.epochs} epochs, {v.train_seconds:.0f} s)"
            for k, v in trained.items()
            if k != "symmetry_npe"
        ),
    )

    # 4. references -------------------------------------------------------------------------
    references: list[Any] = []
    if isinstance(task, SignalInNoiseTask):
        with watch("reference"):
            for i in tqdm(
                range(config.num_observations), desc="reference posteriors", disable=quiet
            ):
                references.append(
                    task.reference_posterior(
                        x_o[i : i + 1], num_samples=config.posterior_samples, seed=config.seed + i
                    )
                )
        say(
            4,
            f"reference: exact quadrature for {len(references)} observations "
            f"({watch.seconds['reference']:.1f} s)",
        )
    else:
        say(
            4,
            f"reference: none for {config.task} (no tractable likelihood); accuracy is "
            "judged by calibration and contraction",
        )

    # 5. accuracy ---------------------------------------------------------------------------
    metrics_methods: dict[str, dict[str, Any]] = {
        k: {"costs": v.summary()} for k, v in trained.items()
    }
    samples: dict[str, list[torch.Tensor]] = {}
    crb = None
    if isinstance(task, SignalInNoiseTask):
        crb = task.cramer_rao_bound(theta_o, shift_o)
    prior_var = task.sample_prior(20_000, generator=gen).double().var(0)
    with watch("accuracy"):
        for name, method in trained.items():
            start = time.perf_counter()
            with _naming_failures(name):
                draws = [
                    method.sample(
                        x_o[i : i + 1],
                        config.posterior_samples,
                        max_sampling_time=SAMPLING_TIME_LIMIT,
                    )
                    for i in tqdm(
                        range(config.num_observations), desc=f"sampling {name}", disable=quiet
                    )
                ]
            took = time.perf_counter() - start
            samples[name] = draws
            entry = metrics_methods[name]
            total = config.num_observations * config.posterior_samples
            entry["seconds_per_10k_samples"] = took / total * 10_000
            entry["contraction"] = [(1 - s.double().var(0) / prior_var).tolist() for s in draws]
            if references:
                scores = [
                    c2st_score(s, r.samples, seed=config.seed)
                    for s, r in zip(draws, references, strict=True)
                ]
                ratios = [
                    std_ratio(s, r.samples).tolist() for s, r in zip(draws, references, strict=True)
                ]
                entry["c2st"] = {**summarise(scores), "per_observation": scores}
                entry["std_over_reference"] = ratios
                entry["std_over_crb"] = [
                    (s.double().std(0) / crb[i]).tolist() for i, s in enumerate(draws)
                ]
    if references:
        say(
            5,
            "accuracy: mean C2ST "
            + ", ".join(f"{LABELS[k]} {v['c2st']['mean']:.3f}" for k, v in metrics_methods.items()),
        )
    else:
        say(
            5,
            "accuracy: posterior contraction "
            + ", ".join(
                f"{LABELS[k]} {torch.tensor(v['contraction']).mean():.2f}"
                for k, v in metrics_methods.items()
            ),
        )

    # 6. calibration ------------------------------------------------------------------------
    calibration = {}
    with watch("calibration"):
        for name, method in trained.items():
            pairs = (
                config.sbc_pairs_ratio if name in ("embed_emulate", "nre_c") else config.sbc_pairs
            )
            with _naming_failures(name):
                calibration[name] = calibrate(
                    method.posterior,
                    task.prior,
                    theta_cal[:pairs],
                    x_cal[:pairs],
                    num_posterior_samples=config.sbc_posterior_samples,
                    show_progress_bar=show_progress,
                    seed=config.seed,
                    max_sampling_time=SAMPLING_TIME_LIMIT,
                    sample_kwargs=_batched_sampling(method.posterior),
                )
            metrics_methods[name]["calibration"] = calibration[name].to_dict()
    say(
        6,
        "calibration: "
        + ", ".join(
            f"{LABELS[k]} {'calibrated' if v.is_calibrated() else 'NOT calibrated'} "
            f"(max coverage error {v.max_coverage_error():.2f})"
            for k, v in calibration.items()
        ),
    )

    # 7. report -----------------------------------------------------------------------------
    with watch("report"):
        metrics = _write_report(
            folder,
            config,
            task,
            trained,
            samples,
            references,
            calibration,
            metrics_methods,
            theta_o,
            shift_o,
            crb,
            watch,
        )
    say(7, f"report: {folder / 'report.md'} ({sum(watch.seconds.values()):.0f} s in all)")
    return metrics


def _write_report(
    folder: Path,
    config: RunConfig,
    task: Any,
    trained: dict[str, M.TrainedMethod],
    samples: dict[str, list[torch.Tensor]],
    references: list[Any],
    calibration: dict[str, Any],
    metrics_methods: dict[str, dict[str, Any]],
    theta_o: torch.Tensor,
    shift_o: torch.Tensor,
    crb: torch.Tensor | None,
    watch: Stopwatch,
) -> dict[str, Any]:
    labels = list(task.parameter_labels)
    doc = Document()
    doc.heading(f"sbi-symmetry run: {config.task} ({config.preset} preset)", 1)
    doc.paragraph(
        f"{config.num_simulations} training simulations, {config.num_observations} held-out "
        f"observations (theta and nuisance drawn from their priors), seed {config.seed}. "
        f"Command: `sbi-symmetry run --task {config.task} --preset {config.preset} "
        f"--simulations {config.num_simulations} --seed {config.seed}`."
    )
    header = [
        "method",
        "C2ST vs reference (mean ± sem)",
        "std / reference",
        "std / Cramér-Rao",
        "SBC (KS p-values)",
        "max coverage error",
        "TARP ATC",
        "trainable params",
        "MACs (batch 1000)",
        "train s",
        "pretrain s",
        "s per 10⁴ samples",
    ]
    rows = []
    for name, entry in metrics_methods.items():
        c = entry.get("c2st")
        cal = entry["calibration"]
        costs = entry["costs"]
        std_ref = _mean_columns(entry.get("std_over_reference"))
        std_crb = _mean_columns(entry.get("std_over_crb"))
        rows.append(
            [
                LABELS[name],
                f"{c['mean']:.3f} ± {c['sem']:.3f}" if c else "n/a",
                std_ref,
                std_crb,
                ", ".join(f"{p:.2f}" for p in cal["ks_pvals"]),
                f"{cal['max_coverage_error']:.3f}",
                f"{cal['tarp_atc']:+.3f}",
                f"{costs['trainable_parameters']:,}",
                f"{costs['macs_per_1000']:.2e}",
                f"{costs['train_seconds']:.0f}",
                f"{costs['pretrain_seconds']:.0f}",
                f"{entry['seconds_per_10k_samples']:.1f}",
            ]
        )
    doc.heading("Metrics")
    doc.table(header, rows)
    doc.paragraph(
        "C2ST: random-forest classifier two-sample test (sbi's default) between each method's "
        "samples and the reference posterior; 0.5 is indistinguishable. Widths are per-parameter "
        "posterior standard deviations averaged over observations (order: "
        + ", ".join(task.parameter_names)
        + "). The Cramér-Rao bound profiles the nuisance out. SBC: Kolmogorov-Smirnov p-values "
        "of rank uniformity per parameter (sbi's check_sbc); coverage error is the largest gap "
        "between empirical and nominal coverage of central credible intervals; TARP ATC near 0 "
        "is ideal (sbi's check_tarp)."
    )
    doc.heading("Wall time per stage")
    doc.table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in watch.seconds.items()])

    figures: list[tuple[str, str, Any]] = []
    if "symmetry_npe" in trained:
        emb = trained["symmetry_npe"].extra["pretrained_embedding"]
        emb.save(folder / "embedding", overwrite=True)
        fig = plot_summaries(emb, task, task.sample_prior(6), num_nuisance=150)
        figures.append(
            (
                "summaries.png",
                "Summaries of six fixed parameter sets under random "
                "nuisance, coloured by parameter set (paper Fig. 2)",
                fig,
            )
        )
        with torch.no_grad():
            z = emb(task.simulate(task.sample_prior(500)))
        stats = collapse_statistics(z)
        inv = invariance_error(emb, task.views, task.sample_prior(500))
        metrics_methods["symmetry_npe"]["embedding"] = {
            "invariance_error": inv,
            "effective_rank": float(stats["effective_rank"]),
            "summary_std": [float(v) for v in stats["std"]],
        }
        doc.paragraph(
            f"Symmetry embedding: invariance error {inv:.3f} (0 = invariant, about 2 = none), "
            f"effective rank {float(stats['effective_rank']):.2f} of {z.shape[1]}; saved to "
            "`embedding/` (reload with `SymmetryEmbedding.load`)."
        )
    for i in range(min(3, len(theta_o))):
        ref = references[i].samples if references else None
        fig = plot_posteriors(
            {LABELS[k]: v[i] for k, v in samples.items()},
            ref,
            labels=labels,
            truth=theta_o[i],
            title=f"observation {i}",
        )
        figures.append(
            (
                f"posterior_{i}.png",
                f"Posteriors for observation {i} "
                f"({'black: exact reference' if ref is not None else 'no reference'}; "
                "red: truth) (paper Fig. 3)",
                fig,
            )
        )
    curves = {LABELS[k]: v.history for k, v in trained.items()}
    if "symmetry_npe" in trained:
        h = trained["symmetry_npe"].history
        curves["VICReg pretraining"] = {
            "train": h.get("pretrain_train_total", []),
            "validation": h.get("pretrain_val_total", []),
        }
    figures.append(
        (
            "loss_curves.png",
            "Training (solid) and validation (dashed) losses",
            plot_loss_curves(curves),
        )
    )
    figures.append(
        (
            "coverage.png",
            "Expected coverage of central credible intervals, with 1-, "
            "2-, 3-sigma bands (paper Fig. 4)",
            plot_coverage({LABELS[k]: v for k, v in calibration.items()}, labels=labels),
        )
    )
    figures.append(
        (
            "sbc_ranks.png",
            "SBC rank histograms with the 99% band of uniform ranks",
            plot_sbc_ranks({LABELS[k]: v for k, v in calibration.items()}, labels=labels),
        )
    )
    doc.heading("Figures")
    for fname, caption, fig in figures:
        fig.savefig(folder / fname, dpi=100, bbox_inches="tight")
        doc.figure(fname, caption)

    metrics = {
        "config": config.to_dict(),
        "versions": _versions(),
        "wall_seconds": dict(watch.seconds),
        "observations": {"theta": theta_o.tolist(), "nuisance": shift_o.tolist()},
        "cramer_rao_bound": None if crb is None else crb.tolist(),
        "reference": [
            {"method": r.method, "seconds": r.wall_time_s, "log_evidence": r.log_evidence}
            for r in references
        ],
        "methods": metrics_methods,
    }
    (folder / "report.md").write_text(doc.markdown())
    (folder / "report.html").write_text(doc.html(f"sbi-symmetry: {config.task}"))
    (folder / _MARKER).write_text(json.dumps(metrics, indent=2))
    return metrics


def _batched_sampling(posterior: Any) -> dict[str, Any]:
    """Calibration samples many observations at once: MCMC runs fewer chains per observation.

    sbi runs ``num_chains`` chains for every observation of a batch; 5 per observation instead of
    20 makes batched slice sampling about 3x faster for the same number of samples.
    """
    return {"num_chains": 5} if isinstance(posterior, MCMCPosterior) else {}


@contextmanager
def _naming_failures(name: str) -> Iterator[None]:
    """Re-raise sampling failures (e.g. sbi's timeout on a leaking flow) with the method's name."""
    try:
        yield
    except RuntimeError as err:
        raise RuntimeError(f"sampling the {LABELS[name]} posterior failed: {err}") from err


def _mean_columns(values: list[list[float]] | None) -> str:
    if not values:
        return "n/a"
    mean = torch.tensor(values, dtype=torch.float64).mean(0)
    return ", ".join(f"{v:.2f}" for v in mean)


def _versions() -> dict[str, str]:
    import sbi

    import sbi_symmetry

    return {
        "sbi_symmetry": sbi_symmetry.__version__,
        "sbi": sbi.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "torch_threads": str(torch.get_num_threads()),
    }
