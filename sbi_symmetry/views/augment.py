"""Data-space augmentations of stored simulations, and views made from them.

:class:`TimeShift` (integer shift, zeros shifted in), :class:`CircularShift` (cyclic roll) and
:class:`Compose` act on ``(B, L)`` or ``(B, C, L)`` along the last axis, the same shift for all
channels of a row, vectorised over rows, on the input's device, with torch's global RNG.
:class:`AugmentedViews` (``input_kind = "x"``) applies one of them twice, independently, to make
the two views VICReg compares.

Example:
    >>> import torch
    >>> shifted = AugmentedViews(Compose(TimeShift(3), CircularShift(2)))
    >>> [v.shape for v in shifted(torch.randn(5, 2, 30))]
    [torch.Size([5, 2, 30]), torch.Size([5, 2, 30])]
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from sbi_symmetry._validation import check_finite, check_int
from sbi_symmetry.views.base import (
    Augmentation,
    _check_callable,
    _check_series,
    _describe,
    apply_checked,
)


def _check_shift_bound(max_shift: object, name: str, allow_none: bool) -> None:
    if allow_none and max_shift is None:
        return
    check_int(max_shift, name, 0, " or None" if allow_none else "")


def _shifted_index(x: Tensor, shifts: Tensor) -> Tensor:
    """Source index ``t - s_b`` for every row ``b`` and time ``t``, shape ``(B, L)``."""
    length = x.shape[-1]
    if shifts.shape != (x.shape[0],):
        raise ValueError(
            f"`shifts` must have shape ({x.shape[0]},), one integer per row; got "
            f"{tuple(shifts.shape)}."
        )
    if shifts.dtype.is_floating_point or shifts.dtype == torch.bool:
        raise TypeError(f"`shifts` must be an integer tensor; got dtype {shifts.dtype}.")
    times = torch.arange(length, device=x.device)
    return times.unsqueeze(0) - shifts.to(device=x.device, dtype=torch.long).unsqueeze(1)


def _gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """``out[b, ..., t] = x[b, ..., index[b, t]]`` (the same index for all channels of a row)."""
    view_shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    return torch.gather(x, -1, index.reshape(view_shape).expand(x.shape))


def time_shift(x: Tensor, shifts: Tensor) -> Tensor:
    """Shift each row of ``x`` by an integer along the last axis, filling with zeros.

    ``out[b, ..., t] = x[b, ..., t - shifts[b]]`` where ``0 <= t - shifts[b] < L``, else 0: a
    positive shift moves the signal later in time.

    Args:
        x: Batch of shape ``(B, L)`` or ``(B, C, L)``.
        shifts: Integer tensor of shape ``(B,)``.

    Returns:
        Tensor of ``x``'s shape, dtype and device.

    Example:
        >>> import torch
        >>> time_shift(torch.tensor([[1.0, 2, 3, 4], [1, 2, 3, 4]]), torch.tensor([1, -2]))
        tensor([[0., 1., 2., 3.],
                [3., 4., 0., 0.]])
    """
    x = _check_series(x, "time_shift")
    index = _shifted_index(x, shifts)
    valid = (index >= 0) & (index < x.shape[-1])
    out = _gather_rows(x, index.clamp(0, x.shape[-1] - 1))
    mask_shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    return torch.where(valid.reshape(mask_shape), out, zero)


def circular_shift(x: Tensor, shifts: Tensor) -> Tensor:
    """Roll each row of ``x`` cyclically by an integer along the last axis.

    ``out[b, ..., t] = x[b, ..., (t - shifts[b]) mod L]``, i.e. ``torch.roll`` per row.

    Args:
        x: Batch of shape ``(B, L)`` or ``(B, C, L)``.
        shifts: Integer tensor of shape ``(B,)`` (any integers; taken modulo ``L``).

    Returns:
        Tensor of ``x``'s shape, dtype and device.

    Example:
        >>> import torch
        >>> circular_shift(torch.tensor([[1, 2, 3, 4]]), torch.tensor([-1]))
        tensor([[2, 3, 4, 1]])
    """
    x = _check_series(x, "circular_shift")
    index = torch.remainder(_shifted_index(x, shifts), x.shape[-1])
    return _gather_rows(x, index)


# ------------------------------------------------------------------------------------ transforms
class TimeShift(nn.Module):
    """Shift each row by a uniform random integer in ``[-max_shift, max_shift]``, zeros shifted in.

    ``max_shift`` is in samples; for a shift of ``T`` time units on a grid of spacing ``dt`` use
    ``round(T / dt)`` (e.g. ``round(4 / task.dt)`` for the oscillator's 4 time units).

    Args:
        max_shift: Largest shift in samples (``0`` leaves the data unchanged); must be smaller
            than the length of the data it is applied to.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> out = TimeShift(2)(torch.ones(3, 8))
        >>> out.shape, bool((out.sum(-1) >= 6).all())
        (torch.Size([3, 8]), True)
    """

    def __init__(self, max_shift: int) -> None:
        super().__init__()
        _check_shift_bound(max_shift, "max_shift", allow_none=False)
        self.max_shift = max_shift

    def forward(self, x: Tensor) -> Tensor:
        """Shift every row of ``x`` (``(B, L)`` or ``(B, C, L)``) by its own random amount."""
        x = _check_series(x, "TimeShift")
        if self.max_shift >= x.shape[-1]:
            raise ValueError(
                f"TimeShift(max_shift={self.max_shift}) would shift data of length "
                f"{x.shape[-1]} out of the window; `max_shift` is in samples and must be < L."
            )
        shifts = torch.randint(-self.max_shift, self.max_shift + 1, (x.shape[0],), device=x.device)
        out = time_shift(x, shifts)
        _check_kept_shape(self, x, out)
        return out

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return f"max_shift={self.max_shift}"


class CircularShift(nn.Module):
    """Roll each row cyclically by a uniform random integer along the last axis.

    Args:
        max_shift: Largest roll in samples, drawn from ``[-max_shift, max_shift]``; ``None``
            draws any roll ``0 .. L - 1`` (the full cyclic group).

    Example:
        >>> import torch
        >>> x = torch.arange(12.0).reshape(2, 6)
        >>> out = CircularShift()(x)
        >>> torch.equal(out.sort(-1).values, x)
        True
    """

    def __init__(self, max_shift: int | None = None) -> None:
        super().__init__()
        _check_shift_bound(max_shift, "max_shift", allow_none=True)
        self.max_shift = max_shift

    def forward(self, x: Tensor) -> Tensor:
        """Roll every row of ``x`` (``(B, L)`` or ``(B, C, L)``) by its own random amount."""
        x = _check_series(x, "CircularShift")
        size = (x.shape[0],)
        if self.max_shift is None:
            shifts = torch.randint(0, x.shape[-1], size, device=x.device)
        else:
            shifts = torch.randint(-self.max_shift, self.max_shift + 1, size, device=x.device)
        out = circular_shift(x, shifts)
        _check_kept_shape(self, x, out)
        return out

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return f"max_shift={self.max_shift}"


def _check_kept_shape(augmentation: object, x: Tensor, out: Tensor) -> None:
    if out.shape != x.shape:  # pragma: no cover - guards future edits of the transforms
        raise ValueError(
            f"augmentation {_describe(augmentation)} changed the shape from {tuple(x.shape)} "
            f"to {tuple(out.shape)}."
        )


class Compose(nn.Module):
    """Apply augmentations one after the other, checking after each that the shape is kept.

    Args:
        *augmentations: Callables ``Tensor -> Tensor`` (modules or functions), applied in order.

    Example:
        >>> import torch
        >>> double_then_add = Compose(lambda x: 2 * x, lambda x: x + 1)
        >>> double_then_add(torch.ones(1, 3))
        tensor([[3., 3., 3.]])
    """

    def __init__(self, *augmentations: Augmentation) -> None:
        super().__init__()
        for i, augmentation in enumerate(augmentations):
            _check_callable(augmentation, f"augmentations[{i}]")
        self.augmentations: tuple[Augmentation, ...] = tuple(augmentations)
        # Register the module members so that .to(), repr and state_dict see them.
        self._modules_list = nn.ModuleList(a for a in augmentations if isinstance(a, nn.Module))

    def forward(self, x: Tensor) -> Tensor:
        """Apply every augmentation in order."""
        count = len(self.augmentations)
        for i, augmentation in enumerate(self.augmentations):
            x = apply_checked(augmentation, x, f"step {i + 1} of {count} in Compose")
        return x

    def __repr__(self) -> str:
        inner = ", ".join(
            repr(a) if isinstance(a, nn.Module) else _describe(a) for a in self.augmentations
        )
        return f"Compose({inner})"


class AugmentedViews:
    """Two views of stored data by applying a random augmentation twice, independently.

    Args:
        augmentation: A random transformation ``Tensor -> Tensor`` that keeps the shape, e.g.
            ``TimeShift(40)`` or ``Compose(CircularShift(), ...)``.

    Attributes:
        input_kind: ``"x"``.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(1)
        >>> x_a, x_b = AugmentedViews(CircularShift())(torch.randn(4, 16))
        >>> x_a.shape, bool((x_a != x_b).any())
        (torch.Size([4, 16]), True)
    """

    input_kind: Literal["theta", "x"] = "x"

    def __init__(self, augmentation: Augmentation) -> None:
        _check_callable(augmentation, "augmentation")
        self.augmentation = augmentation

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return two independent augmentations of ``x`` (``(B, L)`` or ``(B, C, L)``).

        Args:
            x: Stored data, finite.

        Returns:
            ``(x_a, x_b)``, each of ``x``'s shape.
        """
        x = _check_series(x, "AugmentedViews")
        check_finite(x, "x")
        x_a = apply_checked(self.augmentation, x)
        x_b = apply_checked(self.augmentation, x)
        return x_a, x_b

    def __repr__(self) -> str:
        return f"AugmentedViews(augmentation={self.augmentation!r})"
