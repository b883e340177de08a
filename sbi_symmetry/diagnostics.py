"""Deprecated alias of :mod:`sbi_symmetry.symmetry.diagnostics` (its old path); removed in 0.3."""

import warnings

from sbi_symmetry.symmetry.diagnostics import *  # noqa: F403

warnings.warn(
    "sbi_symmetry.diagnostics moved to sbi_symmetry.symmetry.diagnostics; "
    "import from there (or from sbi_symmetry).",
    DeprecationWarning,
    stacklevel=2,
)
