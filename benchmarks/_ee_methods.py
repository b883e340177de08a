"""``embed_emulate.py``: run sizes, training, step timing, posterior sampling and the speed check.

Training is :mod:`sbi_symmetry.workflow.methods`' (one function per method); the settings are
:mod:`plans`'. Everything here starts from ``torch.manual_seed(seed)`` where the original script
did, so a run draws the same random numbers in the same order.
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from _common import Log
from plans import EE_KWARGS, QUICK_PRETRAIN, TaskPlan
from sbi.inference import NRE_C, MCMCPosterior
from sbi.neural_nets import classifier_nn
from torch import Tensor, nn

from sbi_symmetry._sbi_compat import (
    LossArgsNRE,
    LossArgsNRE_C,
    NullTracker,
    batch_losses,
    set_neural_net,
)
from sbi_symmetry.emulate import EmbedEmulate, build_two_tower_posterior
from sbi_symmetry.nets import ConvEncoder1D
from sbi_symmetry.simulation.counting import CallWindow, call_budget
from sbi_symmetry.tasks import Lorenz96, NuisanceTask, get_task
from sbi_symmetry.workflow import methods as M

TASKS = ("damped-oscillator", "sine-gaussian", "lorenz96")
METHODS = ("embed_emulate", "embed_emulate_vicreg", "nre_c", "symmetry_npe")
RATIO_METHODS = ("embed_emulate", "embed_emulate_vicreg", "nre_c")
LABELS = {
    "embed_emulate": "E&E",
    "embed_emulate_vicreg": "E&E + VICReg",
    "nre_c": "NRE_C (same encoder)",
    "symmetry_npe": "symmetry-NPE",
}
SBC_WARMUP = 50
SBC_CHAINS = 4
SBC_CANDIDATES = 1_000


@dataclass
class Settings:
    """Run sizes (from the command line)."""

    simulations: int
    observations: int
    sbc_pairs: int
    sbc_samples: int
    posterior_samples: int
    timed_samples: int
    timing_observations: int | None
    max_epochs: int
    stop_after_epochs: int
    learning_rate: float
    batch_size: int
    symmetry_weight: float
    pretrain_simulations: int | None
    step_repeats: int
    speed_epochs: int
    speed_observations: int
    seed: int
    quick: bool
    methods: tuple[str, ...] = METHODS
    #: ``ResidualMLP`` arguments of E&E's emulator; ``None``: as recorded (``plans.EE_KWARGS``)
    emulator: dict[str, int] | None = None


def make_task(name: str, quick: bool) -> NuisanceTask:
    """The task; in quick mode Lorenz-96 is shortened so the smoke test stays fast."""
    if name == "lorenz96" and quick:
        return Lorenz96(num_snapshots=4, burn_in=0.1, max_offset=0.05)
    return get_task(name)


# ----------------------------------------------------------------------------------- training
def _train_one(
    name: str,
    task: NuisanceTask,
    plan: TaskPlan,
    data: tuple[Tensor, Tensor],
    towers: tuple[nn.Module, nn.Module],
    cfg: Settings,
) -> M.TrainedMethod:
    """Train method ``name`` with the workflow's function for it (towers: ratio, NPE)."""
    train = {
        "max_num_epochs": cfg.max_epochs - 1,  # sbi runs max_num_epochs + 1 epochs
        "stop_after_epochs": cfg.stop_after_epochs,
        "training_batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "show_progress_bars": False,
    }
    (theta, x), (encoder, npe_encoder) = data, towers
    ee_kwargs = {**EE_KWARGS, **({"emulator_kwargs": cfg.emulator} if cfg.emulator else {})}
    if name == "embed_emulate":
        return M.embed_emulate(task, theta, x, encoder, estimator_kwargs=ee_kwargs, **train)
    if name == "embed_emulate_vicreg":
        kwargs = {**ee_kwargs, "views": task.views, "symmetry_weight": cfg.symmetry_weight}
        m = M.embed_emulate(task, theta, x, encoder, estimator_kwargs=kwargs, **train)
        m.name = name
        return m
    if name == "nre_c":
        return M.nre_c(task, theta, x, encoder, **train)
    pretrain = {"seed": cfg.seed, "show_progress_bar": False, **plan.pretrain}
    if cfg.quick:
        pretrain.update(QUICK_PRETRAIN)
    return M.symmetry_npe(
        task,
        theta,
        x,
        npe_encoder,
        flow_kwargs=plan.flow,
        pretrain_simulations=cfg.pretrain_simulations or plan.pretrain_simulations,
        pretrain_views="resimulated",  # as recorded: the task's views of fresh parameter draws
        pretrain_kwargs=pretrain,
        **train,
    )


def train_methods(
    task: NuisanceTask,
    plan: TaskPlan,
    theta: Tensor,
    x: Tensor,
    cfg: Settings,
    methods: tuple[str, ...],
    log: Log,
) -> dict[str, M.TrainedMethod]:
    """Train every method on the same simulations; each starts from ``torch.manual_seed``.

    Each method's ``extra["simulator_calls"]`` counts its training set and the views it simulated
    (pretraining, or the VICReg regulariser's), as the workflow counts them: ``task`` counts its
    simulator calls from here on (:class:`~sbi_symmetry.simulation.counting.CallWindow`).
    """
    # every method deep-copies these: the same initial weights, drawn after the seed (torch's
    # global generator may start from a random seed in each process)
    torch.manual_seed(cfg.seed)
    towers = (
        ConvEncoder1D.for_task(task, **plan.encoder),
        ConvEncoder1D.for_task(task, **plan.npe_encoder()),
    )
    trained: dict[str, M.TrainedMethod] = {}
    for name in methods:
        torch.manual_seed(cfg.seed)
        with warnings.catch_warnings(), CallWindow(task) as views:  # pretraining or VICReg views
            warnings.filterwarnings("ignore", message=".*Maximum number of epochs.*")
            m = _train_one(name, task, plan, (theta, x), towers, cfg)
        m.extra["simulator_calls"] = call_budget(theta.shape[0], views.calls)
        trained[name] = m
        log(
            f"  trained {LABELS[name]}: {m.epochs} epochs in {m.train_seconds:.0f} s"
            + (f" (+ {m.pretrain_seconds:.0f} s pretraining)" if m.pretrain_seconds else "")
        )
    return trained


def epoch_statistics(m: M.TrainedMethod, cap: int) -> dict[str, Any]:
    """Per-epoch time, the best epoch and the time it took to get there."""
    seconds = m.history["epoch_seconds"]
    val = m.history["validation"]
    best = min(range(len(val)), key=val.__getitem__) + 1
    return {
        "epochs": len(seconds),
        "seconds_per_epoch_median": statistics.median(seconds),
        "best_epoch": best,
        "seconds_to_best_epoch": sum(seconds[:best]),
        "best_validation_loss": val[best - 1],
        "stopped_early": len(seconds) < cap,
    }


# ----------------------------------------------------------------------------------- step timing
Step = Callable[[Tensor, Tensor], None]


def _step_runner(trainer: Any, estimator: nn.Module, loss_args: Any) -> Step:
    """One sbi-style optimisation step (loss, backward, clip, Adam) on a copy of ``estimator``."""
    net = copy.deepcopy(estimator)
    net.train()
    set_neural_net(trainer, net)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-5)

    def step(theta: Tensor, x: Tensor) -> None:
        optimiser.zero_grad()
        loss = batch_losses(trainer, theta, x, loss_args).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=5.0)
        optimiser.step()

    return step


def _step_runners(
    task: NuisanceTask, plan: TaskPlan, trained: dict[str, M.TrainedMethod], cfg: Settings
) -> dict[str, Step]:
    """A step runner per trained ratio method, each through its own trainer's loss."""
    encoder = ConvEncoder1D.for_task(task, **plan.encoder)
    runners: dict[str, Step] = {}
    if "embed_emulate" in trained:
        ee = EmbedEmulate(task.prior, encoder=encoder, show_progress_bars=False)
        runners["embed_emulate"] = _step_runner(
            ee, trained["embed_emulate"].estimator, LossArgsNRE(num_atoms=2)
        )
    if "embed_emulate_vicreg" in trained:
        eev = EmbedEmulate(
            task.prior,
            encoder=encoder,
            views=task.views,
            symmetry_weight=cfg.symmetry_weight,
            show_progress_bars=False,
        )
        runners["embed_emulate_vicreg"] = _step_runner(
            eev, trained["embed_emulate_vicreg"].estimator, LossArgsNRE(num_atoms=2)
        )
    if "nre_c" in trained:
        builder = classifier_nn("resnet", embedding_net_x=encoder, z_score_x="structured")
        nre = NRE_C(task.prior, classifier=builder, tracker=NullTracker(), show_progress_bars=False)
        runners["nre_c"] = _step_runner(
            nre, trained["nre_c"].estimator, LossArgsNRE_C(num_atoms=6, gamma=1.0)
        )
    return runners


def time_training_steps(
    task: NuisanceTask,
    plan: TaskPlan,
    trained: dict[str, M.TrainedMethod],
    theta: Tensor,
    x: Tensor,
    cfg: Settings,
) -> dict[str, dict[str, float]]:
    """Median wall time of one training step per ratio method, alternating on shared batches.

    The steps run the trainers' own losses (sbi's code path) on copies of the trained networks;
    the order of the methods rotates every round so that drifts in the machine's load hit all
    of them alike.
    """
    runners = _step_runners(task, plan, trained, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    names = list(runners)
    times: dict[str, list[float]] = {n: [] for n in names}
    warm = 2
    for r in range(warm + cfg.step_repeats):
        idx = torch.randperm(theta.shape[0], generator=gen)[: cfg.batch_size]
        batch_theta, batch_x = theta[idx], x[idx]
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            start = time.perf_counter()
            runners[name](batch_theta, batch_x)
            if r >= warm:
                times[name].append(time.perf_counter() - start)
    return {
        n: {"median_ms": 1e3 * statistics.median(t), "min_ms": 1e3 * min(t), "repeats": len(t)}
        for n, t in times.items()
    }


# ----------------------------------------------------------------------------------- sampling
def sample_one(m: M.TrainedMethod, x_o: Tensor, num: int, quick: bool) -> Tensor:
    """``num`` samples for one observation with the method's own sampler settings.

    In ``--quick`` mode the ratio methods' MCMC starts from prior draws with 4 chains and 10
    warm-up steps (sbi's default start evaluates 10^4 candidates per chain).
    """
    if quick and isinstance(m.posterior, MCMCPosterior):
        return m.posterior.sample(
            (num,),
            x=x_o,
            num_chains=4,
            warmup_steps=10,
            init_strategy="proposal",
            show_progress_bars=False,
        ).reshape(num, -1)
    return m.sample(x_o, num)


def with_mcmc(m: M.TrainedMethod, prior: Any, quick: bool) -> M.TrainedMethod:
    """Embed and Emulate sampled by sbi's slice MCMC (``method="mcmc"``) instead of two towers.

    The MCMC settings are the pipeline's (``workflow.methods.mcmc_parameters``); in ``--quick``
    mode those of :func:`sample_one`.
    """
    quick_mcmc = {"num_chains": 4, "warmup_steps": 10, "init_strategy": "proposal"}
    posterior = build_two_tower_posterior(
        m.estimator, prior, method="mcmc", mcmc_parameters=quick_mcmc if quick else None
    )
    return dataclasses.replace(m, posterior=posterior)


def draw_observation_samples(
    trained: dict[str, M.TrainedMethod], x_o: Tensor, cfg: Settings, log: Log
) -> tuple[dict[str, list[Tensor]], dict[str, list[float]]]:
    """Posterior samples per observation, and the timed 10^4-sample draws.

    Every method draws ``timed_samples`` (timed) for each observation, except that NRE_C, if
    ``timing_observations`` is set (its MCMC can be slow), does so only for the first
    ``timing_observations`` and draws ``posterior_samples`` for the rest. For C2ST a seeded
    random subset of ``posterior_samples`` is kept from every draw (MCMC draws come chain by
    chain), so all scores use the same sample sizes.
    """
    samples: dict[str, list[Tensor]] = {}
    seconds: dict[str, list[float]] = {}
    for name, m in trained.items():
        samples[name], seconds[name] = [], []
        for i in range(x_o.shape[0]):
            timed = (
                name != "nre_c" or cfg.timing_observations is None or i < cfg.timing_observations
            )
            num = cfg.timed_samples if timed else cfg.posterior_samples
            torch.manual_seed(cfg.seed + i)
            start = time.perf_counter()
            draws = sample_one(m, x_o[i : i + 1], num, cfg.quick)
            took = time.perf_counter() - start
            if timed:
                seconds[name].append(took)
            keep = torch.randperm(num, generator=torch.Generator().manual_seed(i))
            samples[name].append(draws[keep[: cfg.posterior_samples]])
        log(
            f"  sampled {LABELS[name]}: {statistics.mean(seconds[name]):.1f} s per "
            f"{cfg.timed_samples} samples (mean of {len(seconds[name])})"
        )
    return samples, seconds


def sbc_samples(m: M.TrainedMethod, xs: Tensor, cfg: Settings) -> Tensor:
    """``(sbc_samples, N, d)`` posterior samples for the calibration pairs.

    NPE and E&E's two-tower posterior sample directly (``sample_batched``). The MCMC posteriors
    (``NRE_C``, or E&E with ``with_mcmc``) use sbi's vectorised slice
    sampler with one set of settings for all of them: ``SBC_CHAINS`` chains per pair, each
    started from one of ``SBC_CANDIDATES`` prior draws resampled by the potential (sbi's
    ``resample`` start, with fewer candidates than its default 10^4 per chain), sbi's 50
    bracket-tuning steps and ``SBC_WARMUP`` warm-up steps; all pairs at once
    (``sample_batched``) for single-channel data, one pair at a time for multi-channel data,
    because ``sample_batched`` drops the batch dimension of each ``x`` when it evaluates the
    potential for the start. Chains started from plain prior draws are not used: they stay in
    local maxima of E&E's sharp learned log ratio (sine-Gaussian: contraction 0.46 instead of
    0.99 on ``f0``; SBC and TARP still pass, since prior-like samples are calibrated).
    """
    if not isinstance(m.posterior, MCMCPosterior):  # NPE, and E&E's two-tower sampler
        return m.posterior.sample_batched((cfg.sbc_samples,), x=xs, show_progress_bars=False)
    settings: dict[str, Any] = {
        "num_chains": min(SBC_CHAINS, cfg.sbc_samples),
        "warmup_steps": 10 if cfg.quick else SBC_WARMUP,
        "init_strategy": "resample",
        "init_strategy_parameters": {"num_candidate_samples": 100 if cfg.quick else SBC_CANDIDATES},
        "show_progress_bars": False,
    }
    if xs.ndim == 2:
        return m.posterior.sample_batched((cfg.sbc_samples,), x=xs, **settings)
    draws = [
        m.posterior.sample((cfg.sbc_samples,), x=xs[i : i + 1], **settings)
        for i in range(xs.shape[0])
    ]
    return torch.stack([d.reshape(cfg.sbc_samples, -1) for d in draws], dim=1)


# ----------------------------------------------------------------------------------- speed check
def speed_check(
    task: NuisanceTask,
    plan: TaskPlan,
    data: tuple[Tensor, Tensor, Tensor],
    cfg: Settings,
    log: Log,
) -> dict[str, Any]:
    """Step and 10^4-sample MCMC times of E&E and NRE_C with ``plan.speed_encoder``.

    Both are trained briefly (``speed_epochs``) from the same simulations (``data``: theta, x
    and the observations): only their speed is compared, on the first ``speed_observations``.
    """
    theta, x, x_o = data
    heavy = dataclasses.replace(plan, encoder=plan.speed_encoder or {}, speed_encoder=None)
    short = dataclasses.replace(
        cfg, max_epochs=cfg.speed_epochs, stop_after_epochs=cfg.speed_epochs
    )
    log(f"  speed check with encoder {plan.speed_encoder}")
    trained = train_methods(task, heavy, theta, x, short, ("embed_emulate", "nre_c"), log)
    steps = time_training_steps(task, heavy, trained, theta, x, cfg)
    result: dict[str, Any] = {"encoder": plan.speed_encoder, "epochs": cfg.speed_epochs}
    for name, m in trained.items():
        seconds = []
        for i in range(min(cfg.speed_observations, x_o.shape[0])):
            torch.manual_seed(cfg.seed + i)
            start = time.perf_counter()
            sample_one(m, x_o[i : i + 1], cfg.timed_samples, cfg.quick)
            seconds.append(time.perf_counter() - start)
        result[name] = {
            "step": steps[name],
            "seconds_per_epoch_median": statistics.median(m.history["epoch_seconds"]),
            "sample_seconds": seconds,
            "seconds_per_10k_samples": statistics.mean(seconds) * 10_000 / cfg.timed_samples,
            "macs_per_1000": m.macs_per_1000,
            "trainable_parameters": m.trainable_parameters,
        }
    ee, nre = result["embed_emulate"], result["nre_c"]
    result["step_speedup"] = nre["step"]["median_ms"] / ee["step"]["median_ms"]
    result["epoch_speedup"] = nre["seconds_per_epoch_median"] / ee["seconds_per_epoch_median"]
    result["mcmc_speedup"] = nre["seconds_per_10k_samples"] / ee["seconds_per_10k_samples"]
    log(f"  speed check: step {result['step_speedup']:.1f}x, MCMC {result['mcmc_speedup']:.1f}x")
    return result
