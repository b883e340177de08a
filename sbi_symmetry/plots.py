"""Deprecated alias of :mod:`sbi_symmetry.workflow.plots` (its old path); removed in 0.3."""

import warnings

from sbi_symmetry.workflow.plots import *  # noqa: F403

warnings.warn(
    "sbi_symmetry.plots moved to sbi_symmetry.workflow.plots; "
    "import from there (or from sbi_symmetry).",
    DeprecationWarning,
    stacklevel=2,
)
