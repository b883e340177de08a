r"""VICReg: variance-invariance-covariance regularisation of two views (Bardes et al., 2022).

Let ``Z`` and ``Z'`` be ``(B, D)`` batches of (expanded) representations of two views of the same
``B`` underlying samples; row ``i`` of both comes from the same ``theta_i``. With the batch mean
``\bar z_j = (1/B) sum_i Z_ij`` and the unbiased batch covariance

    C(Z)_jk = 1/(B - 1) * sum_i (Z_ij - \bar z_j) (Z_ik - \bar z_k),

the three terms are

* invariance (mean squared error between the views):
  ``s(Z, Z') = 1/(B D) * sum_ij (Z_ij - Z'_ij)^2``;
* variance (a hinge on the standard deviation of every dimension over the batch):
  ``v(Z) = 1/D * sum_j max(0, gamma - sqrt(C(Z)_jj + eps))``;
* covariance (squared off-diagonal entries of the batch covariance, scaled by ``1/D``):
  ``c(Z) = 1/D * sum_{j != k} C(Z)_jk^2``;

and the loss is

    L = lambda * s(Z, Z') + mu * [v(Z) + v(Z')] + nu * [c(Z) + c(Z')]

with defaults ``lambda = mu = 25``, ``nu = 1``, ``gamma = 1``, ``eps = 1e-4`` (Bardes et al.).
The variance and covariance terms are summed over the two views as in the paper's equation; the
official implementation averages the two variance hinges instead (a factor 1/2 on ``v``), so its
``mu`` corresponds to ``mu / 2`` here.

The covariance is taken over the *batch*: it measures whether different dimensions vary together
across samples, which is what stops the dimensions from all encoding the same thing. The original
symmetry-embedding code computed it per sample, from the outer product of a single vector with
itself; such a matrix says nothing about the batch and the term then regularises almost nothing.
That is the defect this module does not repeat.

Minimum batch size: 3. With ``B = 1`` the unbiased variance divides by ``B - 1 = 0``. With
``B = 2`` the centred batch is ``+-d/2`` for a single vector ``d``, so ``C = d d^T / 2`` has rank
one: every pair of dimensions is perfectly correlated, ``C_jk^2 = C_jj C_kk``, and the variance
hinge (which wants every ``C_jj >= gamma^2``) and the covariance term (which wants ``C_jk = 0``)
cannot both be satisfied; the gradient would fight itself. More generally ``C`` has rank at most
``B - 1``, so a batch needs ``B > D`` for both terms to be able to reach zero; use batches much
larger than ``D`` (the usual 128-1024 against ``D = 12``).

Several processes (``torchrun``): the batch mean, variance and covariance above are statistics of
the whole batch, so a rank that computed them from its own ``B / W`` rows would optimise a
different loss (noisier variance, covariance of rank at most ``B / W - 1``). With
``global_batch=True`` the rows of all ranks are gathered first (gradients flowing back) and every
rank evaluates the loss of the global batch; averaging the weight gradients over ranks then gives
exactly the single-process gradient (see :mod:`sbi_symmetry.distributed`).

Example:
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> z = torch.randn(256, 4)
    >>> terms = vicreg_loss(z, z)
    >>> float(terms.invariance)
    0.0
    >>> bool(terms.total == 25 * terms.variance + terms.covariance)
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import sbi_symmetry.distributed as distributed
from sbi_symmetry._validation import OUTPUTS_FINITE, check_finite, check_tensor

MIN_BATCH_SIZE = 3
"""Smallest batch for which the VICReg statistics are defined and not degenerate (see above)."""


@dataclass(frozen=True)
class VICRegTerms:
    """The weighted total and the three raw (unweighted) VICReg terms, all scalar tensors.

    Attributes:
        total: ``lambda * invariance + mu * variance + nu * covariance`` (differentiable).
        invariance: Mean squared error between the views, ``s(Z, Z')``.
        variance: ``v(Z) + v(Z')``.
        covariance: ``c(Z) + c(Z')``.

    Example:
        >>> import torch
        >>> one = torch.tensor(1.0)
        >>> VICRegTerms(one, one, one, one).as_floats()["total"]
        1.0
    """

    total: Tensor
    invariance: Tensor
    variance: Tensor
    covariance: Tensor

    def as_floats(self) -> dict[str, float]:
        """The four values as Python floats (for logging).

        Returns:
            ``{"total": ..., "invariance": ..., "variance": ..., "covariance": ...}``.
        """
        return {
            "total": float(self.total.detach()),
            "invariance": float(self.invariance.detach()),
            "variance": float(self.variance.detach()),
            "covariance": float(self.covariance.detach()),
        }


def _check_settings(
    invariance_weight: float,
    variance_weight: float,
    covariance_weight: float,
    gamma: float,
    eps: float,
) -> None:
    def finite(value: object) -> bool:
        return isinstance(value, int | float) and math.isfinite(value)

    for name, value in (
        ("invariance_weight", invariance_weight),
        ("variance_weight", variance_weight),
        ("covariance_weight", covariance_weight),
    ):
        if not (finite(value) and value >= 0):
            raise ValueError(f"`{name}` must be a finite number >= 0; got {value!r}.")
    for name, value in (("gamma", gamma), ("eps", eps)):
        if not (finite(value) and value > 0):
            raise ValueError(f"`{name}` must be a finite number > 0; got {value!r}.")


def _check_pair(z_a: Tensor, z_b: Tensor) -> None:
    check_tensor(z_a, "z_a")
    check_tensor(z_b, "z_b")
    for name, z in (("z_a", z_a), ("z_b", z_b)):
        if z.ndim != 2:
            raise ValueError(
                f"`{name}` must be a (batch, features) matrix; got shape {tuple(z.shape)}."
            )
    if z_a.shape != z_b.shape:
        raise ValueError(
            f"`z_a` and `z_b` must have the same shape (two views of the same batch); got "
            f"{tuple(z_a.shape)} and {tuple(z_b.shape)}."
        )
    if z_a.shape[0] < MIN_BATCH_SIZE:
        raise ValueError(
            f"VICReg needs a batch of at least {MIN_BATCH_SIZE} (batch variance and covariance "
            f"are undefined for 1 and degenerate for 2); got batch size {z_a.shape[0]}."
        )
    if not torch.is_floating_point(z_a) or not torch.is_floating_point(z_b):
        raise TypeError(f"`z_a` and `z_b` must be floating point; got {z_a.dtype}, {z_b.dtype}.")
    check_finite(z_a, "z_a", OUTPUTS_FINITE)
    check_finite(z_b, "z_b", OUTPUTS_FINITE)


def _gather_views(z_a: Tensor, z_b: Tensor) -> tuple[Tensor, Tensor]:
    """Both views' rows of every rank (one gradient-keeping all-gather); as given in one process.

    Shape errors are raised before the collective, NaN/inf and batch-size errors after it (on
    the gathered batch), so every rank raises the same error and none is left waiting.
    """
    if not distributed.is_distributed():
        return z_a, z_b
    for name, z in (("z_a", z_a), ("z_b", z_b)):
        check_tensor(z, name)
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        _check_pair(z_a, z_b)  # raises the shape error
    both = distributed.gather_with_grad(torch.cat([z_a, z_b], dim=1))
    return both[:, : z_a.shape[1]], both[:, z_a.shape[1] :]


def variance_term(z: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """``v(Z) = mean_j relu(gamma - sqrt(Var_batch(Z_j) + eps))`` for one view.

    Args:
        z: Representations, shape ``(B, D)``.
        gamma: Target standard deviation of each dimension.
        eps: Added to the variance for a finite gradient at zero variance.

    Returns:
        A scalar tensor.

    Example:
        >>> import torch
        >>> float(variance_term(torch.zeros(8, 3), eps=1e-4))  # collapsed: hinge ~ gamma
        0.9900000095367432
    """
    std = torch.sqrt(z.var(dim=0, unbiased=True) + eps)
    return torch.relu(gamma - std).mean()


def covariance_term(z: Tensor) -> Tensor:
    """``c(Z) = sum_{j != k} C(Z)_jk^2 / D`` with ``C`` the unbiased batch covariance.

    Args:
        z: Representations, shape ``(B, D)``.

    Returns:
        A scalar tensor.

    Example:
        >>> import torch
        >>> z = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [0.0, 0.0]])  # both columns equal
        >>> float(covariance_term(z))
        1.0
    """
    batch, dim = z.shape
    centred = z - z.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / (batch - 1)
    off_diagonal = cov - torch.diag_embed(torch.diagonal(cov))
    return off_diagonal.pow(2).sum() / dim


def vicreg_loss(
    z_a: Tensor,
    z_b: Tensor,
    *,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
    global_batch: bool = False,
) -> VICRegTerms:
    """VICReg loss of two ``(B, D)`` views (see the module docstring for the maths).

    Args:
        z_a: First view's representations, shape ``(B, D)`` with ``B >= 3``.
        z_b: Second view's representations, same shape; row ``i`` pairs with ``z_a[i]``.
        invariance_weight: ``lambda``, weight of the mean squared error between the views.
        variance_weight: ``mu``, weight of the variance hinge (summed over the two views).
        covariance_weight: ``nu``, weight of the off-diagonal covariance (summed over views).
        gamma: Target standard deviation per dimension.
        eps: Numerical constant inside the square root of the variance.
        global_batch: Under ``torch.distributed`` with several processes, compute the terms
            over the rows of *all* ranks, gathered with gradients flowing
            (:func:`sbi_symmetry.distributed.gather_with_grad`); every rank then returns the
            loss of the whole global batch. Must be called on every rank. No effect in one
            process.

    Returns:
        :class:`VICRegTerms` with the weighted ``total`` and the raw terms.

    Raises:
        ValueError: For inputs that are not 2-D, of different shapes, a batch smaller than
            ``MIN_BATCH_SIZE``, NaN/inf values, or negative weights.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> z_a = torch.randn(128, 8)
        >>> terms = vicreg_loss(z_a, z_a + 0.1 * torch.randn(128, 8))
        >>> bool(0 < terms.invariance < 0.02)
        True
    """
    if global_batch:
        z_a, z_b = _gather_views(z_a, z_b)
    _check_pair(z_a, z_b)
    _check_settings(invariance_weight, variance_weight, covariance_weight, gamma, eps)

    invariance = torch.mean((z_a - z_b) ** 2)
    variance = variance_term(z_a, gamma, eps) + variance_term(z_b, gamma, eps)
    covariance = covariance_term(z_a) + covariance_term(z_b)
    total = (
        invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance
    )
    return VICRegTerms(total=total, invariance=invariance, variance=variance, covariance=covariance)


class VICRegLoss(nn.Module):
    """:func:`vicreg_loss` as a module, with the weights as attributes.

    Args:
        invariance_weight: ``lambda``.
        variance_weight: ``mu``.
        covariance_weight: ``nu``.
        gamma: Target standard deviation per dimension.
        eps: Numerical constant inside the square root of the variance.

    Example:
        >>> import torch
        >>> loss = VICRegLoss(covariance_weight=0.0)
        >>> z = torch.randn(16, 3)
        >>> bool(loss(z, z).total == 25 * loss(z, z).variance)
        True
    """

    def __init__(
        self,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        _check_settings(invariance_weight, variance_weight, covariance_weight, gamma, eps)
        self.invariance_weight = invariance_weight
        self.variance_weight = variance_weight
        self.covariance_weight = covariance_weight
        self.gamma = gamma
        self.eps = eps

    def forward(self, z_a: Tensor, z_b: Tensor, global_batch: bool = False) -> VICRegTerms:
        """VICReg terms of two ``(B, D)`` views with this module's weights.

        Args:
            z_a: First view's representations ``(B, D)``.
            z_b: Second view's representations ``(B, D)``.
            global_batch: Statistics over the rows of every process (see :func:`vicreg_loss`).

        Returns:
            The weighted total and the raw terms.
        """
        return vicreg_loss(
            z_a,
            z_b,
            invariance_weight=self.invariance_weight,
            variance_weight=self.variance_weight,
            covariance_weight=self.covariance_weight,
            gamma=self.gamma,
            eps=self.eps,
            global_batch=global_batch,
        )

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return (
            f"invariance_weight={self.invariance_weight}, variance_weight={self.variance_weight}, "
            f"covariance_weight={self.covariance_weight}, gamma={self.gamma}, eps={self.eps}"
        )
