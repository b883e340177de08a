"""Where an encoder's trainable head begins: the cut between features worth caching and the rest.

Two parts of the package train only the last layers of a frozen encoder on features computed
once: NPE on a frozen backbone (:func:`sbi_symmetry.symmetry.cached.cached_npe`) and Embed and
Emulate's last phase (:func:`sbi_symmetry.emulate.refine_emulator`). Both need the same cut:
the encoder's ``head`` (as on :class:`~sbi_symmetry.nets.conv.ConvEncoder1D`, also inside a
wrapper such as ``SymmetryEmbedding``), from its first layer with parameters on. Leading
parameter-free layers (a global pooling, a flatten) stay on the cached side, so a pooled
encoder caches one number per channel instead of whole feature maps.

Example:
    >>> import torch
    >>> from sbi_symmetry.nets import ConvEncoder1D
    >>> enc = ConvEncoder1D(16, 3, channels=2, num_blocks=1, kernel_size=3)
    >>> split = split_head(enc)
    >>> store = []
    >>> with split.capture(store):
    ...     out = enc(torch.randn(4, 16))
    >>> torch.allclose(split.tail(store[0]), out)
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["HeadSplit", "split_head", "tail_reproduces"]


@dataclass(frozen=True)
class HeadSplit:
    """The trainable tail of an encoder's head and the layer whose output feeds it.

    Attributes:
        cut: The last parameter-free layer before the tail (its output is the tail's input),
            or ``None`` when the tail is the whole head (its input is captured).
        tail: The layers from the head's first layer with parameters on (shared with the
            encoder, not copies).
    """

    cut: nn.Module | None
    tail: nn.Module

    @contextmanager
    def capture(self, store: list[Tensor]) -> Iterator[list[Tensor]]:
        """Append the tail's input to ``store`` on every forward pass inside the block."""
        if self.cut is not None:
            handle = self.cut.register_forward_hook(lambda _m, _i, out: store.append(out))
        else:
            handle = self.tail.register_forward_pre_hook(lambda _m, args: store.append(args[0]))
        try:
            yield store
        finally:
            handle.remove()


def split_head(module: nn.Module) -> HeadSplit | None:
    """The :class:`HeadSplit` of the one ``head`` inside ``module``, or ``None``.

    ``module`` (or one of its submodules) must have exactly one attribute ``head`` that is an
    ``nn.Module``. An ``nn.Sequential`` head is cut before its first layer with parameters;
    any other head is the tail as a whole. Whether the tail applied to the captured input
    reproduces the encoder's output (nothing after the head) is for the caller to check.

    Args:
        module: An encoder, or a module holding one.

    Returns:
        The split, or ``None`` with no ``head``, several, or a head without parameters.
    """
    heads = [m.head for m in module.modules() if isinstance(getattr(m, "head", None), nn.Module)]
    if len(heads) != 1:
        return None
    head = heads[0]
    if not isinstance(head, nn.Sequential):
        return HeadSplit(None, head) if next(head.parameters(), None) is not None else None
    first = next((i for i, m in enumerate(head) if next(m.parameters(), None) is not None), None)
    if first is None:
        return None
    if first == 0:  # the whole head: hook the module the encoder calls, not a slice of it
        return HeadSplit(None, head)
    return HeadSplit(head[first - 1], head[first:])


def tail_reproduces(tail: nn.Module, features: Tensor, output: Tensor, rows: int = 64) -> bool:
    """Whether ``tail`` maps the first ``rows`` cached ``features`` to the encoder's ``output``.

    The check that caching is safe: a wrapper that changes the encoder's output after its head,
    or a head that is not applied last, makes it fail. ``tail`` runs in eval mode without grad
    (its mode is restored); the tolerance allows float32 round-off only.

    Args:
        tail: The part that trains on the cached features (``HeadSplit.tail``, a copy of it, or
            ``nn.Identity`` when the whole encoder is frozen).
        features: Cached features, one row per data row.
        output: The encoder's output for the same data rows (at least the first ``rows``).
        rows: How many leading rows to compare.

    Returns:
        ``True`` if the rows agree, ``False`` otherwise (also for mismatched row counts).

    Example:
        >>> import torch
        >>> tail = torch.nn.Linear(3, 2)
        >>> features = torch.randn(5, 3)
        >>> tail_reproduces(tail, features, tail(features).detach())
        True
    """
    if features.shape[0] != output.shape[0]:
        return False
    was_training = tail.training
    tail.eval()
    try:
        with torch.no_grad():
            return torch.allclose(tail(features[:rows]), output[:rows], rtol=1e-4, atol=1e-5)
    finally:
        tail.train(was_training)
