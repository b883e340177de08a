"""Stand-in training functions that worker processes can import (tests of workflow.parallel)."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import torch


def draws(ctx) -> SimpleNamespace:
    """A "training" that records what it drew from torch's global stream and where it ran."""
    ctx.task.simulate(torch.full((2, 2), 0.5))  # two simulated views, say
    extra = {"draws": torch.rand(4), "pid": os.getpid(), "threads": torch.get_num_threads()}
    return SimpleNamespace(extra=extra, epochs=1)


def slow_draws(ctx) -> SimpleNamespace:
    """`draws` once the file ``$SLOW_DRAWS_UNTIL`` exists (at most a minute): still training."""
    flag = os.environ["SLOW_DRAWS_UNTIL"]
    for _ in range(600):
        if os.path.exists(flag):
            break
        time.sleep(0.1)
    return draws(ctx)
