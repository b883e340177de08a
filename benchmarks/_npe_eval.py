"""``symmetry_npe.py``: run sizes, the held-out evaluation, and the shared VICReg pretraining.

Held-out observations get exact references (:func:`_common.reference_samples`); every trained
method is scored on them with C2ST (:func:`_common.c2st_scores`) and calibrated with
:func:`sbi_symmetry.evaluation.calibrate`.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from _common import c2st_scores, reference_samples
from plans import SYMMETRY_NPE
from torch import Tensor

from sbi_symmetry.evaluation import calibrate, std_ratio, summarise
from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.nets.heads import Expander
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
from sbi_symmetry.symmetry.pretrain import pretrain_vicreg
from sbi_symmetry.tasks import SignalInNoiseTask
from sbi_symmetry.workflow.methods import TrainedMethod

#: Budgets above this run only the ``--freeze-large`` modes of symmetry NPE.
LARGE = 10_000


@dataclass
class Settings:
    """Sizes of one benchmark run."""

    tasks: list[str]
    simulations: list[int]
    observations: int
    sbc_pairs: int
    posterior_samples: int
    reference_samples: int
    sbc_posterior_samples: int
    freeze: list[str]
    freeze_large: list[str]
    pretrain_simulations: int
    pretrain: dict[str, Any]
    max_num_epochs: list[int]
    training_batch_size: int
    learning_rate: float
    stop_after_epochs: int
    seed: int
    threads: int
    cache_dir: str
    reference_kwargs: dict[str, Any] = field(default_factory=dict)
    sample_timing_draws: int = 10_000


class CountingViews:
    """The task's re-simulated views, counting simulator calls (two views per parameter)."""

    input_kind = "theta"

    def __init__(self, task: SignalInNoiseTask) -> None:
        self.views = task.views
        self.simulator_calls = 0

    def __call__(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        self.simulator_calls += 2 * theta.shape[0]
        return self.views(theta)


# ------------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """Held-out observations with references, and SBC pairs, for one task."""

    theta_o: Tensor
    shift_o: Tensor
    x_o: Tensor
    references: list[Tensor]
    reference_seconds: list[float]
    crb: Tensor
    sbc_theta: Tensor
    sbc_x: Tensor


def make_evaluation(task: SignalInNoiseTask, cfg: Settings) -> Evaluation:
    """Observations (theta and shift from their priors), their references, the SBC pairs."""
    g = torch.Generator().manual_seed(cfg.seed + 1_000)
    theta_o = task.sample_prior(cfg.observations, generator=g)
    shift_o = task.sample_nuisance(cfg.observations, generator=g)
    x_o = task.simulate(theta_o, shift_o, generator=g)
    refs, seconds = reference_samples(
        task,
        x_o,
        cfg.reference_samples,
        range(cfg.observations),
        cfg.cache_dir,
        **cfg.reference_kwargs,
    )
    crb = task.cramer_rao_bound(theta_o.double(), shift_o.double())  # the task's default bound
    gs = torch.Generator().manual_seed(cfg.seed + 2_000)
    sbc_theta = task.sample_prior(cfg.sbc_pairs, generator=gs)
    sbc_x = task.simulate(sbc_theta, generator=gs)
    return Evaluation(theta_o, shift_o, x_o, refs, seconds, crb, sbc_theta, sbc_x)


def evaluate(
    method: TrainedMethod, task: SignalInNoiseTask, ev: Evaluation, cfg: Settings
) -> dict[str, Any]:
    """C2ST and widths against the references, calibration, sampling time and costs."""
    torch.manual_seed(cfg.seed + 3_000)
    n = ev.x_o.shape[0]
    draws = [method.sample(ev.x_o[i : i + 1], cfg.posterior_samples) for i in range(n)]
    c2st = c2st_scores(draws, ev.references, None, range(n))
    ratios = [std_ratio(s, r).tolist() for s, r in zip(draws, ev.references, strict=True)]
    crb_ratios = [(s.double().std(0) / ev.crb[i]).tolist() for i, s in enumerate(draws)]
    cal = calibrate(
        method.posterior,
        task.prior,
        ev.sbc_theta,
        ev.sbc_x,
        num_posterior_samples=cfg.sbc_posterior_samples,
        seed=cfg.seed,
    )
    x_one = ev.x_o[:1]
    method.sample(x_one, 100)  # warm-up
    start = time.perf_counter()
    method.sample(x_one, cfg.sample_timing_draws)
    sample_seconds = time.perf_counter() - start
    return {
        "c2st": summarise(c2st),
        "c2st_per_observation": c2st,
        "std_ratio_per_observation": ratios,
        "std_ratio_mean": torch.tensor(ratios).mean(0).tolist(),
        "std_over_crb_per_observation": crb_ratios,
        "std_over_crb_mean": torch.tensor(crb_ratios).mean(0).tolist(),
        "calibration": cal.to_dict(),
        "sample_seconds_10k": sample_seconds,
        "costs": method.summary(),
        "val_loss_best": float(min(method.history["validation"])),
    }


# ------------------------------------------------------------------------------- pretraining
def pretrain(
    task: SignalInNoiseTask, cfg: Settings, encoder: ConvEncoder1D
) -> tuple[SymmetryEmbedding, dict[str, Any]]:
    """VICReg-pretrain a copy of ``encoder`` once per task; its costs and final diagnostics."""
    views = CountingViews(task)
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    embedding = pretrain_vicreg(
        copy.deepcopy(encoder),
        views,
        task.prior,
        num_simulations=cfg.pretrain_simulations,
        expander=Expander(encoder.output_dim, **SYMMETRY_NPE.expander),
        seed=cfg.seed,
        show_progress_bar=False,
        **cfg.pretrain,
    )
    seconds = time.perf_counter() - start
    h = embedding.history
    info = {
        "pretrain_seconds": seconds,
        "pretrain_simulator_calls": views.simulator_calls,
        "pretrain_parameter_draws": cfg.pretrain_simulations,
        "epochs": len(h["epoch"]),
        "final_effective_rank": h["effective_rank"][-1],
        "final_summary_std": h["summary_std"][-1],
        "final_val_invariance_error": h["val_invariance_error"][-1],
        "history": {k: v for k, v in h.items() if k != "summary_std"},
    }
    return embedding, info
