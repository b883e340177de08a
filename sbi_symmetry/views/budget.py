"""Splitting a simulation budget between the training set and the pretraining views.

Methods are compared at equal totals of simulator calls, as sbi-benchmark counts them (a view
pair is two calls; README, "Simulation budgets"). :func:`split_budget` gives
``round(view_fraction * total)`` calls, made even so they form whole pairs, to re-simulated views
and the rest to the stored training set.
``view_fraction = 0`` spends nothing on views: they are made from the stored training set itself
(:func:`~sbi_symmetry.views.noise_fill.shift_views`), so the whole budget trains.

Each part that is spent must be usable on its own: a data set is split into training and
validation rows (``validation_fraction``, 0.1 by default, in ``pretrain_vicreg`` as in ``sbi``),
and the validation share must hold a VICReg batch (``MIN_BATCH_SIZE`` = 3 rows). So the training
part needs at least :func:`min_rows` simulations (30 at 0.1) and a view part at least twice as
many calls (30 pairs). That is the floor :func:`split_budget` checks; pretraining also needs a
training share of at least its ``batch_size`` pairs (256 by default), which ``pretrain_vicreg``
checks before it trains.

Example:
    >>> split_budget(10_000, 0.25)
    BudgetSplit(training=7500, views=2500, total=10000)
    >>> split_budget(10_000, 0.0).views
    0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sbi_symmetry._validation import check_int
from sbi_symmetry.losses.vicreg import MIN_BATCH_SIZE


@dataclass(frozen=True)
class BudgetSplit:
    """How a total of simulator calls is spent.

    Attributes:
        training: Calls for the stored training set (one per ``(theta, x)`` pair).
        views: Calls for re-simulated pretraining views (two per pair; even); 0 when the views
            come from the stored training set.
        total: ``training + views``.

    With one fixed bank of views (``fresh_views="auto"``, the default for re-simulated views,
    or ``False``), ``pretrain_vicreg(encoder, task.views, task.prior,
    num_simulations=split.view_pairs)`` spends exactly ``views`` calls (validation and training
    banks, two calls per draw). Fresh views (``fresh_views=True``) cost two calls per training
    draw and epoch on top, plus one pass for the input scaling; size ``num_simulations`` and
    ``max_epochs`` against ``views`` accordingly.

    Example:
        >>> BudgetSplit(training=90, views=10, total=100).view_pairs
        5
    """

    training: int
    views: int
    total: int

    def __post_init__(self) -> None:
        if self.training + self.views != self.total or min(self.training, self.views) < 0:
            raise ValueError(
                f"a BudgetSplit needs training + views == total with both >= 0; got "
                f"training={self.training}, views={self.views}, total={self.total}."
            )

    @property
    def view_pairs(self) -> int:
        """Pairs of re-simulated views the view part pays for (two calls each)."""
        return self.views // 2


def min_rows(validation_fraction: float = 0.1) -> int:
    """Fewest simulations whose validation share holds a VICReg batch (``MIN_BATCH_SIZE`` rows).

    Args:
        validation_fraction: Share held out for validation, in ``(0, 1)``.

    Returns:
        ``ceil(MIN_BATCH_SIZE / validation_fraction)`` (30 at 0.1).

    Example:
        >>> min_rows(), min_rows(0.2)
        (30, 15)
    """
    if not (isinstance(validation_fraction, float) and 0 < validation_fraction < 1):
        raise ValueError(
            f"`validation_fraction` must be a float in (0, 1); got {validation_fraction!r}."
        )
    return math.ceil(MIN_BATCH_SIZE / validation_fraction - 1e-9)


def split_budget(total: int, view_fraction: float, validation_fraction: float = 0.1) -> BudgetSplit:
    """Split ``total`` simulator calls into a training set and re-simulated views.

    Args:
        total: All simulator calls the method may use.
        view_fraction: Share for views, in ``[0, 1)``; ``0`` makes the views from the stored
            training set (noise-filled shifts, no simulator call).
        validation_fraction: Validation share of each data set; sets the smallest usable part
            (:func:`min_rows`).

    Returns:
        A :class:`BudgetSplit`; ``views`` is ``view_fraction * total`` rounded to an even
        number (within 1 of it), ``training`` the rest.

    Raises:
        ValueError: ``total`` not a positive integer, ``view_fraction`` outside ``[0, 1)``, or
            a part too small to use (the message gives the minimum and why).

    Example:
        >>> split_budget(120, 0.5)
        BudgetSplit(training=60, views=60, total=120)
        >>> split_budget(100, 0.5)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: a budget of 100 simulator calls at view_fraction=0.5 leaves 50 for the ...
    """
    check_int(total, "total", 1, " (simulator calls)")
    ok = isinstance(view_fraction, int | float) and not isinstance(view_fraction, bool)
    if not ok or not 0 <= view_fraction < 1:  # NaN fails the comparison too
        raise ValueError(
            f"`view_fraction` must be a number in [0, 1) (the share of simulator calls spent on "
            f"views; 0: views from the stored training set); got {view_fraction!r}."
        )
    rows = min_rows(validation_fraction)
    views = 2 * round(total * view_fraction / 2)
    training = total - views
    view_min = 2 * rows if view_fraction > 0 else 0
    if training < rows or views < view_min:
        raise ValueError(_too_small(total, view_fraction, validation_fraction, training, views))
    return BudgetSplit(training=training, views=views, total=total)


def _too_small(
    total: int, view_fraction: float, validation_fraction: float, training: int, views: int
) -> str:
    """The message for a budget with a part below its minimum."""
    rows = min_rows(validation_fraction)
    text = (
        f"a budget of {total} simulator calls at view_fraction={view_fraction} leaves "
        f"{training} for the training set and {views} for views; the training set needs >= "
        f"{rows} simulations"
    )
    if view_fraction > 0:
        text += f" and the views >= {2 * rows} calls ({rows} pairs, two calls each)"
    text += (
        f", so that each validation share (validation_fraction={validation_fraction}) holds a "
        f"VICReg batch of {MIN_BATCH_SIZE} rows. Raise `total` to at least "
        f"{_smallest_total(view_fraction, rows)}"
    )
    if view_fraction > 0:
        return text + ", or set view_fraction=0 to make the views from the training set."
    return text + "."


def _fits(total: int, view_fraction: float, rows: int) -> bool:
    """Whether :func:`split_budget` accepts ``total`` (both parts at their minimum or above)."""
    views = 2 * round(total * view_fraction / 2)
    return total - views >= rows and views >= (2 * rows if view_fraction > 0 else 0)


def _smallest_total(view_fraction: float, rows: int) -> int | str:
    """The smallest total from which on every total is accepted at this fraction."""
    if view_fraction == 0:
        return rows
    # views >= total * f - 1 and training >= total * (1 - f) - 1: every total from here fits
    bound = max((rows + 1) / (1 - view_fraction), (2 * rows + 1) / view_fraction)
    if not bound < 10**7:  # a tiny (or nearly 1) fraction: the bound is close enough
        return f"{bound:.3g}"
    total = math.ceil(bound)
    while total > 1 and _fits(total - 1, view_fraction, rows):
        total -= 1
    return total
