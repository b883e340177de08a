"""Deprecated alias of :mod:`sbi_symmetry.reference.fisher` (its old path); removed in 0.3."""

import warnings

from sbi_symmetry.reference.fisher import *  # noqa: F403

warnings.warn(
    "sbi_symmetry.fisher moved to sbi_symmetry.reference.fisher; "
    "import from there (or from sbi_symmetry).",
    DeprecationWarning,
    stacklevel=2,
)
