"""Views for self-supervised pretraining: pairs of data that share ``theta`` but not the nuisance.

A *views* object turns a batch into two batches of the same shape whose rows ``i`` agree on what
should be kept (the intrinsic parameters) and differ in what should be forgotten (nuisance and
noise). VICReg then pulls the summaries of the two rows together. Two kinds:

* :class:`ResimulatedViews` (``input_kind = "theta"``): given parameters, simulate each view with
  its own nuisance draw and its own noise. This is exact: the views differ by precisely the
  symmetry of the simulator.
* :class:`AugmentedViews` (``input_kind = "x"``): given stored data only, apply a random
  data-space transformation twice. Transformations provided: :class:`TimeShift` (integer shift,
  zeros shifted in), :class:`CircularShift` (cyclic roll) and :class:`Compose`.

Every transformation acts on ``(B, L)`` or ``(B, C, L)`` along the last axis, the same shift for
all channels of a row, vectorised over rows (index arithmetic and ``gather``), on the input's
device, with torch's global RNG (seed with ``torch.manual_seed``). Each one, and every place that
applies a user's callable, checks that the shape is kept and names the culprit otherwise.

Example:
    >>> import torch
    >>> from sbi_symmetry.tasks import DampedOscillator
    >>> task = DampedOscillator()
    >>> views = ResimulatedViews(task.simulate, task.nuisance_prior)
    >>> x_a, x_b = views(task.sample_prior(4))
    >>> x_a.shape == x_b.shape == (4, 200)
    True
    >>> shifted = AugmentedViews(Compose(TimeShift(3), CircularShift(2)))
    >>> [v.shape for v in shifted(torch.randn(5, 2, 30))]
    [torch.Size([5, 2, 30]), torch.Size([5, 2, 30])]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from sbi_symmetry._validation import check_finite, check_tensor

Augmentation = Callable[[Tensor], Tensor]


@runtime_checkable
class Views(Protocol):
    """Anything that makes two views of a batch; ``input_kind`` says what the batch is."""

    input_kind: Literal["theta", "x"]

    def __call__(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        """Return two views of the same shape, row ``i`` of each made from ``batch[i]``."""
        ...


# ------------------------------------------------------------------------------------ helpers
def _describe(augmentation: object) -> str:
    """A readable name for an augmentation in error messages."""
    if isinstance(augmentation, nn.Module):
        return repr(augmentation).replace("\n", " ")
    name = getattr(augmentation, "__qualname__", None)
    return f"function {name}" if isinstance(name, str) else repr(augmentation)


def _check_callable(augmentation: object, name: str) -> None:
    if not callable(augmentation):
        raise TypeError(f"`{name}` must be callable (Tensor -> Tensor); got {augmentation!r}.")


def apply_checked(augmentation: Augmentation, x: Tensor, where: str = "") -> Tensor:
    """Apply ``augmentation`` to ``x`` and check it returned a tensor of the same shape.

    Args:
        augmentation: A callable ``Tensor -> Tensor``.
        x: The input batch.
        where: Optional position of the augmentation for the message (e.g. ``"step 2 of
            Compose"``).

    Returns:
        ``augmentation(x)``.

    Raises:
        ValueError: If the output is not a tensor of ``x``'s shape; the message names the
            augmentation.

    Example:
        >>> import torch
        >>> apply_checked(lambda x: x[:, :-1], torch.zeros(2, 5))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: augmentation function <lambda> changed the shape from (2, 5) to (2, 4); ...
    """
    out = augmentation(x)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        place = f" ({where})" if where else ""
        raise ValueError(
            f"augmentation {_describe(augmentation)}{place} changed the shape from "
            f"{tuple(x.shape)} to {got}; views must keep the shape of the data (pad, do not crop)."
        )
    return out


def _check_series(x: object, who: str) -> Tensor:
    x = check_tensor(x, "x")
    if x.ndim < 2:
        raise ValueError(
            f"{who} expects a batch `x` of shape (B, L) or (B, C, L); got {tuple(x.shape)}. "
            "Add the batch dimension, e.g. x[None]."
        )
    return x


def _check_shift_bound(max_shift: object, name: str, allow_none: bool) -> None:
    if allow_none and max_shift is None:
        return
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        extra = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be an integer >= 0{extra}; got {max_shift!r}.")


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


# ------------------------------------------------------------------------------------ views
def _check_view(view: object, which: str, num: int, source: str) -> Tensor:
    if not isinstance(view, Tensor):
        raise TypeError(f"{source} returned {type(view).__name__} for {which}; expected a Tensor.")
    if view.ndim < 2 or view.shape[0] != num:
        raise ValueError(
            f"{source} returned {which} of shape {tuple(view.shape)}; expected ({num}, ...), one "
            "row per input row, with at least a data dimension."
        )
    bad = ~torch.isfinite(view)
    if bool(bad.any()):
        rows = torch.nonzero(bad.reshape(num, -1).any(-1)).flatten()[:5].tolist()
        raise ValueError(
            f"{source} returned {which} with {int(bad.sum())} NaN/inf value(s) (rows {rows}...); "
            "views must be finite."
        )
    return view


class ResimulatedViews:
    """Two views of each ``theta`` by simulating twice, with independent nuisance and noise.

    For a batch ``theta`` of ``n`` rows, each view is
    ``augmentation(simulate(theta, nuisance_prior.sample((n,))))``: the two calls draw their own
    nuisance and (inside ``simulate``) their own noise. Both outputs are checked: a tensor with
    ``n`` rows, finite, and the two views of the same shape.

    Args:
        simulate: ``simulate(theta, nuisance) -> x`` with ``x`` of shape ``(n, L)`` or
            ``(n, C, L)``, e.g. a task's ``simulate``. It must draw fresh noise on every call.
        nuisance_prior: A torch distribution whose ``sample((n,))`` is ``(n, k)``, e.g. a task's
            ``nuisance_prior`` (a ``BoxUniform``).
        augmentation: Optional data-space transformation applied to each view afterwards.

    Attributes:
        input_kind: ``"theta"``.

    Example:
        >>> import torch
        >>> from sbi_symmetry.tasks import SineGaussian
        >>> task = SineGaussian()
        >>> x_a, x_b = ResimulatedViews(task.simulate, task.nuisance_prior)(task.sample_prior(3))
        >>> x_a.shape, bool((x_a != x_b).any())
        (torch.Size([3, 500]), True)
    """

    input_kind: Literal["theta", "x"] = "theta"

    def __init__(
        self,
        simulate: Callable[[Tensor, Tensor], Tensor],
        nuisance_prior: Distribution,
        augmentation: Augmentation | None = None,
    ) -> None:
        _check_callable(simulate, "simulate")
        if not callable(getattr(nuisance_prior, "sample", None)):
            raise TypeError(
                "`nuisance_prior` must be a torch Distribution with .sample((n,)); got "
                f"{type(nuisance_prior).__name__}."
            )
        if augmentation is not None:
            _check_callable(augmentation, "augmentation")
        self.simulate = simulate
        self.nuisance_prior = nuisance_prior
        self.augmentation = augmentation

    def _nuisance(self, num: int) -> Tensor:
        nuisance = self.nuisance_prior.sample((num,))
        if not isinstance(nuisance, Tensor) or nuisance.ndim != 2 or nuisance.shape[0] != num:
            shape = tuple(nuisance.shape) if isinstance(nuisance, Tensor) else type(nuisance)
            raise ValueError(
                f"`nuisance_prior.sample(({num},))` must return shape ({num}, k), one row of k "
                f"nuisance values per theta; got {shape}. For a single nuisance use e.g. "
                "sbi.utils.BoxUniform(low=torch.tensor([a]), high=torch.tensor([b]))."
            )
        return nuisance

    def _view(self, theta: Tensor, which: str) -> Tensor:
        num = theta.shape[0]
        x = _check_view(self.simulate(theta, self._nuisance(num)), which, num, "`simulate`")
        if self.augmentation is not None:
            x = apply_checked(self.augmentation, x)
        return x

    def __call__(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """Simulate two views of every row of ``theta`` (shape ``(n, theta_dim)``).

        Args:
            theta: Parameters, shape ``(n, theta_dim)``.

        Returns:
            ``(x_a, x_b)``, each of shape ``(n, ...)`` and the same shape.
        """
        check_tensor(theta, "theta")
        if theta.ndim != 2 or theta.shape[0] < 1:
            raise ValueError(
                f"`theta` must have shape (n, theta_dim) with n >= 1; got {tuple(theta.shape)}."
            )
        x_a = self._view(theta, "view a (the first view)")
        x_b = self._view(theta, "view b (the second view)")
        if x_a.shape != x_b.shape:
            raise ValueError(
                f"the two views have different shapes, {tuple(x_a.shape)} and "
                f"{tuple(x_b.shape)}; `simulate` must return the same shape on every call."
            )
        return x_a, x_b

    def __repr__(self) -> str:
        return (
            f"ResimulatedViews(simulate={_describe(self.simulate)}, "
            f"nuisance_prior={self.nuisance_prior!r}, augmentation={self.augmentation!r})"
        )


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
