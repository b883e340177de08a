"""Training the compared methods side by side, each from its own random stream.

**Streams.** Each method trains inside ``seeded(derived_seed(seed, "method", name))``, with
``RunConfig.training_seed`` in place of ``seed`` when it is set. Its random draws (initial
weights, ``sbi``'s training/validation split, the batch order, pretraining's views ...) depend
on that seed and its own name only; the encoder it shares with the other methods of its kind
is drawn from that seed and the kind (:func:`sbi_symmetry.workflow.stages.train_methods`).
So a method trained alone (``--methods end_to_end_npe``) draws what it draws in the full run,
and a change to one method's training leaves the others' draws as they were: comparisons between
runs stay paired. The numbers agree exactly only at the same thread count (below): alone, with
the default ``workers=0``, a method gets all of torch's threads, in the full run its worker's
share, and Embed and Emulate's oscillator C2ST at seed 0 was 0.690 and 0.670 for that reason
alone (``benchmarks/results/ee_pretrain.md``).

**Workers.** The fast preset's networks barely use a second core: one epoch of symmetry NPE's
network on the 2-core machine was 1.19x faster with two torch threads than with one, while two
one-thread processes trained side by side at almost full speed each
(``benchmarks/results/parallel_training.md``). So :func:`train_methods` trains up to
``workers`` methods at once, each in a process of its own (started with ``spawn``) with
``max(1, torch.get_num_threads() // workers)`` threads, and one progress bar over the methods
replaces ``sbi``'s. ``workers=1`` trains them in turn in this process. Floating-point sums
depend on the number of threads and a training's path drifts with them, so numbers agree
exactly between runs with the same seed, ``workers`` and thread count, as they always did with
the thread count.

By default every method has a worker of its own from the start (one thread each where there
are fewer threads than methods): the operating system then shares the cores between them, so
no core idles while a long training that started late still runs. With the ``fast`` preset's
four methods on the 2-core machine the training stage took 236 s this way against 263 s with
two workers (each method one thread in both, so the numbers are identical;
``benchmarks/results/parallel_training.md``).

**Work beside training.** Meanwhile this process waits; ``meanwhile`` gives it work that does
not depend on training (the run's exact reference posteriors), started as soon as a core would
idle: when fewer methods still train than there are threads. With the fast preset the last
method (Embed and Emulate) trains alone, one thread, for the final 40 s or so, time in which the
other core computes the references.

Example:
    >>> resolve_workers(0, jobs=3, device="cpu")
    3
    >>> resolve_workers(4, jobs=2, device="cpu"), resolve_workers(0, jobs=3, device="cuda")
    (2, 1)
"""

from __future__ import annotations

import dataclasses
import pickle
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

import torch
from tqdm.auto import tqdm

from sbi_symmetry._random import derived_seed, seeded
from sbi_symmetry._threads import torch_threads
from sbi_symmetry.simulation.counting import CallWindow, call_budget
from sbi_symmetry.workflow.registry import METHODS, MethodSpec, TrainingContext
from sbi_symmetry.workflow.trained import TrainedMethod

__all__ = ["resolve_workers", "start_order", "train_method", "train_methods"]


def resolve_workers(workers: int, jobs: int, device: str) -> int:
    """How many methods train at once.

    Args:
        workers: ``RunConfig.workers``: 0 chooses (on CPU one per method, all at once; 1 on
            an accelerator, where methods would share one device), else at most that many.
        jobs: Methods to train.
        device: The run's torch device.

    Returns:
        A number in ``[1, max(jobs, 1)]``.
    """
    if workers == 0:
        workers = 1 if torch.device(device).type != "cpu" else jobs
    return max(1, min(workers, jobs))


def start_order(specs: Sequence[MethodSpec]) -> list[MethodSpec]:
    """The order in which side-by-side workers start ``specs``: the ``light`` ones last.

    A cheap method started first would leave a worker idle at the end while a long one that
    started late still trains: with the fast preset's four methods on two workers, NPE on raw
    data (about 15 s) in front of three trainings of about two minutes each made the third
    start only when the first two were nearly done, and one worker idled while it ran.

    Args:
        specs: The methods, in the order asked for.

    Returns:
        The same methods, the others in their order, then the light ones in theirs.

    Example:
        >>> names = ["symmetry_npe", "raw_npe", "end_to_end_npe", "embed_emulate"]
        >>> [spec.name for spec in start_order([METHODS[name] for name in names])]
        ['symmetry_npe', 'end_to_end_npe', 'embed_emulate', 'raw_npe']
    """
    return sorted(specs, key=lambda spec: spec.light)


def train_method(spec: MethodSpec, ctx: TrainingContext) -> TrainedMethod:
    """Train one method from its own random stream; count the simulator calls it made.

    Args:
        spec: The method (an entry of :data:`~sbi_symmetry.workflow.registry.METHODS`).
        ctx: The training context (data, settings, shared towers).

    Returns:
        The trained method, with ``extra["simulator_calls"]``: its training set, the views it
        simulated (pretraining) and their total.
    """
    seed = derived_seed(ctx.config.method_seed, "method", spec.name)
    with seeded(seed, ctx.config.device), CallWindow(ctx.task) as views:  # pretraining views
        method = spec.train(ctx)
    training_set = int(method.extra.get("training_simulations", ctx.theta.shape[0]))
    method.extra["torch_threads"] = torch.get_num_threads()
    method.extra["simulator_calls"] = call_budget(training_set, views.calls)
    return method


def _in_worker(spec: MethodSpec, ctx: TrainingContext, threads: int) -> TrainedMethod:
    torch.set_num_threads(threads)
    return train_method(spec, ctx)


def _not_picklable(specs: list[MethodSpec], ctx: TrainingContext) -> str | None:
    """Why the jobs cannot go to another process (e.g. a method defined in a notebook)."""
    try:
        pickle.dumps((specs, ctx.task, ctx.config, ctx.towers))  # tensors always go
    except Exception as error:  # pickle raises several types
        return f"{type(error).__name__}: {error}"
    return None


def train_methods(
    ctx: TrainingContext,
    names: Sequence[str],
    workers: int,
    done: Callable[[str, TrainedMethod], None] | None = None,
    meanwhile: Callable[[], None] | None = None,
    run_size: int | None = None,
) -> dict[str, TrainedMethod]:
    """Train ``names``, up to ``workers`` at once.

    Args:
        ctx: The training context, with the towers of every kind in ``names`` built.
        names: Keys of :data:`~sbi_symmetry.workflow.registry.METHODS` (started in that order,
            except that ``light`` ones start after the others when they train side by side).
        workers: Processes (see :func:`resolve_workers`); 1 trains in turn in this process, as
            does any number when the methods or the task cannot be sent to another process
            (a warning says why). Workers import this package afresh: a function patched
            in this process (e.g. by a test or a benchmark) is not patched there, so use 1.
        done: Called in this process with each method as soon as it has trained (e.g. to save
            it); when one method fails, the others still finish and are passed here before
            the error is raised.
        meanwhile: Work for this process that does not depend on the training, called once
            when methods train in workers: as soon as fewer of them train than there are
            threads, with the threads they leave idle. Its error, like a method's, is raised
            once every method has finished. Not called when the methods train in turn here
            (nothing to overlap): the caller does that work afterwards.
        run_size: The methods of the whole run, when ``names`` are the rest of an interrupted
            one: workers and threads per method are chosen as for the whole run, so the
            methods left train at the thread count they would have had (default:
            ``len(names)``).

    Returns:
        The trained methods by name, in the order of ``names``.
    """
    specs = [METHODS[name] for name in names]
    workers = resolve_workers(workers, run_size or len(specs), ctx.config.device)
    threads = max(1, torch.get_num_threads() // workers)  # each worker's share in the whole run
    quiet = dataclasses.replace(ctx, show_progress=False)
    problem = _not_picklable(specs, quiet) if workers > 1 else None
    if problem:
        warnings.warn(
            f"training the methods in turn: they cannot go to worker processes ({problem}); "
            "define tasks and methods in an importable module, or set workers=1.",
            stacklevel=2,
        )
    trained: dict[str, TrainedMethod] = {}

    def finished(name: str, method: TrainedMethod) -> None:
        trained[name] = method
        if done is not None:
            done(name, method)

    if workers == 1 or problem or not specs:
        for spec in specs:
            finished(spec.name, train_method(spec, ctx))
        return trained
    workers = min(workers, len(specs))
    _side_by_side(specs, quiet, (workers, threads), ctx.show_progress, finished, meanwhile)
    return {name: trained[name] for name in names}


def _side_by_side(
    specs: list[MethodSpec],
    ctx: TrainingContext,
    processes: tuple[int, int],
    show_progress: bool,
    finished: Callable[[str, TrainedMethod], None],
    meanwhile: Callable[[], None] | None = None,
) -> None:
    """Train ``specs`` in spawned processes, ``processes`` = (how many, threads each).

    Each result goes to ``finished`` as it comes.
    """
    cores = torch.get_num_threads()
    workers, threads = processes
    errors: list[BaseException] = []
    desc = f"training {len(specs)} methods, {workers} at once"
    with (
        ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool,
        tqdm(total=len(specs), desc=desc, unit="method", disable=not show_progress) as bar,
    ):
        futures = {
            pool.submit(_in_worker, spec, ctx, threads): spec.name for spec in start_order(specs)
        }
        for future in as_completed(futures):
            bar.update()
            try:
                finished(futures[future], future.result())
            except Exception as error:  # the others still finish and are kept
                errors.append(error)
            busy = min(workers, sum(not f.done() for f in futures)) * threads
            if meanwhile is not None and busy < cores:
                _on_idle_threads(meanwhile, cores - busy, errors)
                meanwhile = None
    if errors and isinstance(errors[0], BrokenProcessPool):
        raise RuntimeError(
            "a training worker process died (out of memory, or a script that starts a run "
            "without `if __name__ == '__main__':`); go on with `--resume --workers 1` "
            "(RunConfig.workers=1) to train the rest in this process."
        ) from errors[0]
    if errors:
        raise errors[0]


def _on_idle_threads(work: Callable[[], None], idle: int, errors: list[BaseException]) -> None:
    """Run ``work`` here with ``idle`` torch threads (then the caller's again); keep its error.

    A Ctrl-C in ``work`` is kept too: the methods still training are then collected (and saved
    by the caller, for ``--resume``) before it is raised.
    """
    with torch_threads(idle):
        try:
            work()
        except BaseException as error:  # raised once the methods have finished
            errors.append(error)
