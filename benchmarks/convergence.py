"""Accuracy against the simulation budget: mean C2ST at 10^4, 10^5, ... total simulator calls.

Like sbi-benchmark's figures: for each budget, one ``sbi-symmetry run`` of the fast preset with
``num_simulations`` set to the budget and the NPE epoch cap raised to ``--max-epochs`` (sbi's early
stopping usually ends training first), for symmetry NPE (its views made from the training set,
so the budget is its whole cost), the same encoder trained end to end, and sbi's NPE on raw data.
10 observations drawn from the prior, exact quadrature references, sbi's C2ST, seed 0 for every
budget. Within a budget every method sees the same training set and observations, so the page
also gives symmetry NPE's paired difference to each baseline; the observations are drawn after
the training set from the run's seeded stream, so they differ *between* budgets (compare budgets
with their sem in mind). Finished budgets are kept in ``<out>.json`` with the settings that made
them and skipped when the script is run again with the same settings, so an interrupted run
resumes; the page goes to ``<out>.md`` and the plot (log x-axis) to ``<out>.png``.

    .venv/bin/python benchmarks/convergence.py --task damped-oscillator --budgets 10000 100000

``--settings recorded`` (the default) runs the fast preset as the recorded pages were made
(``plans.preset``: flow of 25, no frozen start, the 6-channel encoder but on Lorenz-96, plain
VICReg, E&E's tower not pretrained);
``--settings current`` runs the package's fast preset as it ships (page ``<out>`` defaults to
``..._current``). ``--methods`` picks other methods of the run (e.g. ``embed_emulate``; the page
then ends in their names and has no paired differences unless symmetry NPE is among them).

    .venv/bin/python benchmarks/convergence.py --task damped-oscillator --settings current \
        --methods embed_emulate --budgets 10000 100000

``--with STORE.json ...`` shows the runs of other stores beside this one's, budget by budget (their
methods' rows, the plot, the paired differences): a method run alone at a budget too slow to run
all three at once joins the page of the others. The stores must hold the same task, observations,
settings and data seed, and other methods; nothing of theirs is run or rewritten.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, platform_stamp, write_page
from _levers import CALIBRATION_RULE, HEADER, rows, variant_config
from plans import PRESET

from sbi_symmetry._io import atomic_write_text
from sbi_symmetry.symmetry.finetune import resolve_frozen_epochs
from sbi_symmetry.views import split_budget
from sbi_symmetry.workflow import pipeline
from sbi_symmetry.workflow.config import RunConfig
from sbi_symmetry.workflow.registry import METHODS as RUN_METHODS
from sbi_symmetry.workflow.registry import label
from sbi_symmetry.workflow.report import RANDOM_STREAMS

METHODS = ("symmetry_npe", "end_to_end_npe", "raw_npe")


SETTINGS = {
    "recorded": "as recorded: flow of 25 hidden units, no frozen start, 6-channel encoder "
    "but on Lorenz-96, plain VICReg, E&E's tower not pretrained",
    "current": "the package's own settings: `RunConfig.from_preset(task, 'fast')`",
}


def budget_config(
    task: str,
    observations: int,
    budget: int,
    max_epochs: int,
    settings: str = "recorded",
    methods: tuple[str, ...] = METHODS,
    anneal: float = 0.0,
) -> RunConfig:
    """The fast preset (``settings``: recorded or current) at ``budget`` training simulations."""
    if settings == "recorded":
        changes = {"num_simulations": budget, "npe_train": {"max_num_epochs": max_epochs}}
        if anneal:
            changes |= {"npe_train": {**changes["npe_train"], "anneal": anneal}}
            changes |= {"ee_train": {"anneal": anneal}}
        return variant_config(task, observations, methods, changes)
    base = RunConfig.from_preset(task, PRESET)
    return RunConfig.from_preset(
        task,
        PRESET,
        num_observations=observations,
        methods=methods,
        num_simulations=budget,
        npe_train={**base.npe_train, "max_num_epochs": max_epochs, **_anneal(anneal)},
        ee_train={**base.ee_train, **_anneal(anneal)},
    )


def _anneal(factor: float) -> dict[str, float]:
    """``--anneal``: every method's training (``npe_train``, ``ee_train``) gets a last phase."""
    return {"anneal": factor} if factor else {}


def run_budget(cfg: RunConfig) -> dict[str, Any]:
    """One run of ``cfg`` (a :func:`budget_config`); its metrics and wall time."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        metrics = pipeline.run(cfg, Path(folder) / "run", show_progress=False)
    return {"metrics": metrics, "seconds": time.perf_counter() - start}


#: Per budget, the runs a page shows: this store's first, then those of ``--with`` stores.
Shown = dict[str, list[dict[str, Any]]]


def plot(shown: Shown, title: str, path: Path) -> None:
    """Mean C2ST (± sem) against total simulator calls, one line per method, log x-axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method in RUN_METHODS:
        points = sorted(
            (
                entry["costs"]["simulator_calls"]["total"],
                entry["c2st"]["mean"],
                entry["c2st"]["sem"],
            )
            for runs in shown.values()
            for run in runs
            if (entry := run["metrics"]["methods"].get(method))
        )
        if points:
            calls, mean, sem = zip(*points, strict=True)
            ax.errorbar(calls, mean, yerr=sem, marker="o", capsize=3, label=label(method))
    ax.set_xscale("log")
    ax.set_ylim(0.45, 1.0)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("total simulator calls")
    ax.set_ylabel("mean C2ST (0.5 = exact)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def load_store(store: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The finished budgets of ``store`` (none if it does not exist), made with ``settings``."""
    if not store.exists():
        return {}
    saved = json.loads(store.read_text())
    if saved.get("settings") != settings:
        raise SystemExit(
            f"{store} holds runs made with {saved.get('settings')}, not {settings}; pass another "
            "--out or move the file away to start over."
        )
    return saved["budgets"]


def _default(field: dataclasses.Field) -> Any:
    """A ``RunConfig`` field's default (``MISSING`` where it has none)."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


#: The last commit whose runs drew every method from one shared random stream.
LAST_SHARED_STREAM = "c79cd9b"

#: Sub-settings added after runs were stored, with the value that ran before they existed.
LATER_SUB_SETTINGS: dict[tuple[str, str], Any] = {
    ("npe_train", "anneal"): 0.0,
    ("ee_train", "anneal"): 0.0,
    ("ee", "pretrain"): False,
    ("encoder", "dilation"): 1,
    ("ee_encoder", "dilation"): 1,
    ("pretrain", "supervised_weight"): 0.0,
}


def config_changes(stored: dict[str, Any], cfg: RunConfig) -> tuple[dict[str, Any], list[str]]:
    """Settings on which a kept run (its ``metrics["config"]``) and ``cfg`` differ.

    A setting the stored run does not name (added to ``RunConfig`` after it was made) counts as
    the same when ``cfg`` keeps its default, which is what ran before the setting existed; so does
    a sub-setting of :data:`LATER_SUB_SETTINGS` at its old value. Any other key of a dict-valued
    setting (``pretrain``, ``npe_train`` ...) that the stored run does not name cannot be checked
    (older presets left sub-settings such as ``fresh_views`` to the called function's default,
    which may have changed since): such keys are returned by name.

    Returns:
        ``{setting: (stored, now)}`` for every difference, and the unchecked sub-keys.
    """
    now = json.loads(json.dumps(cfg.to_dict()))
    fields = {f.name: _default(f) for f in dataclasses.fields(RunConfig) if f.name in now}
    defaults = {k: v for k, v in fields.items() if v is not dataclasses.MISSING}
    old, unnamed = {**json.loads(json.dumps(defaults)), **stored}, []
    for key, value in now.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            later = {k: v for (name, k), v in LATER_SUB_SETTINGS.items() if name == key}
            old[key] = {**{k: v for k, v in later.items() if k in value}, **old[key]}
            unnamed += [f"{key}.{k}" for k in value if k not in old[key]]
            now[key] = {k: v for k, v in value.items() if k in old[key]}
    changes = {k: (old.get(k), v) for k, v in now.items() if old.get(k) != v}
    frozen = changes.get("frozen_epochs")
    if frozen and ("symmetry_npe" not in old.get("methods", ()) or _auto_gives(old, *frozen)):
        del changes["frozen_epochs"]  # symmetry NPE's alone, and the same epochs
    return changes, unnamed


def _auto_gives(stored: dict[str, Any], before: Any, now: Any) -> bool:
    """Whether ``frozen_epochs="auto"`` (now) resolves to ``before`` at the stored budget."""
    if now != "auto" or not isinstance(before, int):
        return False
    rows = stored["num_simulations"]
    if stored.get("view_fraction") is not None:
        rows = split_budget(rows, stored["view_fraction"]).training
    return resolve_frozen_epochs("auto", rows, **stored.get("npe_train", {})) == before


def check_kept(run: dict[str, Any], cfg: RunConfig, key: str, store: Path) -> None:
    """Refuse to reuse a stored run made with other settings than ``cfg`` (e.g. a new preset)."""
    stored = run.get("metrics", {}).get("config")
    if stored is None:
        raise SystemExit(f"{store} holds {key} without its settings; move the file away.")
    if run["metrics"].get("random_streams") != RANDOM_STREAMS:
        raise SystemExit(
            f"{store} holds {key} from before each method had its own random stream; this "
            f"version cannot remake it (commit {LAST_SHARED_STREAM} can). Pass another --out, or "
            "move the file away to run it again."
        )
    changes, unnamed = config_changes(stored, cfg)
    if changes:
        raise SystemExit(
            f"{store} holds {key} made with other settings (stored, now): {changes}; pass "
            "another --out or move the file away to run it again."
        )
    if unnamed:
        print(f"{key}: kept; its stored settings do not name {', '.join(unnamed)}", flush=True)


def paired_rows(shown: Shown) -> list[str]:
    """Per budget: symmetry NPE minus each baseline, per observation (the same observations).

    A budget without symmetry NPE or without any baseline has no row; a missing baseline is "–".
    """
    out = []
    for budget, runs in sorted(shown.items(), key=lambda item: int(item[0])):
        methods = {k: v for run in runs for k, v in run["metrics"]["methods"].items()}
        if "symmetry_npe" not in methods or not any(m in methods for m in METHODS[1:]):
            continue
        ours = torch.tensor(methods["symmetry_npe"]["c2st"]["per_observation"])
        cells = []
        for baseline in METHODS[1:]:
            if baseline not in methods:
                cells.append("–")
                continue
            diff = ours - torch.tensor(methods[baseline]["c2st"]["per_observation"])
            sem = diff.std() / len(diff) ** 0.5
            cells.append(f"{diff.mean():+.3f} ± {sem:.3f} ({int((diff <= 0).sum())}/{len(diff)})")
        out.append(f"| {int(budget):,} | " + " | ".join(cells) + " |")
    return out


def _same_data(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two runs' metrics come from the same data seed, training set and observations."""
    same = all(one["config"][k] == other["config"][k] for k in ("seed", "num_simulations"))
    return same and one.get("observations") == other.get("observations")


def _check_joined(theirs: dict[str, Any], here: dict[str, Any], what: str) -> None:
    """Refuse a joined run made with other settings than this page's (methods aside)."""
    ours = RunConfig.from_dict({**here["config"], "methods": theirs["config"]["methods"]})
    changes, _ = config_changes(theirs["config"], ours)
    changes.pop("workers", None)  # how many train at once: each method here trained alone
    if changes or theirs.get("random_streams") != here.get("random_streams"):
        raise SystemExit(f"{what} ran with other settings (theirs, this page's): {changes}.")


def join(results: dict[str, Any], stores: list[Path], settings: dict[str, Any]) -> Shown:
    """This store's runs per budget, each followed by the same budget's runs in ``stores``.

    Raises:
        SystemExit: a store holds another task, observations or settings, repeats one of this
            run's methods, or ran a shared budget on other data (seed, observations).
    """
    shown = {budget: [run] for budget, run in results.items()}
    ours = {k: v for k, v in settings.items() if k != "methods"}
    for store in stores:
        saved = json.loads(store.read_text())
        theirs = {k: v for k, v in saved.get("settings", {}).items() if k != "methods"}
        if theirs != ours:
            raise SystemExit(f"--with {store}: made with {theirs}, this page with {ours}.")
        for budget, run in saved["budgets"].items():
            if budget not in shown:
                continue
            here = shown[budget][0]["metrics"]
            if not _same_data(run["metrics"], here):
                raise SystemExit(f"--with {store}: {budget} calls ran on other data.")
            if set(run["metrics"]["methods"]) & set(here["methods"]):
                raise SystemExit(f"--with {store}: repeats a method of this page at {budget}.")
            _check_joined(run["metrics"], here, f"--with {store}: {budget} calls")
            shown[budget].append(run)
    return shown


def main(argv: list[str] | None = None) -> None:
    """Run the missing budgets, then write the table, the plot and the raw results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="damped-oscillator")
    parser.add_argument("--budgets", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--observations", type=int, default=10)
    parser.add_argument("--max-epochs", type=int, default=400)
    parser.add_argument("--settings", choices=tuple(SETTINGS), default="recorded")
    parser.add_argument("--methods", nargs="+", choices=list(RUN_METHODS), default=list(METHODS))
    parser.add_argument(
        "--anneal",
        type=float,
        default=0.0,
        help="npe_train.anneal and ee_train.anneal for every method (0: as the preset has it)",
    )
    parser.add_argument("--out", type=Path, default=None, help="path without suffix")
    parser.add_argument(
        "--with",
        dest="joined",
        type=Path,
        nargs="+",
        default=[],
        help="stores (.json) of other methods' runs to show beside this one's",
    )
    args = parser.parse_args(argv)
    methods = tuple(args.methods)
    suffix = "" if args.settings == "recorded" else f"_{args.settings}"
    suffix += "" if methods == METHODS else "_" + "_".join(methods)
    suffix += f"_anneal{args.anneal:g}".replace(".", "p") if args.anneal else ""
    out = args.out or Path(f"benchmarks/results/convergence_{args.task}{suffix}")
    out.parent.mkdir(parents=True, exist_ok=True)
    store = out.with_suffix(".json")
    settings = {"task": args.task, "observations": args.observations, "max_epochs": args.max_epochs}
    settings |= {"settings": args.settings} if args.settings != "recorded" else {}
    settings |= {"methods": list(methods)} if methods != METHODS else {}
    settings |= {"anneal": args.anneal} if args.anneal else {}
    results = load_store(store, settings)
    for budget in sorted(set(args.budgets) | set(map(int, results))):  # stored ones: checked
        cfg = budget_config(
            args.task,
            args.observations,
            budget,
            args.max_epochs,
            args.settings,
            methods,
            args.anneal,
        )
        if str(budget) in results:
            check_kept(results[str(budget)], cfg, f"{budget:,} calls", store)
            print(f"{budget:,} simulator calls: done before, kept", flush=True)
            continue
        results[str(budget)] = run_budget(cfg)
        atomic_write_text(store, json.dumps({"settings": settings, "budgets": results}, indent=1))
        print(f"{budget:,} simulator calls: {results[str(budget)]['seconds']:.0f} s", flush=True)
    title = f"Convergence: {args.task}, {args.observations} observations"
    shown = join(results, args.joined, settings)
    plot(shown, title, out.with_suffix(".png"))
    command = command_line("convergence.py", _argv(args, sorted(map(int, results))))
    png = out.with_suffix(".png").name
    preset_cap = RunConfig.from_preset(args.task, "fast").npe_train["max_num_epochs"]
    described = SETTINGS[args.settings] + f"; the preset's own NPE epoch cap is {preset_cap}"
    if args.anneal:
        described += f"; after early stopping every method resumed at {args.anneal:g}x its rate"
    text = report(shown, title, command, args.max_epochs, png, described)
    write_page(out.with_suffix(".md"), text)
    print(text)


def _argv(args: argparse.Namespace, budgets: list[int]) -> list[str]:
    """The arguments that remake the page: every budget it shows, the other options as run."""
    argv = ["--task", args.task, "--budgets", *map(str, budgets)]
    argv += ["--observations", str(args.observations)] if args.observations != 10 else []
    argv += ["--max-epochs", str(args.max_epochs)] if args.max_epochs != 400 else []
    argv += ["--settings", args.settings] if args.settings != "recorded" else []
    argv += ["--methods", *args.methods] if tuple(args.methods) != METHODS else []
    argv += ["--anneal", f"{args.anneal:g}"] if args.anneal else []
    argv += ["--out", str(args.out)] if args.out else []
    return argv + (["--with", *map(str, args.joined)] if args.joined else [])


def report(shown: Shown, title: str, command: str, cap: int, png: str, settings: str) -> str:
    """The results page: the table per budget and method, the paired differences, the plot."""
    table = [
        line
        for budget, runs in sorted(shown.items(), key=lambda item: int(item[0]))
        for run in runs
        for line in rows(f"{int(budget):,}", run["metrics"])
    ]
    paired = paired_rows(shown)
    if paired:
        paired = [
            "Symmetry NPE minus each baseline, per observation (within a budget every method has",
            "the same training set and observations): mean ± sem over the observations, and in",
            "brackets on how many symmetry NPE was at least as close to the reference.",
            "",
            "| budget | minus end-to-end NPE | minus NPE on raw data |",
            "|---|---|---|",
            *paired,
            "",
        ]
    return "\n".join(
        [
            f"# {title}",
            "",
            f"Script: `benchmarks/convergence.py`. Machine: {platform_stamp(sbi=True)}. Fast "
            f"preset ({settings}), NPE epoch cap {cap} per phase (early stopping after 20 epochs "
            "without improvement).",
            "",
            "    " + command,
            "",
            HEADER[0].replace("| variant |", "| budget |"),
            HEADER[1],
            *table,
            "",
            CALIBRATION_RULE,
            "",
            *paired,
            f"![mean C2ST against simulator calls]({png})",
            "",
        ]
    )


if __name__ == "__main__":
    main()
