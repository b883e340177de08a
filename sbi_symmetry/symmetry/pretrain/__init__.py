"""VICReg pretraining of a symmetry embedding (method A's first stage).

* :mod:`~sbi_symmetry.symmetry.pretrain.config`: :class:`PretrainConfig`, checked when built;
* :mod:`~sbi_symmetry.symmetry.pretrain.schedule`: warm-up then cosine (or constant) rate;
* :mod:`~sbi_symmetry.symmetry.pretrain.data`: inputs, split, view banks, input scaling;
* :mod:`~sbi_symmetry.symmetry.pretrain.checkpoint`: one state object, saved every epoch;
* :mod:`~sbi_symmetry.symmetry.pretrain.loop`: :func:`pretrain_vicreg` and its epochs.
"""

from sbi_symmetry.symmetry.pretrain.config import PretrainConfig
from sbi_symmetry.symmetry.pretrain.loop import pretrain_vicreg
from sbi_symmetry.symmetry.pretrain.schedule import scheduled_learning_rate

__all__ = ["PretrainConfig", "pretrain_vicreg", "scheduled_learning_rate"]
