"""Trained posteriors saved in the run folder, so that they load back in a fresh process.

``sbi-symmetry run`` writes one file per method, ``<out>/posteriors/<method>.pt``: a
``torch.save`` dictionary holding the ``sbi`` posterior itself (``sample``, ``sample_batched``,
``log_prob``, ``map``; it still takes raw ``x``), the versions of this package, ``sbi``, ``torch``
and Python that wrote it, the method's name, the task and the seed. :func:`load_posterior` reads
it back and warns when a version differs from the running ones (pickled ``sbi`` objects are only
guaranteed to load with the versions that wrote them).

The files are pickles: load only files you trust (``torch.load(weights_only=False)``), as for any
saved ``sbi`` posterior. A posterior of your own task needs its module importable when it loads.

Example:
    >>> import tempfile, torch
    >>> from sbi.inference import NPE
    >>> from sbi.utils import BoxUniform
    >>> prior = BoxUniform(-torch.ones(2), torch.ones(2))
    >>> theta = prior.sample((200,))
    >>> npe = NPE(prior, show_progress_bars=False)
    >>> _ = npe.append_simulations(theta, theta + 0.1 * torch.randn(200, 2)).train(max_num_epochs=1)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = save_posterior(tmp, "raw_npe", npe.build_posterior(), {"task": "toy"})
    ...     posterior, stamp = load_posterior(path), read_stamp(path)
    >>> posterior.sample((5,), x=torch.zeros(1, 2), show_progress_bars=False).shape
    torch.Size([5, 2])
    >>> stamp["method"], stamp["task"], sorted(stamp["versions"])
    ('raw_npe', 'toy', ['python', 'sbi', 'sbi_symmetry', 'torch'])
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from sbi_symmetry._io import atomic_write, atomic_write_text, versions

POSTERIORS_DIR = "posteriors"
_FORMAT = 1


def save_posterior(folder: str | Path, method: str, posterior: Any, about: dict[str, Any]) -> Path:
    """Save ``posterior`` as ``<folder>/posteriors/<method>.pt`` with its version stamp.

    Args:
        folder: The run folder (``posteriors/`` is created in it).
        method: The method's name, e.g. ``"symmetry_npe"`` (the file's name).
        posterior: An ``sbi`` posterior (or any picklable object with ``sample``).
        about: JSON-able facts stored with it (task, seed, ...).

    Returns:
        The file written.
    """
    if not method.isidentifier():
        raise ValueError(f"`method` must be a plain name (letters, digits, _); got {method!r}.")
    target = Path(folder) / POSTERIORS_DIR
    target.mkdir(parents=True, exist_ok=True)
    stamp = {"format": _FORMAT, "method": method, "versions": versions(), **about}
    path = target / f"{method}.pt"
    atomic_write(path, lambda handle: torch.save({"stamp": stamp, "posterior": posterior}, handle))
    atomic_write_text(target / f"{method}.json", json.dumps(stamp, indent=2))
    return path


def _read(path: str | Path, map_location: str | torch.device) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"`path` {path} is a folder; give one file, e.g. {path / 'symmetry_npe.pt'}."
        )
    if not path.exists():
        raise FileNotFoundError(f"`path` {path} does not exist.")
    try:
        saved = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:
        raise ValueError(f"`path` {path} is not a saved posterior ({error}).") from error
    if not (isinstance(saved, dict) and {"stamp", "posterior"} <= set(saved)):
        raise ValueError(f"`path` {path} is not a posterior saved by `save_posterior`.")
    return saved


def read_stamp(path: str | Path) -> dict[str, Any]:
    """The facts stored with a saved posterior (method, versions, task, seed, ...).

    Args:
        path: A file written by :func:`save_posterior`.

    Returns:
        The stamp.
    """
    return _read(path, "cpu")["stamp"]


def load_posterior(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a posterior saved by ``sbi-symmetry run`` (or :func:`save_posterior`).

    Warns when the versions that wrote it differ from the running ones.

    Args:
        path: ``<out>/posteriors/<method>.pt``.
        map_location: Where its tensors go (``torch.load``'s ``map_location``).

    Returns:
        The ``sbi`` posterior.
    """
    saved = _read(path, map_location)
    then, now = saved["stamp"].get("versions", {}), versions()
    changed = {k: (then.get(k), v) for k, v in now.items() if k != "python" and then.get(k) != v}
    if changed:
        detail = ", ".join(f"{k} {a} (now {b})" for k, (a, b) in changed.items())
        warnings.warn(
            f"{path} was saved with {detail}; if it misbehaves, re-run with the versions it "
            "was saved with.",
            UserWarning,
            stacklevel=2,
        )
    return saved["posterior"]
