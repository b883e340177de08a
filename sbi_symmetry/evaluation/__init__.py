"""Evaluation: accuracy against references, calibration with sbi's diagnostics, and cost.

Example:
    >>> from sbi_symmetry.evaluation import count_parameters
    >>> from torch import nn
    >>> count_parameters(nn.Linear(3, 2))
    8
"""

from __future__ import annotations

from sbi_symmetry.evaluation.accuracy import c2st_score, interval_ratio, std_ratio, summarise
from sbi_symmetry.evaluation.calibration import (
    CalibrationResult,
    calibrate,
    coverage_from_ranks,
)
from sbi_symmetry.evaluation.cost import Stopwatch, count_macs, count_parameters

__all__ = [
    "CalibrationResult",
    "Stopwatch",
    "c2st_score",
    "calibrate",
    "count_macs",
    "count_parameters",
    "coverage_from_ranks",
    "interval_ratio",
    "std_ratio",
    "summarise",
]
