"""Stand-in training functions that worker processes can import (tests of workflow.parallel)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import torch


def draws(ctx) -> SimpleNamespace:
    """A "training" that records what it drew from torch's global stream and where it ran."""
    ctx.task.simulate(torch.full((2, 2), 0.5))  # two simulated views, say
    extra = {"draws": torch.rand(4), "pid": os.getpid(), "threads": torch.get_num_threads()}
    return SimpleNamespace(extra=extra, epochs=1)
