"""Simulation throughput of the damped oscillator on each engine at 1 and 2 worker processes.

Every configuration runs ``simulate_dataset`` end to end (prior draws, simulation, transfer back
to the driver, writing into memory-mapped ``.npy`` files in a temporary directory). All engines
are started first (their start-up and a warm-up call are timed apart), then the configurations
run in turn, round after round, so that drift in the load of a shared machine hits them alike;
the ratio to the serial in-process baseline is taken within each round, then the median over
rounds. Prints a markdown table.

``--work K`` simulates every batch K times (keeping the last), a stand-in for a costlier
simulator, to show how the engines scale once simulation rather than transport dominates.

    .venv/bin/python benchmarks/simulation_throughput.py --num 200000 --chunk-size 5000
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import dask
import torch
from distributed import Client, LocalCluster
from joblib.externals.loky import ProcessPoolExecutor as LokyExecutor

from sbi_symmetry.simulation import local_dask_client, simulate_dataset
from sbi_symmetry.tasks import DampedOscillator


def _dask(stack: ExitStack, workers: int) -> Any:
    return stack.enter_context(local_dask_client(workers, silence_logs=logging.CRITICAL))


def _dask_default_env(stack: ExitStack, workers: int) -> Any:
    """Dask's own worker environment (MALLOC_TRIM_THRESHOLD_=65536), for comparison."""
    saved = dict(os.environ)
    stack.callback(lambda: (os.environ.clear(), os.environ.update(saved)))
    cluster = stack.enter_context(
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        )
    )
    return stack.enter_context(Client(cluster))


# label, worker processes, start(stack) -> engine, n_jobs
CONFIGS: list[tuple[str, str, Any, int | None]] = [
    ("serial", "in-process", lambda stack: "serial", None),
    ("joblib n_jobs=1 (joblib runs it in-process)", "in-process", lambda stack: "joblib", 1),
    ("joblib n_jobs=2 (loky)", "2", lambda stack: "joblib", 2),
    ("loky ProcessPoolExecutor", "1", lambda stack: stack.enter_context(LokyExecutor(1)), None),
    ("loky ProcessPoolExecutor", "2", lambda stack: stack.enter_context(LokyExecutor(2)), None),
    ("dask local_dask_client", "1", lambda stack: _dask(stack, 1), None),
    ("dask local_dask_client", "2", lambda stack: _dask(stack, 2), None),
    ("dask LocalCluster, Dask's default worker env", "2", lambda s: _dask_default_env(s, 2), None),
]


class Costly:
    """The damped oscillator, simulated ``work`` times per call (the last result is returned)."""

    def __init__(self, work: int) -> None:
        self.task = DampedOscillator()
        self.work = work

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        for _ in range(self.work - 1):
            self.task(theta)
        return self.task(theta)


def _run(
    engine: Any, n_jobs: int | None, num: int, chunk: int, path: Path | None, work: int
) -> float:
    task = DampedOscillator()
    start = time.perf_counter()
    simulate_dataset(
        task if work == 1 else Costly(work),
        task.prior,
        num,
        path=path,
        chunk_size=chunk,
        engine=engine,
        n_jobs=n_jobs,
        seed=1,
        show_progress_bar=False,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=200_000, help="simulations per timed run")
    parser.add_argument("--chunk-size", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--in-memory", action="store_true", help="keep arrays in memory")
    parser.add_argument("--work", type=int, default=1, help="simulate each batch K times")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Port 8787 is already in use")  # second cluster

    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"load average at start {os.getloadavg()[0]:.2f} (shared machine: numbers are noisy)"
    )
    where = "in memory" if args.in_memory else "streamed to .npy files"
    print(
        f"damped oscillator (work x{args.work}), {args.num} simulations of 200 samples per run, "
        f"chunk size {args.chunk_size}, {where}, {args.rounds} rounds over all configurations\n"
    )
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        stack.enter_context(dask.config.set({"temporary-directory": tmp}))
        counter = iter(range(10**9))

        def path() -> Path | None:
            return None if args.in_memory else Path(tmp) / f"run{next(counter)}"

        engines, startup = [], []
        for _, _, start, n_jobs in CONFIGS:
            t0 = time.perf_counter()
            engine = start(stack)
            _run(engine, n_jobs, 2 * args.chunk_size, args.chunk_size, path(), args.work)
            engines.append(engine)
            startup.append(time.perf_counter() - t0)
        times: list[list[float]] = [[] for _ in CONFIGS]
        for _ in range(args.rounds):
            for i, (engine, (_, _, _, n_jobs)) in enumerate(zip(engines, CONFIGS, strict=True)):
                times[i].append(_run(engine, n_jobs, args.num, args.chunk_size, path(), args.work))
    print(
        "| engine | worker processes | sims/s (median) | sims/s (best) | ratio to serial "
        "(median over rounds) | us per sim | start-up + warm-up (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for i, (label, procs, _, _) in enumerate(CONFIGS):
        ratio = statistics.median(s / t for s, t in zip(times[0], times[i], strict=True))
        median = args.num / statistics.median(times[i])
        print(
            f"| {label} | {procs} | {median:,.0f} | {args.num / min(times[i]):,.0f} "
            f"| {ratio:.2f} | {1e6 / median:.2f} | {startup[i]:.1f} |"
        )
    serial = [args.num / t for t in times[0]]
    print(f"\nserial throughput over rounds: {', '.join(f'{v:,.0f}' for v in serial)} sims/s")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
