"""Cost measures: trainable parameters, multiply-accumulates of a forward pass, wall time.

Multiply-accumulates (MACs) are counted with forward hooks on every ``nn.Linear`` (including the
masked linear layers of nflows and zuko, which subclass it) and ``nn.Conv1d`` inside a module while
a user-supplied forward pass runs. Element-wise operations are not counted, as is customary.

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

from torch import Tensor, nn


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
    """Multiply-accumulates of linear and 1-D convolution layers during ``forward()``.

    Args:
        module: The network whose layers are counted (hooks go on all its submodules).
        forward: A callable that runs the forward pass to measure, e.g.
            ``lambda: estimator.log_prob(theta, x)``.

    Returns:
        Total MACs of the pass.
    """
    total = 0

    def linear(m: nn.Linear, inputs: tuple[Tensor, ...], _out: Tensor) -> None:
        nonlocal total
        rows = inputs[0].numel() // m.in_features
        total += rows * m.in_features * m.out_features

    def conv(m: nn.Conv1d, _inputs: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0]

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear))
        elif isinstance(m, nn.Conv1d):
            handles.append(m.register_forward_hook(conv))
    try:
        forward()
    finally:
        for h in handles:
            h.remove()
    return total


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
