"""Pieces shared by the benchmark scripts: flags, stamps, logging, references, C2ST, output files.

The scripts import this module as a sibling (``benchmarks/`` is first on ``sys.path`` when a
script runs, and each script puts it there when it is loaded from its path, as the tests do).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from plans import TRAINING
from torch import Tensor

from sbi_symmetry._io import atomic_write_text, versions
from sbi_symmetry.evaluation import c2st_score
from sbi_symmetry.tasks import SignalInNoiseTask
from sbi_symmetry.workflow.checkpoints import STAGES_DIR
from sbi_symmetry.workflow.flags import widest

#: A progress printer: ``log("text")``.
Log = Callable[[str], None]


# ----------------------------------------------------------------------------------- flags
def add_shared_flags(
    parser: argparse.ArgumentParser,
    tasks: Sequence[str],
    helps: dict[str, str],
    cache_type: type | None = None,
) -> None:
    """The flags both scripts take, with the same defaults.

    Args:
        parser: The script's parser.
        tasks: The tasks the script runs (all by default).
        helps: Help texts by destination (``observations``, ``posterior_samples``,
            ``cache_dir``, ``quick``); a missing one means none.
        cache_type: Type of ``--cache-dir`` (``None``: the string as given).
    """
    parser.add_argument("--tasks", nargs="+", choices=tasks, default=list(tasks))
    parser.add_argument("--observations", type=int, default=10, help=helps.get("observations"))
    parser.add_argument("--sbc-pairs", type=int, default=200)
    parser.add_argument(
        "--posterior-samples", type=int, default=2_000, help=helps.get("posterior_samples")
    )
    parser.add_argument("--learning-rate", type=float, default=TRAINING["learning_rate"])
    parser.add_argument("--stop-after-epochs", type=int, default=TRAINING["stop_after_epochs"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=cache_type, default=None, help=helps.get("cache_dir"))
    parser.add_argument("--quick", action="store_true", help=helps.get("quick"))


# ----------------------------------------------------------------------------------- stamps
def command_line(script: str, argv: Iterable[str]) -> str:
    """The command that reproduces this run, as the results files print it."""
    return shlex.join([".venv/bin/python", f"benchmarks/{script}", *argv])


def platform_stamp(sbi: bool = False) -> str:
    """``"<platform>, Python <v>, torch <v>[, sbi <v>], commit <c>"``: a results file's machine.

    The commit (``-dirty`` with uncommitted changes; absent outside a git checkout) tells which
    code a page's command ran: presets change, and the same command then makes other numbers.
    """
    v = versions()
    text = f"{platform.platform()}, Python {v['python']}, torch {v['torch']}"
    text += f", sbi {v['sbi']}" if sbi else ""
    return text + (f", commit {commit}" if (commit := source_commit()) else "")


def source_commit(root: Path | None = None) -> str | None:
    """The checkout's short commit, ``-dirty`` if tracked files other than results changed.

    Pages and stores under ``benchmarks/results`` are outputs, not source: writing one does not
    make the next page's commit dirty. ``None`` where git is unknown.
    """
    root = root or Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(root)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "-uno", "--", ".", ":!benchmarks/results"],
            capture_output=True,
            text=True,
        )
    except OSError:  # no git
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def make_log(minutes: bool = False) -> Log:
    """A printer that prefixes the time since now (``[   12 s]`` or ``   0.2 min``)."""
    start = time.perf_counter()

    def log(text: str) -> None:
        elapsed = time.perf_counter() - start
        stamp = f"{elapsed / 60:6.1f} min " if minutes else f"[{elapsed:6.0f} s]"
        print(f"{stamp} {text}", flush=True)

    return log


# ----------------------------------------------------------------------------------- accuracy
def reference_samples(
    task: SignalInNoiseTask,
    x_o: Tensor,
    num_samples: int,
    seeds: Sequence[int],
    cache_dir: str | Path,
    **kwargs: Any,
) -> tuple[list[Tensor], list[float]]:
    """Exact reference samples for every observation, and the seconds each took.

    Args:
        task: A task with an exact reference (quadrature, shift marginalised).
        x_o: Observations ``(n, L)``.
        num_samples: Reference samples per observation.
        seeds: One seed per observation.
        cache_dir: The references' on-disk cache.
        **kwargs: Passed to ``task.reference_posterior``.

    Returns:
        The samples and the wall times.
    """
    samples, seconds = [], []
    for i, seed in enumerate(seeds):
        start = time.perf_counter()
        ref = task.reference_posterior(
            x_o[i : i + 1], num_samples=num_samples, seed=seed, cache_dir=cache_dir, **kwargs
        )
        seconds.append(time.perf_counter() - start)
        samples.append(ref.samples)
    return samples, seconds


def c2st_scores(
    samples: Sequence[Tensor],
    references: Sequence[Tensor],
    max_samples: int | None,
    seeds: Sequence[int],
) -> list[float]:
    """sbi's random-forest C2ST of each observation's samples against its reference.

    Args:
        samples: Posterior samples per observation.
        references: Reference samples per observation.
        max_samples: At most this many of each set (``None``: all, balanced).
        seeds: The classifier's seed per observation.

    Returns:
        One accuracy per observation (0.5 is perfect).
    """
    return [
        c2st_score(s, r, max_samples=max_samples, seed=seed)
        for s, r, seed in zip(samples, references, seeds, strict=True)
    ]


def stage_value(run: Path, name: str) -> Any:
    """What stage ``name`` of a finished ``sbi-symmetry run`` folder saved (``.stages/``)."""
    return torch.load(run / STAGES_DIR / f"{name}.pt", weights_only=False)["value"]


# ----------------------------------------------------------------------------------- output
def calibrated_cell(entry: dict[str, Any]) -> str:
    """A method's calibration for a table: ``yes``, ``**no**``, or the width that misleads.

    Calibrated posteriors more than ``TOO_WIDE`` (2x) the exact width on average in some
    parameter read ``yes, but 11.8x too wide``: SBC passes for posteriors that are far too wide,
    as the report says too (:func:`sbi_symmetry.workflow.flags.verdict`).

    Example:
        >>> calibrated_cell({"calibration": {"calibrated": True}, "std_over_reference": [[3.0]]})
        'yes, but 3.0x too wide'
    """
    word = "yes" if entry["calibration"]["calibrated"] else "**no**"
    per_obs = entry.get("std_over_reference") or [[]]
    wide = widest(entry, [str(i) for i in range(len(per_obs[0]))])
    if wide is None:
        return word
    return f"{word}, {'but' if word == 'yes' else 'and'} {wide[0]:.1f}x too wide"


def calibration_cell(entry: dict[str, Any]) -> str:
    """``yes (0.270, 0.07)``: :func:`calibrated_cell`, the smallest SBC p-value and the largest
    coverage error; ``not run`` without a calibration."""
    cal = entry.get("calibration")
    if not cal:
        return "not run"
    return f"{calibrated_cell(entry)} ({min(cal['ks_pvals']):.3f}, {cal['max_coverage_error']:.2f})"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A markdown table's lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def page_head(title: str, script: str, argv: Iterable[str]) -> list[str]:
    """A results page's first lines: its title, the script and machine, the command to repeat."""
    return [
        f"# {title}",
        "",
        f"Script: `benchmarks/{script}`. {platform_stamp(sbi=True)}",
        "",
        f"    {command_line(script, argv)}",
        "",
    ]


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def write_page(path: Path, text: str, reading: str = "## Reading") -> None:
    """Write a results page, keeping the hand-written section from ``reading`` on, if any."""
    old = path.read_text() if path.exists() else ""
    if reading in old:  # written by hand after an earlier run
        text += "\n" + old[old.index(reading) :]
    write_text(path, text)


def write_json(path: Path, payload: dict[str, Any], default: Callable[[Any], Any]) -> Any:
    """Write the raw numbers (indent 1) atomically; return them as a reader will see them.

    Args:
        path: The JSON file.
        payload: The numbers.
        default: How ``json`` writes what it cannot (``str``, ``float`` ...).

    Returns:
        ``payload`` after a round trip through JSON.
    """
    text = json.dumps(payload, indent=1, default=default)
    write_text(path, text)
    return json.loads(text)
