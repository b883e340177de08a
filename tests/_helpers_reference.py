"""The tasks and the noisy observation shared by the reference posterior tests."""

from __future__ import annotations

import torch

from sbi_symmetry.tasks import DampedOscillator, SignalInNoiseTask, SineGaussian

TASKS = [DampedOscillator, SineGaussian]


def observe(task: SignalInNoiseTask, theta, shift, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return task.simulate(torch.tensor([theta]), torch.tensor([[shift]]), generator=g)
