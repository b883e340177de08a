"""Seeded blocks that leave the caller's global random state as they found it.

``sbi``'s samplers draw from torch's global generator, its slice sampler from numpy's, and a
simulator may use either: a seeded run has to seed the global generators. :func:`seeded` does so
inside a ``with`` block and restores torch's (CPU and the device's) and numpy's states on exit, so
a call such as ``pretrain_vicreg(seed=0)`` or ``calibrate(seed=0)`` is reproducible without
resetting the random stream of the code around it (replicates of a seed sweep stay independent).

Example:
    >>> import torch
    >>> before = torch.get_rng_state()
    >>> with seeded(0):
    ...     a = torch.rand(2)
    >>> with seeded(0):
    ...     b = torch.rand(2)
    >>> torch.equal(a, b), torch.equal(torch.get_rng_state(), before)
    (True, True)
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from hashlib import sha256
from typing import Any

import numpy as np
import torch

__all__ = ["derived_seed", "random_states", "seeded", "set_random_states"]


def _cuda_indices(device: str | torch.device | None) -> list[int]:
    if not torch.cuda.is_available():
        return []
    if device is None:
        return list(range(torch.cuda.device_count()))
    device = torch.device(device)
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


@contextmanager
def seeded(seed: int, device: str | torch.device | None = None) -> Iterator[None]:
    """Seed torch's and numpy's global generators for a block; restore them afterwards.

    Args:
        seed: The seed (a non-negative integer; numpy takes it modulo ``2**32``).
        device: Seed and restore the generator of this CUDA device only (beside CPU's,
            which always is); ``None``: those of every visible CUDA device.

    Yields:
        Nothing; the block runs with torch and numpy seeded by ``seed``.
    """
    np_state = np.random.get_state()
    cuda = _cuda_indices(device)
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            np.random.set_state(np_state)


def derived_seed(seed: int, *labels: str) -> int:
    """A seed for one part of a seeded run, fixed by ``seed`` and the part's labels.

    Parts seeded this way draw independent streams that do not depend on which other parts ran
    or in what order (e.g. one per compared method).

    Args:
        seed: The run's seed.
        *labels: Names the part, e.g. ``"method", "raw_npe"``.

    Returns:
        A seed in ``[0, 2**31)``, the same on every machine and Python run.

    Example:
        >>> derived_seed(0, "raw_npe") == derived_seed(0, "raw_npe") != derived_seed(1, "raw_npe")
        True
    """
    text = "/".join((str(seed), *labels))
    return int.from_bytes(sha256(text.encode()).digest()[:4], "big") % 2**31


def random_states() -> dict[str, Any]:
    """The global generators' states: torch's (CPU, each CUDA device), numpy's and Python's.

    Returns:
        A dictionary for :func:`set_random_states` (and ``torch.save``).

    Example:
        >>> saved = random_states()
        >>> a = torch.rand(1)
        >>> set_random_states(saved)
        >>> torch.equal(a, torch.rand(1))
        True
    """
    states = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict[str, Any]) -> None:
    """Set the global generators to what :func:`random_states` returned.

    States it lacks (e.g. Python's, in a file written before it was saved) are left as they are.

    Args:
        states: The saved states (at least ``"torch"``).
    """
    torch.set_rng_state(states["torch"])
    if "numpy" in states:
        np.random.set_state(states["numpy"])
    if "python" in states:
        random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
