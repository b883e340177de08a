"""A simulated data set on disk (memory-mapped ``.npy`` files) or in memory.

A store is a directory::

    theta.npy         (N, theta_dim) float32
    x.npy             (N, *x_shape)  float32     (or x_a.npy and x_b.npy for views)
    meta.json         the run's settings, which chunks are written, NaN/inf counts

Every array is a plain ``.npy`` file, so ``numpy.load(..., mmap_mode="r")`` reads any row
without loading the rest: a training set larger than memory is read lazily, row by row, by
:meth:`SimulationStore.dataset`. The writer creates the files at full size with
:func:`numpy.lib.format.open_memmap` and fills chunks in whatever order workers finish them;
``meta.json`` records the chunks whose rows are on disk (flushed at least every
``checkpoint_seconds`` and when the run stops), so an interrupted run resumes with only the
missing chunks. Rows holding NaN or inf are kept as simulated and counted in ``meta.json``:
``store.finite_mask()`` selects the others, and sbi's
``append_simulations(..., exclude_invalid_x=True)`` drops them.

Example:
    >>> import numpy as np
    >>> store = SimulationStore({"theta": np.zeros((3, 2)), "x": np.ones((3, 5))})
    >>> len(store), store.x.shape
    (3, (3, 5))
    >>> theta, x = store.dataset()[0]
    >>> theta.dtype, x.shape
    (torch.float32, torch.Size([5]))
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from sbi_symmetry.simulation.meta import (  # the format's names, importable from here too
    FORMAT,
    META_FILE,
    NONFINITE_POLICY,
    RESUME_KEYS,
    VERSION,
    _read_meta,
    _status,
)

# StoreWriter lives in simulation.writer only: it builds SimulationStore, so re-exporting it here
# would be an import cycle.
__all__ = [
    "FORMAT",
    "META_FILE",
    "NONFINITE_POLICY",
    "RESUME_KEYS",
    "VERSION",
    "SimulationDataset",
    "SimulationStore",
]


class SimulationStore:
    """Simulated parameters and data, as memory-mapped ``.npy`` files or in-memory arrays.

    Use :meth:`open` to read a store from disk; ``simulate_dataset`` and ``simulate_views``
    return one. Arrays are float32 with one row per simulation: ``theta`` and ``x`` for a
    data set, ``theta``, ``x_a`` and ``x_b`` for views.

    Args:
        arrays: Arrays by name, all with the same number of rows; ``"theta"`` first.
        metadata: The run's settings and bookkeeping (as written to ``meta.json``).
        path: The store's directory, or ``None`` for a store held in memory.

    Example:
        >>> import numpy as np
        >>> store = SimulationStore({"theta": np.zeros((4, 1)), "x": np.zeros((4, 3))})
        >>> [t.shape for t in store.tensors()]
        [torch.Size([4, 1]), torch.Size([4, 3])]
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        metadata: Mapping[str, Any] | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(arrays, Mapping) or "theta" not in arrays or len(arrays) < 2:
            raise ValueError("`arrays` must map 'theta' and at least one data array to arrays.")
        lengths = {name: len(array) for name, array in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"`arrays` must all have the same number of rows; got {lengths}.")
        self._arrays = dict(arrays)
        self._metadata = dict(metadata) if metadata is not None else {"keys": list(arrays)}
        self._path = None if path is None else Path(path)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> SimulationStore:
        """Open a complete store read-only; its arrays are memory maps (nothing is loaded).

        Args:
            path: The store's directory.

        Returns:
            The store.

        Raises:
            FileNotFoundError: If ``path`` holds no store.
            ValueError: If the store is incomplete or its files disagree with ``meta.json``.
        """
        path = Path(path)
        meta = _read_meta(path)
        if not meta.get("complete", False):
            raise ValueError(
                f"The store at {str(path)!r} is {_status(meta)}; finish it by calling the same "
                "simulate_dataset/simulate_views with resume=True (same prior, simulator, seed "
                "and chunk_size)."
            )
        arrays = {}
        for key in meta["keys"]:
            array = np.load(path / f"{key}.npy", mmap_mode="r")
            if list(array.shape) != meta["shapes"][key] or array.dtype != np.float32:
                raise ValueError(
                    f"{key}.npy in {str(path)!r} has shape {array.shape} and dtype {array.dtype};"
                    f" {META_FILE} says {tuple(meta['shapes'][key])} float32."
                )
            arrays[key] = array
        return cls(arrays, meta, path)

    # ----------------------------------------------------------------------------- access
    @property
    def path(self) -> Path | None:
        """The store's directory, or ``None`` when it is held in memory."""
        return self._path

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the run's settings and bookkeeping."""
        return copy.deepcopy(self._metadata)

    @property
    def keys(self) -> tuple[str, ...]:
        """Names of the arrays, ``("theta", "x")`` or ``("theta", "x_a", "x_b")``."""
        return tuple(self._arrays)

    @property
    def num_nonfinite(self) -> int:
        """Number of rows whose simulation holds a NaN or an inf (they are kept)."""
        return int(self._metadata.get("nonfinite", {}).get("rows", 0))

    def __len__(self) -> int:
        return len(self._arrays["theta"])

    def __getitem__(self, key: str) -> np.ndarray:
        """The array named ``key`` (a memory map for a store on disk)."""
        if key not in self._arrays:
            raise KeyError(f"`key` must be one of {list(self._arrays)}; got {key!r}.")
        return self._arrays[key]

    def _attribute(self, key: str) -> np.ndarray:
        if key not in self._arrays:
            raise AttributeError(f"This store holds {list(self._arrays)}, not {key!r}.")
        return self._arrays[key]

    @property
    def theta(self) -> np.ndarray:
        """Parameters, shape ``(N, theta_dim)``."""
        return self._attribute("theta")

    @property
    def x(self) -> np.ndarray:
        """Simulations, shape ``(N, *x_shape)`` (data sets only)."""
        return self._attribute("x")

    @property
    def x_a(self) -> np.ndarray:
        """First view of each ``theta``, shape ``(N, *x_shape)`` (views only)."""
        return self._attribute("x_a")

    @property
    def x_b(self) -> np.ndarray:
        """Second view of each ``theta``, shape ``(N, *x_shape)`` (views only)."""
        return self._attribute("x_b")

    def _keys(self, keys: str | Sequence[str] | None) -> tuple[str, ...]:
        if keys is None:
            return self.keys
        keys = (keys,) if isinstance(keys, str) else tuple(keys)
        unknown = [k for k in keys if k not in self._arrays]
        if not keys or unknown:
            raise ValueError(
                f"`keys` must be a non-empty selection of {list(self._arrays)}; got {list(keys)}."
            )
        return keys

    # ----------------------------------------------------------------------------- loading
    def dataset(self, keys: str | Sequence[str] | None = None) -> SimulationDataset:
        """A ``torch`` dataset that reads rows lazily and returns float32 tensors.

        Args:
            keys: Arrays each item holds, in order (default: all, ``theta`` first); e.g.
                ``("x_a", "x_b")`` for VICReg pretraining.

        Returns:
            The dataset; item ``i`` is a tuple with row ``i`` of each selected array.
        """
        keys = self._keys(keys)
        return SimulationDataset({k: self._arrays[k] for k in keys}, path=self._path)

    def tensors(self, keys: str | Sequence[str] | None = None) -> tuple[Tensor, ...]:
        """Load arrays into memory as float32 tensors, e.g. for sbi's ``append_simulations``.

        Args:
            keys: Arrays to load, in order (default: all, ``theta`` first).

        Returns:
            One tensor per key.
        """
        return tuple(
            torch.from_numpy(np.array(self._arrays[k], dtype=np.float32)) for k in self._keys(keys)
        )

    def finite_mask(self) -> np.ndarray:
        """Rows whose every value is finite (read chunk by chunk).

        Returns:
            Boolean array of shape ``(N,)``.
        """
        n = len(self)
        mask = np.ones(n, dtype=bool)
        step = int(self._metadata.get("chunk_size") or 4096)
        for start in range(0, n, step):
            stop = min(start + step, n)
            for array in self._arrays.values():
                rows = np.asarray(array[start:stop]).reshape(stop - start, -1)
                mask[start:stop] &= np.isfinite(rows).all(axis=1)
        return mask

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(a.shape)}" for k, a in self._arrays.items())
        where = "in memory" if self._path is None else f"path={str(self._path)!r}"
        return f"SimulationStore({shapes}, {where})"


class SimulationDataset(Dataset):
    """Rows of a store as tuples of float32 tensors, read lazily from memory maps.

    Pickling it (``DataLoader`` workers) sends the store's path, not its data: each worker
    maps the files itself. An in-memory store is pickled with its arrays.

    Args:
        arrays: Arrays by name, all with the same number of rows.
        path: Directory of the ``.npy`` files the arrays map, or ``None``.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], path: Path | None = None) -> None:
        self._keys = tuple(arrays)
        self._arrays: dict[str, np.ndarray] | None = dict(arrays)
        self._path = path
        self._len = len(next(iter(arrays.values())))

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            assert self._path is not None
            self._arrays = {k: np.load(self._path / f"{k}.npy", mmap_mode="r") for k in self._keys}
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._path is not None:
            state["_arrays"] = None
        return state

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        """Row ``index`` of each array, as float32 tensors (copies)."""
        arrays = self._open()
        return tuple(
            torch.from_numpy(np.array(arrays[k][index], dtype=np.float32)) for k in self._keys
        )
