"""The end-to-end run behind ``sbi-symmetry run``: simulate, train, compare, calibrate, report.

:func:`run` calls the stages of :mod:`sbi_symmetry.workflow.stages` in order, prints one summary
line per stage and writes the report (:mod:`sbi_symmetry.workflow.report`): ``report.md``,
``report.html``, ``metrics.json``, ``config.json`` (re-run it with ``sbi-symmetry run --config``),
the figures and the saved embedding. Each finished stage is also saved in ``.stages/``
(:mod:`~sbi_symmetry.workflow.checkpoints`), so an interrupted run goes on with ``--resume``;
the methods also save their pretraining and training as they go (``.stages/progress_*``,
:class:`~sbi_symmetry.checkpoint.ResumableTraining`: every minute of training and at the end of
each phase), so a resumed run continues them from the last save instead of from the start.

Example:
    >>> from sbi_symmetry.workflow.config import RunConfig
    >>> cfg = RunConfig.from_preset("damped-oscillator", "fast")
    >>> cfg.methods
    ('symmetry_npe', 'raw_npe', 'end_to_end_npe', 'embed_emulate')
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from sbi_symmetry._random import seeded
from sbi_symmetry._validation import device_problem
from sbi_symmetry.evaluation import Stopwatch
from sbi_symmetry.simulation.counting import count_simulator_calls
from sbi_symmetry.tasks import get_task
from sbi_symmetry.workflow import stages
from sbi_symmetry.workflow.checkpoints import STAGES_DIR, StageCheckpoints
from sbi_symmetry.workflow.config import CONFIG_FILE, RunConfig
from sbi_symmetry.workflow.flags import verdict
from sbi_symmetry.workflow.registry import METHODS, TrainingContext, label
from sbi_symmetry.workflow.report import MARKER, RunResults, write_report
from sbi_symmetry.workflow.saved import POSTERIORS_DIR
from sbi_symmetry.workflow.trained import TrainedMethod

NUM_STAGES = 7
#: The stopwatch's name for the references when they were computed while methods trained.
BESIDE_TRAINING = "reference (beside training)"
_KINDS = {"npe": "density estimators", "ratio": "ratio estimators"}
#: What a run writes to its folder (glob patterns); ``--overwrite`` removes these, and only these.
RUN_OUTPUTS = (STAGES_DIR, MARKER, CONFIG_FILE, "report.md", "report.html", POSTERIORS_DIR)
RUN_OUTPUTS += ("embedding", "summaries.png", "posterior_*.png", "loss_curves.png")
RUN_OUTPUTS += ("coverage.png", "tarp.png", "sbc_ranks.png")


def prepare_output(out: Path, overwrite: bool, resume: bool = False) -> Path:
    """Create ``out``; refuse an existing non-empty folder unless it is ours and we may use it.

    Args:
        out: Output folder.
        overwrite: Replace the files of an earlier run in ``out``.
        resume: Go on with an earlier, interrupted (or finished) run in ``out`` (a missing or
            empty ``out`` starts one; a folder without the run's ``.stages/`` is refused).

    Returns:
        The folder.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     prepare_output(Path(tmp) / "run", overwrite=False).is_dir()
        True
    """
    out = Path(out)
    if overwrite and resume:
        raise ValueError("--overwrite and --resume exclude each other: start again, or go on.")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a folder.")
    ours = (out / MARKER).exists() or (out / STAGES_DIR).is_dir()
    if resume and out.exists() and any(out.iterdir()) and not (out / STAGES_DIR).is_dir():
        raise FileExistsError(
            f"--resume: {out} holds no {STAGES_DIR}/ of a run to go on with (deleted, or never "
            "a run); its files would be replaced. Pass --overwrite to start again there."
        )
    if out.exists() and any(out.iterdir()):
        if not (overwrite or resume):
            hint = " or --resume to go on with the run there" if ours else ""
            raise FileExistsError(
                f"--out {out} already exists and is not empty; choose another folder, pass "
                f"--overwrite to replace an earlier run's results there{hint}."
            )
        if not ours:
            raise FileExistsError(
                f"--out {out} is not empty and holds no earlier run ({MARKER} and {STAGES_DIR}/ "
                "missing); refusing to write into it."
            )
        if overwrite:
            _clear_earlier_run(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _clear_earlier_run(out: Path) -> None:
    """Remove what an earlier run wrote to ``out`` (:data:`RUN_OUTPUTS`), nothing else."""
    for pattern in RUN_OUTPUTS:
        for path in out.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def run(
    config: RunConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every stage and write the report folder.

    Args:
        config: Settings (see :class:`RunConfig`).
        out: Output folder (must not exist, be empty, or be an earlier run with ``overwrite``
            or ``resume``).
        overwrite: Replace an earlier run's files in ``out``.
        resume: Load the stages an earlier run in ``out`` finished (same settings) and run the
            rest; the numbers are those of an uninterrupted run.
        show_progress: Progress bars (sbi's and ours).
        log: Where the one-line stage summaries go.

    Returns:
        The metrics written to ``metrics.json``. Every random draw follows ``config.seed``
        (torch's and numpy's global generators, which sbi's samplers use, are seeded for the
        run and restored afterwards), the networks' initial weights included.
    """
    config.validate()
    if problem := device_problem(config.device):  # before .stages/ is written
        raise ValueError(problem)
    folder = prepare_output(Path(out), overwrite, resume)
    checkpoints = StageCheckpoints(folder, config, resume)
    with seeded(config.seed, config.device):
        return _run_stages(config, folder, checkpoints, show_progress, log)


def _run_stages(
    config: RunConfig,
    folder: Path,
    saved: StageCheckpoints,
    show_progress: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    gen = torch.Generator(device=config.device).manual_seed(config.seed)
    task = count_simulator_calls(get_task(config.task, device=config.device))
    watch, start = Stopwatch(), time.perf_counter()
    computed: list[list[Any]] = []  # the references, once: beside the training if a core idles

    def references(stage: str = BESIDE_TRAINING) -> None:
        if not computed:
            with watch(stage):
                bar = show_progress and stage != BESIDE_TRAINING  # not under the training's bar
                computed.append(
                    saved.run("references", lambda: stages.references(task, sims, config, bar), gen)
                )

    def say(stage: int, text: str, *checkpoints: str) -> None:
        """One stage's line, e.g. ``[1/7] simulate: ...``; resumed: all ``checkpoints`` loaded."""
        log(f"[{stage}/{NUM_STAGES}] {text}{saved.note(*checkpoints)}")

    with watch("simulate"):
        sims = saved.run("simulate", lambda: stages.simulate(task, config, gen), gen)
    say(1, f"simulate: {_sizes(config, sims)} ({watch.seconds['simulate']:.1f} s)", "simulate")
    ctx = stages.training_context(task, sims, config, show_progress)
    ctx.progress_dir = saved.dir  # the methods' progress, for --resume
    with watch("train"):
        trained = _train(ctx, saved, gen, references)
    for stage, (kind, what) in enumerate(_KINDS.items(), start=2):
        group = [m for name, m in trained.items() if METHODS[name].kind == kind]
        done = "; ".join(_training_line(m) for m in group) or "none selected"
        note = saved.note(*_per_method("train", [m.name for m in group]))
        log(f"[{stage}/{NUM_STAGES}] trained {what}: {done}{note}")
    references("reference")  # unless it ran beside the training
    refs = computed[0]
    say(4, _reference_line(config, refs, watch), "references")
    with watch("accuracy"):  # each method saved as soon as it is done, as in training
        loaded = _loaded(saved, "accuracy", trained)
        done = _saver(saved, "accuracy", gen)
        acc = stages.accuracy(task, sims, trained, refs, config, gen, show_progress, loaded, done)
    say(5, _accuracy_line(acc, refs), *_per_method("accuracy", trained))
    with watch("calibration"):
        loaded = _loaded(saved, "calibration", trained)
        done = _saver(saved, "calibration", gen)
        cal = stages.calibration(task, sims, trained, config, show_progress, loaded, done)
    words = ", ".join(_calibration_word(k, v, acc, task) for k, v in cal.items())
    say(6, f"calibration: {words}", *_per_method("calibration", trained))
    _mark_loaded(watch, saved, list(trained))
    with watch("report"):
        results = RunResults(config, task, sims, trained, refs, acc, cal, watch)
        metrics = write_report(folder, results)
    say(7, f"report: {folder / 'report.md'} ({time.perf_counter() - start:.0f} s in all)")
    return metrics


def _train(
    ctx: TrainingContext,
    saved: StageCheckpoints,
    gen: torch.Generator,
    meanwhile: Callable[[], None] | None = None,
) -> dict[str, TrainedMethod]:
    """Every selected method, in registry order: loaded if saved, else trained and saved.

    A resumed run loads the methods an earlier run finished; each method that trains now is
    saved as soon as it is done, so an interruption loses only the methods still training (and
    of those only what they trained since their last progress save). ``meanwhile`` runs in
    this process while workers train, once a core would idle (not at all when the methods
    train in turn here).
    """
    loaded = _loaded(saved, "train", ctx.config.methods)
    save = _saver(saved, "train", gen)
    for name in loaded:  # cut between saving a method and clearing its progress
        ctx.clear_progress(name)

    def done(name: str, method: TrainedMethod) -> None:
        save(name, method)
        ctx.clear_progress(name)  # its training is saved whole now

    fresh = stages.train_methods(ctx, skip=loaded, done=done, meanwhile=meanwhile)
    return {name: loaded.get(name) or fresh[name] for name in METHODS if name in ctx.config.methods}


def _per_method(stage: str, names: Iterable[str]) -> list[str]:
    """The checkpoint names of ``stage``, one per method: ``<stage>_<method>``."""
    return [f"{stage}_{name}" for name in names]


def _loaded(saved: StageCheckpoints, stage: str, names: Iterable[str]) -> dict[str, Any]:
    """What an earlier run saved of ``stage`` per method (:func:`_per_method`)."""
    names = list(names)
    keys = zip(names, _per_method(stage, names), strict=True)
    found = {name: saved.load(key) for name, key in keys}
    return {name: got["value"] for name, got in found.items() if got is not None}


def _saver(saved: StageCheckpoints, stage: str, gen: torch.Generator) -> Callable[[str, Any], None]:
    """Save one method's result of ``stage`` as soon as it is done."""
    return lambda name, value: saved.save(*_per_method(stage, [name]), value, gen)


def _mark_loaded(watch: Stopwatch, saved: StageCheckpoints, names: list[str]) -> None:
    """Rename the stages a resumed run loaded (their seconds are loading, not the work)."""
    parts = {"simulate": ["simulate"], "reference": ["references"]}
    parts[BESIDE_TRAINING] = ["references"]
    for stage in ("train", "accuracy", "calibration"):
        parts[stage] = _per_method(stage, names)
    for stage, checkpoints in parts.items():
        loaded = sum(c in saved.resumed for c in checkpoints)
        if stage in watch.seconds and loaded:
            some = "" if loaded == len(checkpoints) else f" {loaded} of {len(checkpoints)}"
            watch.seconds[f"{stage} (loaded{some} by --resume)"] = watch.seconds.pop(stage)


def _sizes(config: RunConfig, sims: stages.Simulations) -> str:
    return (
        f"{config.num_simulations} training pairs, {config.num_observations} observations, "
        f"{sims.x_cal.shape[0]} calibration pairs ({sum(sims.calls.values()):,} simulator calls)"
    )


def _training_line(method: TrainedMethod) -> str:
    text = f"{label(method.name)} {method.epochs} epochs in {method.train_seconds:.0f} s"
    if method.extra.get("members", 1) > 1:  # a product: its members' epochs one after another
        text = text.replace(" epochs", f" epochs over {method.extra['members']} members", 1)
    views = method.extra.get("simulator_calls", {}).get("views", 0)
    if method.pretrain_seconds:
        text += f" (after {method.pretrain_seconds:.0f} s of pretraining"
        text += f" on {views:,} simulated views)" if views else " on stored data)"
    elif views:
        text += f" ({views:,} simulated views)"
    return text


def _reference_line(config: RunConfig, refs: list[Any], watch: Stopwatch) -> str:
    if refs:
        beside = BESIDE_TRAINING in watch.seconds
        seconds = watch.seconds[BESIDE_TRAINING if beside else "reference"]
        kind = getattr(refs[0], "method", "the task's own reference posterior")
        kind = "exact quadrature" if kind == "quadrature" else kind
        when = ", beside the training" if beside else ""
        return f"reference: {kind} for {len(refs)} observations ({seconds:.1f} s{when})"
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


def _calibration_word(name: str, result: Any, acc: stages.Accuracy, task: Any) -> str:
    entry = {**acc.metrics.get(name, {}), "calibration": result.to_dict()}
    word = verdict(entry, task.parameter_names)  # e.g. "calibrated but 5.1 x too wide"
    return f"{label(name)} {word} (max coverage error {result.max_coverage_error():.2f})"
