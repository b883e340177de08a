"""Harness for the multi-process tests: run a worker in several gloo processes on 127.0.0.1.

The workers start with ``torch.multiprocessing`` (spawn) on a free port of the loopback
interface, with a collective timeout and a wall-clock limit, and return what they computed
through files in the test's temporary folder.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORKER_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _entry(rank: int, world: int, port: int, worker: Callable, out: str, args: tuple) -> None:
    torch.set_num_threads(1)
    os.chdir(out)  # anything a worker writes stays in the test's temporary folder
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=60),
    )
    try:
        torch.save(worker(rank, *args), Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_ranks(worker: Callable, tmp_path: Path, *args: Any, world: int = 2) -> list[Any]:
    """Run ``worker(rank, *args)`` in ``world`` gloo processes; return their results."""
    out = tmp_path / f"ranks-{worker.__name__}"
    out.mkdir()
    context = mp.start_processes(
        _entry,
        args=(world, _free_port(), worker, str(out), args),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{worker.__name__} did not finish within {WORKER_TIMEOUT_S} s")
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]
