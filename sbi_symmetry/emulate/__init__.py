"""Embed and Emulate: a two-tower ratio estimator trained with symmetric InfoNCE inside ``sbi``.

* :class:`EmbedEmulateRatioEstimator`: ``log r(theta, x) = <f(x), g(theta)> / temperature``,
  an ``sbi`` ``RatioEstimator`` that encodes each distinct ``x`` once and caches ``x_o``.
* :func:`embed_emulate_classifier`: a builder for ``classifier=`` of ``NRE_B``/``NRE_C``;
  :func:`default_emulator` the ``g(theta)`` it builds (optionally behind Fourier features).
* :class:`EmbedEmulate`: the NRE trainer with the symmetric InfoNCE loss over the whole batch.
* :func:`refine_emulator`: the last phase of ``EmbedEmulate.train`` (``refine_emulator=False``
  skips it) that retrains the emulator and the data tower's head MLP on the frozen backbone's
  cached features with the ``x -> theta`` loss.
* :func:`product_estimator`: several trained estimators as one, their log-ratios averaged (a
  geometric-mean ensemble, again a two-tower critic).
* :class:`TwoTowerPosterior` / :func:`build_two_tower_posterior`: its posterior sampled without
  MCMC: ``x_o`` encoded once, the emulator and one matrix product over chunks of ``theta``
  (exact rejection from the prior or adaptive importance sampling, in
  :mod:`sbi_symmetry.emulate.samplers`, observations of a batch sharing their candidates; the
  pooled Gaussian-mixture proposal lives in :mod:`sbi_symmetry.emulate.proposal`).

Example:
    >>> from sbi_symmetry.emulate import EmbedEmulate
    >>> [cls.__name__ for cls in EmbedEmulate.__mro__[1:4]]  # sbi's NRE trainer, via the shim
    ['ShardedTrainingHooks', 'RatioTrainerHooks', 'RatioEstimatorTrainer']
"""

from __future__ import annotations

from sbi_symmetry.emulate.builder import default_emulator, embed_emulate_classifier
from sbi_symmetry.emulate.estimator import EmbedEmulateRatioEstimator
from sbi_symmetry.emulate.posterior import TwoTowerPosterior, build_two_tower_posterior
from sbi_symmetry.emulate.product import product_estimator
from sbi_symmetry.emulate.refine import RefineSummary, refine_emulator
from sbi_symmetry.emulate.trainer import EmbedEmulate

__all__ = [
    "EmbedEmulate",
    "EmbedEmulateRatioEstimator",
    "RefineSummary",
    "TwoTowerPosterior",
    "build_two_tower_posterior",
    "default_emulator",
    "embed_emulate_classifier",
    "product_estimator",
    "refine_emulator",
]
