"""Views by re-simulation: the same ``theta``, independent nuisance and noise.

This is exact: the two views differ by precisely the symmetry of the simulator. Every view is
checked (a tensor with one row per input row, finite, both of the same shape).

Example:
    >>> from sbi_symmetry.tasks import DampedOscillator
    >>> task = DampedOscillator()
    >>> x_a, x_b = ResimulatedViews(task.simulate, task.nuisance_prior)(task.sample_prior(4))
    >>> x_a.shape == x_b.shape == (4, 200)
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor
from torch.distributions import Distribution

from sbi_symmetry._validation import check_tensor
from sbi_symmetry.views.base import Augmentation, _check_callable, _describe, apply_checked


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
