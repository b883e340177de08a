"""Run named variants of the fast preset through ``sbi-symmetry run`` and tabulate them.

Shared by ``symmetry_npe_levers.py`` and ``ee_levers.py``: each variant is one
``workflow.pipeline.run`` of the fast preset with named changes (a dict-valued change updates that
sub-setting of the preset), the same seed for every variant (so the same training set,
observations and initial towers), exact references and sbi's C2ST. Every method's simulator calls
are counted (training set + simulated views), so variants are compared at their real budgets.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import calibration_cell, command_line, platform_stamp
from plans import merged, preset

from sbi_symmetry._io import atomic_write_text
from sbi_symmetry.workflow import pipeline
from sbi_symmetry.workflow.config import RunConfig

#: name -> (methods, changes to the fast preset)
Variants = dict[str, tuple[tuple[str, ...], dict[str, Any]]]

HEADER = [
    "| variant | method | C2ST (mean ± sem) | std / reference (mean) | std / reference "
    "(largest) | calibrated (SBC smallest p, largest coverage error) | simulator calls "
    "(training + views) | epochs | train s (+ pretrain), threads |",
    "|---|---|---|---|---|---|---|---|---|",
]
#: How a table's "calibrated" cell decides, printed under every table of these pages.
CALIBRATION_RULE = (
    "Calibrated: `sbi`'s SBC passes, every parameter's KS p-value above 0.05 / (number of "
    "parameters) (Bonferroni); the coverage error is shown, not tested; 'yes, but 3.0x too wide' "
    "flags a calibrated posterior over twice the exact width on average. Times: each method's "
    "own training and pretraining, and the torch threads it trained on."
)


#: The settings taken from ``plans.preset`` (as the recorded pages ran) rather than the preset.
_RECORDED = ("encoder", "flow", "frozen_epochs", "ee_encoder", "ee", "npe_train", "pretrain")


def variant_config(
    task: str, observations: int, methods: tuple[str, ...], changes: dict[str, Any]
) -> RunConfig:
    """The fast preset of ``task`` as recorded (``plans.preset``: towers, flow, frozen start,
    pretraining, E&E's settings) with ``changes``.

    Dict-valued changes update the preset's.
    """
    base = preset(task)
    recorded = {key: getattr(base, key) for key in _RECORDED}
    changed = merged(base, changes)
    return RunConfig.from_preset(
        task, "fast", num_observations=observations, methods=methods, **{**recorded, **changed}
    )


def _seconds_cell(costs: dict[str, Any]) -> str:
    """A method's own training seconds, its pretraining's, and the torch threads it trained on."""
    cell = f"{costs['train_seconds']:.0f}"
    if costs.get("pretrain_seconds"):
        cell += f" (+ {costs['pretrain_seconds']:.0f})"
    return cell + (f", {costs['torch_threads']}" if "torch_threads" in costs else "")


def rows(name: str, metrics: dict[str, Any]) -> list[str]:
    """One table row per method of a run's ``metrics``."""
    out = []
    for method, entry in metrics["methods"].items():
        per_obs = entry["std_over_reference"]
        widths = [sum(c) / len(c) for c in zip(*per_obs, strict=True)]
        largest = max(max(obs) for obs in per_obs)
        calls = entry["costs"]["simulator_calls"]
        out.append(
            f"| {name} | {method} | {entry['c2st']['mean']:.3f} ± {entry['c2st']['sem']:.3f} | "
            + ", ".join(f"{w:.2f}" for w in widths)
            + f" | {largest:.2f} | {calibration_cell(entry)} | "
            f"{calls['total']:,} ({calls['training_set']:,} + "
            f"{calls['views']:,}) | {entry['costs']['epochs']} | {_seconds_cell(entry['costs'])} |"
        )
    return out


def main(script: str, title: str, variants: Variants, argv: list[str] | None = None) -> None:
    """Parse ``--task/--observations/--variants/--out``, run the variants, write the table."""
    parser = argparse.ArgumentParser(description=title)
    parser.add_argument("--task", default="damped-oscillator")
    parser.add_argument("--observations", type=int, default=10)
    parser.add_argument("--variants", nargs="+", choices=list(variants), default=list(variants))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(f"benchmarks/results/{Path(script).stem}_{args.task}.md")
    table: list[str] = []
    for name in args.variants:
        methods, changes = variants[name]
        cfg = variant_config(args.task, args.observations, methods, changes)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            metrics = pipeline.run(cfg, Path(folder) / "run", show_progress=False)
        table += rows(name, metrics)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
        print("\n".join(HEADER + table), flush=True)
    text = [
        f"# {title}: {args.task}, fast preset, {args.observations} observations",
        "",
        f"Script: `benchmarks/{script}`. Machine: {platform_stamp(sbi=True)}.",
        "",
        "    " + command_line(script, argv if argv is not None else sys.argv[1:]),
        "",
        *HEADER,
        *table,
        "",
        CALIBRATION_RULE,
        "",
    ]
    atomic_write_text(out, "\n".join(text))
