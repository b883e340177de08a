"""Which lever makes symmetry NPE accurate at an honest budget: an ablation on the fast preset.

Each variant is one ``sbi-symmetry run`` (``workflow.pipeline.run``) of the fast preset with
named changes, 10 observations drawn from the prior, exact quadrature references and sbi's C2ST,
the same seed (so the same training set, observations and initial towers for every variant).
Every method's simulator calls are counted (training set + simulated views), so variants are
compared at their real budgets. Prints a Markdown table and writes it with the command to
``--out`` (default ``benchmarks/results/symmetry_npe_levers_<task>.md``).

    .venv/bin/python benchmarks/symmetry_npe_levers.py --task damped-oscillator
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, platform_stamp

from sbi_symmetry._io import atomic_write_text
from sbi_symmetry.workflow import pipeline
from sbi_symmetry.workflow.config import RunConfig

#: name -> (methods, changes to the fast preset; "pretrain"/"encoder" entries update those dicts)
VARIANTS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "baselines (raw NPE, end-to-end NPE)": (("raw_npe", "end_to_end_npe"), {}),
    "resimulated views, frozen backbone": (("symmetry_npe",), {}),
    "shift views, frozen backbone": (("symmetry_npe",), {"pretrain_views": "shift"}),
    "shift views, fine-tuned": (
        ("symmetry_npe",),
        {"pretrain_views": "shift", "pretrain": {"freeze": "none"}},
    ),
    "resimulated views, fine-tuned": (("symmetry_npe",), {"pretrain": {"freeze": "none"}}),
}


def _config(task: str, observations: int, methods: tuple[str, ...], changes: dict) -> RunConfig:
    base = RunConfig.from_preset(task, "fast")
    changes = dict(changes)
    for key in ("pretrain", "encoder", "npe_train"):
        if key in changes:
            changes[key] = {**getattr(base, key), **changes[key]}
    return RunConfig.from_preset(
        task, "fast", num_observations=observations, methods=methods, **changes
    )


def _rows(name: str, metrics: dict[str, Any], seconds: float) -> list[str]:
    rows = []
    for method, entry in metrics["methods"].items():
        widths = [sum(c) / len(c) for c in zip(*entry["std_over_reference"], strict=True)]
        calls = entry["costs"]["simulator_calls"]
        rows.append(
            f"| {name} | {method} | {entry['c2st']['mean']:.3f} ± {entry['c2st']['sem']:.3f} | "
            + ", ".join(f"{w:.2f}" for w in widths)
            + f" | {calls['total']:,} ({calls['training_set']:,} + {calls['views']:,}) | "
            f"{entry['costs']['epochs']} | {seconds:.0f} |"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="damped-oscillator")
    parser.add_argument("--observations", type=int, default=10)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(f"benchmarks/results/symmetry_npe_levers_{args.task}.md")
    header = [
        "| variant | method | C2ST (mean ± sem) | std / reference | simulator calls "
        "(training + views) | epochs | run s |",
        "|---|---|---|---|---|---|---|",
    ]
    rows: list[str] = []
    for name in args.variants:
        methods, changes = VARIANTS[name]
        cfg = _config(args.task, args.observations, methods, changes)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            metrics = pipeline.run(cfg, Path(folder) / "run", show_progress=False)
        rows += _rows(name, metrics, time.perf_counter() - start)
        print("\n".join(header + rows), flush=True)
    text = [
        f"# Symmetry NPE levers: {args.task}, fast preset, {args.observations} observations",
        "",
        f"Script: `benchmarks/symmetry_npe_levers.py`. Machine: {platform_stamp(sbi=True)}.",
        "",
        "    " + command_line("symmetry_npe_levers.py", argv or sys.argv[1:]),
        "",
        *header,
        *rows,
        "",
    ]
    atomic_write_text(out, "\n".join(text))


if __name__ == "__main__":
    main()
