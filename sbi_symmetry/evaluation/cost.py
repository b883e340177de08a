"""Cost measures: trainable parameters, multiply-accumulates of a forward pass, wall time.

Multiply-accumulates (MACs) are counted with ``torch.utils.flop_counter.FlopCounterMode`` while a
user-supplied forward pass runs: every matrix product (linear layers, the masked layers of the
flows, and products written as ``@`` such as Embed and Emulate's ``B x B`` logits), batched
product and convolution, whichever module runs it; ``MACs = FLOPs / 2``. Element-wise operations
are not counted, as is customary.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    >>> count_macs(net, lambda: net(torch.zeros(1000, 10)))
    260000
    >>> count_parameters(net)
    283
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn, no_grad
from torch.utils.flop_counter import FlopCounterMode

from sbi_symmetry.nets.modes import restored_modes


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters, each shared tensor counted once.

    Args:
        module: The network.
        trainable_only: Count only parameters with ``requires_grad``.

    Returns:
        The count.
    """
    seen: set[int] = set()
    total = 0
    for p in module.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def count_macs(module: nn.Module, forward: Callable[[], Any]) -> int:
    """Multiply-accumulates of every matrix product and convolution during ``forward()``.

    Args:
        module: The network measured (switched to ``eval()`` for the count, then restored, so
            dropout and batch-norm statistics are left alone).
        forward: A callable that runs the forward pass to measure, e.g.
            ``lambda: estimator.log_prob(theta, x)``; products it runs outside ``module`` count.

    Returns:
        Total MACs of the pass.
    """
    with restored_modes(module, eval=True), no_grad(), FlopCounterMode(display=False) as counter:
        forward()
    return int(counter.get_total_flops()) // 2


class Stopwatch:
    """Accumulates wall time of named stages.

    Example:
        >>> watch = Stopwatch()
        >>> with watch("simulate"):
        ...     _ = sum(range(1000))
        >>> list(watch.seconds)
        ['simulate']
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Time the body of a ``with`` block under ``stage`` (added to earlier time)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
