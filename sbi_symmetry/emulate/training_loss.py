"""The per-pair training loss of :class:`~sbi_symmetry.emulate.EmbedEmulate` as a module.

Symmetric InfoNCE over the (global) batch, with ``prior_negatives`` extra prior draws as
candidates of every ``x -> theta`` softmax and, with ``local_negatives``, the local contrastive
term of :mod:`sbi_symmetry.losses.local` (both in training and validation alike, so early stopping
watches the loss that is trained), plus, while training, the weighted VICReg term on two views of
the batch. A module, so that ``DistributedDataParallel`` can wrap it.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from sbi_symmetry.emulate import EmbedEmulateRatioEstimator
    >>> theta, x = torch.randn(8, 2), torch.randn(8, 3)
    >>> net = EmbedEmulateRatioEstimator(nn.Linear(3, 4), nn.Linear(2, 4), theta, x)
    >>> TrainingLoss(net, None, 0.0, {})(theta, x).shape
    torch.Size([8])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from sbi_symmetry.emulate.estimator import EmbedEmulateRatioEstimator
from sbi_symmetry.losses.local import LocalCandidates, local_candidates, prior_log_prob
from sbi_symmetry.losses.vicreg import vicreg_loss


class TrainingLoss(nn.Module):
    """The per-pair training loss as a module, so that DDP can wrap it.

    Its forward uses every trained weight; the global-batch statistics are a no-op in one process.
    """

    def __init__(
        self,
        net: EmbedEmulateRatioEstimator,
        views: Any,
        symmetry_weight: float,
        vicreg_kwargs: dict[str, Any],
        prior: Distribution | None = None,
        prior_negatives: int = 0,
        local_negatives: int = 0,
        local_scales: tuple[float, float] = (0.02, 0.5),
        row_weight: float = 0.5,
    ) -> None:
        super().__init__()
        self.net = net
        self.views = views
        self.symmetry_weight = symmetry_weight
        self.vicreg_kwargs = vicreg_kwargs
        self.prior = prior
        self.prior_negatives = prior_negatives
        self.local_negatives = local_negatives
        self.local_scales = local_scales
        self.row_weight = row_weight

    def forward(self, theta: Tensor, x: Tensor) -> Tensor:
        """Per-pair symmetric InfoNCE (+ the weighted VICReg term while training)."""
        negatives = None
        if self.prior_negatives > 0:
            assert self.prior is not None  # EmbedEmulate refuses the setting without a prior
            draws = self.prior.sample((self.prior_negatives,)).to(theta.device, theta.dtype)
            negatives = draws.reshape(self.prior_negatives, -1)
        local = self._local(theta) if self.local_negatives > 0 else None
        losses = self.net.loss(
            theta,
            x,
            global_batch=True,
            negatives=negatives,
            local=local,
            row_weight=self.row_weight,
        )
        if self.symmetry_weight > 0 and self.net.training:
            batch = theta if self.views.input_kind == "theta" else x
            view_a, view_b = self.views(batch)
            terms = vicreg_loss(
                self.net.embedding_net(view_a),
                self.net.embedding_net(view_b),
                global_batch=True,
                **self.vicreg_kwargs,
            )
            losses = losses + self.symmetry_weight * terms.total
        return losses

    def _local(self, theta: Tensor) -> LocalCandidates:
        """Neighbours of every true parameter, with their prior log-density and offset scale."""
        assert self.prior is not None  # EmbedEmulate refuses the setting without a prior
        sigma = self.net.theta_scale.to(theta.device, theta.dtype)
        candidates, width = local_candidates(theta, self.local_negatives, self.local_scales, sigma)
        with torch.no_grad():
            log_prior = prior_log_prob(self.prior, candidates)
        return LocalCandidates(candidates, log_prior, width)
