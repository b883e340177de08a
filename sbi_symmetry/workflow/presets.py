"""The ``fast`` and ``paper`` settings of each built-in task (read by ``RunConfig.from_preset``).

``fast`` is sized so the default run (damped oscillator) finishes in a few minutes on a 2-core
laptop; ``paper`` uses the sizes of the symmetry-embedding paper and takes hours on a CPU. Each
choice cites the benchmark page that made it.

Example:
    >>> PRESET_SETTINGS[("damped-oscillator", "fast")]["frozen_epochs"]
    'auto'
"""

from __future__ import annotations

from typing import Any

from sbi_symmetry.workflow.registry import METHODS


def _towers(npe_dim: int, **conv: Any) -> dict[str, dict[str, Any]]:
    """``encoder`` (symmetry NPE, ``npe_dim`` outputs) and ``ee_encoder`` (E&E, 16 outputs)."""
    return {"encoder": {"output_dim": npe_dim, **conv}, "ee_encoder": {"output_dim": 16, **conv}}


# Oscillator and sine-Gaussian (Lorenz-96's towers below differ): the fast encoders average the
# input over windows of 8 samples. Symmetry NPE's (and the end-to-end baseline's) has 16
# channels, 2 residual blocks, a flow of 50 hidden units, 20 frozen epochs before fine-tuning:
# calibrated on all 6 task-seed pairs tried on 2026-12-04 and sharper on each than 6 channels and
# 1 block (benchmarks/results/npe_warm_start.md; with today's preset the oscillator passed SBC on
# 2 of 4 training seeds, symmetry_npe_flow_width.md 14), at most 4,500 optimiser steps of
# them ("auto": 10 epochs at 10^5 simulations, 1 at 10^6; sbi trains frozen_epochs + 1: 21,
# 11, 2, at most 4,500 steps plus one epoch; npe_frozen_steps.md). E&E's data tower
# is as wide, behind a larger emulator than EmbedEmulate's default (128 wide, 3 blocks, against
# 64 and 2): calibrated on all 7 task-seed pairs tried, where the 64-wide one failed SBC on one and
# was biased towards the prior's centre on others (benchmarks/results/fast_ee_tower_seeds.md).
# Both towers dilate their second block (1, 2), at no cost: symmetry NPE level or closer on 16
# paired runs, E&E on 13 runs of 3 tasks. E&E's adds a third block dilated 4 (+26-36% MACs):
# oscillator 0.636 -> 0.609 (4 seeds), sine-Gaussian and phase level (4 each), observations over
# 2x the exact width 16 -> 10 of 120 (benchmarks/results/symmetry_npe_flow_width.md, 7, 9, 11).
# Every NPE, once early stopping ends it, goes on at a tenth of its learning rate (npe_anneal.md).
# E&E pretrains its data tower where views are free shifts (ee.pretrain "auto"): oscillator
# 0.676 -> 0.641 (4 seeds), sine-Gaussian level (benchmarks/results/ee_pretrain.md, s. 5).
# Symmetry NPE pretrains with the hybrid loss (a linear read-out of theta beside VICReg): level or
# closer on 3 tasks x 4 seeds, w0 width 1.39x -> 1.31x on the oscillator; E&E's tower keeps plain
# VICReg (0.609 -> 0.623 with it; symmetry_npe_flow_width.md, 14; ee_pretrain.md, 6).
_FAST_TOWER = {"channels": 16, "num_blocks": 2, "dilation": (1, 2), "downsample": 8}
_FAST_TOWER |= {"kernel_size": 5, "hidden_dim": 32}
_FAST_SHO: dict[str, Any] = dict(
    task="damped-oscillator",
    preset="fast",
    num_simulations=10_000,
    pretrain_simulations=30_000,
    encoder={"output_dim": 8, **_FAST_TOWER},
    ee_encoder={"output_dim": 16, **_FAST_TOWER, "num_blocks": 3, "dilation": (1, 2, 4)},
    ee={"emulator_kwargs": {"hidden_dim": 128, "num_blocks": 3}, "pretrain": "auto"},
    expander={"output_dim": 32, "hidden_dims": (64, 64)},
    flow={"hidden_features": 50},
    frozen_epochs="auto",
    pretrain={
        "max_epochs": 40,
        "batch_size": 256,
        "learning_rate": 3e-3,
        "stop_after_epochs": 40,
        "freeze": "none",
        "supervised_weight": 10.0,
    },
    npe_train={
        "max_num_epochs": 150,
        "training_batch_size": 200,
        "learning_rate": 1e-3,
        "anneal": 0.1,
    },
    ee_train={"max_num_epochs": 600, "training_batch_size": 200},
)

_PAPER_SHO: dict[str, Any] = dict(
    task="damped-oscillator",
    preset="paper",
    num_simulations=100_000,
    pretrain_simulations=100_000,
    num_observations=10,
    posterior_samples=5_000,
    sbc_pairs=1_000,
    sbc_pairs_ratio=300,
    sbc_posterior_samples=500,
    pretrain_views="resimulated",
    **_towers(3, channels=20, num_blocks=4, kernel_size=21),
    # fresh views every epoch, as the paper's set-up (a bank is the default elsewhere)
    pretrain={"max_epochs": 100, "batch_size": 512, "freeze": "backbone", "fresh_views": True},
    methods=tuple(METHODS),
)

#: The built-in presets' settings (``RunConfig`` fields), by ``(task, preset)``; read them with
#: :meth:`~sbi_symmetry.workflow.config.RunConfig.from_preset`, which checks them.
PRESET_SETTINGS: dict[tuple[str, str], dict[str, Any]] = {
    ("damped-oscillator", "fast"): _FAST_SHO,
    ("damped-oscillator", "paper"): _PAPER_SHO,
    ("sine-gaussian", "fast"): _FAST_SHO | {"task": "sine-gaussian"},
    ("sine-gaussian", "paper"): _PAPER_SHO
    | {"task": "sine-gaussian"}
    | _towers(3, channels=10, num_blocks=4, kernel_size=11),
    # Lorenz-96: sites as length axis, circular padding; 10^4 sims (symmetry_npe_flow_width.md 16);
    # both towers at full resolution, undilated, 2 blocks each
    ("lorenz96", "fast"): dict(
        _FAST_SHO,
        task="lorenz96",
        num_simulations=10_000,
        pretrain_simulations=5_000,
        **_towers(8, channels=16, num_blocks=2, kernel_size=5, padding_mode="circular"),
    ),
    ("lorenz96", "paper"): dict(
        _PAPER_SHO,
        task="lorenz96",
        num_simulations=20_000,
        pretrain_simulations=20_000,
        **_towers(8, channels=32, num_blocks=4, kernel_size=5, padding_mode="circular"),
    ),
}
