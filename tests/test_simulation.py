"""Chunked simulation: the same bits on every engine (local, process pools, Dask), views, clear
errors (the store on disk: test_simulation_store.py)."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import random

import numpy as np
import pytest
import torch
from _helpers_simulation import CHUNK, NUM, SEED, TASK, _assert_same, _simulate
from hypothesis import given
from hypothesis import strategies as st
from sbi.utils import BoxUniform

from sbi_symmetry.simulation import (
    ChunkError,
    SimulationStore,
    chunk_seed_sequence,
    local_dask_client,
    map_unordered,
    simulate_dataset,
    simulate_views,
)


def _two_views(theta):
    return TASK(theta), TASK(theta)


def _views(engine="serial", n_jobs=None, **kwargs):
    return simulate_views(
        _two_views,
        TASK.prior,
        50,
        chunk_size=20,
        seed=1,
        engine=engine,
        n_jobs=n_jobs,
        show_progress_bar=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def reference_views():
    return _views()


# ----------------------------------------------------------------------------- reproducibility
def test_chunk_is_prior_then_simulator_under_the_chunk_seed(reference):
    """The documented contract: chunk i = prior.sample then simulator under chunk i's seeds."""
    words = chunk_seed_sequence(SEED, 1).generate_state(4, dtype=np.uint32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(int(words[0]) | (int(words[1]) << 32))
        theta = TASK.prior.sample((CHUNK,))
        x = TASK(theta)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(reference.theta[CHUNK : 2 * CHUNK], theta.numpy())
    np.testing.assert_array_equal(reference.x[CHUNK : 2 * CHUNK], x.numpy())
    assert reference.theta.shape == (NUM, 2) and reference.x.shape == (NUM, 200)
    assert np.isfinite(reference.x).all() and len(reference) == NUM


@pytest.mark.parametrize(
    ("engine", "n_jobs"),
    [("joblib", 1), ("joblib", 2), ("threads", None)],
    ids=["joblib-1", "joblib-2", "thread-pool"],
)
def test_same_bits_on_every_local_engine(reference, engine, n_jobs):
    if engine == "threads":  # threads take turns on the global random state: same bits
        with cf.ThreadPoolExecutor(max_workers=2) as pool:
            store = _simulate(pool)
    else:
        store = _simulate(engine, n_jobs)
    _assert_same(store, reference)


def test_seed_and_chunk_size_define_the_data_set(reference):
    _assert_same(
        SimulationStore({k: reference[k][:80] for k in reference.keys}), _simulate(num=80)
    )  # chunk i does not depend on the total
    assert not np.array_equal(_simulate(seed=SEED + 1).theta, reference.theta)
    assert not np.array_equal(
        _simulate(chunk_size=CHUNK + 1).theta[CHUNK:], reference.theta[CHUNK:]
    )


@given(seed=st.integers(0, 2**63), index=st.integers(0, 300))
def test_chunk_seed_is_the_spawned_child(seed, index):
    spawned = np.random.SeedSequence(seed).spawn(index + 1)[index]
    np.testing.assert_array_equal(
        chunk_seed_sequence(seed, index).generate_state(4), spawned.generate_state(4)
    )


def _affine(theta):
    return 3.0 * theta + torch.randn_like(theta)


@given(
    chunks=st.integers(1, 3),
    extra=st.integers(0, 30),
    chunk=st.integers(2, 12),
    seed=st.integers(0, 1000),
)
def test_whole_chunks_do_not_depend_on_the_run_length(chunks, extra, chunk, seed):
    # a short last chunk draws fewer rows, and torch's samplers need not give a prefix then;
    # whole chunks are identical whatever the total
    prior = BoxUniform(torch.zeros(2), torch.ones(2))
    kwargs = {"chunk_size": chunk, "seed": seed, "engine": "serial", "show_progress_bar": False}
    small = chunks * chunk
    short = simulate_dataset(_affine, prior, small, **kwargs)
    long = simulate_dataset(_affine, prior, small + extra, **kwargs)
    assert len(short) == small and len(long) == small + extra
    np.testing.assert_array_equal(short.x, long.x[:small])
    np.testing.assert_array_equal(short.theta, long.theta[:small])


def test_caller_random_state_and_threads_are_untouched():
    torch.manual_seed(123)
    np.random.seed(4)
    random.seed(9)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    threads = torch.get_num_threads()
    _simulate(num=50)
    assert torch.equal(torch.get_rng_state(), states[0])
    np.testing.assert_array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]
    assert torch.get_num_threads() == threads


# ----------------------------------------------------------------------------- views
def test_views_store_two_views_of_the_same_theta(tmp_path, reference_views):
    store = _views(path=tmp_path / "views")
    assert store.keys == ("theta", "x_a", "x_b") and store.x_a.shape == (50, 200)
    assert sorted(p.name for p in (tmp_path / "views").iterdir()) == [
        "meta.json",
        "theta.npy",
        "x_a.npy",
        "x_b.npy",
    ]
    assert not np.array_equal(store.x_a, store.x_b)  # fresh nuisance and noise per view
    assert store.metadata["fingerprint_calls"] == 2  # the probe row is a pair of views
    _assert_same(store, reference_views)
    _assert_same(_views("joblib", 2), reference_views)
    x_a, x_b = store.dataset(("x_a", "x_b"))[3]
    np.testing.assert_array_equal(x_a.numpy(), reference_views.x_a[3])
    np.testing.assert_array_equal(x_b.numpy(), reference_views.x_b[3])
    with pytest.raises(AttributeError, match="not 'x'"):
        _ = store.x


def test_views_from_the_package_resimulated_views():
    augment = pytest.importorskip("sbi_symmetry.views")  # written alongside; skip until it lands
    views = augment.ResimulatedViews(TASK.simulate, TASK.nuisance_prior)
    kwargs = {"chunk_size": 10, "seed": 2, "show_progress_bar": False}
    serial = simulate_views(views, TASK.prior, 25, engine="serial", **kwargs)
    assert serial.x_a.shape == serial.x_b.shape == (25, 200)
    assert not np.array_equal(serial.x_a, serial.x_b)
    _assert_same(simulate_views(views, TASK.prior, 25, engine="joblib", n_jobs=2, **kwargs), serial)


# ----------------------------------------------------------------------------- errors
def _one_row_short(theta):
    return TASK(theta)[1:]


def _shape_changes(theta):
    return TASK(theta)[:, : 100 + len(theta) % 2]


def _raises(theta):
    raise ValueError("bad parameters")


BAD = [
    ({"num_simulations": 0}, ValueError, "`num_simulations` must be an integer >= 1"),
    ({"chunk_size": 0}, ValueError, "`chunk_size` must be an integer >= 1"),
    ({"seed": -1}, ValueError, "`seed` must be an integer >= 0"),
    ({"engine": "spark"}, ValueError, "`engine` must be one of"),
    ({"engine": object()}, TypeError, "`engine` must be one of"),
    ({"engine": "joblib", "n_jobs": 0}, ValueError, "`n_jobs` must be a positive integer"),
    ({"engine": "serial", "n_jobs": 2}, ValueError, "`n_jobs` must be None or 1"),
    ({"prior": object()}, TypeError, "`prior` must have a `sample"),
    ({"simulator": 3}, TypeError, "`simulator` must be callable"),
    ({"resume": True}, ValueError, "`resume=True` needs the `path`"),
    ({"simulator": _one_row_short}, ChunkError, r"chunk 0 .*one row per parameter set"),
    (
        {"simulator": _shape_changes, "chunk_size": 4, "num_simulations": 11},
        ValueError,
        "one shape throughout",
    ),
    ({"simulator": _raises}, ChunkError, r"chunk 0 \(rows 0:10\) failed with ValueError"),
]


@pytest.mark.parametrize(("change", "error", "match"), BAD, ids=[m for _, _, m in BAD])
def test_bad_input_gets_a_clear_error(change, error, match):
    kwargs = {
        "simulator": TASK,
        "prior": TASK.prior,
        "num_simulations": 10,
        "chunk_size": 10,
        "engine": "serial",
        "show_progress_bar": False,
    }
    kwargs.update(change)
    with pytest.raises(error, match=match):
        simulate_dataset(**kwargs)


def test_bad_views_and_flags(tmp_path):
    with pytest.raises(
        ChunkError, match=r"must return a pair \(x_a, x_b\); got a tuple of length 3"
    ):
        simulate_views(lambda t: (t, t, t), TASK.prior, 5, engine="serial", show_progress_bar=False)
    with pytest.raises(ValueError, match="cannot both be True"):
        _simulate(path=tmp_path / "s", overwrite=True, resume=True)
    with cf.ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="`n_jobs` must be None"):
        _simulate(pool, n_jobs=2)


def test_worker_failure_in_another_process_names_the_chunk():
    with pytest.raises(ChunkError, match=r"failed with ValueError: bad parameters"):
        simulate_dataset(
            _raises,
            TASK.prior,
            20,
            chunk_size=10,
            engine="joblib",
            n_jobs=2,
            show_progress_bar=False,
        )


def test_map_unordered_keeps_every_result_and_bounds_the_window():
    with cf.ThreadPoolExecutor(2) as pool:
        assert sorted(map_unordered(pow, [(i, 2) for i in range(25)], engine=pool)) == [
            i**2 for i in range(25)
        ]


# ----------------------------------------------------------------------------- clusters (slow)
@pytest.fixture(scope="module")
def dask_client(tmp_path_factory):
    # LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
    # dashboard_address=None), closed on exit, with os.environ restored
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    scratch = str(tmp_path_factory.mktemp("dask"))
    with dask.config.set({"temporary-directory": scratch}), local_dask_client(2) as client:
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert len(client.nthreads()) == 2 and set(client.nthreads().values()) == {1}
        yield client


@pytest.mark.slow
def test_same_bits_on_a_dask_cluster(dask_client, reference, reference_views, tmp_path):
    _assert_same(_simulate(dask_client, path=tmp_path / "d"), reference)
    _assert_same(_views(dask_client), reference_views)
    _assert_same(_simulate(dask_client.get_executor()), reference)
    with pytest.raises(ChunkError, match="bad parameters"):
        simulate_dataset(
            _raises, TASK.prior, 20, chunk_size=10, engine=dask_client, show_progress_bar=False
        )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")  # the fixture's cluster has it
def test_same_bits_on_a_dask_cluster_started_for_the_call(reference, tmp_path):
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    environ = dict(os.environ)
    with dask.config.set({"temporary-directory": str(tmp_path)}):
        _assert_same(_simulate("dask", n_jobs=2), reference)
    assert dict(os.environ) == environ  # what Dask's nannies set here is undone


@pytest.mark.slow
def test_same_bits_on_a_process_pool_executor(reference):
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        _assert_same(_simulate(pool), reference)
