"""VICReg pretraining of a symmetry embedding (method A's first stage)."""

from sbi_symmetry.symmetry.pretrain.loop import (
    PretrainConfig,
    pretrain_vicreg,
    scheduled_learning_rate,
)

__all__ = ["PretrainConfig", "pretrain_vicreg", "scheduled_learning_rate"]
