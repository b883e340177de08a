"""Train/eval modes of a module and its submodules, put back as they were after a block.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
    >>> net[0].eval()
    Linear(in_features=2, out_features=2, bias=True)
    >>> with restored_modes(net, eval=True):
    ...     net[1].training
    False
    >>> net.training, net[0].training, net[1].training
    (True, False, True)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def restored_modes(module: nn.Module, *, eval: bool = False) -> Iterator[nn.Module]:
    """Give every submodule of ``module`` its own train/eval mode back when the block ends.

    Args:
        module: The module; its submodules' modes are recorded on entry.
        eval: Put the whole module in eval mode for the block.

    Yields:
        ``module``.
    """
    modes = [m.training for m in module.modules()]
    if eval:
        module.eval()
    try:
        yield module
    finally:
        for submodule, mode in zip(module.modules(), modes, strict=True):
            submodule.training = mode
