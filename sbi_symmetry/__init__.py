"""sbi-symmetry: symmetry-invariant embeddings and contrastive ratio estimators for ``sbi``.

Example:
    >>> from sbi_symmetry import DampedOscillator
    >>> DampedOscillator().x_shape
    (200,)
"""

from __future__ import annotations

from sbi_symmetry.tasks import DampedOscillator, NuisanceTask, SignalInNoiseTask, SineGaussian

__version__ = "0.1.0"

__all__ = [
    "DampedOscillator",
    "NuisanceTask",
    "SignalInNoiseTask",
    "SineGaussian",
    "__version__",
]
