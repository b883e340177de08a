"""Views: pairs of data that share ``theta`` but differ in nuisance and noise.

* :mod:`~sbi_symmetry.views.base`: the :class:`Views` protocol and the shape-checked
  application of a user's augmentation;
* :mod:`~sbi_symmetry.views.resimulated`: :class:`ResimulatedViews` (simulate twice);
* :mod:`~sbi_symmetry.views.augment`: :class:`TimeShift`, :class:`CircularShift`,
  :class:`Compose` and :class:`AugmentedViews` (transform stored data twice);
* :mod:`~sbi_symmetry.views.noise_fill`: :class:`NoisyTimeShift` (shift, the entering samples
  drawn from the white-noise model) and :func:`shift_views` (views of a signal-in-noise task's
  stored simulations at no simulator cost), :func:`supports_shift_views` and
  :func:`resolve_pretrain_views`;
* :mod:`~sbi_symmetry.views.budget`: :func:`split_budget` (simulator calls for the training set
  and for views) and :class:`BudgetSplit`.
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
from sbi_symmetry.views.budget import BudgetSplit, split_budget
from sbi_symmetry.views.noise_fill import (
    NoisyTimeShift,
    default_max_shift,
    noise_filled_shift,
    resolve_pretrain_views,
    shift_views,
    supports_shift_views,
)
from sbi_symmetry.views.resimulated import ResimulatedViews

__all__ = [
    "Augmentation",
    "AugmentedViews",
    "BudgetSplit",
    "CircularShift",
    "Compose",
    "NoisyTimeShift",
    "ResimulatedViews",
    "TimeShift",
    "Views",
    "apply_checked",
    "circular_shift",
    "default_max_shift",
    "noise_filled_shift",
    "resolve_pretrain_views",
    "shift_views",
    "split_budget",
    "supports_shift_views",
    "time_shift",
]
