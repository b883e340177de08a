"""Embed and Emulate trained in two gloo processes on 127.0.0.1 against one process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from _helpers_distributed import run_ranks
from _helpers_nets import assert_same, weights
from sbi.utils import BoxUniform
from torch import Tensor

from sbi_symmetry.emulate import EmbedEmulate
from sbi_symmetry.nets.mlp import ResidualMLP


def _linear_gaussian(num: int) -> tuple[BoxUniform, Tensor, Tensor]:
    prior = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))
    g = torch.Generator().manual_seed(11)
    theta = -2 + 4 * torch.rand(num, 2, generator=g)
    return prior, theta, theta + 0.3 * torch.randn(num, 2, generator=g)


def _embed_emulate(seed: int) -> EmbedEmulate:
    prior, theta, x = _linear_gaussian(240)
    torch.manual_seed(seed)
    trainer = EmbedEmulate(
        prior,
        encoder=ResidualMLP(2, 6, hidden_dim=16),
        emulator=ResidualMLP(2, 6, hidden_dim=16),
        show_progress_bars=False,
    )
    return trainer.append_simulations(theta, x)


ONE_BATCH = dict(
    training_batch_size=192, validation_fraction=0.2, max_num_epochs=1, clip_max_norm=1.0
)


def _record_optimizer_steps(patch: Callable[[Any, str, Any], None]) -> list[list[Tensor]]:
    """Record the gradients every ``Adam.step`` applies (after averaging and clipping)."""
    steps: list[list[Tensor]] = []
    original = torch.optim.Adam.step

    def step(self: torch.optim.Adam, *args: Any, **kwargs: Any) -> Any:
        steps.append([p.grad.clone() for group in self.param_groups for p in group["params"]])
        return original(self, *args, **kwargs)

    patch(torch.optim.Adam, "step", step)
    return steps


def _embed_emulate_worker(rank: int) -> dict[str, Any]:
    steps = _record_optimizer_steps(setattr)
    torch.manual_seed(0)
    trainer = _embed_emulate(seed=0)
    # The training set is one global batch of 192 = 2 x 96 rows: one optimiser step per epoch.
    net = trainer.train(**ONE_BATCH)
    out = {
        "weights": weights(net),
        "summary": {k: list(v) for k, v in trainer.summary.items()},
        "first_step": steps[0],
    }
    # A longer run with early stopping: both ranks stop on the same epoch with the same net.
    torch.manual_seed(rank)  # different RNG per rank: the split and init come from rank 0
    longer = _embed_emulate(seed=rank)
    net = longer.train(training_batch_size=32, stop_after_epochs=2, max_num_epochs=30)
    out["longer"] = {"weights": weights(net), "epochs": longer.summary["epochs_trained"]}
    out["longer_val"] = longer.summary["validation_loss"]
    # The refinement shuffles with each rank's own RNG; rank 0's result is kept everywhere.
    torch.manual_seed(10 + rank)
    out["refined"] = weights(longer.refine(training_batch_size=32, max_num_epochs=3))
    return out


@pytest.mark.slow
def test_two_process_embed_emulate_matches_one_process_and_stops_together(tmp_path, monkeypatch):
    ranks = run_ranks(_embed_emulate_worker, tmp_path)
    assert_same(ranks[0]["weights"], ranks[1]["weights"])
    assert_same(ranks[0]["longer"]["weights"], ranks[1]["longer"]["weights"])
    assert ranks[0]["longer"]["epochs"] == ranks[1]["longer"]["epochs"]
    assert ranks[0]["longer_val"] == ranks[1]["longer_val"]
    assert ranks[0]["longer_val"][-1] < ranks[0]["longer_val"][0]
    assert_same(ranks[0]["refined"], ranks[1]["refined"])

    steps = _record_optimizer_steps(monkeypatch.setattr)
    torch.manual_seed(0)
    trainer = _embed_emulate(seed=0)
    trainer.train(**ONE_BATCH)
    for r in ranks:
        # The loss before the first step, the averaged and clipped gradient of that step and
        # the validation loss after it: as in one process with the whole batch.
        assert r["summary"]["training_loss"][0] == pytest.approx(
            trainer.summary["training_loss"][0], rel=1e-6
        )
        for mine, theirs in zip(r["first_step"], steps[0], strict=True):
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-8)
        assert r["summary"]["validation_loss"][0] == pytest.approx(
            trainer.summary["validation_loss"][0], rel=1e-5
        )
