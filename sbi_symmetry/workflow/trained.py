"""What a trained method is: its posterior and what it cost (:class:`TrainedMethod`).

:func:`finish` reads a trained ``sbi`` trainer into one: the loss curves sbi kept, trainable and
total parameters, and the multiply-accumulates of one training forward pass at batch 1000 counted
with ``torch.utils.flop_counter`` (every matrix product, the ``B x B`` logits of the contrastive
loss included).

Example:
    >>> import torch
    >>> from sbi_symmetry.tasks import DampedOscillator
    >>> from sbi_symmetry.workflow.methods import raw_npe
    >>> task = DampedOscillator()
    >>> theta, x = task.sample_joint(300, generator=torch.Generator().manual_seed(0))
    >>> m = raw_npe(task, theta, x, max_num_epochs=1, show_progress_bars=False)
    >>> isinstance(m, TrainedMethod), m.summary()["trainable_parameters"] > 0
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from sbi.neural_nets.ratio_estimators import RatioEstimator
from torch import Tensor, nn

from sbi_symmetry._sbi_compat import training_summary
from sbi_symmetry.emulate import EmbedEmulateRatioEstimator
from sbi_symmetry.evaluation.calibration import sampling_time_limit
from sbi_symmetry.evaluation.cost import count_macs, count_parameters


@dataclass
class TrainedMethod:
    """A trained method and what it cost.

    Attributes:
        name: Method name.
        posterior: The sbi posterior (``sample``, ``sample_batched``, ``log_prob``).
        estimator: The trained network.
        train_seconds: Wall time of sbi's training (excludes pretraining).
        pretrain_seconds: Wall time of VICReg pretraining (0 if none).
        trainable_parameters: Parameters that the final training updated.
        total_parameters: All parameters, frozen ones included.
        macs_per_1000: Multiply-accumulates of one training forward pass at batch 1000.
        epochs: Epochs sbi trained.
        history: ``{"train": [...], "validation": [...]}`` losses per epoch (and pretraining's),
            ``"epoch_seconds"``: sbi's wall time of each epoch (training and validation).
        extra: Anything method-specific (pretraining simulator calls, the embedding ...).
        phase_epochs: Epochs of each ``train`` call on the trainer, in order (a frozen start,
            fine-tuning, an annealed phase ...); they add up to ``epochs``.
    """

    name: str
    posterior: Any
    estimator: nn.Module
    train_seconds: float
    pretrain_seconds: float
    trainable_parameters: int
    total_parameters: int
    macs_per_1000: int
    epochs: int
    history: dict[str, list[float]]
    extra: dict[str, Any] = field(default_factory=dict)
    phase_epochs: tuple[int, ...] = ()

    def sample(
        self,
        x_o: Tensor,
        num_samples: int,
        show_progress_bars: bool = False,
        max_sampling_time: float | None = None,
    ) -> Tensor:
        """Draw ``num_samples`` posterior samples for one observation ``x_o`` (batch of 1).

        ``max_sampling_time`` bounds sbi's rejection of NPE samples outside the prior (a
        RuntimeError instead of an endless loop when the flow leaks); ignored for MCMC.
        """
        limit = sampling_time_limit(self.posterior, max_sampling_time)
        draws = self.posterior.sample(
            (num_samples,), x=x_o, show_progress_bars=show_progress_bars, **limit
        )
        return draws.reshape(num_samples, -1)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly costs."""
        return {
            "train_seconds": self.train_seconds,
            "pretrain_seconds": self.pretrain_seconds,
            "trainable_parameters": self.trainable_parameters,
            "total_parameters": self.total_parameters,
            "macs_per_1000": self.macs_per_1000,
            "epochs": self.epochs,
            **({"epochs_per_phase": list(self.phase_epochs)} if self.phase_epochs else {}),
            **{k: v for k, v in self.extra.items() if isinstance(v, int | float | str)},
            "simulator_calls": dict(self.extra.get("simulator_calls", {})),
        }


def _macs(estimator: nn.Module, theta: Tensor, x: Tensor) -> int:
    """MACs of one training forward pass at batch 1000 (every matrix product counted).

    NPE: its loss. Embed and Emulate: its symmetric InfoNCE loss, ``B x B`` logits included.
    Other ratio estimators: the ratios of the 1000 pairs.
    """
    idx = torch.arange(1000) % theta.shape[0]
    t, xx = theta[idx], x[idx]
    if isinstance(estimator, RatioEstimator) and not isinstance(
        estimator, EmbedEmulateRatioEstimator
    ):
        return count_macs(estimator, lambda: estimator(t, xx))
    return count_macs(estimator, lambda: estimator.loss(t, xx))


def finish(
    name: str,
    trainer: Any,
    estimator: nn.Module,
    seconds: float,
    theta: Tensor,
    x: Tensor,
    posterior: Any,
    pretrain_seconds: float = 0.0,
    extra: dict[str, Any] | None = None,
    history: dict[str, list[float]] | None = None,
) -> TrainedMethod:
    """The :class:`TrainedMethod` of a trained ``sbi`` trainer and its estimator."""
    summary = training_summary(trainer)
    ends = [int(end) for end in summary["epochs_trained"]]
    curves = {
        "train": list(summary["training_loss"]),
        "validation": list(summary["validation_loss"]),
        "epoch_seconds": list(summary["epoch_durations_sec"]),
    }
    return TrainedMethod(
        name=name,
        posterior=posterior,
        estimator=estimator,
        train_seconds=seconds,
        pretrain_seconds=pretrain_seconds,
        trainable_parameters=count_parameters(estimator),
        total_parameters=count_parameters(estimator, trainable_only=False),
        macs_per_1000=_macs(estimator, theta, x),
        epochs=int(summary["epochs_trained"][-1]),
        history={**curves, **(history or {})},
        extra=extra or {},
        phase_epochs=tuple(b - a for a, b in zip([0, *ends], ends, strict=False)),
    )


def combine(members: list[TrainedMethod], estimator: nn.Module, posterior: Any) -> TrainedMethod:
    """One :class:`TrainedMethod` for estimators trained one after another and their product.

    Each member trained once, so costs add up: (pre)training seconds, epochs, parameters, MACs;
    the curves are the members' one after the other, ``phase_epochs`` every member's phases in
    turn; ``extra`` is the first member's. With more than one member, ``extra["members"]``
    counts them and ``extra["member_epochs"]`` lists each one's epochs.

    Args:
        members: The members' methods (from :func:`finish`).
        estimator: Their product (:func:`~sbi_symmetry.emulate.product_estimator`).
        posterior: Its posterior.

    Returns:
        The combined method, named as the first member.
    """
    first = members[0]
    history = {key: [v for m in members for v in m.history[key]] for key in first.history}
    epochs = [m.epochs for m in members]
    return TrainedMethod(
        name=first.name,
        posterior=posterior,
        estimator=estimator,
        train_seconds=sum(m.train_seconds for m in members),
        pretrain_seconds=sum(m.pretrain_seconds for m in members),
        trainable_parameters=sum(m.trainable_parameters for m in members),
        total_parameters=sum(m.total_parameters for m in members),
        macs_per_1000=sum(m.macs_per_1000 for m in members),
        epochs=sum(epochs),
        history=history,
        extra={
            **first.extra,
            **({"members": len(members), "member_epochs": epochs} if len(members) > 1 else {}),
        },
        phase_epochs=tuple(p for m in members for p in m.phase_epochs),
    )
