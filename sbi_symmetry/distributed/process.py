"""The process group: joining ``torchrun``'s group, ranks, devices, batch shares and rank seeds.

Every function here is the identity (or answers for one process) unless ``torch.distributed`` is
initialised with more than one process.

Example:
    >>> get_world_size(), get_rank(), is_main_process()  # no process group: one process
    (1, 0, True)
    >>> local_batch_size(256)
    256
"""

from __future__ import annotations

import atexit
import hashlib
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from sbi_symmetry._validation import is_int

T = TypeVar("T")


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> bool:
    """Join the process group that ``torchrun`` describes in the environment (idempotent).

    Does nothing (and returns ``False``) outside ``torchrun``, i.e. when ``WORLD_SIZE`` is unset,
    or when a process group already exists. On CUDA machines it also selects the GPU
    ``LOCAL_RANK`` for this process. A group created here is destroyed when the script ends
    normally (after a barrier), so training scripts need no teardown of their own.

    Args:
        backend: ``"nccl"`` or ``"gloo"``; default ``"nccl"`` if CUDA is available, else
            ``"gloo"``.
        timeout_s: How long a collective waits for the other ranks before failing.

    Returns:
        Whether this call initialised the process group.

    Example:
        >>> init_distributed()  # not started by torchrun: nothing to join
        False
    """
    if not dist.is_available() or dist.is_initialized() or "WORLD_SIZE" not in os.environ:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"`backend` must be 'nccl' or 'gloo'; got {backend!r}.")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    _shutdown_at_exit()
    return True


_EXIT = {"uncaught_exception": False}


def _shutdown_at_exit() -> None:
    """Destroy the process group this module created when the interpreter exits normally.

    A process that exits without ``destroy_process_group`` leaves gloo's worker threads to be
    torn down during interpreter finalisation, which can abort it ("terminate called without an
    active exception", SIGABRT) after all its work is done. So, on a normal exit, every rank waits
    for the others (a barrier: no rank closes its connections while a peer still reads) and then
    destroys the group. After an uncaught exception nothing is done: the peers may be blocked in a
    collective, and ``torchrun`` tears the job down.
    """
    previous = sys.excepthook

    def excepthook(*args: Any) -> None:
        _EXIT["uncaught_exception"] = True
        previous(*args)

    def shutdown() -> None:
        if _EXIT["uncaught_exception"] or not (dist.is_available() and dist.is_initialized()):
            return
        dist.barrier()
        dist.destroy_process_group()

    sys.excepthook = excepthook
    atexit.register(shutdown)


def is_distributed() -> bool:
    """Whether ``torch.distributed`` is initialised with more than one process.

    Example:
        >>> is_distributed()  # no process group
        False
    """
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_world_size() -> int:
    """Number of processes (1 without a process group).

    Example:
        >>> get_world_size()
        1
    """
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_rank() -> int:
    """Rank of this process (0 without a process group).

    Example:
        >>> get_rank()
        0
    """
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    """Whether this is rank 0, the process that writes checkpoints, logs and progress bars.

    Example:
        >>> is_main_process()
        True
    """
    return get_rank() == 0


def local_device() -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``: where this rank should train.

    Example:
        >>> local_device().type in ("cpu", "cuda")
        True
    """
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _comm_device() -> torch.device:
    """The device a collective's tensors must live on (CUDA for NCCL, CPU otherwise)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ----------------------------------------------------------------------------- batch sharding
def local_batch_size(global_batch_size: int, name: str = "batch_size") -> int:
    """Rows per rank of a global batch; ``global_batch_size`` must be divisible by the ranks.

    Args:
        global_batch_size: Rows per optimisation step over all ranks.
        name: Argument name used in the error message.

    Returns:
        ``global_batch_size // world_size``.

    Example:
        >>> local_batch_size(200, "training_batch_size")
        200
    """
    world = get_world_size()
    if not is_int(global_batch_size):
        raise TypeError(f"`{name}` must be an integer; got {global_batch_size!r}.")
    if global_batch_size < world or global_batch_size % world:
        raise ValueError(
            f"`{name}` ({global_batch_size}) is the global batch over all {world} processes and "
            f"must be a positive multiple of their number; use e.g. "
            f"{max(world, global_batch_size - global_batch_size % world)}."
        )
    return global_batch_size // world


def rank_rows(local_rows: int) -> slice:
    """Where this rank's ``local_rows`` rows sit in a gathered global batch.

    Example:
        >>> rank_rows(8)
        slice(0, 8, None)
    """
    start = get_rank() * local_rows
    return slice(start, start + local_rows)


def rank_share(global_batch: Tensor) -> Tensor:
    """This rank's contiguous share of the rows of a global batch (all of it in one process).

    Args:
        global_batch: A global batch (e.g. indices), its length divisible by the ranks.

    Returns:
        Rows ``[r b, (r + 1) b)`` with ``b = len / world_size``.

    Example:
        >>> rank_share(torch.arange(6)).tolist()
        [0, 1, 2, 3, 4, 5]
    """
    if not is_distributed():
        return global_batch
    return global_batch[rank_rows(local_batch_size(global_batch.shape[0], "global batch"))]


def shard_items(items: Sequence[T]) -> tuple[list[T], bool]:
    """Items ``r, r + W, r + 2W, ...`` for rank ``r``, if there is at least one per rank.

    Args:
        items: Work items (e.g. validation chunks) that every rank holds.

    Returns:
        ``(this rank's items, sharded)``; with fewer items than ranks (or one process) every
        rank gets all items and ``sharded`` is ``False`` (then no reduction is needed).

    Example:
        >>> shard_items(["a", "b", "c"])
        (['a', 'b', 'c'], False)
    """
    world = get_world_size()
    if world == 1 or len(items) < world:
        return list(items), False
    return list(items[get_rank() :: world]), True


def rank_seed(seed: int, *keys: object) -> int:
    """A seed for this rank derived from ``seed``, ``keys`` (e.g. the epoch) and the rank.

    Different ranks (and keys) get unrelated seeds, so their fresh views are independent; the
    same rank, seed and keys always get the same seed (resumable).

    Example:
        >>> rank_seed(0, "views", 3) == rank_seed(0, "views", 3) != rank_seed(0, "views", 4)
        True
    """
    text = repr((int(seed), *keys, get_rank())).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1
