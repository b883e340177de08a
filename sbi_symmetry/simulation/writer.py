"""Writing a simulation store chunk by chunk, in any order, resumable after an interruption.

The writer creates the arrays at full size with :func:`numpy.lib.format.open_memmap` and fills
chunks in whatever order workers finish them; ``meta.json`` records the chunks whose rows are on
disk (flushed at least every ``checkpoint_seconds`` and when the run stops), so an interrupted
run resumes with only the missing chunks.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import open_memmap

from sbi_symmetry.simulation.fingerprint import check_fingerprints, job_fingerprints
from sbi_symmetry.simulation.meta import (
    FORMAT,
    META_FILE,
    NONFINITE_POLICY,
    RESUME_KEYS,
    VERSION,
    _from_ranges,
    _ranges,
    _read_meta,
    _status,
    _write_meta,
)
from sbi_symmetry.simulation.store import SimulationStore
from sbi_symmetry.simulation.worker import ChunkResult, Job


class StoreWriter:
    """Writes chunks, in any order, into a store on disk or in memory.

    Use :meth:`start` to create it: that handles an existing store (refuse, overwrite or
    resume). Call :meth:`write` for every chunk, then :meth:`finish`; call :meth:`checkpoint`
    when a run stops early so its finished chunks count on resume.

    Args:
        meta: The store's metadata (settings and bookkeeping).
        path: The store's directory, or ``None`` for memory.
        checkpoint_seconds: Longest time between two flushes of data and ``meta.json``.
    """

    def __init__(
        self, meta: dict[str, Any], path: Path | None, checkpoint_seconds: float = 2.0
    ) -> None:
        self.meta = meta
        self.path = path
        self.checkpoint_seconds = checkpoint_seconds
        self.completed: set[int] = _from_ranges(meta["completed_chunks"])
        self._by_chunk: dict[str, int] = dict(meta["nonfinite"]["by_chunk"])
        self._arrays: dict[str, np.ndarray] = {}
        self._last = time.monotonic()
        if path is not None and meta["shapes"] is not None:
            for key in meta["keys"]:
                self._arrays[key] = open_memmap(path / f"{key}.npy", mode="r+")

    @classmethod
    def start(
        cls,
        settings: dict[str, Any],
        path: str | os.PathLike[str] | None,
        overwrite: bool = False,
        resume: bool = False,
        job: Job | None = None,
    ) -> StoreWriter:
        """Create a writer for a new store, or for an existing one when resuming.

        Args:
            settings: ``kind``, ``keys``, ``num_simulations``, ``chunk_size``, ``num_chunks``,
                ``seed`` and descriptions of the simulator and prior.
            path: Directory of the store (created if missing), or ``None`` for memory.
            overwrite: Replace an existing store at ``path``.
            resume: Finish an existing store at ``path`` made with the same settings.
            job: The job that fills the store. With a ``path``, a new store records the
                fingerprints of its prior and simulator, and ``resume`` refuses a job whose
                fingerprints differ (:mod:`~sbi_symmetry.simulation.fingerprint`; one simulator
                call each time).

        Returns:
            The writer.
        """
        if overwrite and resume:
            raise ValueError("`overwrite` and `resume` cannot both be True.")
        fresh = {
            "format": FORMAT,
            "version": VERSION,
            **settings,
            "dtype": "float32",
            "shapes": None,
            "completed_chunks": [],
            "complete": False,
            "nonfinite": {"rows": 0, "by_chunk": {}, "policy": NONFINITE_POLICY},
        }
        if path is None:
            if resume:
                raise ValueError("`resume=True` needs the `path` of the store to resume.")
            return cls(fresh, None)
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise FileExistsError(
                f"`path` {str(path)!r} is a file; give a directory for the store."
            )
        if (path / META_FILE).exists():
            old = _read_meta(path)
            if resume:
                mismatch = {
                    k: (old.get(k), settings[k]) for k in RESUME_KEYS if old.get(k) != settings[k]
                }
                if mismatch:
                    detail = "; ".join(
                        f"{k}: stored {a!r}, asked {b!r}" for k, (a, b) in mismatch.items()
                    )
                    raise ValueError(
                        f"Cannot resume the store at {str(path)!r}: its settings differ ({detail})."
                        " Use the same settings, or overwrite=True to start again."
                    )
                if job is not None:
                    calls = check_fingerprints(old, job, str(path))
                    old["fingerprint_calls"] = old.get("fingerprint_calls", 0) + calls
                    _write_meta(path, old)
                return cls(old, path)
            if not overwrite:
                raise FileExistsError(
                    f"`path` {str(path)!r} already holds a simulation store ({_status(old)}). "
                    "Read it with SimulationStore.open(path), finish it with resume=True, or "
                    "replace it with overwrite=True."
                )
            for key in old.get("keys", []):
                (path / f"{key}.npy").unlink(missing_ok=True)
            (path / META_FILE).unlink()
        elif path.is_dir() and any(path.iterdir()):
            raise FileExistsError(
                f"`path` {str(path)!r} is a non-empty directory that holds no simulation store; "
                "choose a new or empty directory."
            )
        if job is not None:
            fresh.update(job_fingerprints(job))
        path.mkdir(parents=True, exist_ok=True)
        _write_meta(path, fresh)
        return cls(fresh, path)

    @property
    def num_missing(self) -> int:
        """Number of chunks not yet written."""
        return self.meta["num_chunks"] - len(self.completed)

    def _allocate(self, result: ChunkResult) -> None:
        n = self.meta["num_simulations"]
        shapes = {k: [n, *result.arrays[k].shape[1:]] for k in self.meta["keys"]}
        for key, shape in shapes.items():
            if self.path is None:
                self._arrays[key] = np.empty(shape, dtype=np.float32)
            else:
                self._arrays[key] = open_memmap(
                    self.path / f"{key}.npy", mode="w+", dtype=np.float32, shape=tuple(shape)
                )
        self.meta["shapes"] = shapes

    def write(self, result: ChunkResult) -> None:
        """Write one chunk's rows (checkpointing when the last checkpoint is old enough).

        Args:
            result: The chunk.
        """
        if self.meta["shapes"] is None:
            self._allocate(result)
        for key in self.meta["keys"]:
            row_shape = tuple(self.meta["shapes"][key][1:])
            got = result.arrays[key].shape[1:]
            if got != row_shape:
                raise ValueError(
                    f"Chunk {result.index} gave `{key}` rows of shape {got}, but the store holds "
                    f"rows of shape {row_shape}: the simulator must return one shape throughout."
                )
        for key in self.meta["keys"]:
            self._arrays[key][result.start : result.stop] = result.arrays[key]
        self.completed.add(result.index)
        if result.nonfinite:
            self._by_chunk[str(result.index)] = result.nonfinite
        if time.monotonic() - self._last >= self.checkpoint_seconds:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Flush written rows to disk, then record their chunks in ``meta.json``."""
        self.meta["completed_chunks"] = _ranges(self.completed)
        self.meta["complete"] = self.num_missing == 0
        self.meta["nonfinite"]["by_chunk"] = dict(
            sorted(self._by_chunk.items(), key=lambda kv: int(kv[0]))
        )
        self.meta["nonfinite"]["rows"] = sum(self._by_chunk.values())
        if self.path is not None:
            for array in self._arrays.values():
                if isinstance(array, np.memmap):
                    array.flush()
            _write_meta(self.path, self.meta)
        self._last = time.monotonic()

    def finish(self) -> SimulationStore:
        """Checkpoint and return the finished store (read-only memory maps when on disk).

        Returns:
            The store.
        """
        self.checkpoint()
        if self.num_missing:
            raise RuntimeError(f"{self.num_missing} chunk(s) are missing; cannot finish.")
        if self.path is None:
            return SimulationStore(self._arrays, self.meta)
        self._arrays.clear()
        return SimulationStore.open(self.path)
