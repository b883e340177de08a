r"""The product of several trained two-tower ratio estimators: a geometric-mean ensemble.

Estimators trained on the same simulations from different random starts (initial weights,
batch order) agree where the data speak and err in different places: one puts a speck of mass
far from the exact posterior, another is a little too wide in one direction. Averaging their
log-ratios with weights ``w_k`` (summing to 1),

    log r(theta, x) = sum_k w_k <f_k(x), g_k(theta)> / T_k,

keeps what they share and damps what only one of them says; the posterior ``p(theta)
r(theta, x)`` is the normalised geometric mean of the members' posteriors. It costs one training
per member and no simulation.

It is again a two-tower critic: with each member's projected embeddings (unit-norm where its
similarity asks),

    f(x) = [sqrt(w_k) f_k(x) / T_k]_k,      g(theta) = [sqrt(w_k) g_k(theta)]_k,

``<f, g> = log r``. Where every member's ``g_k`` is unit-norm (``"cosine"`` or ``"scaled"``),
``|g|^2 = sum_k w_k = 1``: the product is a ``"scaled"`` estimator with temperature 1, so
``log r <= |f(x_o)|`` and :class:`~sbi_symmetry.emulate.posterior.TwoTowerPosterior` samples it
by exact rejection as it does a single member; otherwise it is a ``"dot"`` estimator.

Example:
    >>> import torch
    >>> from torch import nn
    >>> theta, x = torch.randn(50, 2), torch.randn(50, 3)
    >>> members = [EmbedEmulateRatioEstimator(nn.Linear(3, 4), nn.Linear(2, 4), theta, x)
    ...            for _ in range(2)]
    >>> both = product_estimator(members)
    >>> mean = sum(m.unnormalized_log_ratio(theta[:5], x[:5]) for m in members) / 2
    >>> bool(torch.allclose(both.unnormalized_log_ratio(theta[:5], x[:5]), mean, atol=1e-5))
    True
    >>> both.similarity
    'scaled'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from sbi_symmetry.emulate.estimator import EmbedEmulateRatioEstimator


class _MemberSide(nn.Module):
    """One member's projected embedding of one side, times a constant (frozen)."""

    def __init__(
        self, member: EmbedEmulateRatioEstimator, side: Literal["x", "theta"], scale: float
    ) -> None:
        super().__init__()
        self.member, self.side, self.scale = member, side, scale

    def forward(self, values: Tensor) -> Tensor:
        tower = self.member.embedding_net_x if self.side == "x" else self.member.embedding_net_theta
        return self.member._project(tower(values), self.side) * self.scale


class _Concatenated(nn.Module):
    """The members' embeddings of one side side by side."""

    def __init__(self, parts: Sequence[nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, values: Tensor) -> Tensor:
        return torch.cat([part(values) for part in self.parts], dim=-1)


def product_estimator(
    estimators: Sequence[EmbedEmulateRatioEstimator], weights: Sequence[float] | None = None
) -> EmbedEmulateRatioEstimator:
    """One estimator whose log-ratio is the weighted mean of the members' (module docstring).

    The members are used as they are (each with its temperature at the time of the call) and put
    in ``eval()`` mode; train them first. The product is for inference: sample it with
    :func:`~sbi_symmetry.emulate.build_two_tower_posterior`; it is not meant to be trained.

    Args:
        estimators: Two or more trained estimators for the same parameters and data shapes.
        weights: One positive weight per member, summing to 1; default equal weights.

    Returns:
        An :class:`~sbi_symmetry.emulate.EmbedEmulateRatioEstimator` (``"scaled"`` with
        temperature 1 where every member has unit-norm parameter embeddings, else ``"dot"``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> theta, x = torch.randn(20, 1), torch.randn(20, 2)
        >>> one = EmbedEmulateRatioEstimator(nn.Linear(2, 3), nn.Linear(1, 3), theta, x)
        >>> product_estimator([one, one], weights=[0.25, 0.75]).embedding_dim
        6
    """
    members = list(estimators)
    if len(members) < 2 or not all(isinstance(m, EmbedEmulateRatioEstimator) for m in members):
        raise ValueError(
            "`estimators` must be two or more EmbedEmulateRatioEstimator instances; got "
            f"{[type(m).__name__ for m in members]}."
        )
    shapes = {(tuple(m.theta_shape), tuple(m.x_shape)) for m in members}
    if len(shapes) != 1:
        raise ValueError(f"The members must share their (theta, x) shapes; got {sorted(shapes)}.")
    w = [1.0 / len(members)] * len(members) if weights is None else [float(v) for v in weights]
    positive = all(math.isfinite(v) and v > 0 for v in w)  # NaN fails every comparison
    if len(w) != len(members) or not positive or abs(sum(w) - 1) > 1e-6:
        raise ValueError(
            f"`weights` must be {len(members)} positive numbers summing to 1; got {weights!r}."
        )
    x_parts, theta_parts = [], []
    for member, weight in zip(members, w, strict=True):
        member.eval()
        temperature = float(member.temperature.detach())
        x_parts.append(_MemberSide(member, "x", math.sqrt(weight) / temperature))
        theta_parts.append(_MemberSide(member, "theta", math.sqrt(weight)))
    unit = all(m.similarity != "dot" for m in members)
    theta_shape, x_shape = shapes.pop()
    device = next(members[0].parameters()).device  # the product lives with its members
    product = EmbedEmulateRatioEstimator(
        _Concatenated(x_parts),
        _Concatenated(theta_parts),
        torch.zeros(2, *theta_shape, device=device),
        torch.zeros(2, *x_shape, device=device),
        similarity="scaled" if unit else "dot",
        temperature=1.0,
        learn_temperature=False,
        z_score_theta=False,
    )
    return product.to(device).eval()
