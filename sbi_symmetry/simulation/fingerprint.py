"""Fingerprints of a store's simulator and prior, so ``resume=True`` cannot mix two data sets.

A store on disk records, beside its settings, what made it:

* the **prior**: its type and a hash of ``prior.sample((8,))`` under a fixed seed (the samples
  change when any parameter of the prior does);
* the **simulator** (or views function): its qualified name and a hash of its output on one
  probe row, the first row of a one-row chunk simulated under a fixed seed with the same
  machinery as every chunk (:func:`~sbi_symmetry.simulation.worker.simulate_chunk`).

The probe is **one probe row** per store created and one per resume (two when the hashes differ,
to tell a different simulator from one that ignores the seeds): one simulator call per row for
a simulator, two for a views function (a pair); the calls are recorded in ``meta.json`` under
``fingerprint_calls``. A simulator that does not follow torch's, numpy's or
Python's global seeds gives a different hash on every call: then only its name is compared, with a
warning. Memory stores are never resumed, so they are not fingerprinted.

Example:
    >>> import torch
    >>> from sbi.utils import BoxUniform
    >>> prior = BoxUniform(torch.zeros(1), torch.ones(1))
    >>> prior_fingerprint(prior) == prior_fingerprint(BoxUniform(torch.zeros(1), torch.ones(1)))
    True
    >>> prior_fingerprint(prior) == prior_fingerprint(BoxUniform(torch.zeros(1), 2 * torch.ones(1)))
    False
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import numpy as np
import torch

from sbi_symmetry._random import seeded
from sbi_symmetry.simulation.worker import Job, SimulatorJob, dump_job, simulate_chunk

__all__ = ["check_fingerprints", "job_fingerprints", "prior_fingerprint", "qualified_name"]

PROBE_SEED = 20_231_212  # fixed: the probe does not depend on the run's seed
PRIOR_PROBE_ROWS = 8


def qualified_name(obj: object) -> str:
    """``module.QualifiedName`` of a function, a bound method or a callable object.

    Args:
        obj: The callable.

    Returns:
        A name that is the same in every process (no memory addresses).

    Example:
        >>> qualified_name(len)
        'builtins.len'
    """
    owner = getattr(obj, "__self__", None)
    if owner is not None and not isinstance(owner, type(torch)):
        return f"{qualified_name(type(owner))}.{getattr(obj, '__name__', '?')}"
    target = obj if hasattr(obj, "__qualname__") else type(obj)
    module = getattr(target, "__module__", None) or "?"
    return f"{module}.{getattr(target, '__qualname__', type(obj).__name__)}"


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for array in arrays:
        a = np.ascontiguousarray(array, dtype=np.float32)
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def prior_fingerprint(prior: Any) -> dict[str, str]:
    """The prior's type and a hash of ``PRIOR_PROBE_ROWS`` samples under a fixed seed.

    Args:
        prior: Anything with ``sample(sample_shape)``.

    Returns:
        ``{"type": ..., "samples": <hash>}``; the caller's random state is left as it was.
    """
    with seeded(PROBE_SEED):  # torch (CPU and CUDA) and numpy, restored on exit
        samples = torch.as_tensor(prior.sample((PRIOR_PROBE_ROWS,)))
    return {"type": qualified_name(type(prior)), "samples": _digest(samples.detach().cpu().numpy())}


def _probe(payload: bytes) -> str:
    result = simulate_chunk(payload, index=0, start=0, stop=1, seed=PROBE_SEED)
    outputs = [result.arrays[key] for key in sorted(result.arrays) if key != "theta"]
    return _digest(*outputs)


def probe_calls(job: Job) -> int:
    """Simulator calls of one probe row: 1 for a simulator, 2 for a views function (a pair)."""
    return 1 if isinstance(job, SimulatorJob) else 2


def job_fingerprints(job: Job) -> dict[str, Any]:
    """Fingerprint a job's prior and simulator (one probe row: :func:`probe_calls` calls).

    Args:
        job: The simulation job of a store.

    Returns:
        The entries ``meta.json`` records: ``prior``, ``simulator`` (name and probe hash) and
        ``fingerprint_calls``.
    """
    fn = job.simulator if isinstance(job, SimulatorJob) else job.views
    return {
        "prior_fingerprint": prior_fingerprint(job.prior),
        "simulator_fingerprint": {"name": qualified_name(fn), "probe": _probe(dump_job(job))},
        "fingerprint_calls": probe_calls(job),
    }


def check_fingerprints(stored: dict[str, Any], job: Job, where: str) -> int:
    """Refuse to resume a store with another prior or simulator; return the calls spent.

    Args:
        stored: The store's ``meta.json``.
        job: The job asked to resume it.
        where: The store's path, for messages.

    Returns:
        Simulator calls the check made: :func:`probe_calls` per probe row, one row (two when
        the first probe differed).

    Raises:
        ValueError: If the prior or the simulator differs from the one that made the store.
    """
    old_prior, old_sim = stored.get("prior_fingerprint"), stored.get("simulator_fingerprint")
    if old_prior is None or old_sim is None:
        warnings.warn(
            f"The store at {where!r} records no fingerprint of its prior and simulator (it was "
            "written by an older version): resuming without checking that they are the same.",
            stacklevel=4,
        )
        return 0
    new_prior = prior_fingerprint(job.prior)
    if new_prior != old_prior:
        raise ValueError(
            f"Cannot resume the store at {where!r}: its prior differs (stored {old_prior['type']} "
            f"with sample hash {old_prior['samples']}, asked {new_prior['type']} with "
            f"{new_prior['samples']}). Use the same prior, or overwrite=True to start again."
        )
    fn = job.simulator if isinstance(job, SimulatorJob) else job.views
    payload = dump_job(job)
    probe = _probe(payload)
    if probe == old_sim["probe"]:
        return probe_calls(job)
    if _probe(payload) != probe:  # the simulator ignores the seeds: only names can be compared
        if qualified_name(fn) != old_sim["name"]:
            raise ValueError(
                f"Cannot resume the store at {where!r}: it was made by {old_sim['name']}, not "
                f"{qualified_name(fn)}. Use the same simulator, or overwrite=True."
            )
        warnings.warn(
            f"The simulator {old_sim['name']} does not follow torch's/numpy's global seeds, so "
            f"resuming {where!r} cannot check that its output is the same as before.",
            stacklevel=4,
        )
        return 2 * probe_calls(job)
    raise ValueError(
        f"Cannot resume the store at {where!r}: the simulator gives other data than the one that "
        f"made it (stored {old_sim['name']}, probe hash {old_sim['probe']}; asked "
        f"{qualified_name(fn)}, probe hash {probe}). Use the same simulator and settings, or "
        "overwrite=True to start again."
    )
