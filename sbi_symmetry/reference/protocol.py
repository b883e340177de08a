"""What the references and the Cramer-Rao bound need to know about a problem.

The reference posteriors (quadrature, nested sampling), the shift marginal and the Fisher
information only read a few attributes of a signal-in-white-noise model: its time grid, its noise
level, its waveform and the bounds of its uniform priors. :class:`SignalModel` names exactly those,
so these modules depend on a small protocol and not on :mod:`sbi_symmetry.tasks` (which in turn
uses them for its convenience methods ``reference_posterior`` and ``cramer_rao_bound``).

Example:
    >>> from sbi_symmetry.tasks import DampedOscillator, Lorenz96
    >>> is_signal_model(DampedOscillator()), is_signal_model(Lorenz96())
    (True, False)
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class SignalModel(Protocol):
    """``x = waveform(theta; t - shift) + N(0, noise_std^2)`` on ``times``, uniform priors.

    :class:`~sbi_symmetry.tasks.SignalInNoiseTask` is the implementation in this package; any
    object with these members can be given a reference posterior and a Cramer-Rao bound.
    """

    name: str
    parameter_names: tuple[str, ...]
    theta_low: tuple[float, ...]
    theta_high: tuple[float, ...]
    nuisance_low: tuple[float, ...]
    nuisance_high: tuple[float, ...]
    noise_std: float
    t_start: float
    num_samples: int
    device: torch.device

    @property
    def times(self) -> Tensor:
        """Sample times ``(L,)``."""
        ...

    @property
    def dt(self) -> float:
        """Sample spacing."""
        ...

    @property
    def theta_dim(self) -> int:
        """Number of intrinsic parameters."""
        ...

    @property
    def nuisance_dim(self) -> int:
        """Number of nuisance parameters (1: the shift)."""
        ...

    def waveform(self, theta: Any, u: Any) -> Any:
        """Noise-free waveform at shifted times ``u = t - shift`` (torch or numpy)."""
        ...

    def signal(self, theta: Tensor, nuisance: Tensor) -> Tensor:
        """Noise-free signal ``(n, L)`` on the time grid."""
        ...

    def simulate(
        self, theta: Tensor, nuisance: Tensor | None = None, generator: Any = None
    ) -> Tensor:
        """``signal + noise``, ``(n, L)``."""
        ...

    def log_likelihood(self, theta: Tensor, nuisance: Tensor, x: Tensor) -> Tensor:
        """Gaussian ``log p(x | theta, shift)``, ``(n,)``."""
        ...

    def check_observation(self, x_o: Tensor, allow_batch: bool = False) -> Tensor:
        """Validated observation, ``(1, L)`` (or ``(n, L)``)."""
        ...

    def _check_theta(self, theta: Tensor, name: str = "theta") -> Tensor:
        """Validated parameters ``(n, theta_dim)``."""
        ...

    def _check_nuisance(self, nuisance: Tensor, num: int, name: str = "nuisance") -> Tensor:
        """Validated nuisance ``(num, 1)``."""
        ...


def is_signal_model(task: object) -> bool:
    """Whether ``task`` is a :class:`SignalModel` with a single (shift) nuisance.

    Args:
        task: Any object.

    Returns:
        ``True`` if the references and Cramer-Rao bounds of this package apply to it.
    """
    return isinstance(task, SignalModel) and task.nuisance_dim == 1
