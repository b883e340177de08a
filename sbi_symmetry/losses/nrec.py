r"""Contrastive NRE (NRE-C) on a two-tower batch: a ratio with no free ``c(x)``.

Set-up (Miller, Weniger and Forré, 2022, the loss of ``sbi``'s ``NRE_C``). For data ``x`` take
``K`` candidate parameters ``Theta = (theta_1..theta_K)``. Either all ``K`` come from the
marginal ``p(theta)`` (class ``y = 0``, prior probability ``p_0 = 1 / (1 + gamma)``), or one of
them, equally likely each, is the parameter that generated ``x`` (classes ``y = 1..K``, together
``p_K = gamma / (1 + gamma)``). With a critic ``h(theta, x)`` the classifier is

    q(y = 0 | x, Theta) = K / (K + gamma sum_k exp h_k),
    q(y = k | x, Theta) = gamma exp h_k / (K + gamma sum_k exp h_k),   h_k = h(theta_k, x),

and the loss is the expected cross-entropy,

    loss = -p_0 E_marginal[log q(y = 0)] - p_K E_joint[log q(y = k_true)].

Its Bayes-optimal classifier is reached by ``h = log r(theta, x)``, ``r = p(theta, x) /
(p(theta) p(x))``, and only by it: the "none of them" class ``y = 0`` fixes the scale, so unlike
InfoNCE (:mod:`sbi_symmetry.losses.infonce`, optimum ``log r + c(x)``) no function of ``x``
can be added. (Derivation: the true class posteriors are ``P(y = 0) propto p_0 prod_k
p(theta_k)`` and ``P(y = k) propto (p_K / K) r(theta_k, x) prod_j p(theta_j)``; dividing by the
common ``prod_j p(theta_j)`` gives ``q`` above with ``exp h = r``.)

On a two-tower batch. The ``B x B`` logits ``L_ij = <f(x_i), g(theta_j)> / tau`` cost one matrix
product, and every off-diagonal ``theta_j`` is a marginal draw for ``x_i``. Each row ``i`` reads
its candidates at ``K`` column offsets ``o_1..o_K``, distinct, drawn from ``1..B-1`` once per
batch (``j = (i + o_k) mod B``): the marginal set is those ``K`` columns, the joint set the
diagonal ``L_ii`` and the first ``K - 1`` of them. ``K = B - 1`` (the default) uses every
column of the row.

Guessing (all logits 0) costs ``p_0 log(1 + gamma) + p_K log((1 + gamma) K / gamma)``.

Example:
    >>> import torch, math
    >>> z = torch.zeros(5, 3)
    >>> loss = contrastive_nrec(z, z, temperature=1.0, num_contrast=4)  # gamma = 1: guessing
    >>> bool(torch.allclose(loss.mean(), torch.tensor(0.5 * math.log(2) + 0.5 * math.log(8))))
    True
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sbi_symmetry._validation import (
    OUTPUTS_FINITE,
    check_finite,
    check_int,
    check_number,
    check_tensor,
)
from sbi_symmetry.losses.infonce import _check_temperature


def contrastive_nrec(
    f_x: Tensor,
    g_theta: Tensor,
    temperature: float | Tensor = 1.0,
    *,
    num_contrast: int | None = None,
    gamma: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-pair NRE-C losses of a batch of ``B`` matched embeddings (module docstring).

    Args:
        f_x: Data embeddings ``f(x)``, shape ``(B, n)``.
        g_theta: Parameter embeddings ``g(theta)``, shape ``(B, n)``; row ``i`` generated
            ``x_i``.
        temperature: Divides the inner products; a float or a scalar tensor, > 0.
        num_contrast: ``K``, candidates per classification, in ``[1, B - 1]``; ``None`` (the
            default): ``B - 1``.
        gamma: The odds ``p_K / p_0`` of a set holding the joint parameter, > 0 (``sbi``'s
            ``NRE_C`` default is 1).
        generator: Draws the column offsets (torch's global generator when ``None``).

    Returns:
        Losses of shape ``(B,)``: ``p_0`` times the marginal set's and ``p_K`` times the
        joint set's cross-entropy; their mean is the loss.

    Example:
        >>> import torch
        >>> f = 10 * torch.eye(4)
        >>> bool(contrastive_nrec(f, f).mean() < contrastive_nrec(f, f.flip(0)).mean())
        True
    """
    check_tensor(f_x, "f_x")
    check_tensor(g_theta, "g_theta")
    if f_x.ndim != 2 or f_x.shape != g_theta.shape:
        raise ValueError(
            "`f_x` and `g_theta` must both be (batch, embedding_dim) with the same shape; got "
            f"{tuple(f_x.shape)} and {tuple(g_theta.shape)}."
        )
    batch = f_x.shape[0]
    if batch < 2:
        raise ValueError(f"NRE-C needs a batch of at least 2 pairs; got {batch}.")
    k = batch - 1 if num_contrast is None else num_contrast
    check_int(k, "num_contrast", 1)
    if k > batch - 1:
        raise ValueError(
            f"`num_contrast` must be at most the batch size - 1 ({batch - 1}); got {k}."
        )
    check_number(gamma, "gamma", positive=True)
    _check_temperature(temperature)
    check_finite(f_x, "f_x", OUTPUTS_FINITE)
    check_finite(g_theta, "g_theta", OUTPUTS_FINITE)
    logits = (f_x @ g_theta.T) / temperature
    rows = torch.arange(batch, device=f_x.device)
    offsets = torch.randperm(batch - 1, generator=generator)[:k].to(f_x.device) + 1
    contrast = logits[rows[:, None], (rows[:, None] + offsets) % batch]  # (B, K), all marginal
    joint = torch.cat([logits.diagonal()[:, None], contrast[:, : k - 1]], dim=1)
    log_gamma, log_k = math.log(gamma), math.log(k)

    def log_normaliser(h: Tensor) -> Tensor:  # log(K + gamma sum_k exp h_k)
        return torch.logsumexp(torch.cat([h + log_gamma, h.new_full((batch, 1), log_k)], 1), 1)

    log_q_none = log_k - log_normaliser(contrast)
    log_q_true = log_gamma + joint[:, 0] - log_normaliser(joint)
    p_0 = 1.0 / (1.0 + gamma)
    return -(p_0 * log_q_none + (1.0 - p_0) * log_q_true)
