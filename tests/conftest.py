"""Fixtures shared by several test files."""

from __future__ import annotations

import pytest
import torch
from _helpers_simulation import _simulate


@pytest.fixture(scope="module")
def one_thread():
    """For tiny networks: one intra-op thread avoids spin-waiting on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference():
    """The serial run that test_simulation.py and test_simulation_store.py compare with."""
    return _simulate()
