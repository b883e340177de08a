"""Data-parallel training pieces: a sampler of global-batch shares and the DDP wrapper.

Example:
    >>> sampler = ShardedSampler(range(10), 4, seed=0)
    >>> len(list(sampler))
    8
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import Sampler

from sbi_symmetry.distributed.process import (
    get_rank,
    get_world_size,
    is_distributed,
)


class ShardedSampler(Sampler[int]):
    """Global batches from one permutation shared by all ranks; this rank's share of each.

    Every epoch (every ``iter``) permutes ``indices`` with a generator seeded by
    ``seed + epoch`` (the same on every rank), cuts the permutation into global batches of
    ``global_batch_size`` (a last partial batch is dropped, as ``sbi`` does) and yields rank
    ``r``'s contiguous share of each. Use it as ``DataLoader(..., sampler=sampler,
    batch_size=sampler.local_batch_size, drop_last=True)``.

    Args:
        indices: Row indices of the data set to draw from (e.g. the training split).
        global_batch_size: Rows per step over all ranks, divisible by ``world_size``.
        seed: Base seed of the permutations.
        shuffle: Permute every epoch; ``False`` keeps the order of ``indices``.
        rank: This rank (default: the process group's).
        world_size: Number of ranks (default: the process group's).

    Example:
        >>> s = ShardedSampler(range(10), 4, seed=0, rank=1, world_size=2)
        >>> len(s), s.local_batch_size, len(list(s))
        (4, 2, 4)
    """

    def __init__(
        self,
        indices: Iterable[int],
        global_batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.indices = torch.as_tensor(list(indices), dtype=torch.long)
        self.world_size = get_world_size() if world_size is None else int(world_size)
        self.rank = get_rank() if rank is None else int(rank)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"`rank` must be in [0, {self.world_size}); got {self.rank}.")
        if global_batch_size < self.world_size or global_batch_size % self.world_size:
            raise ValueError(
                f"`global_batch_size` ({global_batch_size}) must be a positive multiple of the "
                f"number of processes ({self.world_size})."
            )
        self.global_batch_size = int(global_batch_size)
        self.local_batch_size = self.global_batch_size // self.world_size
        self.num_batches = len(self.indices) // self.global_batch_size
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch`` next (as ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches * self.local_batch_size

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = self.indices[torch.randperm(len(self.indices), generator=generator)]
        else:
            order = self.indices
        self.epoch += 1
        b, start = self.local_batch_size, self.rank * self.local_batch_size
        batches = order[: self.num_batches * self.global_batch_size]
        mine = batches.reshape(self.num_batches, self.global_batch_size)[:, start : start + b]
        return iter(mine.reshape(-1).tolist())


def data_parallel(module: nn.Module) -> nn.Module:
    """``module`` wrapped in ``DistributedDataParallel`` for this rank's device.

    Gradients are averaged over ranks during the backward (overlapping the computation).
    Parameters are copied from rank 0 when the wrapper is built; buffers are not re-sent before
    every forward (use :func:`broadcast_module` once for them, as the trainers do).

    Args:
        module: A module on this rank's device whose forward computes the loss inputs.

    Returns:
        The DDP wrapper (call it instead of ``module``); ``module`` itself in one process.

    Example:
        >>> layer = nn.Linear(2, 1)
        >>> data_parallel(layer) is layer  # one process
        True
    """
    if not is_distributed():
        return module
    params = [p for p in module.parameters() if p.requires_grad]
    device = params[0].device if params else torch.device("cpu")
    device_ids = [device.index] if device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel
    # No buffer broadcast before every forward (the switch was renamed in torch 2.13).
    no_forward_sync = (
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters
        else {"broadcast_buffers": False}
    )
    return ddp(module, device_ids=device_ids, **no_forward_sync)
