"""The on-disk format of a simulation store: ``meta.json``, its chunk bookkeeping, its checks.

``meta.json`` records the run's settings, which chunks are on disk (as ranges) and the NaN/inf
counts; it is rewritten atomically (:func:`sbi_symmetry._io.atomic_write`), so a crash leaves the
old or the new file, never half of one.

Example:
    >>> _ranges({0, 1, 2, 5})
    [[0, 3], [5, 6]]
    >>> sorted(_from_ranges([[0, 3], [5, 6]]))
    [0, 1, 2, 5]
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sbi_symmetry._io import atomic_write_text

META_FILE = "meta.json"
FORMAT = "sbi-symmetry-simulations"
VERSION = 1
NONFINITE_POLICY = (
    "Rows with NaN/inf are kept as simulated. Select finite rows with store.finite_mask(), or "
    "let sbi drop them with append_simulations(..., exclude_invalid_x=True)."
)
# settings that must match for a run to resume an existing store
RESUME_KEYS = ("kind", "keys", "num_simulations", "chunk_size", "seed")


def _ranges(indices: set[int]) -> list[list[int]]:
    """Compress chunk indices into half-open ``[start, stop)`` runs."""
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return runs


def _from_ranges(runs: Sequence[Sequence[int]]) -> set[int]:
    return {i for start, stop in runs for i in range(start, stop)}


def _read_meta(path: Path) -> dict[str, Any]:
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"No simulation store at `path` {str(path)!r}: {META_FILE} is missing."
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"`path` {str(path)!r} holds a {META_FILE} that is not a simulation store "
            f"(format {meta.get('format')!r}, expected {FORMAT!r})."
        )
    if meta.get("version") != VERSION:
        raise ValueError(
            f"The store at {str(path)!r} has format version {meta.get('version')}; "
            f"this package reads version {VERSION}."
        )
    return meta


def _write_meta(path: Path, meta: Mapping[str, Any]) -> None:
    """Write ``meta.json`` atomically (a crash leaves the old or the new file, never half)."""
    atomic_write_text(path / META_FILE, json.dumps(meta, indent=1))


def _status(meta: Mapping[str, Any]) -> str:
    done = len(_from_ranges(meta["completed_chunks"]))
    if done == meta["num_chunks"]:
        return f"complete, {meta['num_simulations']} simulations"
    return f"incomplete, {done} of {meta['num_chunks']} chunks written"
