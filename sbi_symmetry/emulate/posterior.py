r"""``TwoTowerPosterior``: Embed and Emulate's posterior sampled through its two towers, no MCMC.

With ``log r(theta, x) = <f(x), g(theta)> / T`` the posterior is ``p(theta | x_o) ∝ p(theta)
exp(<z_o, g(theta)> / T)``, ``z_o = f(x_o)`` (``sum_k f(x_k)`` for i.i.d. trials, as sbi adds log
ratios). ``x_o`` is encoded once; ``C`` candidates cost one emulator pass and, for ``J``
observations, one ``(C x n) @ (n x J)`` product. Three samplers, chosen per observation:

1. **exact rejection from the prior**, shared by every observation it serves;
2. **adaptive importance sampling**, its candidates shared as well (prior draws, or pooled
   Gaussian mixtures among neighbouring observations);
3. **sbi's MCMC** on the same potential, with a warning, where neither can work.

The samplers module derives them, with their cost model and exactness. ``torch.manual_seed``
reproduces a draw (the MCMC fallback seeds numpy's slice sampler from torch's generator).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from sbi.utils import BoxUniform
    >>> prior = BoxUniform(-torch.ones(2), torch.ones(2))
    >>> theta, x = prior.sample((50,)), torch.randn(50, 3)
    >>> est = EmbedEmulateRatioEstimator(nn.Linear(3, 4), nn.Linear(2, 4), theta, x)
    >>> posterior = build_two_tower_posterior(est, prior, x_o=x[:1])
    >>> posterior.sample((100,)).shape, posterior.sample_batched((10,), x=x[:3]).shape
    (torch.Size([100, 2]), torch.Size([10, 3, 2]))
    >>> len(posterior.last_ess), posterior.map(num_iter=10).shape
    (3, torch.Size([1, 2]))
"""

from __future__ import annotations

import math
import warnings
from functools import partial
from typing import Any, Literal

import torch
from sbi.inference import MCMCPosterior
from sbi.inference.posteriors.base_posterior import NeuralPosterior
from sbi.inference.potentials.ratio_based_potential import RatioBasedPotential
from sbi.utils import mcmc_transform
from torch import Tensor
from torch.distributions import Distribution

from sbi_symmetry._random import seeded
from sbi_symmetry._validation import check_choice, check_finite, check_int, check_tensor
from sbi_symmetry.emulate.estimator import EmbedEmulateRatioEstimator
from sbi_symmetry.emulate.proposal import PAIRS as _PAIRS
from sbi_symmetry.emulate.proposal import ROUND as _ROUND
from sbi_symmetry.emulate.samplers import EMULATE, TwoTowerSamplers
from sbi_symmetry.losses.local import prior_log_prob

_MCMC = {"method": "slice_np_vectorized", "num_chains": 20, "thin": 1, "warmup_steps": 50}
_MCMC["init_strategy"] = "resample"  # multi-channel x: from prior draws (see ``__init__``)


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=4)


class TwoTowerPosterior(TwoTowerSamplers, NeuralPosterior):
    """The posterior of an :class:`EmbedEmulateRatioEstimator`, sampled through its two towers.

    An sbi ``NeuralPosterior``: sbi's ``run_sbc``, ``run_tarp`` and ``LC2ST`` take it as is. Its
    ``map`` is sbi's: the best of ``num_init_samples`` candidates (this posterior's samples, or
    the prior's with ``init_method="proposal"``), refined by gradient ascent on the potential
    (``num_iter=0``: not refined).

    Args:
        estimator: The trained two-tower estimator (switched to ``eval()``).
        prior: The prior (``sample``, ``log_prob``, ``support``), e.g. sbi's ``BoxUniform``.
        method: ``"auto"`` (samplers module), ``"rejection"`` (exact; cosine or scaled only),
            ``"importance"`` (adaptive for all) or ``"mcmc"`` (sbi's MCMC, no warning).
        chunk_size: Most parameters per draw of candidates (the emulator takes them 2048 at
            a time); with at most 4M log ratios held at once the default keeps the memory
            under about 200 MB for a 64-wide emulator.
        min_acceptance: The price of exactness, > 0 (samplers module); for one observation
            the least acceptance rate of rejection from the prior.
        max_rounds: Most mixture proposals fitted per draw.
        max_draws_per_sample: Most candidates per observation and sample (for at least 1000
            samples) before the observation falls back to MCMC; where ``J`` observations share
            their candidates, ``min(J, 8)`` times as many of the shared ones.
        max_theta_dim: Above this parameter dimension ``"auto"`` samples with MCMC.
        mcmc_parameters: ``MCMCPosterior`` arguments of the fallback; default slice sampling,
            20 chains, 50 warm-up steps from sbi's ``resample`` start (multi-channel ``x``: 200
            from prior draws, as ``workflow.methods``).

    Attributes:
        last_ess: Kish ESS of the candidates each observation's last draw resampled from
            (samplers module; the number of samples where exact rejection drew, NaN where
            MCMC drew).
        last_method: ``"rejection"``, ``"importance"`` or ``"mcmc"`` per observation.
    """

    def __init__(
        self,
        estimator: EmbedEmulateRatioEstimator,
        prior: Distribution,
        *,
        method: Literal["auto", "rejection", "importance", "mcmc"] = "auto",
        chunk_size: int = 2**16,
        min_acceptance: float = 0.05,
        max_rounds: int = 4,
        max_draws_per_sample: float = 200.0,
        max_theta_dim: int = 10,
        mcmc_parameters: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(estimator, EmbedEmulateRatioEstimator):
            raise TypeError(f"`estimator` must be an EmbedEmulateRatioEstimator; got {estimator}")
        if not (hasattr(prior, "sample") and hasattr(prior, "log_prob")):
            raise TypeError(f"`prior` must have `sample` and `log_prob`; got {prior!r}.")
        check_choice(method, "method", ("auto", "rejection", "importance", "mcmc"))
        if method == "rejection" and estimator.similarity == "dot":
            raise ValueError(
                "method='rejection' needs similarity='cosine' or 'scaled' (a bound on log r)."
            )
        check_int(chunk_size, "chunk_size", 1)
        check_int(max_theta_dim, "max_theta_dim", 1)
        check_int(max_rounds, "max_rounds", 0)
        if not (0 < min_acceptance <= 1 and max_draws_per_sample >= 1):
            raise ValueError("Need 0 < min_acceptance <= 1 and max_draws_per_sample >= 1.")
        device = estimator.log_temperature.device  # always there; the towers may have none
        potential_fn = RatioBasedPotential(estimator, prior, x_o=None, device=device)
        super().__init__(potential_fn, theta_transform=mcmc_transform(prior, device=device))
        self.estimator, self.prior, self.method = estimator.eval(), prior, method
        self.chunk_size, self.min_acceptance = chunk_size, min_acceptance
        self.max_rounds, self.max_draws, self._budget = max_rounds, max_draws_per_sample, 0.0
        self.max_theta_dim, self.last_method = max_theta_dim, []
        self.last_ess: Tensor | None = None
        self.theta_dim, self.proposal = int(estimator.theta_shape[0]), prior  # sbi's map uses it
        multi = len(estimator.x_shape) > 1  # sbi's `resample` start splits (C, L) into C trials
        start = {"init_strategy": "proposal", "warmup_steps": 200} if multi else {}
        self.mcmc_parameters = _MCMC | start | (mcmc_parameters or {})
        self._mcmc: MCMCPosterior | None = None

    # ------------------------------------------------------------------ inputs and towers
    def _rows(self, x: Any) -> Tensor:
        """``x`` as ``(rows, *x_shape)`` float32 on the posterior's device, checked."""
        check_tensor(x, "x")
        event = tuple(self.estimator.x_shape)
        x = x.unsqueeze(0) if tuple(x.shape) == event else x
        if x.ndim != len(event) + 1 or tuple(x.shape[1:]) != event or x.shape[0] == 0:
            want = ", ".join(map(str, event))
            raise ValueError(f"`x` needs shape (batch, {want}) or ({want}), not {tuple(x.shape)}.")
        check_finite(x, "x")
        return x.to(device=self._device, dtype=torch.float32)

    def _x_else_default_x(self, x: Any) -> Tensor:
        if x is None and self.default_x is None:
            raise ValueError("Pass `x` or set a default with `.set_default_x(x)`.")
        return self._rows(x) if x is not None else self.default_x  # type: ignore[return-value]

    def set_default_x(self, x: Tensor) -> TwoTowerPosterior:
        """Use ``x``, ``(trials, *x_shape)`` or ``x_shape``, when none is given; return ``self``."""
        self._x, self._map = self._rows(x), None
        return self

    @staticmethod
    def _count(sample_shape: Any) -> int:
        ok = isinstance(sample_shape, tuple | list | torch.Size)
        if not ok or not all(isinstance(s, int) and not isinstance(s, bool) for s in sample_shape):
            raise TypeError(f"`sample_shape` must be a tuple of ints; got {sample_shape!r}.")
        if any(s < 0 for s in sample_shape):
            raise ValueError(f"`sample_shape` must not be negative; got {tuple(sample_shape)}.")
        return math.prod(sample_shape)

    def _encode(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat([self.estimator.encode(part) for part in x.split(1024)])

    def _mcmc_sample(self, rows: Tensor, num: int, show_progress_bars: bool) -> Tensor:
        """``num`` draws of sbi's MCMC for one observation, seeded from torch's generator."""
        args = (self.potential_fn, self.prior, self.theta_transform)
        self._mcmc = self._mcmc or MCMCPosterior(*args, **self.mcmc_parameters)
        with seeded(int(torch.randint(0, 2**31 - 1, ()))):  # numpy's slice sampler too
            draws = self._mcmc.sample((num,), x=rows, show_progress_bars=show_progress_bars)
        return draws.reshape(num, -1).to(self._device)

    def _run(self, z: Tensor, xs: tuple[Tensor, ...], num: int, show: bool) -> Tensor:
        """``(num, J, d)`` samples for the rows of ``z`` (``xs``: the observations, for MCMC)."""
        if (count := len(z)) and num == 0:
            return torch.empty(0, count, self.theta_dim, device=self._device)
        if too_wide := self.method == "auto" and self.theta_dim > self.max_theta_dim:
            _warn(f"{self.theta_dim} parameters > max_theta_dim: sampling with sbi's MCMC.")
        if too_wide or self.method == "mcmc":
            out, ess, how = [None] * count, torch.full((count,), math.nan), ["mcmc"] * count
        else:  # blocks of observations: at most _PAIRS log ratios held at once
            blocks = [self._draw(block, num) for block in z.split(_PAIRS // _ROUND)]
            out = [d for block in blocks for d in block[0]]
            ess = torch.cat([block[1] for block in blocks])
            how = [h for block in blocks for h in block[2]]
            if failed := sum(d is None for d in out):
                _warn(f"{failed} of {count} observation(s) past max_draws_per_sample: MCMC.")
        pairs = zip(out, xs, strict=True)
        draws = [d if d is not None else self._mcmc_sample(x, num, show) for d, x in pairs]
        self.last_ess, self.last_method = ess.cpu(), how
        return torch.stack(draws, dim=1)

    # ------------------------------------------------------------------ sbi's posterior API
    def sample(
        self, sample_shape: Any = (), x: Tensor | None = None, show_progress_bars: bool = False
    ) -> Tensor:
        """Draw posterior samples for one observation.

        Args:
            sample_shape: Shape of the samples, e.g. ``(10_000,)``.
            x: ``(1, *x_shape)`` or ``x_shape``; several rows are i.i.d. trials (their log
                ratios add, as in sbi's ratio posteriors). Default: the default ``x``.
            show_progress_bars: Passed to the MCMC fallback (the fast samplers show none).

        Returns:
            Samples of shape ``(*sample_shape, theta_dim)``.
        """
        num, rows = self._count(sample_shape), self._x_else_default_x(x)
        draws = self._run(self._encode(rows).sum(0, keepdim=True), (rows,), num, show_progress_bars)
        return draws[:, 0].reshape(*sample_shape, self.theta_dim)

    def sample_batched(
        self, sample_shape: Any, x: Tensor, show_progress_bars: bool = False
    ) -> Tensor:
        """Draw posterior samples for every observation of a batch, all at once.

        Args:
            sample_shape: Shape of the samples per observation.
            x: Observations ``(J, *x_shape)``, one per row.
            show_progress_bars: Passed to the MCMC fallback.

        Returns:
            Samples of shape ``(*sample_shape, J, theta_dim)``.
        """
        num, rows = self._count(sample_shape), self._rows(x)
        draws = self._run(self._encode(rows), rows.split(1), num, show_progress_bars)
        return draws.reshape(*sample_shape, len(rows), self.theta_dim)

    def log_prob(
        self, theta: Tensor, x: Tensor | None = None, track_gradients: bool = False
    ) -> Tensor:
        """The *unnormalised* log posterior ``log p(theta) + log r(theta, x)``.

        As sbi's ratio-based posteriors (their ``potential``): the evidence is unknown, so this
        differs from the normalised log density by a constant per ``x``.

        Args:
            theta: Parameters ``(B, theta_dim)`` or ``(theta_dim,)``.
            x: The observation (as in :meth:`sample`); default: the default ``x``.
            track_gradients: Keep the graph (gradients with respect to ``theta``).

        Returns:
            Shape ``(B,)``; ``-inf`` outside the prior's support.
        """
        check_tensor(theta, "theta")
        theta = theta.unsqueeze(0) if theta.ndim == 1 else theta
        if theta.ndim != 2 or theta.shape[1] != self.theta_dim:
            raise ValueError(f"`theta` must be (B, {self.theta_dim}); got {tuple(theta.shape)}.")
        z = self._encode(self._x_else_default_x(x)).sum(0) / self.estimator.temperature
        with torch.set_grad_enabled(track_gradients):
            theta = theta.to(self._device, torch.float32)
            emulate, log_prior = self.estimator.emulate, partial(prior_log_prob, self.prior)
            parts = [emulate(t) @ z + log_prior(t) for t in theta.split(EMULATE)]
        return torch.cat(parts) if parts else theta.new_zeros(0)


def build_two_tower_posterior(
    estimator: EmbedEmulateRatioEstimator,
    prior: Distribution,
    x_o: Tensor | None = None,
    **kwargs: Any,
) -> TwoTowerPosterior:
    """A :class:`TwoTowerPosterior` for a trained estimator (e.g. ``EmbedEmulate.train()``'s).

    Args:
        estimator: The two-tower ratio estimator.
        prior: The prior it was trained under.
        x_o: Optional default observation.
        **kwargs: :class:`TwoTowerPosterior`'s settings (``method``, ``chunk_size`` ...).

    Returns:
        The posterior.
    """
    posterior = TwoTowerPosterior(estimator, prior, **kwargs)
    return posterior if x_o is None else posterior.set_default_x(x_o)
