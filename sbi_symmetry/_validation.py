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

import math
from collections.abc import Sequence
from typing import Any

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


OUTPUTS_FINITE = "network outputs must be finite (has training diverged?)"
"""``check_finite``'s ``why`` for embeddings and other network outputs."""


def check_finite(value: Tensor, name: str, why: str = "simulations must be finite") -> None:
    """Raise ``ValueError`` if ``value`` holds NaN or inf.

    Args:
        value: Tensor to check.
        name: Argument name used in the message.
        why: What the message says after the count.
    """
    bad = ~torch.isfinite(value)
    if bool(bad.any()):
        raise ValueError(f"`{name}` contains {int(bad.sum())} NaN/inf value(s); {why}.")


def check_in_support(theta: Tensor, prior: Any, why: str) -> None:
    """Raise ``ValueError`` if a row of ``theta`` lies outside ``prior``'s support.

    Args:
        theta: Parameters, ``(N, theta_dim)``.
        prior: A prior ``sbi.utils.within_support`` accepts.
        why: What needs the rows inside, for the message.

    Example:
        >>> from sbi.utils import BoxUniform
        >>> prior = BoxUniform(torch.zeros(1), torch.ones(1))
        >>> check_in_support(torch.tensor([[0.5], [2.0]]), prior, "it")
        Traceback (most recent call last):
        ...
        ValueError: `theta` rows [1] lie outside the prior's support (1 in all); it needs ...
    """
    from sbi.utils import within_support

    outside = (~within_support(prior, theta).reshape(-1)).nonzero().reshape(-1)
    if len(outside):
        raise ValueError(
            f"`theta` rows {outside[:5].tolist()} lie outside the prior's support "
            f"({len(outside)} in all); {why} needs every parameter inside it."
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


def is_int(value: object) -> bool:
    """Whether ``value`` is a Python integer (``bool`` is not one here).

    Example:
        >>> is_int(3), is_int(True), is_int(3.0)
        (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(value: object, name: str, minimum: int | None = None, why: str = "") -> int:
    """Raise ``ValueError`` unless ``value`` is an integer (not a bool) ``>= minimum``.

    Args:
        value: The object to check.
        name: Argument name used in the message.
        minimum: Smallest allowed value; ``None`` for any integer.
        why: Optional reason appended to the bound in the message.

    Returns:
        ``value`` unchanged.

    Example:
        >>> check_int(4, "batch_size", 3)
        4
        >>> check_int(2, "batch_size", 3, " (VICReg batch statistics)")
        Traceback (most recent call last):
        ...
        ValueError: `batch_size` must be an integer >= 3 (VICReg batch statistics); got 2.
    """
    if not is_int(value) or (minimum is not None and value < minimum):  # type: ignore[operator]
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"`{name}` must be an integer{bound}{why}; got {value!r}.")
    return value  # type: ignore[return-value]


def check_number(value: object, name: str, positive: bool = False) -> float:
    """Raise ``ValueError`` unless ``value`` is a finite real number ``>= 0`` (``> 0``).

    Args:
        value: The object to check.
        name: Argument name used in the message.
        positive: Require ``> 0`` instead of ``>= 0``.

    Returns:
        ``value`` unchanged.

    Example:
        >>> check_number(0.5, "gamma", positive=True)
        0.5
        >>> check_number(-1, "weight_decay")
        Traceback (most recent call last):
        ...
        ValueError: `weight_decay` must be a finite number >= 0; got -1.
    """
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):  # type: ignore[operator]
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"`{name}` must be a finite number {bound}; got {value!r}.")
    return value  # type: ignore[return-value]


def check_positive(value: float, name: str) -> float:
    """Raise ``ValueError`` unless ``value`` is a finite number > 0 (``check_number``).

    Args:
        value: Number to check.
        name: Argument name used in the message.

    Returns:
        ``value`` unchanged.
    """
    return check_number(value, name, positive=True)


def check_choice(value: object, name: str, choices: Sequence[object]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``.

    Args:
        value: The object to check.
        name: Argument name used in the message.
        choices: The allowed values.

    Example:
        >>> check_choice("max", "pooling", ("mean", "max"))
        >>> check_choice("sum", "pooling", ("mean", "max"))
        Traceback (most recent call last):
        ...
        ValueError: `pooling` must be one of ['mean', 'max']; got 'sum'.
    """
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}; got {value!r}.")


def _event_dim(prior: object) -> int | None:
    shape = getattr(prior, "event_shape", None)
    if shape is None or len(shape) != 1:
        return None
    return int(shape[0])


def check_simulations(theta: object, x: object, prior: object = None) -> tuple[Tensor, Tensor]:
    """Check a batch of simulations for ``append_simulations``; return it as float32.

    ``theta`` must be ``(N, theta_dim)`` and finite, ``x`` ``(N, ...)``, both floating-point
    tensors with ``N >= 1`` (float64 is cast to float32, the dtype sbi trains in), and
    ``theta_dim`` the prior's event size when the prior has one.

    Args:
        theta: The parameters.
        x: The simulations.
        prior: The trainer's prior, or ``None``.

    Returns:
        ``(theta, x)`` as float32 tensors.

    Example:
        >>> theta, x = check_simulations(torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, 5))
        >>> theta.dtype
        torch.float32
        >>> check_simulations(torch.zeros(0, 2), torch.zeros(0, 5))
        Traceback (most recent call last):
        ...
        ValueError: `theta` has no rows; append at least one simulation.
    """
    for value, name in ((theta, "theta"), (x, "x")):
        if not isinstance(value, Tensor):
            raise TypeError(
                f"`{name}` must be a torch.Tensor, got {type(value).__name__}; convert it with "
                f"torch.as_tensor({name}, dtype=torch.float32)."
            )
        if not value.dtype.is_floating_point:
            raise TypeError(f"`{name}` must be a floating-point tensor; got dtype {value.dtype}.")
    assert isinstance(theta, Tensor) and isinstance(x, Tensor)
    if theta.ndim != 2:
        raise ValueError(f"`theta` must have shape (N, theta_dim); got {tuple(theta.shape)}.")
    if theta.shape[0] == 0:
        raise ValueError("`theta` has no rows; append at least one simulation.")
    if x.ndim < 2 or x.shape[0] != theta.shape[0]:
        raise ValueError(
            f"`x` must have one row per row of `theta`, shape ({theta.shape[0]}, ...); got "
            f"{tuple(x.shape)}."
        )
    dim = _event_dim(prior)
    if dim is not None and theta.shape[1] != dim:
        raise ValueError(
            f"`theta` has {theta.shape[1]} parameter(s) per row but the prior has {dim}."
        )
    check_finite(theta, "theta")
    return theta.to(torch.float32), x.to(torch.float32)


def check_row_weight(weight: object, interval: str = "[0, 1]") -> float:
    """Raise ``ValueError`` unless ``weight`` is a number in ``interval``.

    Args:
        weight: The weight of a loss's ``x -> theta`` term.
        interval: ``"[0, 1]"``, ``"(0, 1]"`` or ``"(0, 1)"`` (open ends exclude 0 or 1).

    Returns:
        ``weight`` as a float.

    Example:
        >>> check_row_weight(1, "(0, 1]")
        1.0
    """
    ok = isinstance(weight, int | float) and not isinstance(weight, bool)
    if ok:
        above = weight > 0 if interval[0] == "(" else weight >= 0  # type: ignore[operator]
        below = weight < 1 if interval[-1] == ")" else weight <= 1  # type: ignore[operator]
        ok = above and below
    if not ok:
        raise ValueError(f"`row_weight` must be a number in {interval}; got {weight!r}.")
    return float(weight)  # type: ignore[arg-type]


def device_problem(device: str, label: str = "`device`") -> str | None:
    """Why ``device`` cannot be used on this machine, or ``None``.

    Args:
        device: A torch device name, e.g. ``"cpu"``, ``"cuda:1"``.
        label: How the message names the setting (``"--device"`` on the command line).

    Example:
        >>> device_problem("cpu") is None
        True
        >>> device_problem("gpu")
        "`device` 'gpu' is not a torch device (e.g. cpu, cuda, cuda:1, mps)."
    """
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError, TypeError):
        return f"{label} {device!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)."
    available = ["cpu"]
    if torch.cuda.is_available():
        available += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        available.append("mps")
    if kind != "cpu" and not any(name.startswith(kind) for name in available):
        names = ", ".join(available)
        return f"{label} {device}: not available on this machine (available: {names})."
    return None
