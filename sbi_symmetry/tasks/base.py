"""Base classes for simulators whose data carry a nuisance symmetry.

A task bundles a prior over the intrinsic parameters ``theta`` (the ones inferred), a prior over
the nuisance (a time of arrival, a phase, a cyclic position; marginalised, never inferred) and a
vectorised torch simulator ``simulate(theta, nuisance) -> x``.

:class:`NuisanceTask` is the general contract that views, pretraining and the command line use;
:class:`~sbi_symmetry.tasks.signal_in_noise.SignalInNoiseTask` adds the structure that makes
exact likelihoods, reference posteriors and Cramer-Rao bounds possible.

Example:
    >>> import torch
    >>> from sbi_symmetry.tasks import DampedOscillator
    >>> task = DampedOscillator()
    >>> g = torch.Generator().manual_seed(0)
    >>> theta = task.sample_prior(4, generator=g)
    >>> task.simulate(theta, generator=g).shape
    torch.Size([4, 200])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from sbi.utils import BoxUniform
from torch import Tensor

from sbi_symmetry._validation import check_finite, check_last_dim, check_tensor, is_int

if TYPE_CHECKING:
    from sbi_symmetry.views import ResimulatedViews

ArrayLike = Any  # a torch.Tensor or a numpy.ndarray


def array_namespace(value: ArrayLike) -> Any:
    """Return ``torch`` for tensors and ``numpy`` for anything else.

    Waveforms are written once against this namespace so that the same formula serves the
    vectorised torch simulator and the scalar numpy likelihood that nested sampling calls.

    Args:
        value: A tensor or array.

    Returns:
        The module ``torch`` or ``numpy``.
    """
    return torch if isinstance(value, Tensor) else np


class NuisanceTask(ABC):
    """A simulator with intrinsic parameters, a nuisance prior and a vectorised ``simulate``.

    Subclasses set the class attributes and implement :meth:`simulate`.

    Attributes:
        name: Short name used by the command line (e.g. ``"damped-oscillator"``).
        parameter_names: One name per intrinsic parameter.
        parameter_labels: Plot labels (matplotlib mathtext) per intrinsic parameter.
        nuisance_names: One name per nuisance parameter.
        theta_low, theta_high: Bounds of the uniform prior over ``theta``.
        nuisance_low, nuisance_high: Bounds of the uniform nuisance prior.
    """

    name: ClassVar[str]
    parameter_names: ClassVar[tuple[str, ...]]
    parameter_labels: ClassVar[tuple[str, ...]]
    nuisance_names: ClassVar[tuple[str, ...]]
    theta_low: ClassVar[tuple[float, ...]]
    theta_high: ClassVar[tuple[float, ...]]
    nuisance_low: ClassVar[tuple[float, ...]]
    nuisance_high: ClassVar[tuple[float, ...]]

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self._prior = BoxUniform(
            torch.tensor(self.theta_low), torch.tensor(self.theta_high), device=str(self.device)
        )
        self._nuisance_prior = BoxUniform(
            torch.tensor(self.nuisance_low),
            torch.tensor(self.nuisance_high),
            device=str(self.device),
        )

    # ----------------------------------------------------------------------------- priors
    @property
    def prior(self) -> BoxUniform:
        """The ``sbi`` prior over the intrinsic parameters (a ``BoxUniform``)."""
        return self._prior

    @property
    def nuisance_prior(self) -> BoxUniform:
        """The prior over the nuisance parameters (a ``BoxUniform``); marginalised, not inferred."""
        return self._nuisance_prior

    @property
    def theta_dim(self) -> int:
        """Number of intrinsic parameters."""
        return len(self.parameter_names)

    @property
    def nuisance_dim(self) -> int:
        """Number of nuisance parameters."""
        return len(self.nuisance_names)

    @property
    @abstractmethod
    def x_shape(self) -> tuple[int, ...]:
        """Shape of one simulation (without the batch dimension)."""

    def sample_prior(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``num`` intrinsic parameter sets, reproducibly when a generator is given.

        Args:
            num: Number of draws.
            generator: Optional torch generator (on the task's device).

        Returns:
            Tensor of shape ``(num, theta_dim)``.
        """
        return self._sample_box(self.theta_low, self.theta_high, num, generator)

    def sample_nuisance(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``num`` nuisance values from the nuisance prior.

        Args:
            num: Number of draws.
            generator: Optional torch generator (on the task's device).

        Returns:
            Tensor of shape ``(num, nuisance_dim)``.
        """
        return self._sample_box(self.nuisance_low, self.nuisance_high, num, generator)

    def _sample_box(
        self,
        low: tuple[float, ...],
        high: tuple[float, ...],
        num: int,
        generator: torch.Generator | None,
    ) -> Tensor:
        if not is_int(num) or num < 1:  # message asserted by the tests
            raise ValueError(f"`num` must be a positive integer; got {num!r}.")
        lo = torch.tensor(low, device=self.device)
        hi = torch.tensor(high, device=self.device)
        u = torch.rand(num, len(low), generator=generator, device=self.device)
        return lo + (hi - lo) * u

    @property
    def views(self) -> ResimulatedViews:
        """Pairs of views for VICReg: same ``theta``, independent nuisance and noise.

        Example:
            >>> import torch
            >>> from sbi_symmetry.tasks import DampedOscillator
            >>> task = DampedOscillator()
            >>> x_a, x_b = task.views(task.sample_prior(8))
            >>> x_a.shape == x_b.shape == (8, 200)
            True
        """
        from sbi_symmetry.views import ResimulatedViews

        return ResimulatedViews(self.simulate, self.nuisance_prior)

    # ----------------------------------------------------------------------------- simulate
    @abstractmethod
    def simulate(
        self,
        theta: Tensor,
        nuisance: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Simulate noisy data.

        Args:
            theta: Intrinsic parameters, shape ``(n, theta_dim)``.
            nuisance: Nuisance values, shape ``(n, nuisance_dim)``; drawn from the nuisance
                prior when ``None``.
            generator: Optional torch generator for the nuisance and the noise.

        Returns:
            Float32 tensor of shape ``(n, *x_shape)``.
        """

    def __call__(self, theta: Tensor) -> Tensor:
        """Simulate with a fresh nuisance, so a task can be passed to sbi as a simulator."""
        return self.simulate(theta)

    def sample_joint(
        self, num: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw ``(theta, x)`` pairs from the prior and the simulator.

        Args:
            num: Number of pairs.
            generator: Optional torch generator.

        Returns:
            ``theta`` of shape ``(num, theta_dim)`` and ``x`` of shape ``(num, *x_shape)``.
        """
        theta = self.sample_prior(num, generator=generator)
        return theta, self.simulate(theta, generator=generator)

    # ----------------------------------------------------------------------------- checks
    def _check_theta(self, theta: Tensor, name: str = "theta") -> Tensor:
        check_tensor(theta, name)
        names = ", ".join(self.parameter_names)
        check_last_dim(theta, self.theta_dim, name, f"parameter ({names})")
        if theta.shape[0] == 0:
            raise ValueError(
                f"`{name}` has no rows; give at least one parameter set, shape "
                f"(n, {self.theta_dim}) with n >= 1."
            )
        check_finite(theta, name)
        if theta.device != self.device:
            raise ValueError(
                f"`{name}` is on {theta.device} but the task is on {self.device}; move one of "
                "them explicitly (tasks never move tensors between devices)."
            )
        self._check_domain(theta, name)
        return theta

    def _check_domain(self, theta: Tensor, name: str) -> None:  # noqa: B027 (optional hook)
        """Raise if ``theta`` lies where the simulator is undefined (subclasses override)."""

    def _check_nuisance(self, nuisance: Tensor, num: int, name: str = "nuisance") -> Tensor:
        check_tensor(nuisance, name)
        names = ", ".join(self.nuisance_names)
        check_last_dim(nuisance, self.nuisance_dim, name, f"nuisance ({names})")
        if nuisance.shape[0] != num:
            raise ValueError(
                f"`{name}` has {nuisance.shape[0]} rows but `theta` has {num}; give one "
                "nuisance per parameter set."
            )
        check_finite(nuisance, name)
        if nuisance.device != self.device:
            raise ValueError(f"`{name}` is on {nuisance.device} but the task is on {self.device}.")
        return nuisance

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={str(self.device)!r})"
