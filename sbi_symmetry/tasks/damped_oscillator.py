"""The damped harmonic oscillator (SHO) of the symmetry-embedding paper, switched on at ``shift``.

With ``u = t - shift`` the noise-free signal is

    h(w0, beta; u) = exp(-beta * w0 * u) * cos(sqrt(1 - beta^2) * w0 * u)   for u >= 0,
                   = 0                                                       for u < 0,

sampled on ``linspace(-1, 10, 200)`` with white noise ``sigma = 0.4``. Priors:
``w0 ~ U(0.1, 2)``, ``beta ~ U(0, 0.5)``, nuisance ``shift ~ U(-4, 4)``.

Example:
    >>> import torch
    >>> task = DampedOscillator()
    >>> x = task.signal(torch.tensor([[1.5, 0.2]]), torch.tensor([[2.0]]))
    >>> bool((x[0, task.times < 2.0] == 0).all())
    True
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from sbi_symmetry.tasks.base import ArrayLike, array_namespace
from sbi_symmetry.tasks.signal_in_noise import SignalInNoiseTask


class DampedOscillator(SignalInNoiseTask):
    """Damped oscillator switched on at an unknown time; infer ``(w0, beta)``."""

    name: ClassVar[str] = "damped-oscillator"
    parameter_names: ClassVar[tuple[str, ...]] = ("w0", "beta")
    parameter_labels: ClassVar[tuple[str, ...]] = (r"$\omega_0$", r"$\beta$")
    theta_low: ClassVar[tuple[float, ...]] = (0.1, 0.0)
    theta_high: ClassVar[tuple[float, ...]] = (2.0, 0.5)
    nuisance_low: ClassVar[tuple[float, ...]] = (-4.0,)
    nuisance_high: ClassVar[tuple[float, ...]] = (4.0,)
    t_start: ClassVar[float] = -1.0
    t_stop: ClassVar[float] = 10.0
    num_samples: ClassVar[int] = 200
    onset_jump: ClassVar[bool] = True  # from 0 to 1 at switch-on

    def waveform(self, theta: ArrayLike, u: ArrayLike) -> ArrayLike:
        """``exp(-beta w0 u) cos(sqrt(1 - beta^2) w0 u)`` for ``u >= 0``, zero before."""
        xp = array_namespace(theta)
        w0, beta = theta[..., 0:1], theta[..., 1:2]
        on = u >= 0
        uc = xp.where(on, u, 0.0 * u)  # keeps exp finite (and its gradient) before switch-on
        wave = xp.exp(-beta * w0 * uc) * xp.cos(xp.sqrt(1.0 - beta**2) * w0 * uc)
        return xp.where(on, wave, 0.0 * wave)

    def _check_domain(self, theta: Tensor, name: str) -> None:
        bad = (theta[:, 0] <= 0) | (theta[:, 1] < 0) | (theta[:, 1] >= 1)
        if bool(bad.any()):
            raise ValueError(
                f"`{name}` must have w0 > 0 and 0 <= beta < 1 (the oscillator is undefined "
                f"otherwise); {int(bad.sum())} row(s) violate this. The prior is "
                f"w0 ~ U{self.theta_low[0], self.theta_high[0]}, "
                f"beta ~ U{self.theta_low[1], self.theta_high[1]}."
            )
