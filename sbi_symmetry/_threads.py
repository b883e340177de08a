"""Torch's intra-op thread count, set for a block and put back afterwards.

Example:
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from sbi_symmetry._validation import check_int


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Set torch's intra-op thread count inside the block (``None``: leave it alone).

    Args:
        num_threads: Threads to use inside the block (>= 1), or ``None``.

    Raises:
        ValueError: ``num_threads`` neither ``None`` nor an integer >= 1.
    """
    if num_threads is not None:
        check_int(num_threads, "num_threads", 1, " or None")
    old = torch.get_num_threads()
    change = num_threads is not None and num_threads != old
    if change:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(old)
