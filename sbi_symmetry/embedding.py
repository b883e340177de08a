"""Deprecated alias of :mod:`sbi_symmetry.symmetry.embedding` (its old path); removed in 0.3."""

import warnings

from sbi_symmetry.symmetry.embedding import *  # noqa: F403

warnings.warn(
    "sbi_symmetry.embedding moved to sbi_symmetry.symmetry.embedding; "
    "import from there (or from sbi_symmetry).",
    DeprecationWarning,
    stacklevel=2,
)
