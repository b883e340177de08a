"""Training losses: VICReg for symmetry embeddings and symmetric InfoNCE for Embed and Emulate.

Example:
    >>> import torch
    >>> from sbi_symmetry.losses import vicreg_loss
    >>> z = torch.randn(64, 3)
    >>> float(vicreg_loss(z, z).invariance)
    0.0
"""

from __future__ import annotations

from sbi_symmetry.losses.infonce import symmetric_infonce
from sbi_symmetry.losses.vicreg import VICRegLoss, VICRegTerms, vicreg_loss

__all__ = ["VICRegLoss", "VICRegTerms", "symmetric_infonce", "vicreg_loss"]
