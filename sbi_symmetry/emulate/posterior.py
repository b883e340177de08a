r"""``TwoTowerPosterior``: Embed and Emulate's posterior sampled through its two towers, no MCMC.

With ``log r(theta, x) = <f(x), g(theta)> / T`` the posterior is ``p(theta | x_o) ∝ p(theta)
exp(<z_o, g(theta)> / T)``, ``z_o = f(x_o)`` (``sum_k f(x_k)`` for i.i.d. trials, as sbi adds log
ratios). ``x_o`` is encoded once; ``C`` candidates cost one emulator pass and, for ``J``
observations, one ``(C x n) @ (n x J)`` product. Three samplers, chosen per observation:

1. **Exact rejection from the prior** (cosine or scaled: ``|g| = 1``): ``<z_o, g> <= ||z_o||``, so
   ``log r <= log B := ||z_o|| / T``; a prior draw kept with probability ``r / B`` is an exact
   posterior draw. The observations so served are the cheapest set given their acceptance rates on a
   pilot chunk, counting ``num_samples / min_acceptance`` candidates per observation left to (2);
   their draws start after the pilot (a pilot reused after a choice made on it would be tilted).
   They share the prior draws and one uniform per draw, each observation reading the uniforms from
   its own random cyclic offset: a draw is kept where ``log r - log B > log u``, with no random
   number or ``exp`` per pair. Each observation's samples are i.i.d.; those of different
   observations depend on each other through the shared draws (two copies of one observation
   share many of their samples), so each observation's are returned in random order: sbi's SBC
   takes the first sample of each as a draw of the data-averaged posterior. (``"dot"``: ``B`` as
   in (2).)
2. **Adaptive importance sampling**, weights ``w = p r / q``: first ``q = p``; while the Kish
   effective sample size ``ESS = (sum w)^2 / sum w^2`` is below a quarter of the candidates,
   ``q = a p + (1 - a) sum_k pi_k N(mu_k, 1.5 Sigma_k)`` (``a = 0.1``; ``w <= r / a``), a Gaussian
   mixture fitted by EM to candidates resampled by weight. The last proposal's candidates are
   resampled without duplicates: each is kept with probability ``w / B``, ``B`` the largest
   weight seen; when ``B`` grows, earlier acceptances are thinned by ``B_old / B_new``. Each is
   so kept with probability ``w / B_final``: rejection sampling, exact where ``w <= B_final``.
3. **sbi's MCMC** on the same potential, with a warning, above ``max_theta_dim`` parameters or
   where a sample would still cost over ``max_draws_per_sample`` candidates after ``max_rounds``
   proposals.

``last_ess`` holds, per observation, the Kish ESS of the weighted candidates the last draw
resampled from (2): by construction about the number of samples or more, so it tells how many
candidates backed the draw, not whether ``B`` was the largest weight; an exact rejection draw (1) is
i.i.d.: its ESS is the number of samples. Observations are sampled in blocks of 512, so at most
``4M`` log ratios are held at once however many there are. All randomness
comes from torch's global generator (the MCMC fallback seeds numpy's slice sampler from it):
``torch.manual_seed`` reproduces a draw.

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
from collections.abc import Callable
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
from sbi_symmetry.emulate.proposal import ROUND as _ROUND
from sbi_symmetry.emulate.proposal import MixtureProposal, kish_ess
from sbi_symmetry.losses.local import prior_log_prob

#: ``draw(idx, want)``: candidates ``(1 or len(idx), C, d)`` and their log weights
#: ``(len(idx), C)``; ``want`` (a hint) is about as many candidates as the neediest row lacks.
Draw = Callable[[Tensor, float], tuple[Tensor, Tensor]]
_PAIRS = 2**22  # most log ratios (observations x candidates) held at once: 16 MB per tensor
_EMULATE = 2**11  # parameters per emulator call: its activations stay in cache (2x faster)
_ESS_FRACTION = 0.25  # a proposal is good enough when its Kish ESS is this share
_MCMC = {"method": "slice_np_vectorized", "num_chains": 20, "thin": 1, "warmup_steps": 50}
_MCMC["init_strategy"] = "resample"  # multi-channel x: from prior draws (see ``__init__``)


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=4)


class TwoTowerPosterior(NeuralPosterior):
    """The posterior of an :class:`EmbedEmulateRatioEstimator`, sampled through its two towers.

    An sbi ``NeuralPosterior``: sbi's ``run_sbc``, ``run_tarp`` and ``LC2ST`` take it as is. Its
    ``map`` is sbi's: the best of ``num_init_samples`` candidates (this posterior's samples, or
    the prior's with ``init_method="proposal"``), refined by gradient ascent on the potential
    (``num_iter=0``: not refined).

    Args:
        estimator: The trained two-tower estimator (switched to ``eval()``).
        prior: The prior (``sample``, ``log_prob``, ``support``), e.g. sbi's ``BoxUniform``.
        method: ``"auto"`` (module docstring), ``"rejection"`` (exact; cosine or scaled only),
            ``"importance"`` (adaptive for all) or ``"mcmc"`` (sbi's MCMC, no warning).
        chunk_size: Most parameters per draw of candidates (the emulator takes them 2048 at
            a time); with at most 4M log ratios held at once the default keeps the memory
            under about 200 MB for a 64-wide emulator.
        min_acceptance: The price of exactness, > 0 (module docstring); for one observation
            the least acceptance rate of rejection from the prior.
        max_rounds: Most mixture proposals fitted per draw.
        max_draws_per_sample: Most candidates per observation and sample (for at least 1000
            samples) before the observation falls back to MCMC.
        max_theta_dim: Above this parameter dimension ``"auto"`` samples with MCMC.
        mcmc_parameters: ``MCMCPosterior`` arguments of the fallback; default slice sampling,
            20 chains, 50 warm-up steps from sbi's ``resample`` start (multi-channel ``x``: 200
            from prior draws, as ``workflow.methods``).

    Attributes:
        last_ess: Kish ESS of the candidates each observation's last draw resampled from
            (module docstring; the number of samples where exact rejection drew, NaN where
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

    def _log_ratio(self, theta: Tensor, z: Tensor) -> Tensor:
        """``<z_j, g(theta_i)> / T`` for ``theta`` ``(1 or J, C, d)`` and ``z`` ``(J, n)``."""
        with torch.no_grad():
            parts = theta.reshape(-1, theta.shape[-1]).split(_EMULATE)
            g = torch.cat([self.estimator.emulate(part) for part in parts])
            g, z = g.reshape(*theta.shape[:-1], -1), z / self.estimator.temperature
            return z @ g[0].T if len(g) == 1 else (g @ z.unsqueeze(-1)).squeeze(-1)

    # ------------------------------------------------------------------ samplers
    def _accept(
        self,
        z: Tensor,
        draw: Draw,
        num: int,
        log_bound: Tensor,
        first: tuple[Tensor, Tensor] | None,
        exact: bool = False,
    ) -> tuple[list[Tensor | None], Tensor]:
        """Keep each candidate with probability ``w / B``; the samples and their ESS.

        ``B`` grows with the largest weight seen, or, ``exact``, is a true bound: then the
        samples are i.i.d. draws (ESS = their number) and no weight statistics are kept.
        """
        count = len(z)
        kept: list[list[Tensor]] = [[] for _ in range(count)]
        got, seen = torch.zeros((2, count), dtype=torch.long)
        s1, s2 = torch.full((2, count), -math.inf, device=z.device)
        log_bound, active, batch = log_bound.clone(), torch.ones(count, dtype=torch.bool), first
        while bool(active.any()):
            idx = active.nonzero().squeeze(1).to(z.device)
            rate = got[active] / seen[active].clamp_min(1)  # none kept yet: want all (inf)
            want = float(((num - got[active]) / rate).max()) * 1.2 + 256
            theta, log_w = batch if batch is not None else draw(idx, want)
            if exact:  # keep iff log w - log B > log u: C uniforms, a cyclic shift per row
                new, batch, size = log_bound[idx], None, log_w.shape[1]
                log_u = -torch.empty(size, device=log_w.device).exponential_()  # log U, > -inf
                shift = torch.randint(size, (len(idx),), device=log_w.device)
                keep = log_w.sub_(new[:, None]) > log_u.repeat(2).unfold(0, size, 1)[shift]
            else:
                top = log_w.max(-1).values.clamp_min(-1e30)  # w = exp(top) * e, one exp pass
                e = (log_w - top[:, None]).exp()
                s1[idx] = torch.logaddexp(s1[idx], top + e.sum(-1).log())
                s2[idx] = torch.logaddexp(s2[idx], 2 * top + e.square().sum(-1).log())
                new, batch = torch.maximum(log_bound[idx], top), None
                keep = torch.rand_like(e) < e * (top - new).exp()[:, None]  # w / B
            rows, cols = keep.nonzero().T
            per_row = torch.bincount(rows, minlength=len(idx)).cpu()  # cheaper than a sum
            picks = theta.expand(len(idx), -1, -1)[rows, cols].split(per_row.tolist())
            grew = [False] * len(idx) if exact else (new > log_bound[idx]).tolist()
            for k, j in enumerate(idx.tolist()):
                if grew[k] and kept[j]:  # B grew: thin by B_old / B_new
                    p = float((log_bound[j] - new[k]).exp())
                    kept[j] = [t[torch.rand(len(t), device=t.device) < p] for t in kept[j]]
                    got[j] = sum(len(t) for t in kept[j])
                kept[j].append(picks[k])
            got[idx.cpu()] += per_row
            seen[idx.cpu()] += log_w.shape[1]
            log_bound[idx] = new
            active = (got < num) & (seen < self._budget)
        out = [torch.cat(k)[:num] if got[j] >= num else None for j, k in enumerate(kept)]
        if count > 1:  # shared candidates: random order, as SBC's first sample (module docstring)
            out = [d if d is None else d[torch.randperm(len(d), device=d.device)] for d in out]
        return out, got.clamp(max=num).to(s1) if exact else (2 * s1 - s2).exp()

    def _prior_draw(self, z: Tensor) -> Draw:
        size = min(self.chunk_size, max(_ROUND, _PAIRS // len(z)), _ROUND * len(z))

        def draw(idx: Tensor, want: float = math.inf) -> tuple[Tensor, Tensor]:
            theta = self.prior.sample((int(min(size, want)),)).to(z).unsqueeze(0)
            return theta, self._log_ratio(theta, z[idx])

        return draw

    def _adapt(self, z: Tensor, num: int, pilot: tuple[Tensor, Tensor]) -> tuple[Tensor, Draw, Any]:
        """Fit proposals to the pilot until the ESS suffices: who can go on, the draw, a batch."""
        (theta, log_w), draw = pilot, self._prior_draw(z)
        everyone = torch.arange(len(z), device=z.device)
        for _ in range(self.max_rounds):
            if bool((kish_ess(log_w) >= _ESS_FRACTION * log_w.shape[1]).all()):
                break
            draw = MixtureProposal(self, z, theta, log_w)
            parts = [draw(everyone, _ROUND)]
            while sum(p[1].shape[1] for p in parts) < _ROUND:
                parts.append(draw(everyone, _ROUND))
            theta, log_w = (torch.cat(t, dim=1) for t in zip(*parts, strict=True))
        # candidates `num` samples would need: num * max(w) / mean(w)
        cost = num * (log_w.max(-1).values - log_w.logsumexp(-1)).exp() * log_w.shape[1]
        fine = (cost <= self._budget).nonzero().squeeze(1)
        first = (theta[fine] if len(theta) > 1 else theta, log_w[fine])
        return fine, lambda i, want: draw(fine[i], want), first

    def _prior_served(self, pilot: Tensor, log_bound: Tensor, num: int) -> Tensor:
        """The observations rejection from the shared prior draws serves at the least cost."""
        if self.method != "auto":
            return torch.arange(len(pilot) if self.method == "rejection" else 0)
        rate, order = (pilot - log_bound[:, None]).exp().mean(-1).sort(descending=True)
        pool = (num / rate).clamp(min=pilot.shape[1])  # prior draws serving the first k + 1
        pool[pool > self._budget] = math.inf
        other = num / self.min_acceptance  # the price of an observation left to adapt
        left = other * torch.arange(len(pool) - 1, -1, -1)  # observations left to adapt
        cost = torch.cat([pool.new_tensor([len(pool) * other]), pool + left])
        return order[: int(cost.argmin())]

    def _draw(self, z: Tensor, num: int) -> tuple[list[Tensor | None], Tensor, list[str]]:
        """Samples (``None`` where the samplers gave up), ESS and sampler per row of ``z``."""
        count, draw = len(z), self._prior_draw(z)
        self._budget = self.max_draws * max(num, 1000)  # candidates per observation
        pilot = draw(torch.arange(count, device=z.device), math.inf)
        out: list[Tensor | None] = [None] * count
        ess, how = torch.full((count,), math.nan, device=z.device), ["mcmc"] * count
        bounded = self.estimator.similarity != "dot"  # unit g(theta): ||z|| / T bounds log r
        bound = z.norm(dim=-1) / self.estimator.temperature if bounded else pilot[1].max(-1).values
        chosen = self._prior_served(pilot[1], bound, num).to(z.device)
        # the pilot chose the rows: only a choice made without it ("rejection") may reuse it
        reuse = (pilot[0], pilot[1][chosen]) if self.method == "rejection" else None
        jobs = [(chosen, lambda i, n: draw(chosen[i], n), reuse, bound[chosen])]
        rest = torch.ones(count, dtype=torch.bool, device=z.device)
        rest[chosen] = False
        rest = rest.nonzero().squeeze(1)
        if len(rest) and self.method != "rejection":
            fine, adapted, first = self._adapt(z[rest], num, (pilot[0], pilot[1][rest]))
            jobs.append((rest[fine], adapted, first, torch.full((len(fine),), -math.inf)))
        for label, (idx, job, first, start) in zip(("rejection", "importance"), jobs, strict=False):
            if len(idx):
                exact = bounded and label == "rejection"
                draws, ess[idx] = self._accept(z[idx], job, num, start.to(z), first, exact)
                for j, d in zip(idx.tolist(), draws, strict=True):
                    out[j], how[j] = d, label if d is not None else "mcmc"
        ess[torch.tensor([d is None for d in out], device=z.device)] = math.nan
        return out, ess, how

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
            parts = [emulate(t) @ z + log_prior(t) for t in theta.split(_EMULATE)]
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
