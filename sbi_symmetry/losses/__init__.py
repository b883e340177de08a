"""Training losses: VICReg (plus an optional supervised term), symmetric and local InfoNCE, NRE-C.

Example:
    >>> import torch
    >>> from sbi_symmetry.losses import vicreg_loss
    >>> z = torch.randn(64, 3)
    >>> float(vicreg_loss(z, z).invariance)
    0.0
"""

from __future__ import annotations

from sbi_symmetry.losses.infonce import symmetric_infonce
from sbi_symmetry.losses.local import local_contrastive
from sbi_symmetry.losses.nrec import contrastive_nrec
from sbi_symmetry.losses.supervised import supervised_term
from sbi_symmetry.losses.vicreg import VICRegLoss, VICRegTerms, vicreg_loss

__all__ = [
    "VICRegLoss",
    "VICRegTerms",
    "contrastive_nrec",
    "local_contrastive",
    "supervised_term",
    "symmetric_infonce",
    "vicreg_loss",
]
