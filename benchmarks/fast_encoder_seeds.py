"""Does a fast-preset encoder generalise? Candidates over seeds, both paper problems and a phase.

A default is chosen for every user's first run, so it is checked on more than the one seed and
two problems it was found on: each candidate encoder of the fast preset runs through
``sbi-symmetry run`` (symmetry NPE only by default, 10 observations, exact references, SBC and
expected coverage on the preset's 200 pairs, 100 for Embed and Emulate) for every task and seed
given, including ``_phase_task:PhaseOscillator``, a decaying sinusoid with an unknown *phase*
that no default was tuned on (its views are re-simulated, as ``pretrain_views="auto"`` chooses
for it). Within a task and seed every candidate sees the same training set and observations.
Finished runs are kept in ``<out>.json`` with the settings and command that made them, so an
interrupted run resumes; the page goes to ``<out>.md``: per task and candidate the mean C2ST
over seeds and how many runs were calibrated, then one row per run.

    .venv/bin/python benchmarks/fast_encoder_seeds.py --tasks damped-oscillator --seeds 1 2
    .venv/bin/python benchmarks/fast_encoder_seeds.py --methods embed_emulate \
        --candidates "E&E tower, 6 channels, 1 block" "E&E tower, 16 channels, 2 blocks" \
        --out benchmarks/results/fast_ee_tower_seeds
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, platform_stamp, write_page
from _levers import CALIBRATION_RULE, HEADER, rows, variant_config
from convergence import check_kept, load_store
from plans import LARGE_EMULATOR

from sbi_symmetry._io import atomic_write_text
from sbi_symmetry.workflow import pipeline
from sbi_symmetry.workflow.config import RunConfig

PHASE_TASK = "_phase_task:PhaseOscillator"
_NARROW, _WIDE = {"channels": 6, "num_blocks": 1}, {"channels": 16, "num_blocks": 2}
_EE_DEFAULTS = {"ee": {"learn_temperature": True}, "ee_train": {"max_num_epochs": 600}}


def _npe(
    encoder: dict[str, int], epochs: int = 150, fresh_views: bool = True, **changes: Any
) -> dict[str, Any]:
    """A symmetry-NPE candidate: ``encoder``, NPE's epoch cap, fresh views or a bank, more."""
    return {
        "encoder": encoder,
        "npe_train": {"max_num_epochs": epochs},
        "pretrain": {"fresh_views": fresh_views},
        **changes,
    }


_FLOW_50 = {"flow": {"hidden_features": 50}}
#: name -> changes to the fast preset (each names everything it relies on, so that the table
#: does not depend on the preset's current defaults). Fresh views (the default when the first
#: ones ran) matter for re-simulated views only, i.e. the phase task; shift views are always
#: fresh. The "one bank" candidates draw re-simulated views once (2 calls per draw).
CANDIDATES: dict[str, dict[str, Any]] = {
    "6 channels, 1 block": _npe(_NARROW),
    "16 channels, 2 blocks": _npe(_WIDE),
    "16 channels, 2 blocks, up to 400 epochs": _npe(_WIDE, epochs=400),
    "16 channels, 2 blocks, flow of 50 hidden units": _npe(_WIDE, **_FLOW_50),
    "16 channels, 2 blocks, flow of 50 hidden units, learning rate 5e-4": _npe(
        _WIDE, **_FLOW_50, npe_train={"max_num_epochs": 150, "learning_rate": 5e-4}
    ),
    "16 channels, 2 blocks, flow of 100 hidden units": _npe(_WIDE, flow={"hidden_features": 100}),
    # the flow trained alone for 20 epochs before fine-tuning (symmetry.train_npe)
    "16 channels, 2 blocks, flow of 50 hidden units, 20 frozen epochs": _npe(
        _WIDE, **_FLOW_50, frozen_epochs=20
    ),
    # then the learning rate x0.1 until early stopping stops it again (npe_train.anneal)
    "16 channels, 2 blocks, flow of 50 hidden units, 20 frozen epochs, then learning rate x0.1": (
        _npe(
            _WIDE,
            **_FLOW_50,
            frozen_epochs=20,
            npe_train={"max_num_epochs": 150, "anneal": 0.1},
        )
    ),
    # the hybrid pretraining loss: VICReg plus w times a read-out of theta (supervised_weight)
    **{
        f"16 channels, 2 blocks, flow of 50 hidden units, 20 frozen epochs, supervised {w}": _npe(
            _WIDE,
            **_FLOW_50,
            frozen_epochs=20,
            pretrain={"fresh_views": True, "supervised_weight": w},
        )
        for w in (1.0, 10.0)
    },
    "6 channels, 1 block, flow of 50 hidden units": _npe(_NARROW, **_FLOW_50),
    "6 channels, 1 block, one bank of 30,000 view draws": _npe(
        _NARROW, fresh_views=False, pretrain_simulations=30_000
    ),
    "6 channels, 1 block, one bank of 5,000 view draws": _npe(
        _NARROW, fresh_views=False, pretrain_simulations=5_000
    ),
    # equal totals (run with --methods symmetry_npe,end_to_end_npe,raw_npe and another --out):
    # symmetry NPE spends half of the 10,000 calls on one bank of views, the rest trains it
    "6 channels, 1 block, view_fraction 0.5": _npe(_NARROW, fresh_views=False, view_fraction=0.5),
    # Embed and Emulate's data tower (run with --methods embed_emulate and another --out)
    "E&E tower, 6 channels, 1 block": {"ee_encoder": _NARROW, **_EE_DEFAULTS},
    "E&E tower, 16 channels, 2 blocks": {"ee_encoder": _WIDE, **_EE_DEFAULTS},
    # a larger emulator g(theta): 128 wide, 3 residual blocks (the fast preset's since these
    # runs; EmbedEmulate's default, which the other E&E candidates keep, is 64 wide, 2 blocks)
    **{
        f"E&E tower, {name}, emulator 128 wide, 3 blocks": {
            "ee_encoder": tower,
            "ee": {**_EE_DEFAULTS["ee"], "emulator_kwargs": LARGE_EMULATOR},
            "ee_train": _EE_DEFAULTS["ee_train"],
        }
        for name, tower in (("6 channels, 1 block", _NARROW), ("16 channels, 2 blocks", _WIDE))
    },
}

DEFAULT = ["6 channels, 1 block", "16 channels, 2 blocks"]


def candidate_config(task: str, seed: int, candidate: str, methods: tuple[str, ...]) -> RunConfig:
    """The fast preset (as recorded) with the candidate's changes."""
    return variant_config(task, 10, methods, {"seed": seed, **CANDIDATES[candidate]})


def run_one(task: str, seed: int, candidate: str, methods: tuple[str, ...]) -> dict[str, Any]:
    """One run of the fast preset with the candidate's changes; its metrics and wall time."""
    cfg = candidate_config(task, seed, candidate, methods)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        metrics = pipeline.run(cfg, Path(folder) / "run", show_progress=False)
    seconds = time.perf_counter() - start
    return {"changes": CANDIDATES[candidate], "metrics": metrics, "seconds": seconds}


def summary(results: dict[str, Any], method: str) -> list[str]:
    """Per task and candidate: mean C2ST over seeds, worst width, calibrated runs."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for key, run in results.items():
        task, _, candidate = key.split("|")
        if entry := run["metrics"]["methods"].get(method):
            groups.setdefault((task, candidate), []).append(entry)
    out = [
        f"| task | encoder | runs | mean C2ST over runs | largest std / reference | "
        f"calibrated runs ({method}) |",
        "|---|---|---|---|---|---|",
    ]
    for (task, candidate), entries in sorted(groups.items()):
        c2st = sum(e["c2st"]["mean"] for e in entries) / len(entries)
        widest = max(max(max(o) for o in e["std_over_reference"]) for e in entries)
        calibrated = sum(bool(e.get("calibration", {}).get("calibrated")) for e in entries)
        out.append(
            f"| {task} | {candidate} | {len(entries)} | {c2st:.3f} | {widest:.2f} | "
            f"{calibrated}/{len(entries)} |"
        )
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the missing (task, seed, candidate) combinations, then write the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["damped-oscillator", PHASE_TASK])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=DEFAULT)
    parser.add_argument("--methods", default="symmetry_npe", help="comma-separated")
    out = Path("benchmarks/results/fast_encoder_seeds")
    parser.add_argument("--out", type=Path, default=out, help="path without suffix")
    args = parser.parse_args(argv)
    methods = tuple(args.methods.split(","))
    store = args.out.with_suffix(".json")
    settings = {"observations": 10, "methods": list(methods)}
    results = load_store(store, settings)
    command = command_line("fast_encoder_seeds.py", sys.argv[1:] if argv is None else argv)
    for task in args.tasks:
        for seed in args.seeds:
            for candidate in args.candidates:
                key = f"{task}|{seed}|{candidate}"
                if key in results:
                    if results[key]["changes"] != CANDIDATES[candidate]:
                        raise SystemExit(f"{store} holds {key} made with other changes; --out.")
                    cfg = candidate_config(task, seed, candidate, methods)
                    check_kept(results[key], cfg, key, store)
                else:
                    results[key] = {**run_one(task, seed, candidate, methods), "command": command}
                    payload = {"settings": settings, "budgets": results}
                    atomic_write_text(store, json.dumps(payload, indent=1))
                print(f"{key}: {results[key]['seconds']:.0f} s", flush=True)
    table = [
        line
        for key, run in sorted(results.items())
        for line in rows(key.replace("|", " / "), run["metrics"])
    ]
    text = "\n".join(
        [
            "# Fast-preset encoder candidates over seeds and tasks",
            "",
            f"Script: `benchmarks/fast_encoder_seeds.py`. Machine: {platform_stamp(sbi=True)}. "
            "Fast preset, 10 observations per run, exact references. The commands that made the",
            "runs below:",
            "",
            *("    " + line for line in dict.fromkeys(run["command"] for run in results.values())),
            "",
            *summary(results, methods[0]),
            "",
            HEADER[0].replace("| variant |", "| task / seed / encoder |"),
            HEADER[1],
            *table,
            "",
            CALIBRATION_RULE,
            "",
        ]
    )
    write_page(args.out.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
