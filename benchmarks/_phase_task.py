"""A simulator the defaults were never tuned on: a decaying sinusoid with an unknown *phase*.

    x(t) = exp(-beta t) sin(omega t + phi) + N(0, sigma^2),   t = linspace(0, 10, 200),

``omega ~ U(0.5, 3)``, ``beta ~ U(0.05, 0.5)``, nuisance ``phi ~ U(0, 2 pi)``, ``sigma = 0.5``.
The phase is not a shift of the data (the envelope stays put), so noise-filled shift views do
not apply and ``pretrain_views="auto"`` re-simulates views: this is the "other nuisance" a
user's first run meets, used by ``fast_encoder_seeds.py`` to check that a default generalises.

The reference posterior marginalises the phase on a grid. With ``a = e^{-beta t} sin(omega t)``
and ``b = e^{-beta t} cos(omega t)`` the signal is ``a cos(phi) + b sin(phi)``, so

    log p(x | theta, phi) = const - (|x|^2 - 2 cos(phi) x.a - 2 sin(phi) x.b
                            + cos^2(phi) a.a + sin^2(phi) b.b + 2 sin(phi) cos(phi) a.b) / 2 sigma^2

needs five dot products per ``theta``; the phase integral is the trapezoidal rule on 512
points (exponentially accurate for a smooth periodic integrand). ``theta`` is integrated on a
400 x 400 grid that zooms onto the posterior's support (the box of the cells holding all but
1e-7 of the mass, plus two cells) until the box stops shrinking; samples are cells drawn by mass
with a uniform jitter inside the cell. Running this file checks the reference by simulation-based
calibration: for ``--pairs`` draws ``(theta, x)`` from the prior and simulator, the rank of the
true ``theta`` among the reference's samples must be uniform (KS p-values printed).

    .venv/bin/python benchmarks/_phase_task.py --pairs 150 --seed 2

Example:
    >>> task = PhaseOscillator()
    >>> x_o = task.simulate(torch.tensor([[1.5, 0.2]]), torch.tensor([[1.0]]))
    >>> task.reference_posterior(x_o, num_samples=100).shape
    torch.Size([100, 2])
"""

from __future__ import annotations

import argparse
import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from sbi_symmetry.tasks.base import NuisanceTask

_PHASES = 512
_GRID = 400


class PhaseOscillator(NuisanceTask):
    """Decaying sinusoid with an unknown phase; infer ``(omega, beta)``."""

    name: ClassVar[str] = "phase-oscillator"
    parameter_names: ClassVar[tuple[str, ...]] = ("omega", "beta")
    parameter_labels: ClassVar[tuple[str, ...]] = (r"$\omega$", r"$\beta$")
    nuisance_names: ClassVar[tuple[str, ...]] = ("phase",)
    theta_low: ClassVar[tuple[float, ...]] = (0.5, 0.05)
    theta_high: ClassVar[tuple[float, ...]] = (3.0, 0.5)
    nuisance_low: ClassVar[tuple[float, ...]] = (0.0,)
    nuisance_high: ClassVar[tuple[float, ...]] = (2 * math.pi,)
    noise_std: ClassVar[float] = 0.5

    def __init__(self, device: str | torch.device = "cpu") -> None:
        super().__init__(device=device)
        self.times = torch.linspace(0.0, 10.0, 200, device=self.device)

    @property
    def x_shape(self) -> tuple[int, ...]:
        """``(200,)``."""
        return (200,)

    def _quadratures(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """``a`` and ``b`` of the module docstring, each ``(n, 200)``."""
        t = self.times.to(theta.dtype)
        envelope = torch.exp(-theta[:, 1:2] * t)
        return envelope * torch.sin(theta[:, 0:1] * t), envelope * torch.cos(theta[:, 0:1] * t)

    def simulate(
        self,
        theta: Tensor,
        nuisance: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``a cos(phi) + b sin(phi) + noise`` as float32, shape ``(n, 200)``."""
        theta = theta.float().to(self.device)
        if nuisance is None:
            nuisance = self.sample_nuisance(theta.shape[0], generator=generator)
        a, b = self._quadratures(theta)
        phi = nuisance.float().to(self.device)
        clean = a * torch.cos(phi) + b * torch.sin(phi)
        noise = torch.randn(clean.shape, generator=generator, device=self.device)
        return clean + self.noise_std * noise

    def log_marginal(self, theta: Tensor, x_o: Tensor) -> Tensor:
        """``log p(x_o | theta)`` up to a constant, the phase integrated out; ``(n,)`` float64."""
        x = x_o.reshape(1, -1).double()
        out = []
        phi = torch.linspace(0, 2 * math.pi, _PHASES + 1, dtype=torch.float64)[:-1]
        cos, sin = torch.cos(phi), torch.sin(phi)
        for chunk in theta.double().split(20_000):
            a, b = self._quadratures(chunk)
            xa, xb = (x * a).sum(-1, keepdim=True), (x * b).sum(-1, keepdim=True)
            aa, bb = (a * a).sum(-1, keepdim=True), (b * b).sum(-1, keepdim=True)
            ab = (a * b).sum(-1, keepdim=True)
            quad = 2 * cos * xa + 2 * sin * xb - cos**2 * aa - sin**2 * bb - 2 * sin * cos * ab
            out.append(torch.logsumexp(quad / (2 * self.noise_std**2), dim=-1))
        return torch.cat(out)

    def reference_posterior(
        self, x_o: Tensor, num_samples: int = 10_000, seed: int = 0, **_: Any
    ) -> Tensor:
        """Samples of ``p(theta | x_o)`` with the phase marginalised (module docstring)."""
        low = torch.tensor(self.theta_low, dtype=torch.float64)
        high = torch.tensor(self.theta_high, dtype=torch.float64)
        prior_low, prior_high = low.clone(), high.clone()
        for _ in range(30):  # each pass halves the box at least; noise bounds the sharpness
            centres, step, log_mass = self._grid(x_o, low, high)
            keep = _support(log_mass, 1e-7)
            new_low = torch.maximum(centres[keep].min(0).values - 2 * step, prior_low)
            new_high = torch.minimum(centres[keep].max(0).values + 2 * step, prior_high)
            if bool(((new_high - new_low) > 0.5 * (high - low)).all()):
                break
            low, high = new_low, new_high
        generator = torch.Generator().manual_seed(seed)
        cells = torch.multinomial(log_mass.softmax(0), num_samples, True, generator=generator)
        jitter = torch.rand(num_samples, 2, generator=generator, dtype=torch.float64) - 0.5
        return (centres[cells] + jitter * step).float()

    def _grid(self, x_o: Tensor, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Cell centres ``(G^2, 2)``, cell size ``(2,)`` and log masses on the box."""
        step = (high - low) / _GRID
        axes = [low[d] + step[d] * (torch.arange(_GRID, dtype=torch.float64) + 0.5) for d in (0, 1)]
        centres = torch.cartesian_prod(*axes)
        return centres, step, self.log_marginal(centres, x_o)


def _support(log_mass: Tensor, tail: float) -> Tensor:
    """Indices of the heaviest cells that together hold all but ``tail`` of the mass."""
    mass, order = log_mass.softmax(0).sort(descending=True)
    count = int((mass.cumsum(0) < 1 - tail).sum()) + 1
    return order[:count]


def check_reference(pairs: int, seed: int, num_samples: int = 1500) -> list[float]:
    """KS p-values of the ranks of true parameters among reference samples (uniform if exact)."""
    from scipy.stats import kstest

    task = PhaseOscillator()
    generator = torch.Generator().manual_seed(seed)
    theta = task.sample_prior(pairs, generator=generator)
    x = task.simulate(theta, generator=generator)
    ranks = torch.stack(
        [
            (task.reference_posterior(x[i : i + 1], num_samples, seed=i) < theta[i]).float().mean(0)
            for i in range(pairs)
        ]
    )
    return [float(kstest(ranks[:, d].numpy(), "uniform").pvalue) for d in range(2)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="SBC of the phase task's reference posterior")
    parser.add_argument("--pairs", type=int, default=150)
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print("KS p-values (omega, beta):", check_reference(args.pairs, args.seed))
