"""The sine-Gaussian pulse (SG) of the symmetry-embedding paper, centred at ``shift``.

With ``u = t - shift`` the noise-free signal is

    h(f0, tau; u) = exp(-u^2 / tau^2) * sin(2 pi f0 u),

sampled on ``linspace(-10, 10, 500)`` with white noise ``sigma = 0.4``. Priors:
``f0 ~ U(0.1, 1)``, ``tau ~ U(1, 4)``, nuisance ``shift ~ U(-2, 2)``. (The paper's nested-sampling
run used ``tau ~ U(0, 4)``; here every prior is the same everywhere.)

Example:
    >>> import torch
    >>> task = SineGaussian()
    >>> task.simulate(task.sample_prior(3)).shape
    torch.Size([3, 500])
"""

from __future__ import annotations

import math
from typing import ClassVar

from torch import Tensor

from sbi_symmetry.tasks.base import ArrayLike, array_namespace
from sbi_symmetry.tasks.signal_in_noise import SignalInNoiseTask


class SineGaussian(SignalInNoiseTask):
    """Sine-Gaussian pulse with an unknown time of arrival; infer ``(f0, tau)``."""

    name: ClassVar[str] = "sine-gaussian"
    parameter_names: ClassVar[tuple[str, ...]] = ("f0", "tau")
    parameter_labels: ClassVar[tuple[str, ...]] = (r"$f_0$", r"$\tau$")
    theta_low: ClassVar[tuple[float, ...]] = (0.1, 1.0)
    theta_high: ClassVar[tuple[float, ...]] = (1.0, 4.0)
    nuisance_low: ClassVar[tuple[float, ...]] = (-2.0,)
    nuisance_high: ClassVar[tuple[float, ...]] = (2.0,)
    t_start: ClassVar[float] = -10.0
    t_stop: ClassVar[float] = 10.0
    num_samples: ClassVar[int] = 500

    def waveform(self, theta: ArrayLike, u: ArrayLike) -> ArrayLike:
        """``exp(-u^2 / tau^2) sin(2 pi f0 u)``."""
        xp = array_namespace(theta)
        f0, tau = theta[..., 0:1], theta[..., 1:2]
        return xp.exp(-((u / tau) ** 2)) * xp.sin(2.0 * math.pi * f0 * u)

    def _check_domain(self, theta: Tensor, name: str) -> None:
        bad = theta[:, 1] <= 0
        if bool(bad.any()):
            raise ValueError(
                f"`{name}` must have tau > 0; {int(bad.sum())} row(s) violate this. The prior "
                f"is tau ~ U{self.theta_low[1], self.theta_high[1]}."
            )
