"""A classifier builder, so stock ``NRE_B``/``NRE_C`` can train the two-tower network too.

``sbi``'s ratio trainers take ``classifier=build`` with ``build(batch_theta, batch_x)`` returning
a ``RatioEstimator``; :func:`embed_emulate_classifier` returns such a ``build`` that assembles an
:class:`~sbi_symmetry.emulate.estimator.EmbedEmulateRatioEstimator` from a given encoder and
(a given or default) emulator. The same network can then be trained with NRE-B's, NRE-C's or
the symmetric InfoNCE loss (:class:`~sbi_symmetry.emulate.trainer.EmbedEmulate`).

Example:
    >>> import torch
    >>> from torch import nn
    >>> build = embed_emulate_classifier(nn.Linear(10, 8))
    >>> est = build(torch.randn(20, 2), torch.randn(20, 10))
    >>> est.embedding_dim
    8
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from sbi_symmetry._validation import check_int
from sbi_symmetry.emulate.estimator import EmbedEmulateRatioEstimator
from sbi_symmetry.nets.fourier import FourierFeatures
from sbi_symmetry.nets.mlp import ResidualMLP
from sbi_symmetry.nets.modes import restored_modes

Builder = Callable[[Tensor, Tensor], EmbedEmulateRatioEstimator]

#: The default emulator's ``ResidualMLP`` size. The ``fast`` preset gives a larger one (128
#: wide, 3 blocks) behind its 16-channel data tower, where this one pulled posteriors towards the
#: prior's centre (benchmarks/results/fast_ee_tower_seeds.md); it stays the default because at
#: 3,000 simulations with short training the larger one failed SBC on 2 of 3 seeds.
DEFAULT_EMULATOR: dict[str, int] = {"hidden_dim": 64, "num_blocks": 2}


def _probe_width(encoder: nn.Module, batch_x: Tensor) -> int:
    """Output width of ``encoder`` on two rows of ``batch_x`` (modes restored afterwards)."""
    with restored_modes(encoder, eval=True), torch.no_grad():
        z = encoder(batch_x[: min(2, batch_x.shape[0])])
    if z.ndim != 2:
        raise ValueError(
            f"`encoder` must map (B, *x_shape) to (B, n); it returned shape {tuple(z.shape)}."
        )
    return int(z.shape[1])


def default_encoder(x_shape: tuple[int, ...], embedding_dim: int) -> nn.Module:
    """Flatten the data and map it with a :class:`ResidualMLP` to ``embedding_dim``.

    Args:
        x_shape: Shape of one simulation.
        embedding_dim: Output width.

    Returns:
        The encoder.
    """
    return nn.Sequential(
        nn.Flatten(), ResidualMLP(math.prod(x_shape), embedding_dim, hidden_dim=128)
    )


def default_emulator(
    theta_dim: int,
    output_dim: int,
    *,
    fourier_features: int = 0,
    fourier_scale: float = 1.0,
    fourier_learnable: bool = False,
    **mlp_kwargs: Any,
) -> nn.Module:
    """The default emulator: a :class:`ResidualMLP`, optionally behind :class:`FourierFeatures`.

    Args:
        theta_dim: Number of parameters.
        output_dim: Width of the latent space (the encoder's output width).
        fourier_features: Number of random frequencies; 0 (default) feeds ``theta`` as is.
        fourier_scale: Their standard deviation, in cycles per unit of the (z-scored) input.
        fourier_learnable: Train the frequencies with the emulator.
        **mlp_kwargs: ``hidden_dim``, ``num_blocks``, ``activation`` of the MLP.

    Returns:
        The emulator, mapping ``(B, theta_dim)`` to ``(B, output_dim)``.

    Example:
        >>> import torch
        >>> emu = default_emulator(2, 8, fourier_features=16, hidden_dim=32)
        >>> emu(torch.zeros(3, 2)).shape
        torch.Size([3, 8])
    """
    check_int(fourier_features, "fourier_features", 0)
    if fourier_features == 0:
        return ResidualMLP(theta_dim, output_dim, **mlp_kwargs)
    features = FourierFeatures(theta_dim, fourier_features, fourier_scale, fourier_learnable)
    return nn.Sequential(features, ResidualMLP(features.output_dim, output_dim, **mlp_kwargs))


def embed_emulate_classifier(
    encoder: nn.Module | None = None,
    emulator: nn.Module | None = None,
    *,
    embedding_dim: int = 16,
    emulator_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Builder:
    """Return ``build(batch_theta, batch_x) -> EmbedEmulateRatioEstimator`` for ``sbi``.

    Args:
        encoder: ``f(x)``; ``None`` builds a flattening :class:`ResidualMLP` of width
            ``embedding_dim`` at build time. A given module is reused as is by every ``build``
            call (also with ``retrain_from_scratch=True``), as ``sbi`` does with embedding nets.
        emulator: ``g(theta)``; ``None`` builds a :class:`ResidualMLP` from ``theta_dim`` to the
            encoder's output width (probed on the build batch), 64 wide with 2 residual blocks
            (:data:`DEFAULT_EMULATOR`).
        embedding_dim: Width of the default encoder (ignored when ``encoder`` is given).
        emulator_kwargs: Arguments of :func:`default_emulator` that replace
            :data:`DEFAULT_EMULATOR`'s (``hidden_dim``, ``num_blocks``, ``activation``,
            ``fourier_features``, ``fourier_scale``, ``fourier_learnable``).
        **kwargs: Passed to :class:`EmbedEmulateRatioEstimator` (``similarity``,
            ``temperature``, ``learn_temperature``, ``temperature_bounds``, ``z_score_theta``,
            ``z_score_x``).

    Returns:
        The builder, to pass as ``classifier=`` to ``NRE_B``, ``NRE_C`` or ``EmbedEmulate``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from sbi.inference import NRE_C
        >>> from sbi_symmetry._sbi_compat import NullTracker
        >>> nre = NRE_C(classifier=embed_emulate_classifier(nn.Linear(3, 8)),
        ...             tracker=NullTracker(), show_progress_bars=False)
    """
    if encoder is not None and not isinstance(encoder, nn.Module):
        raise TypeError(f"`encoder` must be a torch.nn.Module; got {type(encoder).__name__}.")
    if emulator is not None and not isinstance(emulator, nn.Module):
        raise TypeError(f"`emulator` must be a torch.nn.Module; got {type(emulator).__name__}.")
    check_int(embedding_dim, "embedding_dim", 1)
    emulator_kwargs = {**DEFAULT_EMULATOR, **(emulator_kwargs or {})}

    def build(batch_theta: Tensor, batch_x: Tensor) -> EmbedEmulateRatioEstimator:
        """Assemble the estimator from the first batch of simulations."""
        if batch_theta.ndim != 2:
            raise ValueError(
                f"`theta` must have shape (N, theta_dim); got {tuple(batch_theta.shape)}."
            )
        # sbi builds from CPU batches, then moves the whole network to its device
        enc = encoder.to(batch_x.device) if encoder is not None else None
        if enc is None:
            enc = default_encoder(tuple(batch_x.shape[1:]), embedding_dim)
        emu = emulator.to(batch_theta.device) if emulator is not None else None
        if emu is None:
            width = _probe_width(enc, batch_x)
            emu = default_emulator(batch_theta.shape[1], width, **emulator_kwargs)
        return EmbedEmulateRatioEstimator(enc, emu, batch_theta, batch_x, **kwargs)

    return build
