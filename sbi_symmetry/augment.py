"""Deprecated alias of :mod:`sbi_symmetry.views` (its old path); removed in 0.3."""

import warnings

from sbi_symmetry.views import *  # noqa: F403

warnings.warn(
    "sbi_symmetry.augment moved to sbi_symmetry.views; import from there (or from sbi_symmetry).",
    DeprecationWarning,
    stacklevel=2,
)
