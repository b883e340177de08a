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
    >>> from sbi_symmetry.views import AugmentedViews, CircularShift, Compose, ResimulatedViews
    >>> from sbi_symmetry.views import TimeShift
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

from torch import Tensor, nn

from sbi_symmetry._validation import check_tensor

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
