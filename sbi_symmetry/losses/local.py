r"""Local contrastive loss: tell the true parameter from its own neighbours.

Why. The row term of symmetric InfoNCE (:mod:`sbi_symmetry.losses.infonce`) tells the true
``theta_i`` from other prior draws. Once it beats them, nothing asks the critic for the shape of
the posterior at scales finer than the spacing of those draws, and a posterior much narrower
than the prior comes out too wide. Here the candidates sit around the true parameter, at a
scale chosen per row, so the critic has to resolve the ratio there.

Set-up. A joint draw ``(theta*, x) ~ p(theta) p(x | theta*)``. Draw ``K`` offsets
``eps_k ~ q = N(0, diag(s^2 sigma^2))`` (``sigma``: a fixed per-parameter scale, ``s``: the row's
scale, both independent of everything else) and place the true parameter at a uniformly random
index ``J`` among ``K + 1`` candidates, the others being ``theta* + eps_k``. The candidates are
not exchangeable (the others are centred on the true one), so the Bayes-optimal guess of ``J``
from ``x`` and the set ``c_0..c_K`` carries the density of the construction:

    P(J = j | x, c) ∝ p(c_j) p(x | c_j) prod_{k != j} q(c_k - c_j)
                    ∝ p(c_j) r(c_j, x) prod_{k != j} q(c_k - c_j),

with ``r = p(x | theta) / p(x)`` the likelihood-to-evidence ratio. The loss is the cross-entropy
of the true index under the logits

    l_j = h(c_j, x) + log p(c_j) - 1/2 sum_k |(c_k - c_j) / (s sigma)|^2,

(the ``k = j`` term is zero; the Gaussian's normaliser is the same for every ``j`` and cancels),

    loss = logsumexp_j l_j - l_J.

It is minimised exactly when the softmax matches ``P(J | x, c)``, that is when
``h(theta, x) = log r(theta, x) + c(x)``: the same family as the InfoNCE row term's optimum, so
the two losses can be added without moving the optimum (the symmetric term then pins ``c(x)``
to a constant). A candidate outside the prior's support has ``p(c_j) = 0`` and logit ``-inf``:
it can never be the true one. Since ``J`` is uniform and the loss is invariant to permuting the
candidates together with ``J``, the true parameter is simply put at index 0.

Cost: ``K + 1`` emulator passes per pair (no simulation) and a ``(K + 1)^2`` distance table.

Example:
    >>> import torch
    >>> logits = torch.zeros(4, 3)  # 4 pairs, the true one and 2 neighbours each
    >>> candidates = torch.zeros(4, 3, 2)
    >>> local_contrastive(logits, candidates, torch.zeros(4, 3), torch.ones(4, 2))
    tensor([1.0986, 1.0986, 1.0986, 1.0986])
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from sbi.utils import within_support
from torch import Tensor
from torch.distributions import Distribution

from sbi_symmetry._validation import check_tensor


class LocalCandidates(NamedTuple):
    """The candidates of :func:`local_contrastive` with what its logits need besides the critic.

    Attributes:
        candidates: ``(B, K + 1, theta_dim)``, the true parameter at index 0.
        log_prior: ``log p`` of each candidate, ``(B, K + 1)``, ``-inf`` outside the support.
        width: Per-row, per-parameter offset scale ``s sigma``, ``(B, theta_dim)``.
    """

    candidates: Tensor
    log_prior: Tensor
    width: Tensor


def local_candidates(
    theta: Tensor,
    num: int,
    scales: tuple[float, float],
    sigma: Tensor,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """The true parameters and ``num`` Gaussian neighbours of each, with each row's offset scale.

    Each row's scale ``s`` is drawn log-uniformly in ``scales``; the neighbours are
    ``theta + s * sigma * N(0, I)``.

    Args:
        theta: True parameters, ``(B, theta_dim)``.
        num: Neighbours per row, ``K >= 1``.
        scales: ``(low, high)`` of the per-row scale, ``0 < low <= high``.
        sigma: Per-parameter scale, ``(theta_dim,)`` (e.g. the prior's standard deviation).
        generator: Optional random generator (``None``: torch's global one).

    Returns:
        Candidates ``(B, K + 1, theta_dim)`` with the true parameter at index 0, and the
        per-row, per-parameter offset scale ``s * sigma``, ``(B, theta_dim)``.

    Example:
        >>> import torch
        >>> c, width = local_candidates(torch.zeros(5, 2), 3, (0.1, 0.1), torch.ones(2))
        >>> c.shape, bool((c[:, 0] == 0).all()), torch.allclose(width, torch.tensor(0.1))
        (torch.Size([5, 4, 2]), True, True)
    """
    check_tensor(theta, "theta")
    if theta.ndim != 2:
        raise ValueError(f"`theta` must be (B, theta_dim); got {tuple(theta.shape)}.")
    low, high = scales
    if not (0 < low <= high < math.inf):
        raise ValueError(f"`scales` must be (low, high) with 0 < low <= high; got {scales!r}.")
    batch, dim = theta.shape
    opts = {"device": theta.device, "dtype": theta.dtype}
    u = torch.rand(batch, 1, generator=generator, **opts)
    s = math.log(low) + u * (math.log(high) - math.log(low))
    width = s.exp() * sigma.to(**opts)
    noise = torch.randn(batch, num, dim, generator=generator, **opts)
    neighbours = theta[:, None, :] + width[:, None, :] * noise
    return torch.cat([theta[:, None, :], neighbours], dim=1), width


def prior_log_prob(prior: Distribution, theta: Tensor) -> Tensor:
    """``log p(theta)`` over the last dimension of ``theta``, ``-inf`` outside the support.

    Only the rows inside the support reach ``prior.log_prob``, so priors that refuse values
    outside their support work. Any leading shape: candidates ``(B, K + 1, theta_dim)`` give
    ``(B, K + 1)``.

    Example:
        >>> import torch
        >>> from sbi.utils import BoxUniform
        >>> prior = BoxUniform(torch.zeros(1), torch.ones(1))
        >>> prior_log_prob(prior, torch.tensor([[[0.5], [2.0]]]))
        tensor([[0., -inf]])
    """
    flat = theta.reshape(-1, theta.shape[-1])
    out = torch.full(flat.shape[:1], -math.inf, device=flat.device, dtype=theta.dtype)
    inside = within_support(prior, flat).reshape(-1).bool()
    if bool(inside.any()):  # sbi's BoxUniform fails on no rows
        out[inside] = prior.log_prob(flat[inside]).to(out)
    return out.reshape(theta.shape[:-1])


def local_contrastive(
    logits: Tensor, candidates: Tensor, log_prior: Tensor, width: Tensor
) -> Tensor:
    """Per-pair local contrastive losses (module docstring), the true candidate at index 0.

    Args:
        logits: Critic ``h(c_j, x_i)``, ``(B, K + 1)``.
        candidates: ``c_ij``, ``(B, K + 1, theta_dim)``; index 0 is the true parameter.
        log_prior: ``log p(c_ij)``, ``(B, K + 1)`` (``-inf`` outside the support; index 0 finite).
        width: The per-row offset scale ``s sigma`` of the Gaussian neighbours, ``(B, theta_dim)``.

    Returns:
        Losses of shape ``(B,)``.
    """
    if logits.ndim != 2 or candidates.shape[:2] != logits.shape or log_prior.shape != logits.shape:
        raise ValueError(
            "`logits` and `log_prior` must be (B, K + 1) and `candidates` (B, K + 1, theta_dim); "
            f"got {tuple(logits.shape)}, {tuple(log_prior.shape)}, {tuple(candidates.shape)}."
        )
    scaled = candidates / width[:, None, :]
    # 1/2 sum_k |c_k - c_j|^2 for every j: the density of the other candidates around c_j
    spread = 0.5 * (scaled[:, :, None, :] - scaled[:, None, :, :]).square().sum(dim=(2, 3))
    total = logits + log_prior - spread
    return torch.logsumexp(total, dim=1) - total[:, 0]
