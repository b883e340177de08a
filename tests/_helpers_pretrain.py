"""A toy views object, prior and encoder shared by the VICReg pretraining tests."""

from __future__ import annotations

import torch
from sbi.utils import BoxUniform

from sbi_symmetry.nets.conv import ConvEncoder1D

LENGTH = 24
FAST = dict(batch_size=32, max_epochs=2, warmup_epochs=0, show_progress_bar=False)


class ToyViews:
    """theta (n, 2) -> two noisy shifted bumps of length LENGTH; counts its calls."""

    input_kind = "theta"

    def __init__(self) -> None:
        self.calls = 0

    def _one(self, theta: torch.Tensor) -> torch.Tensor:
        t = torch.arange(LENGTH, dtype=torch.float32)
        shift = torch.randint(-3, 4, (theta.shape[0], 1)).float()
        centre = 8 + 8 * theta[:, :1] + shift
        bump = theta[:, 1:2] * torch.exp(-0.5 * (t - centre) ** 2)
        return 2.0 + 3.0 * (bump + 0.1 * torch.randn(theta.shape[0], LENGTH))

    def __call__(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        return self._one(theta), self._one(theta)


def prior() -> BoxUniform:
    return BoxUniform(torch.zeros(2), torch.ones(2))


def encoder(seed: int = 0, **kwargs) -> ConvEncoder1D:
    torch.manual_seed(seed)
    return ConvEncoder1D(
        LENGTH, 3, channels=4, num_blocks=1, kernel_size=5, hidden_dim=16, **kwargs
    )


def shift_view_symmetry_npe(task, theta, x, max_num_epochs: int = 1, pretrain=None, **changes):
    """The workflow's symmetry NPE at toy size: shift views of ``x``, one pretraining epoch
    (``pretrain``: more pretraining settings)."""
    from sbi_symmetry.workflow import methods

    encoder = ConvEncoder1D.for_task(task, output_dim=3, channels=2, num_blocks=1, downsample=8)
    return methods.symmetry_npe(
        task,
        theta,
        x,
        encoder,
        pretrain_views="shift",
        pretrain_kwargs={
            "max_epochs": 1,
            "batch_size": 64,
            "show_progress_bar": False,
            **(pretrain or {}),
        },
        show_progress_bars=False,
        max_num_epochs=max_num_epochs,
        **changes,
    )


def train_ratio_method(task, cfg, name: str = "embed_emulate", size: int = 200):
    """Train method ``name`` of ``cfg`` through the workflow's stage on ``size`` joint draws.

    Returns the trained method, the simulator calls it made and the training ``x``.
    """
    from sbi_symmetry.simulation.counting import count_simulator_calls, simulator_calls
    from sbi_symmetry.workflow import stages

    theta, x = task.sample_joint(size, generator=torch.Generator().manual_seed(0))
    sims = stages.Simulations(theta, x, *[torch.zeros(1)] * 5)
    counted = count_simulator_calls(task)
    ctx = stages.training_context(counted, sims, cfg, False)
    trained = stages.train_methods(ctx, "ratio")[name]
    return trained, simulator_calls(counted), x
