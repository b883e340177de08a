r"""The adaptive proposal of :class:`~sbi_symmetry.emulate.TwoTowerPosterior`: a Gaussian mixture.

Where rejection from the prior accepts too rarely, the posterior ``p(theta | x_o) ∝ p(theta)
r(theta, x_o)`` is sampled by importance from a defensive mixture, one per observation,

    q(theta) = a p(theta) + (1 - a) sum_k pi_k N(theta; mu_k, c Sigma_k),

``a = 0.1`` (so ``w = p r / q <= r / a``: no weight explodes where the Gaussians miss), ``K = 8``
components fitted by 10 EM steps to 1,024 candidates resampled by weight (fewer, down to 256,
when many observations are sampled together), widened by
``c = 1.5``. Kish's effective sample size ``ESS = (sum w)^2 / sum w^2`` says when a proposal is
good enough (the posterior module fits a new one while it is below a quarter of the candidates).

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

ROUND = 2**13  # candidates per observation and call (at most)
_DEFENSIVE, _COMPONENTS, _RESAMPLED, _EM_STEPS, _WIDEN = 0.1, 8, 1024, 10, 1.5


def kish_ess(log_w: Tensor) -> Tensor:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` along the last dimension."""
    return (2 * log_w.logsumexp(-1) - (2 * log_w).logsumexp(-1)).exp()


def log_normal(points: Tensor, mean: Tensor, chol: Tensor) -> Tensor:
    """``log N(x_jc; mu_jk, L_jk L_jk^T)`` for ``(J, C, d)``, ``(J, K, d)``: ``(J, C, K)``."""
    diff = (points.unsqueeze(1) - mean.unsqueeze(2)).mT  # (J, K, d, C)
    y = torch.linalg.solve_triangular(chol, diff, upper=False)
    norm = chol.diagonal(dim1=-2, dim2=-1).log().sum(-1, keepdim=True)
    return (-0.5 * y.square().sum(-2) - norm - points.shape[-1] / 2 * math.log(2 * math.pi)).mT


class MixtureProposal:
    """The draw of ``a prior + (1 - a) sum_k pi_k N(mu_k, c Sigma_k)``, fitted by EM, per ``z``.

    Args:
        post: The posterior whose prior, log ratio and ``chunk_size`` the draws use.
        z: Encoded observations ``(J, n)``, one mixture each.
        theta: Candidates ``(1 or J, C, d)`` the mixtures are fitted to.
        log_w: Their log importance weights ``(J, C)``.
    """

    def __init__(self, post: TwoTowerPosterior, z: Tensor, theta: Tensor, log_w: Tensor) -> None:
        num, dim, size = len(z), theta.shape[-1], max(256, min(_RESAMPLED, 2**18 // len(z)))
        pick = torch.multinomial(torch.softmax(log_w, -1), size, replacement=True)
        pts = theta.expand(num, -1, -1).gather(1, pick[..., None].expand(-1, -1, dim)).double()
        reg = 1e-3 * torch.diag(theta.flatten(0, 1).double().var(0))  # for repeated points
        centred = pts - pts.mean(1, keepdim=True)
        cov = (centred.mT @ centred / size + reg).unsqueeze(1).repeat(1, _COMPONENTS, 1, 1)
        mean, log_pi = pts[:, :_COMPONENTS], torch.full((num, _COMPONENTS), -math.log(_COMPONENTS))
        for _ in range(_EM_STEPS):
            log_n = log_normal(pts, mean, torch.linalg.cholesky(cov))
            resp = torch.softmax(log_n + log_pi.to(pts)[:, None], -1)  # (J, S, K)
            total = resp.sum(1) + 1e-9
            mean = resp.mT @ pts / total[..., None]
            diff = pts.unsqueeze(2) - mean.unsqueeze(1)  # (J, S, K, d)
            cov = torch.einsum("jsk,jskd,jske->jkde", resp, diff, diff) / total[..., None, None]
            cov, log_pi = cov + reg, (total / size).log()
        self.mean, self.log_pi = mean.to(theta), log_pi.to(theta)
        self.chol = torch.linalg.cholesky(_WIDEN * cov).to(theta)
        self.post, self.z = post, z

    def __call__(self, idx: Tensor, want: float = math.inf) -> tuple[Tensor, Tensor]:
        """Fresh candidates ``(len(idx), C, d)`` for observations ``idx``, and their log weights.

        ``want`` (the candidates the neediest row lacks) is ignored: mixtures adapt per call.
        """
        mean, chol, log_pi, z = self.mean[idx], self.chol[idx], self.log_pi[idx], self.z[idx]
        per = max(64, min(ROUND, self.post.chunk_size // len(idx)))
        comp = torch.multinomial(log_pi.exp(), per, replacement=True)  # (J, per)
        rows = torch.arange(len(idx), device=comp.device)[:, None]
        noise = torch.randn(*comp.shape, mean.shape[-1], 1, device=comp.device)
        theta = mean[rows, comp] + (chol[rows, comp] @ noise).squeeze(-1)
        flip = torch.rand(comp.shape, device=comp.device) < _DEFENSIVE
        theta[flip] = self.post.prior.sample((int(flip.sum()),)).to(theta)
        log_p = prior_log_prob(self.post.prior, theta)
        log_k = (log_normal(theta, mean, chol) + log_pi[:, None]).logsumexp(-1)
        log_q = torch.logaddexp(math.log(_DEFENSIVE) + log_p, math.log1p(-_DEFENSIVE) + log_k)
        return theta, self.post._log_ratio(theta, z) + log_p - log_q
