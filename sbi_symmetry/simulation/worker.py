"""What one worker does with one chunk: seed, draw ``theta`` from the prior, simulate, return.

A run of ``N`` simulations is cut into chunks of ``chunk_size`` rows; chunk ``i`` covers rows
``[i * chunk_size, min((i + 1) * chunk_size, N))``. Its random state depends only on the run's
``seed`` and on ``i``: the chunk's :class:`numpy.random.SeedSequence` is the ``i``-th child of
``SeedSequence(seed)`` (what ``SeedSequence(seed).spawn(n)[i]`` returns, for any ``n > i``), and
from it come the seeds of torch's, numpy's and Python's global generators. The worker draws
``theta`` from the prior and simulates under those seeds, with torch on one intra-op thread
(vectorised kernels can round differently when a tensor is split over threads), and restores the
caller's random state and thread count afterwards. Global random state belongs to a process, so
threads of one process (a thread pool, a Dask worker with several threads) take turns: run one
thread per worker process for parallelism. So a chunk gives the same bits in the calling
process, in a ``joblib`` worker, on a Dask worker or in any executor, and the data set does not
depend on the engine or on the number of workers. It does depend on ``chunk_size``; a whole chunk
does not depend on ``num_simulations`` (a short last chunk draws fewer rows, so it may differ).

The simulator and the prior travel to workers as one ``cloudpickle`` payload, so lambdas and
locally defined callables work with any executor, plain ``pickle``-based ones included.

Example:
    >>> import torch
    >>> from sbi_symmetry.tasks import DampedOscillator
    >>> task = DampedOscillator()
    >>> job = SimulatorJob(task, task.prior)
    >>> a = simulate_chunk(dump_job(job), index=3, start=0, stop=5, seed=7)
    >>> b = simulate_chunk(dump_job(job), index=3, start=0, stop=5, seed=7)
    >>> a.arrays["x"].shape, bool((a.arrays["x"] == b.arrays["x"]).all())
    ((5, 200), True)
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sbi_symmetry._random import seeded
from sbi_symmetry._threads import torch_threads

try:  # joblib >= 1.5 depends on cloudpickle; older joblib vendors it
    import cloudpickle
except ImportError:  # pragma: no cover - depends on the installed joblib
    from joblib.externals import cloudpickle  # type: ignore[no-redef]

__all__ = [
    "ChunkError",
    "ChunkResult",
    "SimulatorJob",
    "ViewsJob",
    "chunk_seed_sequence",
    "dump_job",
    "simulate_chunk",
]


class ChunkError(RuntimeError):
    """A chunk could not be simulated; the message names the chunk, its rows and the cause."""


@dataclass(frozen=True)
class ChunkResult:
    """One simulated chunk, as a worker sends it back to the driver.

    Attributes:
        index: Chunk index.
        start: First row of the chunk in the data set.
        stop: One past the last row.
        arrays: Float32 arrays by store key (``"theta"``, ``"x"`` or ``"x_a"``, ``"x_b"``),
            each with ``stop - start`` rows.
        nonfinite: Number of rows whose simulation holds a NaN or an inf.
    """

    index: int
    start: int
    stop: int
    arrays: dict[str, np.ndarray]
    nonfinite: int


@dataclass(frozen=True)
class SimulatorJob:
    """Simulate ``x = simulator(theta)`` for ``theta`` drawn from ``prior``.

    Attributes:
        simulator: Callable on a batch, ``(n, theta_dim) -> (n, *x_shape)``.
        prior: Anything with ``sample(sample_shape)`` (a torch distribution, an sbi prior).
    """

    simulator: Callable[[Tensor], Any]
    prior: Any
    keys: tuple[str, ...] = ("theta", "x")

    def outputs(self, theta: Tensor) -> tuple[Any, ...]:
        """Return the simulation of ``theta`` (one output)."""
        return (self.simulator(theta),)


@dataclass(frozen=True)
class ViewsJob:
    """Simulate two views ``(x_a, x_b) = views(theta)`` of the same ``theta`` from ``prior``.

    Attributes:
        views: Callable on a batch returning a pair of arrays with one row per ``theta``.
        prior: Anything with ``sample(sample_shape)``.
    """

    views: Callable[[Tensor], Any]
    prior: Any
    keys: tuple[str, ...] = ("theta", "x_a", "x_b")

    def outputs(self, theta: Tensor) -> tuple[Any, ...]:
        """Return the two views of ``theta``."""
        pair = self.views(theta)
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            got = type(pair).__name__
            if isinstance(pair, tuple | list):
                got += f" of length {len(pair)}"
            raise TypeError(f"`views(theta)` must return a pair (x_a, x_b); got a {got}.")
        return tuple(pair)


Job = SimulatorJob | ViewsJob

# one chunk at a time per process: the seeded global random state is shared by its threads
_PROCESS_LOCK = threading.RLock()


def dump_job(job: Job) -> bytes:
    """Serialise a job once, with ``cloudpickle``, for every chunk of a run.

    Args:
        job: The job.

    Returns:
        The payload that :func:`simulate_chunk` takes.
    """
    return cloudpickle.dumps(job)


def chunk_seed_sequence(seed: int, index: int) -> np.random.SeedSequence:
    """The seed sequence of chunk ``index``: the ``index``-th child of ``SeedSequence(seed)``.

    Args:
        seed: The run's seed (a non-negative integer).
        index: The chunk index (a non-negative integer).

    Returns:
        ``SeedSequence(seed, spawn_key=(index,))``, equal to ``SeedSequence(seed).spawn(n)[index]``.
    """
    return np.random.SeedSequence(seed, spawn_key=(index,))


@contextmanager
def _seeded_single_thread(seed: int, index: int) -> Iterator[None]:
    """Seed torch, numpy and ``random`` for one chunk on one torch thread; restore on exit."""
    words = chunk_seed_sequence(seed, index).generate_state(4, dtype=np.uint32)
    torch_seed = int(words[0]) | (int(words[1]) << 32)
    py_state = random.getstate()
    with seeded(torch_seed), torch_threads(1):  # torch (CPU, CUDA), numpy: restored on exit
        try:
            np.random.seed(int(words[2]))
            random.seed(int(words[3]))
            yield
        finally:
            random.setstate(py_state)


def _draw_theta(prior: Any, num: int) -> Tensor:
    theta = prior.sample((num,))
    theta = torch.as_tensor(theta)
    if theta.ndim == 1:
        theta = theta.reshape(num, 1)
    if theta.ndim != 2 or theta.shape[0] != num:
        raise ValueError(
            f"`prior.sample(({num},))` must return shape ({num}, theta_dim); "
            f"got {tuple(theta.shape)}."
        )
    return theta.to(torch.float32)


def _as_rows(value: Any, num: int, what: str) -> np.ndarray:
    if isinstance(value, Tensor):
        array = value.detach().to("cpu", torch.float32).numpy()
    else:
        try:
            array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{what} must be a tensor or an array; got {type(value).__name__}."
            ) from exc
    if array.ndim == 0 or array.shape[0] != num:
        raise ValueError(
            f"{what} must have one row per parameter set, shape ({num}, ...); "
            f"got {tuple(array.shape)}."
        )
    return array.reshape(num, 1) if array.ndim == 1 else array


def simulate_chunk(payload: bytes, index: int, start: int, stop: int, seed: int) -> ChunkResult:
    """Simulate rows ``start:stop`` (chunk ``index``) of a run seeded with ``seed``.

    Args:
        payload: A job serialised by :func:`dump_job`.
        index: The chunk index (sets the chunk's random state with ``seed``).
        start: First row of the chunk.
        stop: One past the last row.
        seed: The run's seed.

    Returns:
        The chunk's float32 arrays and its count of non-finite rows.

    Raises:
        ChunkError: If drawing ``theta`` or simulating fails; the message names the chunk.
    """
    job: Job = cloudpickle.loads(payload)
    num = stop - start
    try:
        with _PROCESS_LOCK, _seeded_single_thread(seed, index), torch.no_grad():
            theta = _draw_theta(job.prior, num)
            outputs = job.outputs(theta)
        names = job.keys[1:]
        what = "`simulator(theta)`" if isinstance(job, SimulatorJob) else "each view"
        arrays = {"theta": _as_rows(theta, num, "`prior.sample`")}
        for name, value in zip(names, outputs, strict=True):
            arrays[name] = _as_rows(value, num, what)
    except Exception as exc:
        raise ChunkError(
            f"Simulating chunk {index} (rows {start}:{stop}) failed with "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    bad = np.zeros(num, dtype=bool)
    for name in names:
        bad |= ~np.isfinite(arrays[name].reshape(num, -1)).all(axis=1)
    return ChunkResult(index=index, start=start, stop=stop, arrays=arrays, nonfinite=int(bad.sum()))
