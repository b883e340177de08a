"""The ``torch.distributed`` hooks of :class:`~sbi_symmetry.emulate.EmbedEmulate`'s training loop.

Active only when ``torch.distributed`` is initialised with more than one process: every rank
loads its share of each global batch (:class:`~sbi_symmetry.distributed.ShardedSampler`), the
epoch losses are averaged over ranks, and only rank 0 reports. In one process every hook is
``sbi``'s own behaviour.

Example:
    >>> ShardedTrainingHooks.reports_here(None)  # one process: this one reports
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import data

import sbi_symmetry.distributed as distributed


class ShardedTrainingHooks:
    """Mixin over ``sbi``'s ratio trainer: sharded loaders, rank-averaged losses, one reporter."""

    train_indices: Any
    val_indices: Any

    def get_dataloaders(
        self,
        starting_round: int = 0,
        training_batch_size: int = 200,
        validation_fraction: float = 0.1,
        resume_training: bool = False,
        dataloader_kwargs: dict | None = None,
    ) -> tuple[data.DataLoader, data.DataLoader]:
        """``sbi``'s loaders; under several processes, loaders of this rank's share of batches.

        Args:
            starting_round: First round of simulations to use.
            training_batch_size: Global batch size.
            validation_fraction: Fraction held out for validation.
            resume_training: Keep the previous split.
            dataloader_kwargs: Extra ``DataLoader`` arguments.

        Returns:
            The training and validation loaders.
        """
        train_loader, val_loader = super().get_dataloaders(  # type: ignore[misc]
            starting_round,
            training_batch_size,
            validation_fraction,
            resume_training,
            dataloader_kwargs=dataloader_kwargs,
        )
        if not distributed.is_distributed():
            return train_loader, val_loader
        return self._sharded_loaders(train_loader.dataset, training_batch_size, dataloader_kwargs)

    def _sharded_loaders(
        self, dataset: Any, batch_size: int, dataloader_kwargs: dict | None
    ) -> tuple[data.DataLoader, data.DataLoader]:
        owned = {"sampler", "batch_sampler", "batch_size", "shuffle", "drop_last"}
        clash = sorted(owned & set(dataloader_kwargs or {}))
        if clash:
            raise ValueError(
                f"Under torch.distributed the trainer sets {clash} itself (each rank loads its "
                "share of every global batch); remove them from `dataloader_kwargs`."
            )
        world = distributed.get_world_size()
        distributed.check_same_on_all_ranks(
            distributed.tensor_fingerprint(*dataset.tensors[:2]), "simulations (theta, x)"
        )
        self.train_indices, self.val_indices = distributed.broadcast_object(
            (self.train_indices, self.val_indices)
        )
        sizes = []
        for name, indices, least in (
            ("training", self.train_indices, 2),
            ("validation", self.val_indices, 2),
        ):
            size = min(batch_size, len(indices))
            size -= size % world
            if size < max(least, world):
                change = "smaller" if name == "training" else "larger"
                raise ValueError(
                    f"The {name} set has {len(indices)} simulation(s): too few for a global "
                    f"batch over {world} processes. Use more simulations or a {change} "
                    "`validation_fraction`."
                )
            sizes.append(size)
        seeds = distributed.broadcast_object([int(s) for s in torch.randint(0, 2**62, (2,))])
        loaders = []
        for indices, size, seed in zip(
            (self.train_indices, self.val_indices), sizes, seeds, strict=True
        ):
            sampler = distributed.ShardedSampler(indices.tolist(), size, seed=seed)
            loaders.append(
                data.DataLoader(
                    dataset,
                    batch_size=sampler.local_batch_size,
                    drop_last=True,
                    sampler=sampler,
                    **(dataloader_kwargs or {}),
                )
            )
        return loaders[0], loaders[1]

    def reduce_epoch_loss(self, value: float) -> float:
        """The mean over ranks, identical everywhere: all ranks stop on the same epoch."""
        return distributed.all_reduce_mean(value)

    def reports_here(self) -> bool:
        """Only rank 0 prints progress, summaries and convergence messages."""
        return distributed.is_main_process()
