"""On-disk cache of reference posteriors, keyed by a hash of everything that determines them.

The key covers the task's class and its model (time grid, noise level, prior bounds, and its
signal at the centre of the priors, so two instances of one class configured differently get
different keys), the exact bytes of ``x_o`` (as float64), the method, the number of samples, the
seed, the method's settings and a cache version. The file name is
``reference-<hash>.npz``; only that file (and a temporary sibling while writing) is ever read or
written, so a cache directory can be shared with anything else.

Example:
    >>> import torch
    >>> from sbi_symmetry.tasks import SineGaussian
    >>> key = cache_key(SineGaussian(), torch.zeros(500), "quadrature", 10, 0, {})
    >>> key == cache_key(SineGaussian(), torch.zeros(1, 500), "quadrature", 10, 0, {})
    True
    >>> key == cache_key(SineGaussian(), torch.zeros(500), "quadrature", 10, 1, {})
    False
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sbi_symmetry.reference.result import ReferencePosterior

#: Bump when a change of the algorithms makes old cached results stale.
CACHE_VERSION = 2

_MODEL_MEMBERS = ("name", "noise_std", "t_start", "num_samples", "dt")
_MODEL_BOUNDS = ("theta_low", "theta_high", "nuisance_low", "nuisance_high")


def _float64_bytes(values: Tensor) -> bytes:
    """The values as contiguous float64 bytes: what is hashed, whatever the dtype or shape."""
    return np.ascontiguousarray(values.detach().cpu().double().reshape(-1).numpy()).tobytes()


def _model_meta(task: object) -> dict[str, Any]:
    """The members of a signal model that fix its likelihood, and a digest of its waveform."""
    meta: dict[str, Any] = {name: getattr(task, name, None) for name in _MODEL_MEMBERS}
    for name in _MODEL_BOUNDS:
        bounds = getattr(task, name, None)
        meta[name] = None if bounds is None else [float(b) for b in bounds]
    if meta["theta_low"] is not None and meta["nuisance_low"] is not None:
        centre = [
            (torch.tensor(meta[f"{k}_low"]) + torch.tensor(meta[f"{k}_high"])) / 2
            for k in ("theta", "nuisance")
        ]
        signal = task.signal(centre[0][None].to(task.device), centre[1][None].to(task.device))
        meta["signal_at_centre"] = hashlib.sha256(_float64_bytes(signal)).hexdigest()
    return meta


def cache_key(
    task: object,
    x_o: Tensor,
    method: str,
    num_samples: int,
    seed: int,
    settings: dict[str, Any],
) -> str:
    """SHA-256 hex digest identifying one reference-posterior computation.

    Args:
        task: The task (its class and its model's settings are part of the key).
        x_o: The observation; its values as float64 bytes are hashed, not its dtype or shape.
        method: ``"quadrature"`` or ``"dynesty"``.
        num_samples: Number of samples requested.
        seed: Seed of the run.
        settings: Keyword arguments passed to the method (must be JSON-serialisable or have a
            stable ``repr``).

    Returns:
        A 64-character hexadecimal string.
    """
    meta = {
        "cache_version": CACHE_VERSION,
        "task": f"{type(task).__module__}.{type(task).__qualname__}",
        "model": _model_meta(task),
        "method": method,
        "num_samples": num_samples,
        "seed": seed,
        "settings": settings,
    }
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True, default=repr).encode())
    digest.update(_float64_bytes(x_o))
    return digest.hexdigest()


def cache_path(cache_dir: str | Path, key: str) -> Path:
    """The file that holds the result with this key.

    Args:
        cache_dir: The cache directory.
        key: A digest from :func:`cache_key`.

    Returns:
        ``cache_dir / "reference-<key>.npz"``.
    """
    return Path(cache_dir) / f"reference-{key}.npz"


def load_or_compute(
    cache_dir: str | Path, key: str, compute: Callable[[], ReferencePosterior]
) -> ReferencePosterior:
    """Load the cached result for ``key``, or compute it and store it.

    Args:
        cache_dir: Directory of the cache (created if missing).
        key: A digest from :func:`cache_key`.
        compute: Produces the result when it is not cached.

    Returns:
        The cached or freshly computed result.
    """
    folder = Path(cache_dir)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"`cache_dir` {str(folder)!r} exists and is not a directory.")
    path = cache_path(folder, key)
    if path.exists():
        try:
            return ReferencePosterior.load(path)
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(
                f"Cached reference {str(path)!r} cannot be read ({error}); delete it to recompute."
            ) from error
    result = compute()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        result.save(path)
    except FileExistsError:  # another process stored the same result meanwhile
        pass
    return result
