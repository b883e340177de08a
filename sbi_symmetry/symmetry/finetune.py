"""Fine-tuning a pretrained embedding inside ``sbi``'s NPE, after a frozen start.

``sbi``'s ``NPE.train`` trains the flow and the embedding together from the first epoch. The
flow starts untrained, so its first gradients into the pretrained summary are noise, and a wide
encoder can lose there what pretraining found: on the sine-Gaussian, a 16-channel encoder
fine-tuned from the start left the posterior of the frequency ``f0`` 1.4-2.5x too wide and failed
SBC (``benchmarks/results/fast_encoder_seeds.md``). :func:`train_npe` first trains the flow
alone on the frozen summary, one ``sbi`` ``train`` call with ``max_num_epochs=frozen_epochs``,
which trains ``frozen_epochs + 1`` epochs (sbi 0.27 counts from 0), then resumes the same
trainer (same training/validation split, optimiser and best-model tracking) with the embedding's
own freeze mode, for up to ``max_num_epochs`` more epochs with early stopping restarted
(``benchmarks/results/npe_warm_start.md``).

The frozen start is bounded in optimiser steps as well as epochs: ``frozen_epochs="auto"``
(the default) is :data:`FROZEN_EPOCHS` epochs but at most :data:`FROZEN_STEPS` steps, at least
one epoch (:func:`frozen_epochs_for`), so the start trains at most :data:`FROZEN_STEPS` steps
plus one epoch. With sbi's batch of 200 that is the setting 20 at 10^4 simulations, 10 at 10^5,
1 at 10^6 (trained: 21 epochs, 945 steps; 11, 4,950; 2, 9,000). On the oscillator at 10^6
``frozen_epochs=20`` (21 epochs, 94,500 steps) left the posteriors further from the exact ones
than ``frozen_epochs=1`` (2 epochs) did, while at 10^5 the settings one, two, ten and twenty
were level (``benchmarks/results/npe_frozen_steps.md``).

Example:
    >>> import torch
    >>> from sbi.inference import NPE
    >>> from sbi.utils import BoxUniform
    >>> from sbi_symmetry._sbi_compat import NullTracker
    >>> prior = BoxUniform(torch.zeros(2), torch.ones(2))
    >>> theta = prior.sample((200,))
    >>> x = torch.cat([theta, theta], dim=1) + 0.1 * torch.randn(200, 4)
    >>> embedding = SymmetryEmbedding(torch.nn.Linear(4, 2), freeze="none")
    >>> npe = NPE(prior, density_estimator=embedding.posterior_nn("mdn"), tracker=NullTracker(),
    ...           show_progress_bars=False)
    >>> estimator = train_npe(npe.append_simulations(theta, x), embedding, frozen_epochs=2,
    ...                       max_num_epochs=3)
    >>> embedding.freeze, npe.build_posterior(estimator).sample((5,), x=x[:1]).shape
    ('none', torch.Size([5, 2]))
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

from torch import nn

from sbi_symmetry._sbi_compat import anneal as _anneal
from sbi_symmetry._sbi_compat import (
    appended_simulations,
    get_net_builder,
    get_neural_net,
    resume,
)
from sbi_symmetry._validation import check_int
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding

FROZEN_EPOCHS = 20
"""``frozen_epochs="auto"``'s setting, at most (the frozen start trains one epoch more)."""
FROZEN_STEPS = 4_500
"""Optimiser steps of the setting's epochs under ``frozen_epochs="auto"``, at most; one epoch at
least (the frozen start trains one epoch more: at most these steps plus one epoch)."""


def frozen_epochs_for(
    num_simulations: int, training_batch_size: int = 200, validation_fraction: float = 0.1
) -> int:
    """:data:`FROZEN_EPOCHS` epochs, fewer where they exceed :data:`FROZEN_STEPS` steps.

    sbi trains on ``int(num_simulations * (1 - validation_fraction))`` rows, one step per full
    batch of ``training_batch_size`` (it drops the last, partial one). At least one epoch.

    Args:
        num_simulations: Rows appended to the trainer.
        training_batch_size: sbi's ``training_batch_size``.
        validation_fraction: sbi's ``validation_fraction``.

    Returns:
        The setting ``frozen_epochs`` (the frozen start trains one epoch more).

    Example:
        >>> [frozen_epochs_for(n) for n in (10_000, 100_000, 200_000, 1_000_000)]
        [20, 10, 5, 1]
    """
    check_int(num_simulations, "num_simulations", 1)
    check_int(training_batch_size, "training_batch_size", 1)
    rows = max(1, int((1.0 - validation_fraction) * num_simulations))
    steps_per_epoch = rows // min(training_batch_size, rows)
    return max(1, min(FROZEN_EPOCHS, FROZEN_STEPS // steps_per_epoch))


def resolve_frozen_epochs(
    frozen_epochs: int | Literal["auto"], num_simulations: int, **train_kwargs: Any
) -> int:
    """``frozen_epochs`` as a number of epochs: ``"auto"`` is :func:`frozen_epochs_for`.

    Args:
        frozen_epochs: An integer >= 0, or ``"auto"``.
        num_simulations: The rows the trainer will train on.
        **train_kwargs: ``NPE.train`` arguments; ``training_batch_size`` and
            ``validation_fraction`` (sbi's defaults 200 and 0.1) set the steps per epoch.

    Returns:
        The setting ``frozen_epochs`` (the frozen start trains one epoch more).

    Raises:
        ValueError: ``frozen_epochs`` neither ``"auto"`` nor an integer >= 0.

    Example:
        >>> resolve_frozen_epochs("auto", 100_000, training_batch_size=100)
        5
    """
    if frozen_epochs == "auto":
        return frozen_epochs_for(
            num_simulations,
            train_kwargs.get("training_batch_size", 200),
            train_kwargs.get("validation_fraction", 0.1),
        )
    return check_int(frozen_epochs, "frozen_epochs", 0, why=' or "auto"')


def train_npe(
    trainer: Any,
    embedding: SymmetryEmbedding,
    *,
    frozen_epochs: int | Literal["auto"] = "auto",
    anneal: float = 0.0,
    **train_kwargs: Any,
) -> nn.Module:
    """Train ``sbi``'s NPE, ``embedding`` frozen for ``frozen_epochs + 1`` epochs, then fine-tuned.

    With ``anneal`` the fine-tuned run then goes on at its learning rate times ``anneal`` until
    early stopping stops it again (:func:`~sbi_symmetry._sbi_compat.anneal`), keeping the best
    weights on the validation set over all phases.

    Args:
        trainer: An ``sbi`` ``NPE`` with its simulations appended, whose density estimator was
            built around ``embedding`` (``embedding.posterior_nn(...)``).
        embedding: The pretrained embedding; its freeze mode applies after the frozen start
            (``"all"``: one plain ``train`` call).
        frozen_epochs: The frozen start's ``max_num_epochs``: it is one ``train`` call with the
            embedding frozen and ``max_num_epochs=frozen_epochs``, which trains
            ``frozen_epochs + 1`` epochs (sbi 0.27 counts from 0); ``0``: no frozen start,
            trains as ``trainer.train`` does; ``"auto"`` (default): :func:`frozen_epochs_for`
            the appended simulations (of every round, also where sbi discards the first
            round's).
        anneal: The last phase's learning-rate factor, in ``[0, 1)``; ``0`` (default): no
            last phase. The fast preset uses ``0.1`` (``benchmarks/results/npe_anneal.md``).
        **train_kwargs: ``NPE.train`` arguments for every phase; ``max_num_epochs`` caps each
            phase after the frozen start (counted from its start).

    Returns:
        The trained density estimator, as ``trainer.train`` returns it.

    Raises:
        ValueError: A ``trainer`` without simulations, a ``frozen_epochs`` neither ``"auto"``
            nor an integer >= 0, ``anneal`` outside ``[0, 1)``, ``resume_training`` passed, or
            an ``embedding`` the trainer's network does not hold (checked before training where
            the network or ``embedding.posterior_nn``'s builder tells, else after the frozen
            start, once sbi has built the network).
    """
    rows = appended_simulations(trainer)
    if rows == 0:
        raise ValueError("`trainer` holds no simulations: call trainer.append_simulations first.")
    frozen_epochs = resolve_frozen_epochs(frozen_epochs, rows, **train_kwargs)
    if not 0.0 <= anneal < 1.0:
        raise ValueError(f"`anneal` must be in [0, 1) (0: no last phase); got {anneal}.")
    if "resume_training" in train_kwargs:
        raise ValueError("`resume_training` is train_npe's to set; call trainer.train to resume.")
    _check_pairing(trainer, embedding)
    estimator = _fine_tune(trainer, embedding, frozen_epochs, train_kwargs)
    return _anneal(trainer, anneal, **train_kwargs) if anneal else estimator


def _fine_tune(
    trainer: Any, embedding: SymmetryEmbedding, frozen_epochs: int, train_kwargs: dict[str, Any]
) -> nn.Module:
    """The frozen start (if any), then training with the embedding's own freeze mode."""
    mode = embedding.freeze
    if frozen_epochs == 0 or mode == "all":
        return trainer.train(**train_kwargs)
    frozen_start = {k: v for k, v in train_kwargs.items() if k != "max_num_epochs"}
    embedding.freeze = "all"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Maximum number of epochs.*")
            trainer.train(**frozen_start, max_num_epochs=frozen_epochs)
    finally:
        embedding.freeze = mode
    _check_pairing(trainer, embedding)
    return resume(trainer, **train_kwargs)  # max_num_epochs counts from here


def _check_pairing(trainer: Any, embedding: SymmetryEmbedding) -> None:
    """Refuse an ``embedding`` that is not the one the trainer's network holds (or will hold).

    Before the first ``train`` call the network does not exist yet; a builder made by
    ``embedding.posterior_nn`` names its embedding (any other builder passes until then).
    """
    net = get_neural_net(trainer)
    if net is not None:
        ok = any(module is embedding for module in net.modules())
    else:
        ok = getattr(get_net_builder(trainer), "embedding_net", embedding) is embedding
    if not ok:
        raise ValueError(
            "`embedding` is not part of the trainer's network: pass the embedding whose "
            "posterior_nn built the trainer's density estimator."
        )
