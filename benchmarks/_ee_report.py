"""``embed_emulate.py``'s results file: tables, verdicts on the targets, protocol, machine notes.

Everything is rendered from the JSON payload, so ``--render`` rewrites a results file from the raw
numbers of an earlier run.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from _common import platform_stamp, table, write_json, write_text
from _ee_methods import LABELS, SBC_CANDIDATES, SBC_CHAINS, SBC_WARMUP, Settings
from plans import EE_KWARGS

HEADER = [
    "method",
    "simulator calls",
    "C2ST (mean ± sem)",
    "SBC KS p (per param)",
    "max cov. err",
    "TARP ATC / p",
    "contraction",
    "invariance err",
    "trainable params",
    "MACs @1000",
    "s / epoch",
    "epochs (best)",
    "train s (to best)",
    "step ms",
    "s / 10^4 samples",
]


def _fmt(value: float | None, spec: str) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (format(value, spec))
    )


def _method_row(name: str, e: dict[str, Any]) -> list[str]:
    """One method's row of a task's table."""
    c = e.get("c2st")
    cal = e["calibration"]
    ep = e["epochs"]
    costs = e["costs"]
    train_s = costs["train_seconds"]
    pre = costs.get("pretrain_seconds", 0.0)
    cap = "" if ep["stopped_early"] else " cap"
    calls = costs.get("simulator_calls", {}).get("total")
    return [
        LABELS[name],
        "not counted" if calls is None else f"{calls:,}",
        f"{c['mean']:.3f} ± {c['sem']:.3f}" if c else "n/a",
        ", ".join(f"{p:.2f}" for p in cal["ks_pvals"]),
        f"{cal['max_coverage_error']:.3f}",
        f"{cal['tarp_atc']:+.3f} / {cal['tarp_ks_pval']:.2f}",
        f"{e['contraction']['mean']:.2f}",
        _fmt(e.get("invariance_error"), ".3f"),
        f"{costs['trainable_parameters']:,}",
        f"{costs['macs_per_1000']:.2e}",
        f"{ep['seconds_per_epoch_median']:.2f}",
        f"{ep['epochs']}{cap} ({ep['best_epoch']})",
        f"{train_s:.0f} ({ep['seconds_to_best_epoch']:.0f})"
        + (f" + {pre:.0f} pretrain" if pre else ""),
        f"{e['step']['median_ms']:.1f}" if "step" in e else "n/a",
        f"{e['seconds_per_10k_samples']:.1f}"
        + (f" ({len(e['sample_seconds'])} obs)" if name == "nre_c" else ""),
    ]


def _with_targets(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(task, targets)`` for the tasks that ran both E&E and NRE_C."""
    return [(task, res["targets"]) for task, res in results.items() if res.get("targets")]


def _targets_table(results: dict[str, Any]) -> list[str]:
    """E&E against NRE_C per task: the speed-ups and the C2ST gap."""
    rows = []
    for task, t in _with_targets(results):
        diff = t.get("c2st_difference")
        rows.append(
            [
                task,
                f"{t['step_speedup']:.1f}x",
                f"{t['epoch_speedup']:.1f}x",
                f"{t['mcmc_speedup']:.1f}x ({t['mcmc_observations']} obs)",
                f"{diff:+.3f} ± {t['c2st_sem_difference']:.3f}" if diff is not None else "n/a",
            ]
        )
    header = [
        "task",
        "step speed-up (target ≥ 3)",
        "epoch speed-up",
        "MCMC speed-up (target ≥ 10)",
        "C2ST E&E − NRE_C (target ≤ 0)",
    ]
    return ["### Targets (E&E against NRE_C with the same encoder)", "", *table(header, rows)]


def _speed_table(checks: dict[str, Any], epochs: int) -> list[str]:
    """The speed check with the costlier encoder, per task."""
    rows = []
    for task, c in checks.items():
        ee, nre = c["embed_emulate"], c["nre_c"]
        rows.append(
            [
                task,
                ", ".join(f"{k}={v}" for k, v in c["encoder"].items()),
                f"{ee['step']['median_ms']:.1f}",
                f"{nre['step']['median_ms']:.1f}",
                f"{c['step_speedup']:.1f}x",
                f"{ee['seconds_per_10k_samples']:.1f}",
                f"{nre['seconds_per_10k_samples']:.1f}",
                f"{c['mcmc_speedup']:.1f}x ({len(ee['sample_seconds'])} obs)",
                f"{ee['macs_per_1000']:.2e} / {nre['macs_per_1000']:.2e}",
            ]
        )
    header = [
        "task",
        "encoder",
        "E&E step ms",
        "NRE_C step ms",
        "step speed-up",
        "E&E s / 10^4",
        "NRE_C s / 10^4",
        "MCMC speed-up",
        "MACs @1000 E&E / NRE_C",
    ]
    title = f"### Speed with a costlier encoder (speed only; networks trained {epochs} epochs)"
    return ["", title, "", *table(header, rows)]


def markdown_tables(results: dict[str, Any], cfg: Settings) -> str:
    """The results as markdown: one table per task and a table of the targets."""
    lines: list[str] = []
    for task, res in results.items():
        rows = [_method_row(name, e) for name, e in res["methods"].items()]
        lines += [f"### {task}", "", *table(HEADER, rows), ""]
    lines += _targets_table(results)
    checks = {t: r["speed_check"] for t, r in results.items() if "speed_check" in r}
    if checks:
        lines += _speed_table(checks, cfg.speed_epochs)
    return "\n".join(lines) + "\n"


def machine_notes(threads: int) -> str:
    """What the numbers were measured on."""
    return (
        f"{platform_stamp(sbi=True)}; {torch.get_num_threads()} torch thread(s) "
        f"(--threads {threads}) "
        "on a 2-core machine shared with other jobs (load is not controlled: wall times are "
        "noisy; ratios are taken between methods timed alternately in the same process)."
    )


def verdicts(results: dict[str, Any]) -> list[str]:
    """One line per target and task: met or missed, and by how much."""
    lines = []
    for task, t in _with_targets(results):
        step, mcmc = t["step_speedup"], t["mcmc_speedup"]
        parts = [
            f"training step {step:.1f}x faster "
            + (
                "(target >= 3x: met)" if step >= 3 else f"(target >= 3x: missed by {3 - step:.1f}x)"
            ),
            f"sbi's MCMC {mcmc:.1f}x faster on E&E than on NRE_C (the same sampler; the "
            "sampling target, E&E's two-tower sampler against NRE_C's MCMC, is measured by "
            "ee_sampling.py)",
        ]
        if "c2st_difference" in t:
            diff, sem = t["c2st_difference"], t["c2st_sem_difference"]
            ok = "met" if diff <= 0 else ("within 1 sem" if diff <= sem else "missed")
            parts.append(f"C2ST E&E - NRE_C = {diff:+.3f} ± {sem:.3f} (target <= 0: {ok})")
        check = results[task].get("speed_check")
        if check:
            parts.append(
                f"with the costlier encoder: step {check['step_speedup']:.1f}x, "
                f"MCMC {check['mcmc_speedup']:.1f}x"
            )
        lines.append(f"- **{task}**: " + "; ".join(parts) + ".")
    return lines


def protocol(payload: dict[str, Any]) -> list[str]:
    """How the numbers were produced."""
    cfg = payload["settings"]
    timing = cfg["timing_observations"]
    encoders = [
        f"  - {task}: `ConvEncoder1D({', '.join(f'{k}={v}' for k, v in res['encoder'].items())})`"
        f" (input {tuple(res['x_shape'])}); symmetry-NPE: the same with "
        f"`output_dim={res['npe_output_dim']}`"
        for task, res in payload["results"].items()
    ]
    return [
        "## Protocol",
        "",
        f"- Training data: {cfg['simulations']} simulations per task (theta and nuisance from "
        f"their priors), seed {cfg['seed']}; every method is trained in this one process from "
        "the same data, after `torch.manual_seed(seed)`. 'simulator calls' adds the data sets "
        "a method simulated besides (symmetry-NPE's pretraining views, the VICReg variant's "
        "views); 'not counted' marks a run made before they were counted.",
        "- One encoder architecture per task for all methods; E&E and NRE_C also start from "
        "the same initial encoder weights:",
        *encoders,
        f"- E&E: `EmbedEmulate` with `{payload['ee_kwargs']}` (cosine similarity; temperature "
        "learned from 0.15; one scalar mean/std z-scoring of x, as NRE_C gets with "
        "`z_score_x='structured'`), default `ResidualMLP` emulator. E&E + VICReg adds "
        f"`views=task.views, symmetry_weight={cfg['symmetry_weight']}` (training loss only; "
        "early stopping uses the pure InfoNCE). NRE_C: sbi's `NRE_C` with "
        "`classifier_nn('resnet', embedding_net_x=encoder, z_score_x='structured')` (sbi's "
        "default classifier) and sbi's default `num_classes=5`.",
        f"- Training (all methods, sbi's loop): batch {cfg['batch_size']}, Adam "
        f"lr {cfg['learning_rate']}, early stopping after {cfg['stop_after_epochs']} epochs "
        f"without validation improvement, at most {cfg['max_epochs']} epochs ('cap' in the "
        "table: the cap was reached, the validation loss may still have been improving). "
        "'s / epoch' is the median of sbi's per-epoch wall time (training + validation); "
        "'train s (to best)' is the whole run and, in brackets, the time up to the epoch "
        "with the best validation loss (the weights that are kept). symmetry-NPE's "
        "pretraining is shown separately.",
        f"- Training step: the trainers' own `_get_losses` + backward + gradient clipping + Adam "
        f"step on copies of the trained networks, batch {cfg['batch_size']}, median of "
        f"{cfg['step_repeats']} steps per method, the methods alternating on the same batches "
        "(NRE_C's loss evaluates the classifier on 11 (theta, x) pairs per x: K + 1 = 6 for "
        "the marginal and K = 5 for the joint term; E&E needs one encoder and one emulator "
        "pass per pair for all B x B logits). The VICReg variant's step includes simulating "
        "its two views.",
        f"- Posterior sampling: {cfg['timed_samples']} samples per observation, timed"
        + (
            f" (NRE_C only on the first {timing} observations)"
            if timing is not None
            else " on every observation"
        )
        + ". Ratio methods: the same sbi MCMC settings for all, `slice_np_vectorized`, "
        "20 chains, 50 warm-up steps (after sbi's 50 bracket-tuning steps), thin 1, sbi's "
        "default `resample` start (best of 10^4 prior draws per chain under the potential). "
        "symmetry-NPE: sbi's direct sampling."
        + (" (--quick: 4 chains, 10 warm-up steps, prior start.)" if cfg["quick"] else ""),
        f"- C2ST: sbi's random-forest C2ST between {cfg['posterior_samples']} posterior samples "
        "(a seeded random subset of the timed draw) and as many samples of the exact "
        "quadrature reference (shift marginalised), per observation; mean ± sem over "
        f"{cfg['observations']} observations with theta and shift from their priors.",
        f"- Calibration: {cfg['sbc_pairs']} pairs from the prior, {cfg['sbc_samples']} posterior "
        "samples each, through `sbi_symmetry.evaluation.calibrate` (sbi's `run_sbc`/"
        "`check_sbc`, `run_tarp`/`check_tarp`). SBC KS p-values per parameter; max coverage "
        "error = largest gap between empirical and nominal coverage of central intervals; "
        "TARP ATC (0 ideal) and KS p. Ratio methods: slice MCMC, the same settings for "
        f"all: {SBC_CHAINS} chains per pair started by sbi's `resample` from {SBC_CANDIDATES} "
        f"prior draws, {SBC_WARMUP} warm-up steps; all pairs at once with `sample_batched`, "
        "except for multi-channel x (Lorenz-96), whose start `sample_batched` cannot evaluate, "
        "one pair at a time. (Starting from plain prior draws leaves E&E's chains in local "
        "maxima of its sharp learned log ratio: prior-like samples, which pass SBC and TARP "
        "but barely contract.) Contraction = 1 - posterior var / prior var, averaged over the "
        "calibration pairs and the parameters.",
        "- Invariance error: mean squared distance between the summaries of two re-simulated "
        "views (same theta, new nuisance and noise) over their total variance "
        "(`sbi_symmetry.symmetry.diagnostics.invariance_error`; 0 invariant, about 2 none): E&E's "
        "unit-norm f(x), NRE_C's x-embedding, symmetry-NPE's embedding.",
        "- MACs: one forward pass of the trained estimator on 1000 (theta, x) pairs "
        "(`TrainedMethod.macs_per_1000`: for the ratio methods one log-ratio per pair, for "
        "NPE the flow's log-probability); average pooling is not counted.",
        f"- Speed check: E&E and NRE_C trained for {cfg['speed_epochs']} epochs with a costlier "
        "encoder (full resolution, no input averaging); step and 10^4-sample MCMC times as "
        f"above on {cfg['speed_observations']} observation(s). Speed only.",
        "",
    ]


def render_markdown(payload: dict[str, Any], json_name: str) -> str:
    """The results file from the JSON payload."""
    cfg = Settings(**{**payload["settings"], "methods": tuple(payload["settings"]["methods"])})
    results = payload["results"]
    text = [
        "# Embed and Emulate vs NRE_C (same encoder) vs symmetry-NPE",
        "",
        f"Command: `{payload['command']}`",
        "",
        f"Machine: {payload['machine']} Total wall time {payload['wall_seconds'] / 60:.1f} min.",
        "",
        "## Targets",
        "",
        *verdicts(results),
        "",
        "## Results",
        "",
        markdown_tables(results, cfg),
        *protocol(payload),
        f"Raw numbers (per observation, per epoch, per pair): `{json_name}`.",
        "",
    ]
    return "\n".join(text)


def write_results(
    out: Path, command: str, cfg: Settings, results: dict[str, Any], wall: float, notes: str
) -> None:
    """Write the JSON of raw numbers and the markdown results beside it."""
    json_path = out.with_suffix(".json")
    payload = {
        "command": command,
        "settings": dataclasses.asdict(cfg),
        "ee_kwargs": EE_KWARGS,
        "machine": notes,
        "wall_seconds": wall,
        "results": results,
    }
    raw = write_json(json_path, payload, default=str)
    write_text(out, render_markdown(raw, json_path.name))
