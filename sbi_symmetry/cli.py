"""Command line: ``sbi-symmetry run`` (also ``python -m sbi_symmetry run``).

Example:
    >>> parser = build_parser()
    >>> args = parser.parse_args(["run", "--simulations", "2000"])
    >>> run_config(args).task, run_config(args).preset, run_config(args).num_simulations
    ('damped-oscillator', 'fast', 2000)
    >>> run_config(parser.parse_args(["run", "--methods", "raw_npe,nre_c"])).methods
    ('raw_npe', 'nre_c')
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sbi_symmetry._validation import device_problem
from sbi_symmetry.tasks import TASKS
from sbi_symmetry.workflow.checkpoints import STAGES_DIR
from sbi_symmetry.workflow.config import CONFIG_FILE, PRESETS, RunConfig
from sbi_symmetry.workflow.registry import METHODS, parse_methods


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sbi-symmetry``.

    Options that a preset or a saved config also sets default to ``None``, so that only those
    given explicitly override them.

    Example:
        >>> build_parser().parse_args(["run", "--seed", "3"]).preset is None
        True
    """
    parser = argparse.ArgumentParser(
        prog="sbi-symmetry",
        description="Symmetry-invariant embeddings and contrastive ratio estimators for sbi.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="simulate, pretrain, train, compare against exact references, calibrate, report",
        description="End-to-end demo: symmetry-embedding NPE and Embed and Emulate against "
        "sbi's NPE on raw data, judged against exact reference posteriors; writes a report.",
    )
    run.add_argument(
        "--task",
        type=_task_name,
        default=None,
        metavar="{" + ",".join(sorted(TASKS)) + "} or module:Object",
        help="a built-in task (default: damped-oscillator), or your own as module:Object (a "
        "class or an instance with prior, nuisance_prior or sample_nuisance, simulate, "
        "sample_prior, sample_joint, theta_dim, parameter_names; optionally "
        "reference_posterior); it runs with the default task's preset",
    )
    run.add_argument(
        "--preset",
        choices=PRESETS,
        default=None,
        help="fast: minutes on a laptop CPU (default); paper: the papers' sizes",
    )
    run.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated methods to compare, among {','.join(METHODS)} "
        "(default: the preset's)",
    )
    run.add_argument(
        "--config",
        type=Path,
        default=None,
        help="re-run the settings of a saved config.json, or of the run folder holding one "
        "(options given explicitly override them)",
    )
    run.add_argument(
        "--simulations", type=int, default=None, help="training simulations (default: the preset's)"
    )
    run.add_argument(
        "--view-fraction",
        type=float,
        default=None,
        help="equal totals: --simulations is every method's total of simulator calls and "
        "symmetry NPE spends this share of it on re-simulated views (default: views beside it)",
    )
    run.add_argument(
        "--out",
        type=Path,
        default=Path("sbi-symmetry-run"),
        help="output folder (default: ./sbi-symmetry-run)",
    )
    run.add_argument("--seed", type=int, default=None, help="seed of every random draw (default 0)")
    run.add_argument(
        "--training-seed",
        type=int,
        default=None,
        help="seed of the methods' training only (default: --seed); the data keep --seed",
    )
    members = "Embed and Emulate: train it this many times on the same simulations and sample "
    members += "the product (default: the preset's, 1); each adds one training's time"
    run.add_argument("--ee-members", type=int, default=None, help=members)
    run.add_argument("--device", default=None, help="torch device for training (default cpu)")
    run.add_argument(
        "--workers",
        type=int,
        default=None,
        help="methods trained at once, each in its own process (default 0: every method at "
        "once on CPU, sharing the cores; 1 on an accelerator; 1: in turn, in this process)",
    )
    run.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)"
    )
    run.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run's results in --out"
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help=(
            "go on with an interrupted run in --out: finished stages are loaded, not redone, "
            "and a method cut while training continues from its last save (every minute)"
        ),
    )
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def _task_name(text: str) -> str:
    """``--task``: a built-in name or ``module:Object`` (imported and checked by the config).

    Example:
        >>> _task_name("lorenz96"), _task_name("my_package.tasks:MyTask")
        ('lorenz96', 'my_package.tasks:MyTask')
    """
    if text in TASKS or ":" in text:
        return text
    raise argparse.ArgumentTypeError(
        f"invalid choice: {text!r} (choose from {', '.join(sorted(TASKS))}, or give your own "
        "task as module:Object)"
    )


def run_config(args: argparse.Namespace) -> RunConfig:
    """The run's settings from parsed arguments: a preset or a saved config, then overrides.

    Args:
        args: Parsed ``run`` arguments.

    Returns:
        The checked configuration (``ValueError`` for anything that cannot work).

    Example:
        >>> import tempfile
        >>> parser = build_parser()
        >>> with tempfile.TemporaryDirectory() as run_folder:
        ...     RunConfig.from_preset("lorenz96", seed=4).save(Path(run_folder) / "config.json")
        ...     cfg = run_config(parser.parse_args(["run", "--config", run_folder, "--seed", "5"]))
        >>> cfg.task, cfg.seed
        ('lorenz96', 5)
    """
    overrides: dict[str, Any] = {}
    options = {"simulations": "num_simulations", "seed": "seed", "device": "device"}
    options |= {"workers": "workers", "view_fraction": "view_fraction"}
    options["training_seed"] = "training_seed"
    for option, field in options.items():
        if getattr(args, option) is not None:
            overrides[field] = getattr(args, option)
    if args.methods is not None:
        overrides["methods"] = parse_methods(args.methods)
    interrupted = Path(args.out) / STAGES_DIR / CONFIG_FILE
    if getattr(args, "resume", False) and args.config is None and interrupted.is_file():
        cfg = RunConfig.from_json(interrupted)  # go on with the settings of the run resumed
        for option in ("task", "preset"):  # the original command's, repeated: fine
            given = getattr(args, option)
            if given is not None and given != getattr(cfg, option):
                raise ValueError(
                    f"--resume: the run in {args.out} has {option} {getattr(cfg, option)!r}, "
                    f"not {given!r}; resume it without --{option}, or start again with "
                    "--overwrite."
                )
    elif args.config is not None:
        if args.task is not None or args.preset is not None:
            raise ValueError("--config sets the task and preset; do not combine it with them.")
        cfg = RunConfig.from_json(_config_file(args.config))
    else:
        cfg = RunConfig.from_preset(args.task or "damped-oscillator", args.preset or "fast")
    settings = cfg.to_dict()
    if getattr(args, "ee_members", None) is not None:
        overrides["ee"] = {**settings["ee"], "members": args.ee_members}
    return RunConfig.from_dict({**settings, **overrides})


def _config_file(path: Path) -> Path:
    """``--config``: a ``config.json``, or a run folder that holds one (written by every run)."""
    if not path.is_dir():
        return path
    if not (path / CONFIG_FILE).is_file():
        raise ValueError(f"--config {path}: the folder holds no {CONFIG_FILE} of a run.")
    return path / CONFIG_FILE


def _output_problem(out: Path) -> str | None:
    """Why results cannot be written to ``--out``, or ``None`` (checked before any work)."""
    existing = Path(out)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir() and existing != Path(out):
        return f"--out {out}: {existing} is a file, so no folder can be made under it."
    folder = existing if existing.is_dir() else existing.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"--out {out}: cannot write in {folder} (permission denied)."
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for bad arguments or a refused output folder).

    Every argument (methods and a saved config included) is checked before any work starts.

    Args:
        argv: The arguments (default: the command line's).

    Returns:
        0 after a finished run, 1 when the run failed, 2 for arguments or an output folder
        refused (argparse exits with 2 itself for those it refuses).

    Example:
        >>> main(["run", "--methods", "symmetry_npe,magic"])
        Traceback (most recent call last):
        ...
        SystemExit: 2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.simulations is not None and args.simulations < 500:
        parser.error(f"--simulations must be at least 500; got {args.simulations}.")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1; got {args.threads}.")
    if args.seed is not None and args.seed < 0:
        parser.error(f"--seed must be a non-negative integer; got {args.seed}.")
    if args.training_seed is not None and args.training_seed < 0:
        parser.error(f"--training-seed must be a non-negative integer; got {args.training_seed}.")
    if args.workers is not None and args.workers < 0:
        parser.error(f"--workers must be 0 (choose) or a positive integer; got {args.workers}.")
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other: go on, or start again.")
    device = None if args.device is None else device_problem(args.device, "--device")
    for problem in (device, _output_problem(args.out)):
        if problem:
            parser.error(problem)

    import torch

    from sbi_symmetry.workflow.pipeline import run

    if os.getcwd() not in sys.path:  # --task my_module:MyTask finds ./my_module.py (appended:
        sys.path.append(os.getcwd())  # nothing installed is shadowed)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        config = run_config(args)
    except ValueError as err:
        parser.error(str(err))
    try:
        run(
            config,
            args.out,
            overwrite=args.overwrite,
            resume=args.resume,
            show_progress=not args.no_progress,
        )
    except (FileExistsError, ValueError) as err:
        print(f"sbi-symmetry: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"sbi-symmetry: run failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
