"""The learning-rate schedule of pretraining: linear warm-up, then cosine decay or constant.

Stepped once per optimisation step; the rate applied in the last step of each epoch is what
``history["lr"]`` records, so what ran is what is reported.

Example:
    >>> [round(scheduled_learning_rate(s, peak=1.0, total_steps=4, warmup_steps=1), 3)
    ...  for s in range(4)]
    [1.0, 1.0, 0.75, 0.25]
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from sbi_symmetry.symmetry.pretrain.config import PretrainConfig


def scheduled_learning_rate(
    step: int,
    *,
    peak: float,
    total_steps: int,
    warmup_steps: int,
    schedule: Literal["cosine", "constant"] = "cosine",
    minimum: float = 0.0,
) -> float:
    """Learning rate of optimisation step ``step`` (0-based) under warm-up then cosine/constant.

    Warm-up: ``peak * (step + 1) / warmup_steps`` for ``step < warmup_steps``, so the last
    warm-up step runs at ``peak``. Then ``peak`` (constant) or
    ``minimum + (peak - minimum) * (1 + cos(pi * (step - warmup_steps) / decay_steps)) / 2``
    with ``decay_steps = total_steps - warmup_steps`` (cosine), which starts at ``peak``.

    Args:
        step: Optimisation step, counted from 0.
        peak: The nominal learning rate.
        total_steps: Number of steps of the whole run.
        warmup_steps: Number of warm-up steps.
        schedule: ``"cosine"`` or ``"constant"``.
        minimum: The rate the cosine decays to.

    Returns:
        The learning rate.

    Example:
        >>> [scheduled_learning_rate(s, peak=1.0, total_steps=6, warmup_steps=2) for s in (0, 1, 2)]
        [0.5, 1.0, 1.0]
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return minimum + (peak - minimum) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: PretrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` that runs :func:`scheduled_learning_rate` relative to ``cfg.learning_rate``.

    Args:
        optimizer: The optimiser (its rate is ``cfg.learning_rate``).
        cfg: The pretraining settings (epochs, warm-up, schedule, minimum rate).
        steps_per_epoch: Optimisation steps in one epoch.

    Returns:
        The scheduler, to be stepped after every optimisation step.

    Example:
        >>> from sbi_symmetry.symmetry.pretrain.config import PretrainConfig
        >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
        >>> cfg = PretrainConfig(max_epochs=4, warmup_epochs=1)
        >>> _ = make_scheduler(optimizer, cfg, steps_per_epoch=2)
        >>> optimizer.param_groups[0]["lr"]  # first warm-up step: half the rate
        0.0005
    """
    total_steps = cfg.max_epochs * steps_per_epoch
    warmup_steps = cfg.warmup * steps_per_epoch
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: scheduled_learning_rate(
            step,
            peak=1.0,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            schedule=cfg.schedule,
            minimum=cfg.min_learning_rate / cfg.learning_rate,
        ),
    )
