"""Argument checks of :class:`~sbi_symmetry.emulate.EmbedEmulate`, each error naming its argument.

Example:
    >>> check_split(100, 0.1)  # 90 training and 10 validation pairs: fine
    >>> try:
    ...     check_split(10, 0.05)
    ... except ValueError as err:
    ...     print(str(err)[:53])
    10 simulations split into 9 training and 1 validation
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from torch.distributions import Distribution

from sbi_symmetry._validation import check_int, check_number

TEMPERATURE_BOUNDS = (1e-3, 1e3)
"""Default range of the ratio estimator's temperature (a learned one is clamped to it)."""


def check_temperature(
    temperature: object, bounds: tuple[float, float] = TEMPERATURE_BOUNDS
) -> float:
    """``temperature`` as a float inside ``bounds``, else an error naming it.

    Example:
        >>> check_temperature(0.15)
        0.15
    """
    value = check_number(temperature, "temperature", positive=True)
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"`temperature` must be within {bounds}; got {temperature!r}.")
    return value


def check_settings(
    prior: Distribution | None,
    views: Any,
    symmetry_weight: float,
    prior_negatives: int,
    local_negatives: int,
    local_scales: Any,
) -> tuple[float, float]:
    """Check the optional loss terms' settings; return ``local_scales`` as two floats.

    Args:
        prior: The trainer's prior (needed by prior and local negatives).
        views: ``Views`` of the VICReg term, or ``None``.
        symmetry_weight: Weight of the VICReg term.
        prior_negatives: Extra prior draws per batch.
        local_negatives: Neighbours per true parameter.
        local_scales: ``(low, high)`` of the neighbours' spread.

    Returns:
        ``(low, high)`` as floats.
    """
    check_number(symmetry_weight, "symmetry_weight")
    check_int(prior_negatives, "prior_negatives", 0)
    if prior_negatives > 0 and prior is None:
        raise ValueError("`prior_negatives` > 0 draws from the prior: pass `prior`.")
    check_int(local_negatives, "local_negatives", 0)
    if local_negatives > 0 and prior is None:
        raise ValueError("`local_negatives` > 0 needs the prior's density: pass `prior`.")
    scales = check_scales(local_scales)
    if symmetry_weight > 0 and views is None:
        raise ValueError("`symmetry_weight` > 0 needs `views` (e.g. ResimulatedViews).")
    if views is not None:
        kind = getattr(views, "input_kind", None)
        if kind not in ("theta", "x") or not callable(views):
            raise TypeError(
                "`views` must be callable with `input_kind` 'theta' or 'x' (the Views "
                f"protocol of sbi_symmetry.views); got {views!r}."
            )
        if symmetry_weight == 0:
            warnings.warn(
                "`views` is ignored while `symmetry_weight` is 0.", UserWarning, stacklevel=3
            )
    return scales


def check_scales(scales: Any) -> tuple[float, float]:
    """``local_scales`` as two floats with ``0 < low <= high``, or a clear error."""
    try:
        low, high = (float(v) for v in scales)
    except (TypeError, ValueError):
        message = f"`local_scales` must be two numbers (low, high); got {scales!r}."
        raise TypeError(message) from None
    if not (0 < low <= high < math.inf):
        raise ValueError(f"`local_scales` must satisfy 0 < low <= high < inf; got {scales!r}.")
    return low, high


def check_split(num: int, validation_fraction: float) -> None:
    """Refuse a split of ``num`` simulations that leaves fewer than 2 pairs on either side."""
    if not (isinstance(validation_fraction, float | int) and 0 < validation_fraction < 1):
        raise ValueError(
            f"`validation_fraction` must be a number in (0, 1); got {validation_fraction!r}."
        )
    if num == 0:
        raise ValueError("No simulations to train on: call append_simulations(theta, x).")
    num_train = int((1 - validation_fraction) * num)  # sbi's split
    if min(num_train, num - num_train) < 2:
        raise ValueError(
            f"{num} simulations split into {num_train} training and {num - num_train} "
            f"validation pairs (validation_fraction={validation_fraction}); symmetric "
            "InfoNCE needs at least 2 of each. Append more simulations or change "
            "`validation_fraction`."
        )
