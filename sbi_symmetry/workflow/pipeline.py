"""The end-to-end run behind ``sbi-symmetry run``: simulate, train, compare, calibrate, report.

:func:`run` calls the stages of :mod:`sbi_symmetry.workflow.stages` in order, prints one summary
line per stage and writes the report (:mod:`sbi_symmetry.workflow.report`): ``report.md``,
``report.html``, ``metrics.json``, ``config.json`` (re-run it with ``sbi-symmetry run --config``),
the figures and the saved embedding.

Example:
    >>> from sbi_symmetry.workflow.config import RunConfig
    >>> cfg = RunConfig.from_preset("damped-oscillator", "fast")
    >>> cfg.methods
    ('symmetry_npe', 'raw_npe', 'embed_emulate')
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sbi_symmetry.evaluation import Stopwatch
from sbi_symmetry.tasks import get_task
from sbi_symmetry.workflow import stages
from sbi_symmetry.workflow.config import RunConfig
from sbi_symmetry.workflow.methods import TrainedMethod
from sbi_symmetry.workflow.registry import label
from sbi_symmetry.workflow.report import MARKER, RunResults, write_report

NUM_STAGES = 7
_KINDS = {"npe": "density estimators", "ratio": "ratio estimators"}


def prepare_output(out: Path, overwrite: bool) -> Path:
    """Create ``out``; refuse an existing non-empty folder unless ``overwrite`` and it is ours.

    Args:
        out: Output folder.
        overwrite: Replace the files of an earlier run in ``out``.

    Returns:
        The folder.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     prepare_output(Path(tmp) / "run", overwrite=False).is_dir()
        True
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
        if not (out / MARKER).exists():
            raise FileExistsError(
                f"--out {out} is not empty and holds no earlier run ({MARKER} missing); "
                "refusing to write into it even with --overwrite."
            )
    out.mkdir(parents=True, exist_ok=True)
    return out


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
        The metrics written to ``metrics.json``. Every random draw follows ``config.seed``:
        torch's global generator is seeded (as sbi's own examples do) and numpy's, which sbi's
        slice sampler uses, is seeded for the run and restored afterwards.
    """
    config.validate()
    folder = prepare_output(Path(out), overwrite)
    numpy_state = np.random.get_state()  # sbi's slice sampler draws from numpy's global state
    np.random.seed(config.seed)
    try:
        return _run_stages(config, folder, show_progress, log)
    finally:
        np.random.set_state(numpy_state)  # the caller's numpy stream is left as it was


def _run_stages(
    config: RunConfig, folder: Path, show_progress: bool, log: Callable[[str], None]
) -> dict[str, Any]:
    torch.manual_seed(config.seed)
    gen = torch.Generator(device=config.device).manual_seed(config.seed)
    task = get_task(config.task, device=config.device)
    watch = Stopwatch()

    def say(stage: int, text: str) -> None:
        """One stage's summary line, e.g. ``[1/7] simulate: ...``."""
        log(f"[{stage}/{NUM_STAGES}] {text}")

    with watch("simulate"):
        sims = stages.simulate(task, config, gen)
    say(1, f"simulate: {_sizes(config, sims)} ({watch.seconds['simulate']:.1f} s)")
    ctx = stages.training_context(task, sims, config, show_progress)
    trained: dict[str, TrainedMethod] = {}
    for stage, (kind, what) in enumerate(_KINDS.items(), start=2):
        with watch(f"train {what}"):
            group = stages.train_methods(ctx, kind)
        trained.update(group)
        done = "; ".join(_training_line(m) for m in group.values()) or "none selected"
        say(stage, f"trained {what}: {done}")
    with watch("reference"):
        refs = stages.references(task, sims, config, show_progress)
    say(4, _reference_line(config, refs, watch))
    with watch("accuracy"):
        acc = stages.accuracy(task, sims, trained, refs, config, gen, show_progress)
    say(5, _accuracy_line(acc, refs))
    with watch("calibration"):
        cal = stages.calibration(task, sims, trained, config, show_progress)
    say(6, "calibration: " + ", ".join(_calibration_word(k, v) for k, v in cal.items()))
    with watch("report"):
        results = RunResults(config, task, sims, trained, refs, acc, cal, watch)
        metrics = write_report(folder, results)
    say(7, f"report: {folder / 'report.md'} ({sum(watch.seconds.values()):.0f} s in all)")
    return metrics


def _sizes(config: RunConfig, sims: stages.Simulations) -> str:
    return (
        f"{config.num_simulations} training pairs, {config.num_observations} observations, "
        f"{sims.x_cal.shape[0]} calibration pairs"
    )


def _training_line(method: TrainedMethod) -> str:
    text = f"{label(method.name)} {method.epochs} epochs in {method.train_seconds:.0f} s"
    if method.pretrain_seconds:
        text += f" (after {method.pretrain_seconds:.0f} s of pretraining)"
    return text


def _reference_line(config: RunConfig, refs: list[Any], watch: Stopwatch) -> str:
    if refs:
        seconds = watch.seconds["reference"]
        return f"reference: exact quadrature for {len(refs)} observations ({seconds:.1f} s)"
    return (
        f"reference: none for {config.task} (no tractable likelihood); accuracy is judged by "
        "calibration and contraction"
    )


def _accuracy_line(acc: stages.Accuracy, refs: list[Any]) -> str:
    if refs:
        return "accuracy: mean C2ST " + ", ".join(
            f"{label(k)} {v['c2st']['mean']:.3f}" for k, v in acc.metrics.items()
        )
    return "accuracy: posterior contraction " + ", ".join(
        f"{label(k)} {torch.tensor(v['contraction']).mean():.2f}" for k, v in acc.metrics.items()
    )


def _calibration_word(name: str, result: Any) -> str:
    verdict = "calibrated" if result.is_calibrated() else "NOT calibrated"
    return f"{label(name)} {verdict} (max coverage error {result.max_coverage_error():.2f})"
