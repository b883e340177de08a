"""Engines that run chunk tasks and hand back results as they finish, in any order.

The package does not ship a scheduler of its own: it hands chunks to engines people already run.

- ``"serial"``: in the calling process, one chunk after the other (debugging, baselines).
- ``"joblib"`` (the default): :class:`joblib.Parallel` with ``n_jobs`` workers, by default the
  ``loky`` process pool on this machine. No backend is forced, so a ``joblib.parallel_config``
  context picks another one: ``with parallel_config(backend="ray"):`` after
  ``ray.util.joblib.register_ray()`` runs the same call on a Ray cluster.
- ``"dask"``: a Dask ``distributed`` cluster. Pass a ``distributed.Client`` as the engine to use
  a cluster you already run; the string ``"dask"`` starts a loopback ``LocalCluster`` with
  ``n_jobs`` single-threaded worker processes for the call (:func:`local_dask_client`) and
  closes it afterwards.
- any :class:`concurrent.futures.Executor`: ``ProcessPoolExecutor``, ``client.get_executor()``,
  ``mpi4py.futures.MPIPoolExecutor``, or another framework's executor.

Why Dask is the optional cluster engine rather than Ray: it is pure Python from PyPI
(``pip install "sbi-symmetry[cluster]"``, no compiled core to match across nodes); it is light
(a scheduler and worker processes, no object store or dashboard daemons to run); and
``dask-jobqueue`` starts the same workers as batch jobs on the SLURM, PBS, SGE, LSF or HTCondor
clusters that scientists already have, where Ray's head and worker nodes are started by a batch
script written by hand for each site. Ray stays one line away, through its joblib backend above
or through any executor.

Use worker processes with one thread each: chunks seed the global random state of their
process, so threads of one process take turns (correct, but not parallel). Engines that start
processes by spawning (Dask, ``ProcessPoolExecutor`` on macOS and Windows) need the calling
script's work under ``if __name__ == "__main__":``.

Results come back unordered, so a slow chunk does not hold up writing the others. With an
executor or Dask at most two chunks per worker are in flight, so the driver's memory does not
grow with the size of the data set; joblib dispatches two chunks per worker ahead and holds
finished ones only until the driver writes them.

Example:
    >>> results = map_unordered(pow, [(2, 3), (3, 2)], engine="serial")
    >>> sorted(results)
    [8, 9]
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sbi_symmetry._validation import is_int

__all__ = ["ENGINES", "Engine", "local_dask_client", "map_unordered", "validate_engine"]

R = TypeVar("R")

#: Engine names accepted as strings.
ENGINES: tuple[str, ...] = ("serial", "joblib", "dask")

#: An engine name, a ``concurrent.futures.Executor`` or a ``distributed.Client``.
Engine = Any


def _is_dask_client(engine: object) -> bool:
    return type(engine).__module__.startswith("distributed") and hasattr(engine, "get_executor")


def validate_engine(engine: Engine, n_jobs: int | None) -> None:
    """Raise a clear error for an unknown engine or an ``n_jobs`` that does not fit it.

    Args:
        engine: An engine name, an executor or a Dask client.
        n_jobs: Number of workers (``None`` for the engine's default).
    """
    if n_jobs is not None and (not is_int(n_jobs) or (n_jobs < 1 and n_jobs != -1)):
        raise ValueError(
            f"`n_jobs` must be a positive integer, -1 (all cores) or None; got {n_jobs!r}."
        )
    if isinstance(engine, str):
        if engine not in ENGINES:
            raise ValueError(
                f"`engine` must be one of {list(ENGINES)}, a concurrent.futures.Executor or a "
                f"distributed.Client; got {engine!r}."
            )
        if engine == "serial" and n_jobs not in (None, 1):
            raise ValueError(f"`n_jobs` must be None or 1 with engine='serial'; got {n_jobs}.")
        if engine == "dask":
            try:
                import distributed  # noqa: F401
            except ImportError as exc:
                raise ImportError(
                    "engine='dask' needs Dask distributed: pip install 'sbi-symmetry[cluster]' "
                    "(or pip install distributed)."
                ) from exc
        return
    if isinstance(engine, cf.Executor) or _is_dask_client(engine):
        if n_jobs is not None:
            raise ValueError(
                "`n_jobs` must be None when `engine` is an executor or a Dask client: "
                "their workers are set where they were created."
            )
        return
    raise TypeError(
        f"`engine` must be one of {list(ENGINES)}, a concurrent.futures.Executor or a "
        f"distributed.Client; got {type(engine).__name__}."
    )


def map_unordered(
    fn: Callable[..., R],
    tasks: Sequence[tuple[Any, ...]],
    engine: Engine = "joblib",
    n_jobs: int | None = None,
) -> Iterator[R]:
    """Run ``fn(*args)`` for every ``args`` in ``tasks`` and yield each result when it is ready.

    Close the returned generator (or exhaust it) to release the engine: pending tasks are
    cancelled and a cluster started for the call is shut down.

    Args:
        fn: A module-level function (it travels to workers by reference).
        tasks: Argument tuples, one per task.
        engine: ``"serial"``, ``"joblib"``, ``"dask"``, a ``concurrent.futures.Executor`` or a
            ``distributed.Client``.
        n_jobs: Workers for ``"joblib"`` (default: all cores) and ``"dask"`` (default: the
            number of cores); must be ``None`` for an executor or a client.

    Yields:
        The results, in the order they finish.
    """
    validate_engine(engine, n_jobs)
    if isinstance(engine, str):
        if engine == "serial":
            return (fn(*args) for args in tasks)
        if engine == "joblib":
            return _joblib(fn, tasks, -1 if n_jobs is None else n_jobs)
        return _local_dask(fn, tasks, n_jobs)
    if isinstance(engine, cf.Executor):
        return _executor(engine, fn, tasks, window=2 * _executor_workers(engine))
    return _dask_client(engine, fn, tasks)


def _joblib(fn: Callable[..., R], tasks: Iterable[tuple[Any, ...]], n_jobs: int) -> Iterator[R]:
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", pre_dispatch="2*n_jobs")
    yield from parallel(delayed(fn)(*args) for args in tasks)


def _executor_workers(executor: cf.Executor) -> int:
    workers = getattr(executor, "_max_workers", None)  # Process/ThreadPoolExecutor, loky
    return workers if isinstance(workers, int) and workers > 0 else os.cpu_count() or 1


def _executor(
    executor: cf.Executor,
    fn: Callable[..., R],
    tasks: Iterable[tuple[Any, ...]],
    window: int,
) -> Iterator[R]:
    """Keep at most ``window`` tasks in flight; submit the next one before yielding a result."""
    todo = iter(tasks)
    pending = {executor.submit(fn, *args) for args in itertools.islice(todo, window)}
    try:
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in done:
                for args in itertools.islice(todo, 1):
                    pending.add(executor.submit(fn, *args))
                yield future.result()
    finally:
        for future in pending:
            future.cancel()


def _dask_client(
    client: Any, fn: Callable[..., R], tasks: Sequence[tuple[Any, ...]]
) -> Iterator[R]:
    threads = sum(client.nthreads().values()) or 1
    executor = client.get_executor(pure=False)
    yield from _executor(executor, fn, tasks, window=2 * threads)


def _local_dask(
    fn: Callable[..., R], tasks: Sequence[tuple[Any, ...]], n_jobs: int | None
) -> Iterator[R]:
    with local_dask_client(None if n_jobs == -1 else n_jobs) as client:
        yield from _dask_client(client, fn, tasks)


@contextmanager
def _restored_environ() -> Iterator[None]:
    """Undo what Dask's nannies write into ``os.environ`` of the process that starts them."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


@contextmanager
def local_dask_client(n_workers: int | None = None, **cluster_kwargs: Any) -> Iterator[Any]:
    """A loopback Dask ``LocalCluster`` set up for simulation, and a client to it.

    One single-threaded worker process per core (or ``n_workers``), listening on 127.0.0.1
    only, without dashboard. Dask sets ``MALLOC_TRIM_THRESHOLD_=65536`` in its workers, which
    made the torch simulators here about three times slower (every large tensor became a fresh
    ``mmap``); the cluster leaves glibc's default instead. Use the same setting for clusters you
    start yourself (``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_: null``).
    ``os.environ`` of this process, which Dask's nannies change, is restored on exit.

    Args:
        n_workers: Worker processes (default: the number of cores).
        **cluster_kwargs: Other ``LocalCluster`` arguments, overriding the defaults above.

    Yields:
        A ``distributed.Client``, to pass as ``engine``.
    """
    import dask
    from distributed import Client, LocalCluster

    options: dict[str, Any] = {
        "n_workers": n_workers or os.cpu_count() or 1,
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": None,
        "silence_logs": logging.ERROR,
    }
    options.update(cluster_kwargs)
    with (
        _restored_environ(),
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}),
        LocalCluster(**options) as cluster,
        Client(cluster) as client,
    ):
        yield client
