"""Shared fixtures for tests and doctests: each runs in a temporary folder with seeded RNGs."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True, database=None)
settings.register_profile("dev", max_examples=20, deadline=None, derandomize=True, database=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# The suite is many small tensor operations: one intra-op thread avoids thread-pool contention
# on small (2-core, often shared) machines and makes timings and results repeatable.
torch.set_num_threads(1)

# Old import paths kept for one release (each warns on import); tests/test_architecture.py checks
# them, the doctest collection skips them.
collect_ignore = [
    f"sbi_symmetry/{name}.py"
    for name in ("augment", "embedding", "diagnostics", "plots", "fisher", "pretrain")
]


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """Run in a temporary folder (sbi writes ./sbi-logs) with seeded RNGs."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    yield
