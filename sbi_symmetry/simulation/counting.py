"""Count every simulated data set, as sbi-benchmark counts a budget.

One call is one simulated ``(theta, nuisance)`` data set: a batch of ``n`` parameter rows counts
``n``, and a pair of views counts two. :func:`count_simulator_calls` makes a task count the rows
that go through its ``simulate`` (whoever calls it: ``sample_joint``, ``task(theta)``, the
re-simulated views of ``task.views``), so pretraining views, training sets and calibration sets
are all seen; :func:`simulator_calls` reads the count, :class:`CallWindow` the calls of one
block (a method's training), and :func:`call_budget` makes a method's entry of them. Calls made
on copies of the task are not: ``simulate_dataset`` and ``simulate_views`` send a pickled copy
to every chunk (with the serial engine too); their stores record their own calls instead (rows,
and ``fingerprint_calls``).

Example:
    >>> import torch
    >>> from sbi_symmetry.tasks import DampedOscillator
    >>> task = count_simulator_calls(DampedOscillator())
    >>> _ = task.sample_joint(10)
    >>> x_a, x_b = task.views(task.sample_prior(4))  # two views of 4 parameter sets
    >>> simulator_calls(task)
    18
"""

from __future__ import annotations

from typing import Any, TypeVar

from torch import Tensor

__all__ = [
    "CallWindow",
    "add_calls",
    "call_budget",
    "count_simulator_calls",
    "simulator_calls",
]

T = TypeVar("T")


class _CountedSimulate:
    """``task.simulate`` that adds the number of rows of each call to ``calls``."""

    def __init__(self, simulate: Any) -> None:
        self.simulate = simulate
        self.calls = 0

    def __call__(self, theta: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        out = self.simulate(theta, *args, **kwargs)
        self.calls += int(theta.shape[0]) if getattr(theta, "ndim", 0) > 1 else 1
        return out


def count_simulator_calls(task: T) -> T:
    """Make ``task`` count the data sets its ``simulate`` produces (idempotent).

    Args:
        task: Any object with a ``simulate(theta, ...)`` method (every task of this package).

    Returns:
        The same task, counting from now on.

    Raises:
        TypeError: If ``task`` has no callable ``simulate``.
    """
    simulate = getattr(task, "simulate", None)
    if not callable(simulate):
        raise TypeError(f"`task` must have a callable `simulate`; got {type(task).__name__}.")
    if not isinstance(simulate, _CountedSimulate):
        task.simulate = _CountedSimulate(simulate)  # type: ignore[attr-defined]
    return task


def simulator_calls(task: Any) -> int:
    """Data sets simulated through ``task.simulate`` since :func:`count_simulator_calls`.

    Args:
        task: A task.

    Returns:
        The count (0 for a task that is not counting).
    """
    simulate = getattr(task, "simulate", None)
    return simulate.calls if isinstance(simulate, _CountedSimulate) else 0


def add_calls(task: Any, calls: int) -> None:
    """Count ``calls`` data sets simulated earlier for ``task`` (e.g. before a run was resumed).

    Args:
        task: A task (it counts from now on, if it did not yet).
        calls: Data sets simulated elsewhere whose results this run uses.

    Example:
        >>> from sbi_symmetry.tasks import DampedOscillator
        >>> task = DampedOscillator()
        >>> add_calls(task, 7)
        >>> simulator_calls(task)
        7
    """
    count_simulator_calls(task).simulate.calls += int(calls)  # type: ignore[attr-defined]


def call_budget(training_set: int, views: int) -> dict[str, int]:
    """A method's ``simulator_calls`` entry: its training set, the views it simulated, the total.

    Args:
        training_set: Simulations in the training set (what sbi counts).
        views: Data sets simulated besides (pretraining views, a regulariser's views).

    Returns:
        ``{"training_set": ..., "views": ..., "total": ...}``.

    Example:
        >>> call_budget(10_000, 2_000)["total"]
        12000
    """
    return {
        "training_set": int(training_set),
        "views": int(views),
        "total": int(training_set + views),
    }


class CallWindow:
    """The simulator calls ``task`` makes inside a ``with`` block (the task counts from then on).

    Args:
        task: Any task with a ``simulate`` method.

    Example:
        >>> from sbi_symmetry.tasks import DampedOscillator
        >>> task = DampedOscillator()
        >>> with CallWindow(task) as window:
        ...     _ = task.sample_joint(5)
        >>> window.calls
        5
    """

    def __init__(self, task: Any) -> None:
        self.task = count_simulator_calls(task)
        self.calls = 0
        self._start = 0

    def __enter__(self) -> CallWindow:
        self._start = simulator_calls(self.task)
        return self

    def __exit__(self, *exc: object) -> None:
        self.calls = simulator_calls(self.task) - self._start
