"""Chunked simulation into a store on disk: streaming, no silent overwrite, resume of an
interrupted run, non-finite rows, reading the rows back."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from _helpers_simulation import CHUNK, NUM, SEED, TASK, _assert_same, _simulate
from sbi.inference import NPE
from torch.utils.data import DataLoader

from sbi_symmetry._sbi_compat import NullTracker
from sbi_symmetry.simulation import ChunkError, SimulationStore, simulate_dataset


# ----------------------------------------------------------------------------- store on disk
def test_store_streams_to_memory_mapped_files(tmp_path, reference):
    path = tmp_path / "store"
    store = _simulate(path=path)
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "theta.npy", "x.npy"]
    assert isinstance(store.x, np.memmap) and store.path == path
    _assert_same(store, reference)
    _assert_same(SimulationStore.open(path), reference)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["complete"] and meta["completed_chunks"] == [[0, 4]]
    assert (meta["num_simulations"], meta["chunk_size"], meta["num_chunks"], meta["seed"]) == (
        NUM,
        CHUNK,
        4,
        SEED,
    )
    assert meta["shapes"] == {"theta": [NUM, 2], "x": [NUM, 200]}
    assert meta["nonfinite"]["rows"] == 0 and "DampedOscillator" in meta["simulator"]


def test_existing_store_is_never_overwritten_silently(tmp_path, reference):
    path = tmp_path / "store"
    _simulate(path=path, num=50)
    with pytest.raises(FileExistsError, match=r"already holds .*overwrite=True"):
        _simulate(path=path, num=50)
    store = _simulate(path=path, overwrite=True)  # replaced, with other settings
    _assert_same(store, reference)
    _assert_same(_simulate(path=tmp_path / "new", resume=True), reference)  # nothing to resume
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="non-empty directory"):
        _simulate(path=foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "mine"
    with pytest.raises(FileExistsError, match="is a file"):
        _simulate(path=foreign / "notes.txt")
    with pytest.raises(FileNotFoundError, match=r"meta\.json"):
        SimulationStore.open(foreign)


CALLS: list[int] = []


class _FailsOnChunkTwo:
    """Simulates like the task but raises on chunk 2: its fourth call, after the one-row probe
    of the store's fingerprint and chunks 0 and 1 (calls are counted in-process)."""

    def __call__(self, theta):
        CALLS.append(len(theta))
        if len(CALLS) == 4:
            raise RuntimeError("node lost")
        return TASK(theta)


class _Counting:
    def __call__(self, theta):
        CALLS.append(len(theta))
        return TASK(theta)


def test_interrupted_run_resumes_with_only_the_missing_chunks(tmp_path, reference):
    path = tmp_path / "store"
    CALLS.clear()
    with pytest.raises(ChunkError, match=r"chunk 2 \(rows 80:120\).*node lost.*resume=True"):
        simulate_dataset(
            _FailsOnChunkTwo(),
            TASK.prior,
            NUM,
            path=path,
            chunk_size=CHUNK,
            seed=SEED,
            engine="serial",
            show_progress_bar=False,
        )
    meta = json.loads((path / "meta.json").read_text())
    assert meta["completed_chunks"] == [[0, 2]] and not meta["complete"]
    with pytest.raises(ValueError, match="incomplete, 2 of 4 chunks"):
        SimulationStore.open(path)
    with pytest.raises(FileExistsError, match="resume=True"):
        _simulate(path=path)
    with pytest.raises(ValueError, match="chunk_size: stored 40, asked 41"):
        _simulate(path=path, chunk_size=CHUNK + 1, resume=True)
    CALLS.clear()
    store = simulate_dataset(
        _Counting(),
        TASK.prior,
        NUM,
        path=path,
        chunk_size=CHUNK,
        seed=SEED,
        engine="serial",
        resume=True,
        show_progress_bar=False,
    )
    assert CALLS == [1, 40, 10]  # the fingerprint's one-row probe, then chunks 2 and 3 only
    _assert_same(store, reference)
    _assert_same(_simulate(path=path, resume=True), reference)  # complete: nothing to do


def _nan_when_fast(theta):
    x = TASK(theta)
    x[theta[:, 0] > 1.5, 3] = float("nan")
    x[theta[:, 1] < 0.05, 0] = float("inf")
    return x


def test_nonfinite_simulations_are_counted_kept_and_reported(tmp_path):
    with pytest.warns(UserWarning, match=r"simulations contain NaN/inf.*exclude_invalid_x"):
        store = simulate_dataset(
            _nan_when_fast,
            TASK.prior,
            NUM,
            path=tmp_path / "s",
            chunk_size=CHUNK,
            engine="serial",
            show_progress_bar=False,
        )
    bad = (store.theta[:, 0] > 1.5) | (store.theta[:, 1] < 0.05)
    assert bad.sum() > 0 and store.num_nonfinite == int(bad.sum())
    np.testing.assert_array_equal(store.finite_mask(), ~bad)
    assert np.isnan(store.x[store.theta[:, 0] > 1.5, 3]).all()  # kept as simulated
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["nonfinite"]["rows"] == int(bad.sum())
    assert sum(meta["nonfinite"]["by_chunk"].values()) == int(bad.sum())
    assert "exclude_invalid_x" in meta["nonfinite"]["policy"]


# ----------------------------------------------------------------------------- reading
def test_dataset_reads_rows_lazily_and_pickles_without_data(tmp_path, reference):
    store = _simulate(path=tmp_path / "store")
    dataset = store.dataset()
    theta, x = dataset[7]
    assert theta.dtype == x.dtype == torch.float32 and x.shape == (200,)
    np.testing.assert_array_equal(x.numpy(), reference.x[7])
    clone = pickle.loads(pickle.dumps(dataset))
    assert len(pickle.dumps(dataset)) < 2_000  # the path, not the 100 kB of data
    np.testing.assert_array_equal(clone[-1][1].numpy(), reference.x[-1])
    batch_theta, batch_x = next(iter(DataLoader(dataset, batch_size=32)))
    assert batch_theta.shape == (32, 2) and batch_x.shape == (32, 200)
    (only_x,) = store.dataset("x")[0]
    assert only_x.shape == (200,) and len(store.dataset()) == NUM
    with pytest.raises(ValueError, match="`keys` must be a non-empty selection"):
        store.dataset(("x", "y"))


def test_tensors_feed_sbi_append_simulations(reference):
    theta, x = reference.tensors()
    assert theta.dtype == x.dtype == torch.float32 and x.shape == (NUM, 200)
    trainer = NPE(TASK.prior, tracker=NullTracker(), show_progress_bars=False)
    trainer.append_simulations(*reference.tensors())
    assert torch.equal(trainer.get_simulations()[1], x)


def test_store_checks_its_arrays():
    with pytest.raises(ValueError, match="same number of rows"):
        SimulationStore({"theta": np.zeros((3, 1)), "x": np.zeros((4, 1))})
    with pytest.raises(ValueError, match="'theta'"):
        SimulationStore({"x": np.zeros((3, 1))})
    store = SimulationStore({"theta": np.zeros((3, 1)), "x": np.zeros((3, 2))})
    with pytest.raises(AttributeError, match="not 'x_a'"):
        _ = store.x_a
    with pytest.raises(KeyError, match="`key` must be one of"):
        store["y"]
