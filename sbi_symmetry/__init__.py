"""sbi-symmetry: symmetry-invariant embeddings and contrastive ratio estimators for ``sbi``.

Example:
    >>> from sbi_symmetry import DampedOscillator
    >>> DampedOscillator().x_shape
    (200,)
"""

from __future__ import annotations

from sbi_symmetry._sbi_compat import NullTracker
from sbi_symmetry.checkpoint import ResumableTraining
from sbi_symmetry.emulate import (
    EmbedEmulate,
    EmbedEmulateRatioEstimator,
    embed_emulate_classifier,
)
from sbi_symmetry.losses import VICRegLoss, VICRegTerms, symmetric_infonce, vicreg_loss
from sbi_symmetry.nets import ConvEncoder1D, Expander, ResidualMLP
from sbi_symmetry.simulation import SimulationStore, simulate_dataset, simulate_views
from sbi_symmetry.symmetry.cached import cached_npe
from sbi_symmetry.symmetry.diagnostics import collapse_statistics, invariance_error, plot_summaries
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding, symmetry_posterior_nn
from sbi_symmetry.symmetry.finetune import train_npe
from sbi_symmetry.symmetry.pretrain import PretrainConfig, pretrain_vicreg
from sbi_symmetry.tasks import (
    DampedOscillator,
    Lorenz96,
    NuisanceTask,
    SignalInNoiseTask,
    SineGaussian,
    get_task,
)
from sbi_symmetry.views import (
    AugmentedViews,
    BudgetSplit,
    CircularShift,
    Compose,
    NoisyTimeShift,
    ResimulatedViews,
    TimeShift,
    Views,
    shift_views,
    split_budget,
)

__version__ = "0.1.0"

__all__ = [
    "AugmentedViews",
    "BudgetSplit",
    "CircularShift",
    "Compose",
    "ConvEncoder1D",
    "DampedOscillator",
    "EmbedEmulate",
    "EmbedEmulateRatioEstimator",
    "Expander",
    "Lorenz96",
    "NoisyTimeShift",
    "NuisanceTask",
    "NullTracker",
    "PretrainConfig",
    "ResidualMLP",
    "ResimulatedViews",
    "ResumableTraining",
    "SignalInNoiseTask",
    "SimulationStore",
    "SineGaussian",
    "SymmetryEmbedding",
    "TimeShift",
    "VICRegLoss",
    "VICRegTerms",
    "Views",
    "__version__",
    "cached_npe",
    "collapse_statistics",
    "embed_emulate_classifier",
    "get_task",
    "invariance_error",
    "plot_summaries",
    "pretrain_vicreg",
    "shift_views",
    "simulate_dataset",
    "simulate_views",
    "split_budget",
    "symmetric_infonce",
    "symmetry_posterior_nn",
    "train_npe",
    "vicreg_loss",
]
