"""Simulate training sets and views on an engine you already run, streamed to disk.

``simulate_dataset`` and ``simulate_views`` cut a run into chunks, send them to ``joblib``
(default, local processes), a Dask cluster, or any ``concurrent.futures.Executor``, and write
each chunk into memory-mapped ``.npy`` files as it arrives. The result is a
:class:`SimulationStore` whose ``dataset()`` reads rows lazily for a ``DataLoader`` and whose
``tensors()`` feed sbi's ``append_simulations``. Runs are reproducible bit for bit whatever the
engine and the number of workers, and an interrupted run resumes where it stopped.

Example:
    >>> from sbi_symmetry.simulation import simulate_dataset
    >>> from sbi_symmetry.tasks import DampedOscillator
    >>> task = DampedOscillator()
    >>> store = simulate_dataset(task, task.prior, 8, engine="serial", show_progress_bar=False)
    >>> theta, x = store.tensors()
    >>> theta.shape, x.shape
    (torch.Size([8, 2]), torch.Size([8, 200]))
"""

from __future__ import annotations

from sbi_symmetry.simulation.api import simulate_dataset, simulate_views
from sbi_symmetry.simulation.engines import ENGINES, local_dask_client, map_unordered
from sbi_symmetry.simulation.store import SimulationDataset, SimulationStore
from sbi_symmetry.simulation.worker import ChunkError, chunk_seed_sequence

__all__ = [
    "ENGINES",
    "ChunkError",
    "SimulationDataset",
    "SimulationStore",
    "chunk_seed_sequence",
    "local_dask_client",
    "map_unordered",
    "simulate_dataset",
    "simulate_views",
]
