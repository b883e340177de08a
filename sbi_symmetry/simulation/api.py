"""Simulate training sets and views in chunks on an engine, streaming each chunk to a store.

The driver cuts the run into chunks, sends each chunk's task (the pickled simulator and prior,
the chunk's rows and the run's seed) to the engine, and writes every chunk into the store as
soon as it comes back. Each chunk draws its own ``theta`` from the prior under its own seed
(see :mod:`sbi_symmetry.simulation.worker`), so the data set is the same bits on every engine
and for any number of workers; only ``chunk_size`` and ``seed`` define it.

Example:
    >>> from sbi_symmetry.tasks import DampedOscillator
    >>> task = DampedOscillator()
    >>> store = simulate_dataset(task, task.prior, 10, chunk_size=4, engine="serial",
    ...                          show_progress_bar=False)
    >>> store.theta.shape, store.x.shape
    ((10, 2), (10, 200))
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable
from typing import Any

from torch import Tensor
from tqdm.auto import tqdm

from sbi_symmetry._validation import check_int
from sbi_symmetry.simulation.engines import Engine, map_unordered, validate_engine
from sbi_symmetry.simulation.store import SimulationStore
from sbi_symmetry.simulation.worker import (
    ChunkError,
    SimulatorJob,
    ViewsJob,
    dump_job,
    simulate_chunk,
)
from sbi_symmetry.simulation.writer import StoreWriter

__all__ = ["simulate_dataset", "simulate_views"]


def _describe(obj: object, limit: int = 200) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _run(
    job: SimulatorJob | ViewsJob,
    kind: str,
    num_simulations: int,
    path: str | os.PathLike[str] | None,
    chunk_size: int,
    engine: Engine,
    n_jobs: int | None,
    seed: int,
    overwrite: bool,
    resume: bool,
    show_progress_bar: bool,
) -> SimulationStore:
    fn_name = "simulator" if kind == "simulations" else "views"
    if not callable(getattr(job, fn_name)):
        raise TypeError(f"`{fn_name}` must be callable on a batch of parameters.")
    if not callable(getattr(job.prior, "sample", None)):
        raise TypeError(
            f"`prior` must have a `sample(sample_shape)` method (a torch distribution or an sbi "
            f"prior); got {type(job.prior).__name__}."
        )
    check_int(num_simulations, "num_simulations", 1)
    check_int(chunk_size, "chunk_size", 1)
    check_int(seed, "seed", 0)
    validate_engine(engine, n_jobs)
    num_chunks = math.ceil(num_simulations / chunk_size)
    settings = {
        "kind": kind,
        "keys": list(job.keys),
        "num_simulations": num_simulations,
        "chunk_size": chunk_size,
        "num_chunks": num_chunks,
        "seed": seed,
        fn_name: _describe(getattr(job, fn_name)),
        "prior": _describe(job.prior),
    }
    writer = StoreWriter.start(settings, path, overwrite=overwrite, resume=resume, job=job)
    todo = [i for i in range(num_chunks) if i not in writer.completed]
    if todo:
        payload = dump_job(job)
        tasks = [
            (payload, i, i * chunk_size, min((i + 1) * chunk_size, num_simulations), seed)
            for i in todo
        ]
        done_rows = num_simulations - sum(stop - start for _, _, start, stop, _ in tasks)
        bar = tqdm(
            total=num_simulations,
            initial=done_rows,
            unit="sim",
            desc="Simulating" if kind == "simulations" else "Simulating views",
            disable=not show_progress_bar,
        )
        results = map_unordered(simulate_chunk, tasks, engine=engine, n_jobs=n_jobs)
        try:
            with contextlib.closing(results), bar:
                for result in results:
                    writer.write(result)
                    bar.update(result.stop - result.start)
        except ChunkError as exc:
            if path is None:
                raise
            raise ChunkError(
                f"{exc} ({len(writer.completed)} of {num_chunks} chunks are saved in "
                f"{str(path)!r}; run again with resume=True to simulate only the missing ones.)"
            ) from exc
        finally:
            writer.checkpoint()
    store = writer.finish()
    if store.num_nonfinite:
        warnings.warn(
            f"{store.num_nonfinite} of {num_simulations} simulations contain NaN/inf. They are "
            "kept in the store (counted in its metadata['nonfinite']); select the others with "
            "store.finite_mask() or let sbi drop them with append_simulations(..., "
            "exclude_invalid_x=True).",
            stacklevel=3,
        )
    return store


def simulate_dataset(
    simulator: Callable[[Tensor], Any],
    prior: Any,
    num_simulations: int,
    *,
    path: str | os.PathLike[str] | None = None,
    chunk_size: int = 1000,
    engine: Engine = "joblib",
    n_jobs: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    resume: bool = False,
    show_progress_bar: bool = True,
) -> SimulationStore:
    """Draw ``theta`` from ``prior``, simulate ``x = simulator(theta)`` in chunks, store both.

    ``theta`` is cast to float32 before it is simulated, so the stored ``theta`` is exactly
    what the simulator saw.

    Args:
        simulator: Callable on a batch, ``(n, theta_dim) -> (n, *x_shape)``, returning a
            tensor or an array, e.g. ``DampedOscillator()`` or ``task.simulate``. It must be
            picklable with ``cloudpickle`` for a parallel engine.
        prior: Anything with ``sample(sample_shape)``, e.g. ``task.prior`` or an sbi prior.
        num_simulations: Number of ``(theta, x)`` pairs.
        path: Directory of the store on disk (memory-mapped ``.npy`` files; created if
            missing), or ``None`` to keep the arrays in memory.
        chunk_size: Rows per task. Part of the data set's identity, with ``seed``.
        engine: ``"joblib"`` (local processes), ``"dask"`` (a loopback Dask cluster for this
            call), ``"serial"``, a ``distributed.Client`` or a ``concurrent.futures.Executor``.
        n_jobs: Workers for ``"joblib"`` and ``"dask"`` (default: all cores).
        seed: Seed of the run; chunk ``i`` uses the ``i``-th child of ``SeedSequence(seed)``.
        overwrite: Replace an existing store at ``path``.
        resume: Finish an interrupted store at ``path`` (same settings, same prior and
            simulator: a store on disk records their fingerprints, at the cost of one simulator
            call, and a mismatch is refused); chunks already written are not simulated again.
        show_progress_bar: Show a progress bar of simulations written.

    Returns:
        The store, with ``theta`` and ``x`` (float32, one row per simulation).

    Raises:
        FileExistsError: If ``path`` already holds a store and neither ``overwrite`` nor
            ``resume`` is set.
        ChunkError: If a chunk fails; the chunks written so far stay on disk for ``resume``.

    Example:
        >>> import torch
        >>> from sbi.utils import BoxUniform
        >>> prior = BoxUniform(torch.zeros(1), torch.ones(1))
        >>> store = simulate_dataset(lambda t: 2 * t, prior, 6, chunk_size=4, engine="serial",
        ...                          show_progress_bar=False)
        >>> bool((store.x == 2 * store.theta).all())
        True
    """
    return _run(
        SimulatorJob(simulator, prior),
        "simulations",
        num_simulations,
        path,
        chunk_size,
        engine,
        n_jobs,
        seed,
        overwrite,
        resume,
        show_progress_bar,
    )


def simulate_views(
    views: Callable[[Tensor], tuple[Any, Any]],
    prior: Any,
    num_simulations: int,
    *,
    path: str | os.PathLike[str] | None = None,
    chunk_size: int = 1000,
    engine: Engine = "joblib",
    n_jobs: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    resume: bool = False,
    show_progress_bar: bool = True,
) -> SimulationStore:
    """Draw ``theta`` from ``prior`` and store two views ``(x_a, x_b) = views(theta)`` of each.

    The pairs feed self-supervised pretraining (``store.dataset(("x_a", "x_b"))``). Arguments
    are those of :func:`simulate_dataset`, with ``views`` in place of the simulator.

    Args:
        views: Callable on a batch returning a pair ``(x_a, x_b)``, each ``(n, *x_shape)``,
            e.g. a ``ResimulatedViews`` (fresh nuisance and noise per view).
        prior: Anything with ``sample(sample_shape)``.
        num_simulations: Number of ``theta`` (and of pairs).
        path: Directory of the store, or ``None`` for memory.
        chunk_size: Rows per task.
        engine: As in :func:`simulate_dataset`.
        n_jobs: Workers for ``"joblib"`` and ``"dask"``.
        seed: Seed of the run.
        overwrite: Replace an existing store at ``path``.
        resume: Finish an interrupted store at ``path`` (same settings, prior and views
            function, checked as in :func:`simulate_dataset`).
        show_progress_bar: Show a progress bar.

    Returns:
        The store, with ``theta``, ``x_a`` and ``x_b``.

    Example:
        >>> from sbi_symmetry.tasks import DampedOscillator
        >>> task = DampedOscillator()
        >>> pairs = simulate_views(lambda t: (task(t), task(t)), task.prior, 3,
        ...                        engine="serial", show_progress_bar=False)
        >>> pairs.keys, pairs.x_a.shape
        (('theta', 'x_a', 'x_b'), (3, 200))
    """
    return _run(
        ViewsJob(views, prior),
        "views",
        num_simulations,
        path,
        chunk_size,
        engine,
        n_jobs,
        seed,
        overwrite,
        resume,
        show_progress_bar,
    )
