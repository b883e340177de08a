"""End-to-end workflow: the compared methods, presets, the pipeline and its report.

A finished run's posteriors load back with :func:`load_posterior` (see
:mod:`sbi_symmetry.workflow.saved`).
"""

from sbi_symmetry.workflow.saved import load_posterior, read_stamp, save_posterior

__all__ = ["load_posterior", "read_stamp", "save_posterior"]
