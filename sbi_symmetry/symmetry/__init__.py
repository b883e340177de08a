"""Method A, symmetry embeddings: VICReg pretraining and the sbi-facing embedding.

* :mod:`~sbi_symmetry.symmetry.embedding`: :class:`SymmetryEmbedding`, the module that goes to
  sbi's ``posterior_nn`` as ``embedding_net`` (input scaling, freezing, save/load);
* :mod:`~sbi_symmetry.symmetry.pretrain`: :func:`pretrain_vicreg` and its :class:`PretrainConfig`;
* :mod:`~sbi_symmetry.symmetry.diagnostics`: collapse statistics, invariance error, the summaries
  plot;
* :mod:`~sbi_symmetry.symmetry.cached`: :func:`cached_npe`, NPE on a frozen embedding's features
  encoded once;
* :mod:`~sbi_symmetry.symmetry.finetune`: :func:`train_npe`, sbi's NPE training with the
  embedding frozen for its first epochs, then fine-tuned.
"""

from sbi_symmetry.symmetry.cached import cached_npe
from sbi_symmetry.symmetry.diagnostics import (
    collapse_statistics,
    invariance_error,
    plot_summaries,
    summary_invariance,
)
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding, symmetry_posterior_nn
from sbi_symmetry.symmetry.finetune import train_npe
from sbi_symmetry.symmetry.pretrain import PretrainConfig, pretrain_vicreg

__all__ = [
    "PretrainConfig",
    "SymmetryEmbedding",
    "cached_npe",
    "collapse_statistics",
    "invariance_error",
    "plot_summaries",
    "pretrain_vicreg",
    "summary_invariance",
    "symmetry_posterior_nn",
    "train_npe",
]
