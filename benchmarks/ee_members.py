"""Embed and Emulate with ``ee={"members": K}``: the product of K trainings, run by the pipeline.

For every ``--seeds`` value and every ``--members`` count, runs the package's own pipeline
(``RunConfig.from_preset(task, "fast")`` with only Embed and Emulate, ``--observations``
observations with exact references, 200 SBC pairs) into ``--runs/members{K}_seed{S}`` and
tabulates what each run's ``metrics.json`` says: mean C2ST, std and central 90% interval over the
reference's (mean per parameter), observations with a std over 2x the reference's, the
calibration verdict, epochs per member, training and pretraining seconds and simulator calls.
A finished run folder is read, not run again, so an interrupted benchmark resumes. With the same
seed, member 1 of a product is the ``members=1`` run's estimator (same streams), so the rows of
a seed are paired.

    .venv/bin/python benchmarks/ee_members.py --seeds 0 1 --members 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from statistics import mean
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import calibration_cell, page_head, table, write_page

from sbi_symmetry.workflow.config import RunConfig
from sbi_symmetry.workflow.pipeline import run

HEADER = [
    "seed",
    "members",
    "C2ST (mean)",
    "std / reference",
    "90% interval / reference",
    "obs. over 2x",
    "calibrated (SBC smallest p, coverage error)",
    "epochs per member",
    "train + pretrain s",
    "simulator calls",
]


def _run(task: str, members: int, seed: int, observations: int, folder: Path) -> dict[str, Any]:
    """The run's ``embed_emulate`` metrics; a run in ``folder`` resumes (other settings refused)."""
    cfg = RunConfig.from_preset(
        task, "fast", num_observations=observations, methods=("embed_emulate",), seed=seed
    )
    cfg = RunConfig.from_dict({**cfg.to_dict(), "ee": {**cfg.ee, "members": members}})
    start = time.perf_counter()
    metrics = run(cfg, folder, resume=True, show_progress=False)
    print(f"members={members} seed={seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return json.loads(json.dumps(metrics))["methods"]["embed_emulate"]


def _per_parameter(rows: list[list[float]]) -> str:
    return ", ".join(f"{mean(r[i] for r in rows):.2f}" for i in range(len(rows[0])))


def _row(seed: int, members: int, m: dict[str, Any]) -> list[str]:
    costs = m["costs"]
    per_member = costs.get("epochs_per_phase", [costs["epochs"]])
    seconds = costs["train_seconds"] + costs["pretrain_seconds"]
    return [
        str(seed),
        str(members),
        f"{m['c2st']['mean']:.3f}",
        _per_parameter(m["std_over_reference"]),
        _per_parameter(m["interval_over_reference"]),
        f"{sum(max(r) > 2 for r in m['std_over_reference'])} of {len(m['std_over_reference'])}",
        calibration_cell(m),
        ", ".join(str(e) for e in per_member),
        f"{seconds:.0f}",
        f"{costs['simulator_calls']['total']:,}",
    ]


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="damped-oscillator")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--observations", type=int, default=10)
    parser.add_argument("--runs", type=Path, default=Path("/tmp/ee_members"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ee_members.md"))
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    if min(args.members) < 1:
        raise SystemExit("--members must be positive integers.")
    rows = []
    for seed in args.seeds:
        for k in args.members:
            folder = args.runs / args.task / f"members{k}_seed{seed}"
            rows.append(_row(seed, k, _run(args.task, k, seed, args.observations, folder)))
    title = f"Embed and Emulate, the product of K trainings: {args.task}, {args.observations} "
    lines = [*page_head(title + "observations", "ee_members.py", argv), *table(HEADER, rows), ""]
    print("\n".join(lines))
    write_page(args.out, "\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
