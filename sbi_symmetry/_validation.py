"""Input checks shared by every module: each error names the argument and what was expected.

Example:
    >>> import torch
    >>> check_finite(torch.ones(2, 3), "x")
    >>> check_finite(torch.tensor([1.0, float("nan")]), "x")
    Traceback (most recent call last):
    ...
    ValueError: `x` contains 1 NaN/inf value(s); simulations must be finite.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def check_tensor(value: object, name: str) -> Tensor:
    """Raise ``TypeError`` unless ``value`` is a ``torch.Tensor``; return it.

    Args:
        value: The object to check.
        name: Argument name used in the message.

    Returns:
        ``value`` unchanged.
    """
    if not isinstance(value, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}.")
    return value


def check_finite(value: Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``value`` holds NaN or inf.

    Args:
        value: Tensor to check.
        name: Argument name used in the message.
    """
    bad = ~torch.isfinite(value)
    if bool(bad.any()):
        raise ValueError(
            f"`{name}` contains {int(bad.sum())} NaN/inf value(s); simulations must be finite."
        )


def check_last_dim(value: Tensor, size: int, name: str, what: str) -> None:
    """Raise ``ValueError`` unless ``value`` is ``(n, size)``.

    Args:
        value: Tensor to check.
        size: Expected width of the last dimension.
        name: Argument name used in the message.
        what: What the columns are, e.g. ``"parameters (w0, beta)"``.
    """
    if value.ndim != 2 or value.shape[-1] != size:
        raise ValueError(
            f"`{name}` must have shape (n, {size}) with one column per {what}; "
            f"got shape {tuple(value.shape)}."
        )


def check_shape(value: Tensor, shape: Sequence[int | None], name: str) -> None:
    """Raise ``ValueError`` unless ``value.shape`` matches ``shape`` (``None`` matches any size).

    Args:
        value: Tensor to check.
        shape: Expected shape; ``None`` entries are wildcards.
        name: Argument name used in the message.
    """
    ok = value.ndim == len(shape) and all(
        want is None or want == got for want, got in zip(shape, value.shape, strict=False)
    )
    if not ok:
        pretty = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"`{name}` must have shape {pretty}; got {tuple(value.shape)}.")


def check_positive(value: float, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number > 0.

    Args:
        value: Number to check.
        name: Argument name used in the message.
    """
    if not (isinstance(value, int | float) and value > 0 and value != float("inf")):
        raise ValueError(f"`{name}` must be a finite number > 0; got {value!r}.")
