"""NPE on a frozen embedding's cached features: pay for the frozen encoder once.

With a frozen backbone, training NPE through the embedding runs the same convolutions on the
same training ``x`` every epoch. :func:`cached_npe` encodes each training ``x`` once, trains
``sbi``'s NPE on ``(theta, features)`` (the flow, and the embedding's trainable head when
``freeze="backbone"``), and returns an ordinary ``sbi`` ``DirectPosterior`` that still takes raw
``x``: its density estimator, a :class:`FeatureConditionedEstimator`, computes the frozen
features of each ``x`` before the trained estimator sees them. The maths is that of training
through the embedding (same loss, same data, same data loader order); only the frozen forward
passes are taken out of the loop.

What is frozen follows the embedding's ``freeze`` mode: ``"all"`` caches the summaries and
trains the flow alone; ``"backbone"`` caches the input of the head's first layer with
parameters (:func:`~sbi_symmetry.nets.split.split_head`: after a global pooling, one number per
channel), checked to reproduce the embedding's output, and trains that part of the head with
the flow; ``"none"`` has nothing to cache and is refused.

Example:
    >>> import torch
    >>> from sbi.utils import BoxUniform
    >>> from sbi_symmetry.nets.conv import ConvEncoder1D
    >>> from sbi_symmetry.symmetry.embedding import SymmetryEmbedding, _refuse_z_score
    >>> _ = torch.manual_seed(0)
    >>> prior = BoxUniform(torch.zeros(2), torch.ones(2))
    >>> theta = prior.sample((300,))
    >>> x = theta.repeat(1, 20) + 0.1 * torch.randn(300, 40)
    >>> emb = SymmetryEmbedding(ConvEncoder1D(40, 3, channels=2, num_blocks=1), freeze="all")
    >>> trainer, posterior = cached_npe(prior, emb, theta, x, max_num_epochs=2,
    ...                                 show_progress_bars=False)
    >>> posterior.sample((5,), x=x[:1], show_progress_bars=False).shape
    torch.Size([5, 2])
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from sbi.inference import NPE
from sbi.inference.posteriors import DirectPosterior
from sbi.neural_nets import posterior_nn
from sbi.neural_nets.estimators import ConditionalDensityEstimator
from torch import Tensor, nn
from torch.distributions import Distribution

from sbi_symmetry._sbi_compat import NullTracker
from sbi_symmetry._validation import check_int, check_simulations
from sbi_symmetry.nets.split import HeadSplit, split_head, tail_reproduces
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding, _refuse_z_score

__all__ = ["FeatureConditionedEstimator", "cached_npe", "frozen_features"]


class _TailInput(nn.Module):
    """The input of the encoder head's trainable tail for raw ``x`` (the frozen features)."""

    def __init__(self, embedding: SymmetryEmbedding, split: HeadSplit) -> None:
        super().__init__()
        self.embedding, self.split = embedding, split

    def forward(self, x: Tensor) -> Tensor:
        with self.split.capture([]) as captured:
            self.embedding(x)
        return captured[-1]


def frozen_features(embedding: SymmetryEmbedding) -> tuple[nn.Module, nn.Module]:
    """Split a frozen embedding into its frozen part and the part that still trains.

    Args:
        embedding: A :class:`SymmetryEmbedding` with ``freeze="all"`` or ``"backbone"``.

    Returns:
        ``(features, head)``: ``head(features(x))`` equals ``embedding(x)``; ``features`` is a
        frozen copy in eval mode, ``head`` a trainable copy (``nn.Identity`` for ``"all"``).

    Raises:
        TypeError: ``embedding`` is not a :class:`SymmetryEmbedding`.
        ValueError: For ``freeze="none"``, or ``"backbone"`` on an encoder whose ``head`` cannot
            be split off (several ``head`` modules, or a head without parameters).
    """
    if not isinstance(embedding, SymmetryEmbedding):
        raise TypeError(f"`embedding` must be a SymmetryEmbedding; got {type(embedding).__name__}.")
    frozen = copy.deepcopy(embedding).eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    if embedding.freeze == "all":
        return frozen, nn.Identity()
    split, frozen_split = split_head(embedding.encoder), split_head(frozen.encoder)
    if embedding.freeze == "backbone" and split is not None and frozen_split is not None:
        head = copy.deepcopy(split.tail)
        for parameter in head.parameters():
            parameter.requires_grad_(True)
        return _TailInput(frozen, frozen_split), head.train()
    reason = f"the embedding has freeze={embedding.freeze!r}"
    if embedding.freeze != "none":
        reason += " and its encoder has several `head` modules or a head without parameters"
    raise ValueError(
        f"Cached features need a frozen backbone: {reason}; use freeze='all' (or 'backbone' "
        "with an encoder that ends in `self.head`)."
    )


class FeatureConditionedEstimator(ConditionalDensityEstimator):
    """An ``sbi`` density estimator trained on features, conditioned on raw ``x``.

    Args:
        estimator: The estimator ``sbi`` trained on ``(theta, features(x))``.
        features: The frozen feature map, ``(B, *x_shape) -> (B, F)``.
        x_shape: The event shape of raw ``x``.
    """

    def __init__(
        self, estimator: ConditionalDensityEstimator, features: nn.Module, x_shape: torch.Size
    ) -> None:
        super().__init__(estimator, estimator.input_shape, torch.Size(x_shape))
        self.features = features

    @property
    def embedding_net(self) -> nn.Module:
        """The whole map from raw ``x`` to what the flow is conditioned on."""
        return nn.Sequential(self.features, self.net.embedding_net)

    def _encode(self, condition: Tensor) -> Tensor:
        lead = condition.shape[: condition.ndim - len(self.condition_shape)]
        with torch.no_grad():
            flat = self.features.eval()(condition.reshape(-1, *self.condition_shape))
        return flat.reshape(*lead, *flat.shape[1:])

    def log_prob(self, input: Tensor, condition: Tensor, **kwargs: Any) -> Tensor:
        """``log q(theta | x)`` with the features of ``x``."""
        return self.net.log_prob(input, self._encode(condition), **kwargs)

    def loss(self, input: Tensor, condition: Tensor, **kwargs: Any) -> Tensor:
        """The trained estimator's loss with the features of ``x``."""
        return self.net.loss(input, self._encode(condition), **kwargs)

    def sample(self, sample_shape: torch.Size, condition: Tensor, **kwargs: Any) -> Tensor:
        """Samples given the features of ``x``."""
        return self.net.sample(sample_shape, self._encode(condition), **kwargs)

    def sample_and_log_prob(
        self, sample_shape: torch.Size, condition: Tensor, **kwargs: Any
    ) -> tuple[Tensor, Tensor]:
        """Samples and their log density given the features of ``x``."""
        return self.net.sample_and_log_prob(sample_shape, self._encode(condition), **kwargs)


def _encode_all(features: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    with torch.no_grad():
        return torch.cat(
            [features(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        )


def cached_npe(
    prior: Distribution,
    embedding: SymmetryEmbedding,
    theta: Tensor,
    x: Tensor,
    *,
    model: str = "maf",
    flow_kwargs: dict[str, Any] | None = None,
    encode_batch_size: int = 1024,
    show_progress_bars: bool = True,
    **train_kwargs: Any,
) -> tuple[NPE, DirectPosterior]:
    """Train ``sbi``'s NPE on the embedding's cached frozen features; posterior on raw ``x``.

    Args:
        prior: The prior.
        embedding: A pretrained embedding with ``freeze="all"`` or ``"backbone"`` (copied).
        theta: Training parameters, ``(N, theta_dim)``.
        x: Training data, ``(N, *x_shape)``: encoded once, in batches.
        model: ``sbi`` flow name (``posterior_nn``).
        flow_kwargs: Extra ``posterior_nn`` arguments; ``z_score_x`` other than ``"none"`` is
            refused, as for the embedding itself.
        encode_batch_size: Rows per forward pass of the frozen part.
        show_progress_bars: ``sbi``'s progress bars.
        **train_kwargs: Passed to ``NPE.train``.

    Returns:
        The ``NPE`` trainer (trained on features) and a ``DirectPosterior`` that takes raw ``x``.

    Raises:
        ValueError: As :func:`frozen_features`; a ``head`` that does not reproduce the
            embedding's output from the cached features (it is not applied last); a
            ``z_score_x`` other than ``"none"`` in ``flow_kwargs``.
    """
    kwargs = dict(flow_kwargs or {})
    _refuse_z_score(kwargs)
    theta, x = check_simulations(theta, x, prior)
    check_int(encode_batch_size, "encode_batch_size", 1)
    features, head = frozen_features(embedding)
    cached = _encode_all(features, x, encode_batch_size)
    rows = min(64, x.shape[0])
    with torch.no_grad():
        expected = copy.deepcopy(embedding).eval()(x[:rows])
    if not tail_reproduces(head, cached[:rows], expected):
        raise ValueError(
            "The encoder's `head` applied to the cached features does not reproduce the "
            "embedding's output; use freeze='all' for this encoder."
        )
    builder = posterior_nn(model, embedding_net=head, z_score_x="none", **kwargs)
    trainer = NPE(
        prior,
        density_estimator=builder,
        tracker=NullTracker(),
        show_progress_bars=show_progress_bars,
    )
    estimator = trainer.append_simulations(theta, cached).train(**train_kwargs)
    wrapped = FeatureConditionedEstimator(estimator, features, x.shape[1:])
    return trainer, DirectPosterior(wrapped, prior)
