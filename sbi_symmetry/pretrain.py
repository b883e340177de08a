"""Deprecated alias of :mod:`sbi_symmetry.symmetry.pretrain` (its old path); removed in 0.3."""

import warnings

from sbi_symmetry.symmetry.pretrain import *  # noqa: F403

warnings.warn(
    "sbi_symmetry.pretrain moved to sbi_symmetry.symmetry.pretrain; "
    "import from there (or from sbi_symmetry).",
    DeprecationWarning,
    stacklevel=2,
)
