"""Small adapters for sbi 0.27 internals that users of this package should not have to know.

Example:
    >>> tracker = NullTracker()
    >>> tracker.log_metric("loss", 1.0)
    >>> tracker.log_dir is None
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class NullTracker:
    """An sbi ``Tracker`` that records nothing, so training writes no ``./sbi-logs`` folder.

    Pass it as ``tracker=NullTracker()`` to any sbi trainer (``NPE``, ``NRE_C``, ...).
    """

    @property
    def log_dir(self) -> None:
        """No directory: nothing is written."""
        return None

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Ignore one metric."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Ignore several metrics."""

    def log_params(self, params: dict[str, Any]) -> None:
        """Ignore parameters."""

    def add_figure(self, name: str, figure: Any, step: int | None = None) -> None:
        """Ignore a figure."""

    def flush(self) -> None:
        """Nothing to flush."""


class FlattenEmbedding(nn.Module):
    """``(B, C, L) -> (B, C * L)`` for sbi's flows, which take vectors.

    sbi 0.27 reads ``next(embedding_net.parameters())`` when it builds a network, which raises
    ``StopIteration`` for a module without parameters such as ``nn.Flatten``; this one carries an
    empty, frozen parameter so that the lookup works and nothing is trained.

    Example:
        >>> import torch
        >>> FlattenEmbedding()(torch.zeros(4, 3, 5)).shape
        torch.Size([4, 15])
    """

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        """Flatten everything but the batch dimension."""
        return x.reshape(x.shape[0], -1)


def training_summary(trainer: Any) -> dict[str, list[float]]:
    """The per-epoch record sbi keeps on a trainer after ``train()`` (sbi 0.27: ``_summary``).

    Args:
        trainer: A trained sbi trainer (``NPE``, ``NRE_C``, ``EmbedEmulate`` ...).

    Returns:
        sbi's dictionary with ``epochs_trained``, ``training_loss``, ``validation_loss``,
        ``epoch_durations_sec`` (lists, one entry per epoch or per round).

    Example:
        >>> import torch
        >>> from sbi.inference import NPE
        >>> from sbi.utils import BoxUniform
        >>> prior = BoxUniform(torch.zeros(1), torch.ones(1))
        >>> theta = prior.sample((100,))
        >>> trainer = NPE(prior, tracker=NullTracker(), show_progress_bars=False)
        >>> _ = trainer.append_simulations(theta, theta).train(max_num_epochs=1)
        >>> sorted(training_summary(trainer))[:2]
        ['best_validation_loss', 'epoch_durations_sec']
    """
    summary = getattr(trainer, "_summary", None)
    if not isinstance(summary, dict) or "epochs_trained" not in summary:
        raise TypeError(
            f"{type(trainer).__name__} has no sbi training summary; train it first (this "
            "package supports sbi 0.27's trainers)."
        )
    return summary
