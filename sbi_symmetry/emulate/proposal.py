r"""The adaptive proposal of :class:`~sbi_symmetry.emulate.TwoTowerPosterior`: pooled mixtures.

Where rejection from the prior accepts too rarely, observation ``j``'s posterior ``p(theta | x_j)
∝ p(theta) r(theta, x_j)`` is sampled by importance from a defensive mixture,

    q_j(theta) = sum_k pi_jk N(theta; mu_jk, c Sigma_jk),

``K = 8`` components fitted by 10 EM steps to 1,024 candidates resampled by its weights, widened
by ``c = 1.5``. The ``J`` observations sampled together share their candidates: each is drawn
from the pooled proposal

    Q(theta) = a p(theta) + (1 - a) / J sum_j q_j(theta),   a = 0.1,

costs one emulator pass, and serves every observation ``j`` with the weight ``w_j = p r_j / Q``
(multiple importance sampling with the balance heuristic: ``w_j <= J p r_j / ((1 - a) q_j)``
where ``q_j`` covers, and ``w_j <= r_j / a`` everywhere, so no weight explodes where the
Gaussians miss). Where posteriors are disjoint a candidate serves one observation, as if each had
its own proposal; where they overlap it serves several, and the batch needs fewer candidates
than its observations one by one. For ``J = 1`` this is the defensive mixture ``a p + (1 - a) q``.

All ``J K`` Gaussian log densities of a candidate come from one matrix product: ``log N(theta;
mu, S) = phi(theta) . c`` with the features ``phi = (vec(theta theta^T), theta, 1)`` and the
coefficients ``c = (-vec(P) / 2, P mu, -mu^T P mu / 2 - log |2 pi S| / 2)``, ``P = S^-1`` (in
float64). Kish's effective sample size ``ESS = (sum w)^2 / sum w^2`` says when a proposal is good
enough (the samplers module fits a new one while any observation's is below a quarter of its
share of the candidates).

Example:
    >>> import torch
    >>> log_w = torch.zeros(2, 100)  # equal weights: the ESS is the number of candidates
    >>> kish_ess(log_w).round()
    tensor([100., 100.])
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sbi_symmetry.losses.local import prior_log_prob

if TYPE_CHECKING:
    from sbi_symmetry.emulate.posterior import TwoTowerPosterior

ROUND = 2**13  # candidates per observation and round (at most)
PAIRS = 2**22  # most log ratios (observations x candidates) held at once: 16 MB per tensor
_DEFENSIVE, _COMPONENTS, _RESAMPLED, _EM_STEPS, _WIDEN = 0.1, 8, 1024, 10, 1.5
_DENSITIES = 2**22  # Gaussian log densities (candidates x components) evaluated at once


def kish_ess(log_w: Tensor) -> Tensor:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` along the last dimension."""
    return (2 * log_w.logsumexp(-1) - (2 * log_w).logsumexp(-1)).exp()


def pool_size(post: TwoTowerPosterior, count: int) -> int:
    """Most candidates one draw for ``count`` observations makes: ``ROUND`` each, within limits."""
    return min(post.chunk_size, max(ROUND, PAIRS // count), ROUND * count)


def quadratic_features(theta: Tensor) -> Tensor:
    """``(vec(theta theta^T), theta, 1)`` in float64, ``(C, d^2 + d + 1)`` for ``(C, d)``."""
    theta = theta.double()
    outer = (theta.unsqueeze(-1) * theta.unsqueeze(-2)).flatten(-2)
    return torch.cat([outer, theta, torch.ones_like(theta[..., :1])], -1)


def gaussian_coefficients(mean: Tensor, cov: Tensor) -> Tensor:
    """``c`` with ``quadratic_features(theta) @ c = log N(theta; mean, cov)``: ``(..., F)``."""
    mean, cov = mean.double(), cov.double()
    chol = torch.linalg.cholesky(cov)
    prec = torch.cholesky_inverse(chol)
    p_mean = (prec @ mean.unsqueeze(-1)).squeeze(-1)
    log_det = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    log_norm = 0.5 * (log_det + mean.shape[-1] * math.log(2 * math.pi))
    const = -0.5 * (p_mean * mean).sum(-1) - log_norm
    return torch.cat([-0.5 * prec.flatten(-2), p_mean, const.unsqueeze(-1)], -1)


class MixtureProposal:
    """The pooled draw of ``a prior + (1 - a) / J sum_j q_j``, each ``q_j`` fitted by EM.

    Args:
        post: The posterior whose prior, log ratio and ``chunk_size`` the draws use.
        z: Encoded observations ``(J, n)``, one mixture each.
        theta: Candidates ``(1 or J, C, d)`` the mixtures are fitted to.
        log_w: Their log importance weights ``(J, C)``.
    """

    def __init__(self, post: TwoTowerPosterior, z: Tensor, theta: Tensor, log_w: Tensor) -> None:
        num, dim, size = len(z), theta.shape[-1], _RESAMPLED
        pick = torch.multinomial(torch.softmax(log_w, -1), size, replacement=True)
        pts = theta.expand(num, -1, -1).gather(1, pick[..., None].expand(-1, -1, dim)).double()
        reg = 1e-3 * torch.diag(theta.flatten(0, 1).double().var(0))  # for repeated points
        centred = pts - pts.mean(1, keepdim=True)
        cov = (centred.mT @ centred / size + reg).unsqueeze(1).repeat(1, _COMPONENTS, 1, 1)
        mean, log_pi = pts[:, :_COMPONENTS], torch.full((num, _COMPONENTS), -math.log(_COMPONENTS))
        for _ in range(_EM_STEPS):
            log_n = quadratic_features(pts) @ gaussian_coefficients(mean, cov).mT  # (J, S, K)
            resp = torch.softmax(log_n + log_pi.to(pts)[:, None], -1)
            total = resp.sum(1) + 1e-9
            mean = resp.mT @ pts / total[..., None]
            diff = pts.unsqueeze(2) - mean.unsqueeze(1)  # (J, S, K, d)
            cov = torch.einsum("jsk,jskd,jske->jkde", resp, diff, diff) / total[..., None, None]
            cov, log_pi = cov + reg, (total / size).log()
        cov = _WIDEN * cov
        self.mean, self.log_pi = mean.to(theta), log_pi.to(theta)
        self.chol = torch.linalg.cholesky(cov).to(theta)
        self.coef = gaussian_coefficients(mean, cov)  # (J, K, F), log pi in the constant
        self.coef[..., -1] += log_pi
        self.post, self.z = post, z

    def log_mixture(self, theta: Tensor, idx: Tensor) -> Tensor:
        """``log (1 / J) sum_{j in idx} q_j(theta)`` for candidates ``(C, d)``: ``(C,)``."""
        coef = self.coef[idx].flatten(0, 1).T  # (F, J K)
        step = max(1, _DENSITIES // coef.shape[1])
        parts = [(quadratic_features(t) @ coef).float().logsumexp(-1) for t in theta.split(step)]
        return torch.cat(parts).to(theta) - math.log(len(idx))

    def __call__(self, idx: Tensor, want: float = math.inf) -> tuple[Tensor, Tensor]:
        """Candidates ``(1, C, d)`` shared by observations ``idx`` and their log weights.

        Args:
            idx: The observations (rows of ``z``) still sampled; the pool is theirs.
            want: About as many candidates as the neediest of them lacks (a hint).

        Returns:
            The candidates and their log weights ``(len(idx), C)``.
        """
        size = int(min(pool_size(self.post, len(idx)), max(want, 64)))
        owner = idx[torch.randint(len(idx), (size,), device=idx.device)]
        comp = torch.multinomial(self.log_pi[owner].exp(), 1).squeeze(1)
        noise = torch.randn(size, self.mean.shape[-1], 1, device=comp.device)
        theta = self.mean[owner, comp] + (self.chol[owner, comp] @ noise).squeeze(-1)
        flip = torch.rand(size, device=comp.device) < _DEFENSIVE
        theta[flip] = self.post.prior.sample((int(flip.sum()),)).to(theta)
        log_p = prior_log_prob(self.post.prior, theta)
        log_k = self.log_mixture(theta, idx)
        log_q = torch.logaddexp(math.log(_DEFENSIVE) + log_p, math.log1p(-_DEFENSIVE) + log_k)
        theta = theta.unsqueeze(0)
        return theta, self.post._log_ratio(theta, self.z[idx]) + (log_p - log_q)
