"""Views: pairs of data that share ``theta`` but differ in nuisance and noise.

* :mod:`~sbi_symmetry.views.base`: the :class:`Views` protocol and the shape-checked
  application of a user's augmentation;
* :mod:`~sbi_symmetry.views.resimulated`: :class:`ResimulatedViews` (simulate twice);
* :mod:`~sbi_symmetry.views.augment`: :class:`TimeShift`, :class:`CircularShift`,
  :class:`Compose` and :class:`AugmentedViews` (transform stored data twice).
"""

from sbi_symmetry.views.augment import (
    AugmentedViews,
    CircularShift,
    Compose,
    TimeShift,
    circular_shift,
    time_shift,
)
from sbi_symmetry.views.base import Augmentation, Views, apply_checked
from sbi_symmetry.views.resimulated import ResimulatedViews

__all__ = [
    "Augmentation",
    "AugmentedViews",
    "CircularShift",
    "Compose",
    "ResimulatedViews",
    "TimeShift",
    "Views",
    "apply_checked",
    "circular_shift",
    "time_shift",
]
