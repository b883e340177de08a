"""Fine-tuning a pretrained embedding inside ``sbi``'s NPE, after a frozen start.

``sbi``'s ``NPE.train`` trains the flow and the embedding together from the first epoch. The
flow starts untrained, so its first gradients into the pretrained summary are noise, and a wide
encoder can lose there what pretraining found: on the sine-Gaussian, a 16-channel encoder
fine-tuned from the start left the posterior of the frequency ``f0`` 1.4-2.5x too wide and failed
SBC (``benchmarks/results/fast_encoder_seeds.md``). :func:`train_npe` first trains the flow
alone on the frozen summary for ``frozen_epochs`` epochs, then resumes the same trainer (same
training/validation split, optimiser and best-model tracking) with the embedding's own freeze
mode, for up to ``max_num_epochs`` more epochs with early stopping restarted
(``benchmarks/results/npe_warm_start.md``).

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
from typing import Any

from torch import nn

from sbi_symmetry._sbi_compat import anneal as _anneal
from sbi_symmetry._sbi_compat import get_net_builder, get_neural_net, resume
from sbi_symmetry._validation import check_int
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding


def train_npe(
    trainer: Any,
    embedding: SymmetryEmbedding,
    *,
    frozen_epochs: int = 20,
    anneal: float = 0.0,
    **train_kwargs: Any,
) -> nn.Module:
    """Train ``sbi``'s NPE with ``embedding`` frozen for ``frozen_epochs`` epochs, then fine-tuned.

    With ``anneal`` the fine-tuned run then goes on at its learning rate times ``anneal`` until
    early stopping stops it again (:func:`~sbi_symmetry._sbi_compat.anneal`), keeping the best
    weights on the validation set over all phases.

    Args:
        trainer: An ``sbi`` ``NPE`` with its simulations appended, whose density estimator was
            built around ``embedding`` (``embedding.posterior_nn(...)``).
        embedding: The pretrained embedding; its freeze mode applies after the frozen start
            (``"all"``: one plain ``train`` call).
        frozen_epochs: Epochs with the embedding frozen; ``0`` trains as ``trainer.train`` does.
        anneal: The last phase's learning-rate factor, in ``[0, 1)``; ``0`` (default): no
            last phase. The fast preset uses ``0.1`` (``benchmarks/results/npe_anneal.md``).
        **train_kwargs: ``NPE.train`` arguments for every phase; ``max_num_epochs`` caps each
            phase after the frozen start (counted from its start).

    Returns:
        The trained density estimator, as ``trainer.train`` returns it.

    Raises:
        ValueError: A negative ``frozen_epochs``, ``anneal`` outside ``[0, 1)``,
            ``resume_training`` passed, or an ``embedding`` the trainer's network does not hold
            (checked before training where the network or ``embedding.posterior_nn``'s builder
            tells, else after the frozen start, once sbi has built the network).
    """
    check_int(frozen_epochs, "frozen_epochs", 0)
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
