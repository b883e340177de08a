"""The task, run settings and serial-engine run shared by the chunked simulation tests."""

from __future__ import annotations

import numpy as np

from sbi_symmetry.simulation import simulate_dataset
from sbi_symmetry.tasks import DampedOscillator

NUM, CHUNK, SEED = 130, 40, 5  # four chunks, the last one short
TASK = DampedOscillator()


def _simulate(engine="serial", n_jobs=None, **kwargs):
    options = {"chunk_size": CHUNK, "seed": SEED, "show_progress_bar": False}
    options.update(kwargs)
    num = options.pop("num", NUM)
    return simulate_dataset(TASK, TASK.prior, num, engine=engine, n_jobs=n_jobs, **options)


def _assert_same(store, ref):
    assert store.keys == ref.keys
    for key in ref.keys:
        assert store[key].dtype == np.float32
        np.testing.assert_array_equal(store[key], ref[key])
