r"""The samplers of :class:`~sbi_symmetry.emulate.TwoTowerPosterior`, chosen per observation.

The posterior is ``p(theta | x_j) ∝ p(theta) exp(<z_j, g(theta)> / T)``; ``C`` candidates cost
one emulator pass and, for ``J`` observations, one ``(C x n) @ (n x J)`` product. Sharing
candidates among observations is what makes ``sample_batched`` cheaper per observation than
``sample``:

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
2. **Adaptive importance sampling**, weights ``w = p r / q``, with candidates shared as well:

   - the broad posteriors among the rest share prior draws (``q = p``), chosen by the same cost
     model with ``B`` the largest weight seen instead of the bound, and a row left to a
     mixture priced at ``4 num`` candidates and one round (their draws start after the pilot);
   - the others, in groups of up to 64 neighbours for 2 parameters (fewer for more; along the
     first principal axis of their pilot means), share a pooled proposal ``Q = a p + (1 - a) /
     J sum_j q_j``, ``q_j = sum_k pi_jk N(mu_jk, 1.5 Sigma_jk)`` a Gaussian mixture fitted by
     EM to observation
     ``j``'s candidates resampled by weight (``a = 0.1``; proposal module), refitted while any
     observation's Kish ``ESS = (sum w)^2 / sum w^2`` is below a quarter of its share
     ``C / J`` of the ``C`` candidates. A candidate serves every observation of its group
     (``w_j = p r_j / Q``), so overlapping posteriors need fewer candidates than one by one.

   The candidates are resampled without duplicates: each is kept with probability ``w / B``,
   ``B`` the largest weight seen; when ``B`` grows, earlier acceptances are thinned by ``B_old /
   B_new``. Each is so kept with probability ``w / B_final``: rejection sampling, exact where
   ``w <= B_final``. A row whose candidates ``J`` rows share gives up past ``min(J, 8)``
   budgets of them (``max_draws_per_sample`` per sample).
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
    >>> from sbi_symmetry.emulate import EmbedEmulateRatioEstimator, build_two_tower_posterior
    >>> prior = BoxUniform(-torch.ones(2), torch.ones(2))
    >>> theta, x = prior.sample((50,)), torch.randn(50, 3)
    >>> est = EmbedEmulateRatioEstimator(nn.Linear(3, 4), nn.Linear(2, 4), theta, x)
    >>> posterior = build_two_tower_posterior(est, prior)
    >>> posterior.sample_batched((10,), x=x[:3]).shape, len(posterior.last_method)
    (torch.Size([10, 3, 2]), 3)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from sbi_symmetry.emulate.estimator import EmbedEmulateRatioEstimator
from sbi_symmetry.emulate.proposal import ROUND as _ROUND
from sbi_symmetry.emulate.proposal import MixtureProposal, kish_ess, pool_size

#: ``draw(idx, want)``: candidates ``(1 or len(idx), C, d)`` and their log weights
#: ``(len(idx), C)``; ``want`` (a hint) is about as many candidates as the neediest row lacks.
Draw = Callable[[Tensor, float], tuple[Tensor, Tensor]]
EMULATE = 2**11  # parameters per emulator call: its activations stay in cache (2x faster)
_ESS_FRACTION = 0.25  # a proposal is good enough when its Kish ESS is this share
_GROUP = 448  # most rows x Gaussian features sharing one pooled proposal: 64 rows in 2-d
_SHARE = 1024  # candidates per observation in a round of the pooled proposal (ROUND at least)
_SHARED_BUDGET = 8  # a row sharing its candidates may see up to this many budgets of them


class TwoTowerSamplers:
    """Exact rejection and adaptive importance sampling through the two towers (a mixin).

    :class:`~sbi_symmetry.emulate.TwoTowerPosterior` holds the settings these read.
    """

    estimator: EmbedEmulateRatioEstimator
    prior: Distribution
    method: str
    chunk_size: int
    min_acceptance: float
    max_rounds: int
    max_draws: float
    _budget: float

    def _log_ratio(self, theta: Tensor, z: Tensor) -> Tensor:
        """``<z_j, g(theta_i)> / T`` for ``theta`` ``(1 or J, C, d)`` and ``z`` ``(J, n)``."""
        with torch.no_grad():
            parts = theta.reshape(-1, theta.shape[-1]).split(EMULATE)
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
        share: int = 1,
    ) -> tuple[list[Tensor | None], Tensor]:
        """Keep each candidate with probability ``w / B``; the samples and their ESS.

        ``B`` grows with the largest weight seen, or, ``exact``, is a true bound: then the
        samples are i.i.d. draws (ESS = their number) and no weight statistics are kept. A row
        of a pool of ``share`` rows gives up past ``min(share, 8)`` budgets of candidates.
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
            active = (got < num) & (seen < self._budget * min(share, _SHARED_BUDGET))
        out = [torch.cat(k)[:num] if got[j] >= num else None for j, k in enumerate(kept)]
        if count > 1:  # shared candidates: random order, as SBC's first sample (module docstring)
            out = [d if d is None else d[torch.randperm(len(d), device=d.device)] for d in out]
        return out, got.clamp(max=num).to(s1) if exact else (2 * s1 - s2).exp()

    def _prior_draw(self, z: Tensor) -> Draw:
        size = pool_size(self, len(z))

        def draw(idx: Tensor, want: float = math.inf) -> tuple[Tensor, Tensor]:
            theta = self.prior.sample((int(min(size, want)),)).to(z).unsqueeze(0)
            return theta, self._log_ratio(theta, z[idx])

        return draw

    def _adapt(self, z: Tensor, num: int, pilot: tuple[Tensor, Tensor]) -> tuple[Tensor, Draw, Any]:
        """Fit proposals until the ESS suffices: who can go on, the draw, a first batch.

        The first is fitted to the pilot (the prior draws did not serve these rows). The rows of
        ``z`` share their candidates (proposal module): each row's ESS is measured against its
        share of them, and its cost against the budget of them all.
        """
        (theta, log_w), draw = pilot, self._prior_draw(z)
        everyone = torch.arange(len(z), device=z.device)
        size = max(_ROUND, _SHARE * len(z))  # candidates per round (several draws if need be)
        for done in range(self.max_rounds):
            if done and bool((kish_ess(log_w) * len(z) >= _ESS_FRACTION * log_w.shape[1]).all()):
                break
            draw = MixtureProposal(self, z, theta, log_w)
            parts = [draw(everyone, size)]
            while (drawn := sum(p[1].shape[1] for p in parts)) < size:
                parts.append(draw(everyone, size - drawn))
            theta, log_w = (torch.cat(t, dim=1) for t in zip(*parts, strict=True))
        # candidates `num` samples would need: num * max(w) / mean(w)
        cost = num * (log_w.max(-1).values - log_w.logsumexp(-1)).exp() * log_w.shape[1]
        fine = (cost <= self._budget * min(len(z), _SHARED_BUDGET)).nonzero().squeeze(1)
        first = (theta[fine] if len(theta) > 1 else theta, log_w[fine])
        return fine, lambda i, want: draw(fine[i], want), first

    def _prior_served(self, pilot: Tensor, log_bound: Tensor, num: int, other: float) -> Tensor:
        """The rows the shared prior draws serve at the least cost, keeping ``w / B`` of them.

        Args:
            pilot: Log weights ``(J, C)`` of the rows on the pilot's prior draws.
            log_bound: ``log B`` per row.
            num: Samples per row.
            other: Candidates a row left to another sampler costs.
        """
        rate, order = (pilot - log_bound[:, None]).exp().mean(-1).sort(descending=True)
        pool = (num / rate).clamp(min=pilot.shape[1])  # prior draws serving the first k + 1
        pool[pool > self._budget] = math.inf
        left = other * torch.arange(len(pool) - 1, -1, -1)  # observations left to adapt
        cost = torch.cat([pool.new_tensor([len(pool) * other]), pool + left])
        return order[: int(cost.argmin())]

    @staticmethod
    def _groups(rows: Tensor, pilot: tuple[Tensor, Tensor]) -> list[Tensor]:
        """``rows`` in groups that share candidates, neighbours together.

        A group holds at most ``448 / (d^2 + d + 1)`` rows, at least 8 (64 for ``d = 2``), so
        the pooled density costs at most about 3,600 float64 products per candidate (8 mixture
        components each; ``d = 10``: 7,100). Rows are ordered along the first principal axis of
        their pilot posterior means.
        """
        dim = pilot[0].shape[-1]
        size = max(8, _GROUP // (dim * dim + dim + 1))
        if len(rows) <= size:
            return [rows] if len(rows) else []
        weights = torch.softmax(pilot[1][rows], -1)  # (J, C) on the shared prior draws
        means = (weights @ pilot[0][0]).nan_to_num(0.0)  # a row with no finite weight: centre
        means = (means - means.mean(0)) / pilot[0][0].std(0).clamp_min(1e-12)  # prior scale
        axis = torch.linalg.eigh(means.T @ means).eigenvectors[:, -1]
        ordered = rows[(means @ axis).argsort()]
        return list(ordered.tensor_split(math.ceil(len(rows) / size)))

    def _importance_jobs(
        self, z: Tensor, num: int, rows: Tensor, pilot: tuple[Tensor, Tensor]
    ) -> Iterator[tuple[str, Tensor, Draw, Any, Tensor]]:
        """The importance samplers of ``rows``: shared prior draws, then pooled mixtures.

        Prior draws serve the broad posteriors, chosen as in :meth:`_prior_served` with ``B``
        the pilot's largest weight (it grows with the largest seen), their draws starting after
        the pilot that chose them; the others share adaptive mixtures in groups of neighbours,
        each fitted only when its turn comes (memory).
        """
        log_w, draw = pilot[1][rows], self._prior_draw(z)
        price = num / _ESS_FRACTION + _ROUND  # of a row left to a mixture (one round)
        broad = rows[self._prior_served(log_w, log_w.max(-1).values, num, price).to(rows.device)]
        start = torch.full((len(broad),), -math.inf)
        yield "importance", broad, lambda i, n: draw(broad[i], n), None, start
        for group in self._groups(rows[~torch.isin(rows, broad)], pilot):
            fine, adapted, first = self._adapt(z[group], num, (pilot[0], pilot[1][group]))
            yield "importance", group[fine], adapted, first, torch.full((len(fine),), -math.inf)

    def _draw(self, z: Tensor, num: int) -> tuple[list[Tensor | None], Tensor, list[str]]:
        """Samples (``None`` where the samplers gave up), ESS and sampler per row of ``z``."""
        count, draw = len(z), self._prior_draw(z)
        self._budget = self.max_draws * max(num, 1000)  # candidates per observation
        pilot = draw(torch.arange(count, device=z.device), math.inf)
        out: list[Tensor | None] = [None] * count
        ess, how = torch.full((count,), math.nan, device=z.device), ["mcmc"] * count
        bounded = self.estimator.similarity != "dot"  # unit g(theta): ||z|| / T bounds log r
        bound = z.norm(dim=-1) / self.estimator.temperature if bounded else pilot[1].max(-1).values
        chosen = torch.arange(count if self.method == "rejection" else 0, device=z.device)
        if self.method == "auto":
            price = num / self.min_acceptance  # of an observation left to importance sampling
            chosen = self._prior_served(pilot[1], bound, num, price).to(z.device)
        # the pilot chose the rows: only a choice made without it ("rejection") may reuse it
        reuse = (pilot[0], pilot[1][chosen]) if self.method == "rejection" else None
        jobs: Iterable[tuple[str, Tensor, Draw, Any, Tensor]]
        jobs = [("rejection", chosen, lambda i, n: draw(chosen[i], n), reuse, bound[chosen])]
        rest = torch.ones(count, dtype=torch.bool, device=z.device)
        rest[chosen] = False
        rest = rest.nonzero().squeeze(1)
        if len(rest) and self.method != "rejection":
            jobs = chain(jobs, self._importance_jobs(z, num, rest, pilot))
        for label, idx, job, first, start in jobs:
            if len(idx):
                share = len(idx) if label == "importance" else 1  # a pool of them all
                args = (num, start.to(z), first, bounded and label == "rejection", share)
                draws, ess[idx] = self._accept(z[idx], job, *args)
                for j, d in zip(idx.tolist(), draws, strict=True):
                    out[j], how[j] = d, label if d is not None else "mcmc"
        ess[torch.tensor([d is None for d in out], device=z.device)] = math.nan
        return out, ess, how
