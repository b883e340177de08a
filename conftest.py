"""Shared fixtures: every test runs in its own temporary folder and starts from fixed seeds."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=20, deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """Run in a temporary folder (sbi writes ./sbi-logs) with seeded RNGs."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    yield
