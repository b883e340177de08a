"""Embed and Emulate against sbi's NRE_C with the same encoder and against symmetry-NPE.

For each task, in one process and from the same seeded simulations:

* ``embed_emulate``: :class:`~sbi_symmetry.emulate.EmbedEmulate` (symmetric InfoNCE, two towers);
* ``embed_emulate_vicreg``: the same plus the VICReg symmetry regulariser on the encoder
  (``views=task.views, symmetry_weight=w``), on the tasks whose views are cheap to simulate;
* ``nre_c``: sbi's ``NRE_C`` with the same encoder (same architecture and initial weights) as
  x-embedding, sbi's default classifier (``resnet``) and default ``num_classes=5``;
* ``symmetry_npe``: VICReg-pretrained embedding with the same encoder architecture + sbi's NPE.

Measured: C2ST against the exact quadrature reference (damped oscillator, sine-Gaussian) over
prior-drawn observations (theta and nuisance both from their priors); SBC (KS p-values), the
largest coverage error and TARP (ATC, KS p) over calibration pairs; posterior contraction
``1 - posterior var / prior var``; trainable parameters and multiply-accumulates at batch 1000;
training time per epoch, in all and up to the best epoch; the wall time of one optimisation step
at sbi's default batch of 200 (E&E and NRE_C timed alternately on the same batches); and the
wall time for 10^4 posterior samples (slice MCMC with the same settings for both ratio methods,
sbi's direct sampling for NPE).

    .venv/bin/python benchmarks/embed_emulate.py                # the full run (results/ files)
    .venv/bin/python benchmarks/embed_emulate.py --quick --out /tmp/ee.md   # smoke test
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import platform
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sbi.inference import NRE_C
from sbi.neural_nets import classifier_nn
from torch import Tensor, nn

from sbi_symmetry._sbi_compat import LossArgsNRE, LossArgsNRE_C, NullTracker
from sbi_symmetry.emulate import EmbedEmulate, EmbedEmulateRatioEstimator
from sbi_symmetry.evaluation import c2st_score, calibrate, summarise
from sbi_symmetry.nets import ConvEncoder1D
from sbi_symmetry.symmetry.diagnostics import invariance_error
from sbi_symmetry.tasks import Lorenz96, NuisanceTask, SignalInNoiseTask, get_task
from sbi_symmetry.workflow import methods as M
from sbi_symmetry.workflow.config import RunConfig

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
NO_REFERENCE_OBS = 3
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "embed_emulate.md"


@dataclass(frozen=True)
class TaskPlan:
    """Per-task settings.

    Attributes:
        encoder: ``ConvEncoder1D`` keyword arguments shared by every method: the data tower of
            E&E and the x-embedding of NRE_C use them as they are (same architecture, same
            initial weights); symmetry-NPE uses the same architecture with ``output_dim``
            replaced by ``npe_output_dim``.
        npe_output_dim: Summary width for symmetry-NPE's flow.
        pretrain: ``PretrainConfig`` overrides for symmetry-NPE.
        pretrain_simulations: Parameter draws for symmetry-NPE's pretraining.
        flow: ``posterior_nn`` arguments of symmetry-NPE's flow.
        vicreg: Whether to run E&E with the VICReg regulariser on this task.
        speed_encoder: A costlier encoder (no input averaging) for which only the speed of
            E&E and NRE_C is measured, to show how the speed-ups scale with the encoder's cost;
            ``None`` for none.
    """

    encoder: dict[str, Any]
    npe_output_dim: int
    pretrain: dict[str, Any] = field(default_factory=dict)
    pretrain_simulations: int = 20_000
    flow: dict[str, Any] = field(default_factory=dict)
    vicreg: bool = True
    speed_encoder: dict[str, Any] | None = None


#: Symmetry-NPE's pretraining and flow: the fast preset's, with a shorter pretraining
#: (30 epochs, patience 10) as in ``benchmarks/symmetry_npe.py``'s tuning runs.
_SHO = RunConfig.from_preset("damped-oscillator", "fast")
_PRETRAIN: dict[str, Any] = {**_SHO.pretrain, "max_epochs": 30, "stop_after_epochs": 10}
_FLOW: dict[str, Any] = dict(_SHO.flow)
#: Full-resolution encoder (no input averaging), for the speed-only comparison.
_FULL_RESOLUTION: dict[str, Any] = {
    "output_dim": 16,
    "channels": 8,
    "num_blocks": 2,
    "kernel_size": 9,
}

PLANS: dict[str, TaskPlan] = {
    # The fast preset's E&E tower (16-D): the input averaged over windows of 8 samples (both
    # signals are heavily oversampled), one residual block of small convolutions, mean pooling,
    # a small head; the sine-Gaussian averages over 4 samples with 8 channels.
    "damped-oscillator": TaskPlan(
        encoder=dict(_SHO.ee_encoder),
        npe_output_dim=3,
        pretrain=_PRETRAIN,
        flow=_FLOW,
        speed_encoder=_FULL_RESOLUTION,
    ),
    "sine-gaussian": TaskPlan(
        encoder={
            **RunConfig.from_preset("sine-gaussian", "fast").ee_encoder,
            "downsample": 4,
            "channels": 8,
        },
        npe_output_dim=3,
        pretrain=_PRETRAIN,
        flow=_FLOW,
        speed_encoder=_FULL_RESOLUTION,
    ),
    # Lorenz-96: the fast preset's tower (sites as the length axis, the 16 snapshots as
    # channels, circular padding: exactly invariant to the cyclic site shift after mean pooling)
    # with a smaller head. Re-simulated views cost two Lorenz-96 integrations per pair and epoch
    # (about a minute per epoch here), so pretraining draws one fixed bank of views and E&E's
    # VICReg variant is not run.
    "lorenz96": TaskPlan(
        encoder={**RunConfig.from_preset("lorenz96", "fast").ee_encoder, "hidden_dim": 32},
        npe_output_dim=8,
        pretrain={**_PRETRAIN, "fresh_views": False},
        pretrain_simulations=5_000,
        flow=_FLOW,
        vicreg=False,
    ),
}

#: E&E estimator settings used for both E&E variants (see the results file for why).
EE_KWARGS: dict[str, Any] = {"learn_temperature": True, "z_score_x": "structured"}


# ----------------------------------------------------------------------------------- set-up
def make_task(name: str, quick: bool) -> NuisanceTask:
    """The task; in quick mode Lorenz-96 is shortened so the smoke test stays fast."""
    if name == "lorenz96" and quick:
        return Lorenz96(num_snapshots=4, burn_in=0.1, max_offset=0.05)
    return get_task(name)


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


# ----------------------------------------------------------------------------------- training
def train_methods(
    task: NuisanceTask,
    plan: TaskPlan,
    theta: Tensor,
    x: Tensor,
    cfg: Settings,
    methods: tuple[str, ...],
    log: Any,
) -> dict[str, M.TrainedMethod]:
    """Train every method on the same simulations; each starts from ``torch.manual_seed``."""
    # every method deep-copies these: the same initial weights
    encoder = ConvEncoder1D.for_task(task, **plan.encoder)
    npe_kwargs = {**plan.encoder, "output_dim": plan.npe_output_dim}
    npe_encoder = ConvEncoder1D.for_task(task, **npe_kwargs)
    train = {
        "max_num_epochs": cfg.max_epochs - 1,  # sbi runs max_num_epochs + 1 epochs
        "stop_after_epochs": cfg.stop_after_epochs,
        "training_batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "show_progress_bars": False,
    }
    trained: dict[str, M.TrainedMethod] = {}
    for name in methods:
        torch.manual_seed(cfg.seed)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Maximum number of epochs.*")
            if name == "embed_emulate":
                m = M.embed_emulate(task, theta, x, encoder, estimator_kwargs=EE_KWARGS, **train)
            elif name == "embed_emulate_vicreg":
                kwargs = {**EE_KWARGS, "views": task.views, "symmetry_weight": cfg.symmetry_weight}
                m = M.embed_emulate(task, theta, x, encoder, estimator_kwargs=kwargs, **train)
                m.name = name
            elif name == "nre_c":
                m = M.nre_c(task, theta, x, encoder, **train)
            else:
                pretrain = {"seed": cfg.seed, "show_progress_bar": False, **plan.pretrain}
                if cfg.quick:
                    pretrain.update(max_epochs=2, batch_size=64)
                m = M.symmetry_npe(
                    task,
                    theta,
                    x,
                    npe_encoder,
                    flow_kwargs=plan.flow,
                    pretrain_simulations=cfg.pretrain_simulations or plan.pretrain_simulations,
                    pretrain_kwargs=pretrain,
                    **train,
                )
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
def _step_runner(trainer: Any, estimator: nn.Module, loss_args: Any) -> Any:
    """One sbi-style optimisation step (loss, backward, clip, Adam) on a copy of ``estimator``."""
    net = copy.deepcopy(estimator)
    net.train()
    trainer._neural_net = net
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-5)

    def step(theta: Tensor, x: Tensor) -> None:
        optimiser.zero_grad()
        loss = trainer._get_losses([theta, x], loss_args).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=5.0)
        optimiser.step()

    return step


def time_training_steps(
    task: NuisanceTask,
    plan: TaskPlan,
    trained: dict[str, M.TrainedMethod],
    theta: Tensor,
    x: Tensor,
    cfg: Settings,
) -> dict[str, dict[str, float]]:
    """Median wall time of one training step per ratio method, alternating on shared batches.

    The steps run the trainers' own ``_get_losses`` (sbi's code path) on copies of the trained
    networks; the order of the methods rotates every round so that drifts in the machine's
    load hit all of them alike.
    """
    encoder = ConvEncoder1D.for_task(task, **plan.encoder)
    runners: dict[str, Any] = {}
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
    if quick and m.name in RATIO_METHODS:
        return m.posterior.sample(
            (num,),
            x=x_o,
            num_chains=4,
            warmup_steps=10,
            init_strategy="proposal",
            show_progress_bars=False,
        ).reshape(num, -1)
    return m.sample(x_o, num)


def draw_observation_samples(
    trained: dict[str, M.TrainedMethod], x_o: Tensor, cfg: Settings, log: Any
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

    NPE samples directly (``sample_batched``). The ratio methods use sbi's vectorised slice
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
    if m.name == "symmetry_npe":
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


class _Projected(nn.Module):
    """E&E's data tower as the critic sees it: ``f(x)`` on the unit sphere (cosine)."""

    def __init__(self, estimator: EmbedEmulateRatioEstimator) -> None:
        super().__init__()
        self.estimator = estimator

    def forward(self, x: Tensor) -> Tensor:
        return self.estimator._project(self.estimator.embedding_net(x))


def summary_network(m: M.TrainedMethod) -> nn.Module:
    """The learned data summary of a method, for the invariance error."""
    if isinstance(m.estimator, EmbedEmulateRatioEstimator):
        return _Projected(m.estimator)
    if m.name == "symmetry_npe":
        return m.extra["embedding"]
    return m.estimator.embedding_net_x  # NRE_C: z-scoring + the encoder


# ----------------------------------------------------------------------------------- one task
def run_task(name: str, cfg: Settings, cache_dir: Path, log: Any) -> dict[str, Any]:
    """Everything for one task; returns a JSON-friendly dictionary."""
    task = make_task(name, cfg.quick)
    plan = PLANS[name]
    methods = tuple(
        m
        for m in cfg.methods
        if not (m == "embed_emulate_vicreg" and (not plan.vicreg or cfg.symmetry_weight <= 0))
    )
    has_reference = isinstance(task, SignalInNoiseTask)
    # Without a reference the observations serve only the sampling times (contraction and
    # calibration come from the calibration pairs).
    num_obs = cfg.observations if has_reference else min(cfg.observations, NO_REFERENCE_OBS)
    log(f"{name}: simulating")
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    theta, x = task.sample_joint(cfg.simulations, generator=gen)
    theta_o = task.sample_prior(num_obs, generator=gen)
    nuisance_o = task.sample_nuisance(num_obs, generator=gen)
    x_o = task.simulate(theta_o, nuisance_o, generator=gen)
    theta_cal, x_cal = task.sample_joint(cfg.sbc_pairs, generator=gen)
    simulate_seconds = time.perf_counter() - start

    trained = train_methods(task, plan, theta, x, cfg, methods, log)
    steps = time_training_steps(task, plan, trained, theta, x, cfg)
    log("  step ms: " + ", ".join(f"{LABELS[k]} {v['median_ms']:.1f}" for k, v in steps.items()))

    references = []
    if has_reference:
        start = time.perf_counter()
        references = [
            task.reference_posterior(
                x_o[i : i + 1],
                num_samples=cfg.posterior_samples,
                seed=cfg.seed + i,
                cache_dir=cache_dir,
            ).samples
            for i in range(num_obs)
        ]
        log(f"  references: {num_obs} in {time.perf_counter() - start:.0f} s")

    samples, sample_seconds = draw_observation_samples(trained, x_o, cfg, log)
    prior_var = task.sample_prior(20_000, generator=gen).double().var(0)

    out: dict[str, Any] = {
        "task": name,
        "task_repr": repr(task),
        "x_shape": list(task.x_shape),
        "encoder": plan.encoder,
        "npe_output_dim": plan.npe_output_dim,
        "pretrain": plan.pretrain,
        "simulate_seconds": simulate_seconds,
        "num_observations": num_obs,
        "observations": {"theta": theta_o.tolist(), "nuisance": nuisance_o.tolist()},
        "methods": {},
    }
    for mname, m in trained.items():
        entry: dict[str, Any] = {
            "costs": {k: v for k, v in m.summary().items()},
            "epochs": epoch_statistics(m, cfg.max_epochs),
            "history": {k: list(v) for k, v in m.history.items()},
            "sample_seconds": sample_seconds[mname],
            "seconds_per_10k_samples": statistics.mean(sample_seconds[mname])
            * 10_000
            / cfg.timed_samples,
        }
        if mname in steps:
            entry["step"] = steps[mname]
        if references:
            scores = [
                c2st_score(s, r, max_samples=cfg.posterior_samples, seed=cfg.seed)
                for s, r in zip(samples[mname], references, strict=True)
            ]
            entry["c2st"] = {**summarise(scores), "per_observation": scores}
        start = time.perf_counter()
        torch.manual_seed(cfg.seed)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*batched sampling.*")
            draws = sbc_samples(m, x_cal, cfg)
        sbc_seconds = time.perf_counter() - start
        cal = calibrate(
            m.posterior,
            task.prior,
            theta_cal,
            x_cal,
            num_posterior_samples=cfg.sbc_samples,
            samples=draws,
            seed=cfg.seed,
        )
        entry["calibration"] = {**cal.to_dict(), "sampling_seconds": sbc_seconds}
        contraction = 1 - draws.double().var(0) / prior_var  # (N, d)
        entry["contraction"] = {
            "per_parameter": contraction.mean(0).tolist(),
            "mean": float(contraction.mean()),
        }
        entry["invariance_error"] = invariance_error(
            summary_network(m),
            task.views,
            task.sample_prior(50 if cfg.quick else 1000, generator=gen),
        )
        out["methods"][mname] = entry
        log(
            f"  evaluated {LABELS[mname]}"
            + (f": C2ST {entry['c2st']['mean']:.3f}" if "c2st" in entry else "")
            + f", SBC sampling {sbc_seconds:.0f} s"
        )
    out["targets"] = targets(out["methods"])
    if plan.speed_encoder is not None and {"embed_emulate", "nre_c"} <= set(methods):
        out["speed_check"] = speed_check(task, plan, theta, x, x_o, cfg, log)
    return out


def speed_check(
    task: NuisanceTask,
    plan: TaskPlan,
    theta: Tensor,
    x: Tensor,
    x_o: Tensor,
    cfg: Settings,
    log: Any,
) -> dict[str, Any]:
    """Step and 10^4-sample MCMC times of E&E and NRE_C with ``plan.speed_encoder``.

    Both are trained briefly (``speed_epochs``) from the same simulations: only their speed is
    compared, on the first ``speed_observations`` observations.
    """
    heavy = TaskPlan(encoder=plan.speed_encoder or {}, npe_output_dim=plan.npe_output_dim)
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


def targets(methods: dict[str, Any]) -> dict[str, Any]:
    """E&E over NRE_C: step and MCMC speed-ups (on the same observations) and the C2ST gap."""
    if "embed_emulate" not in methods or "nre_c" not in methods:
        return {}
    ee, nre = methods["embed_emulate"], methods["nre_c"]
    k = len(nre["sample_seconds"])
    ee_subset = statistics.mean(ee["sample_seconds"][:k])
    result: dict[str, Any] = {
        "step_speedup": nre["step"]["median_ms"] / ee["step"]["median_ms"],
        "epoch_speedup": nre["epochs"]["seconds_per_epoch_median"]
        / ee["epochs"]["seconds_per_epoch_median"],
        "mcmc_speedup": statistics.mean(nre["sample_seconds"]) / ee_subset,
        "mcmc_observations": k,
    }
    if "c2st" in ee and "c2st" in nre:
        result["c2st_difference"] = ee["c2st"]["mean"] - nre["c2st"]["mean"]
        result["c2st_sem_difference"] = math.hypot(ee["c2st"]["sem"], nre["c2st"]["sem"])
    return result


# ----------------------------------------------------------------------------------- report
def _fmt(value: float | None, spec: str) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (format(value, spec))
    )


def markdown_tables(results: dict[str, Any], cfg: Settings) -> str:
    """The results as markdown: one table per task and a table of the targets."""
    lines: list[str] = []
    header = [
        "method",
        "C2ST (mean ± sem)",
        "SBC KS p (per param)",
        "max cov. err",
        "TARP ATC / p",
        "contraction",
        "invariance err",
        "trainable params",
        "MACs @1000",
        "s / epoch",
        "epochs (best)",
        "train s (to best)",
        "step ms",
        "s / 10^4 samples",
    ]
    for task, res in results.items():
        lines += [f"### {task}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---|" * len(header))
        for name, e in res["methods"].items():
            c = e.get("c2st")
            cal = e["calibration"]
            ep = e["epochs"]
            costs = e["costs"]
            train_s = costs["train_seconds"]
            pre = costs.get("pretrain_seconds", 0.0)
            cap = "" if ep["stopped_early"] else " cap"
            row = [
                LABELS[name],
                f"{c['mean']:.3f} ± {c['sem']:.3f}" if c else "n/a",
                ", ".join(f"{p:.2f}" for p in cal["ks_pvals"]),
                f"{cal['max_coverage_error']:.3f}",
                f"{cal['tarp_atc']:+.3f} / {cal['tarp_ks_pval']:.2f}",
                f"{e['contraction']['mean']:.2f}",
                _fmt(e.get("invariance_error"), ".3f"),
                f"{costs['trainable_parameters']:,}",
                f"{costs['macs_per_1000']:.2e}",
                f"{ep['seconds_per_epoch_median']:.2f}",
                f"{ep['epochs']}{cap} ({ep['best_epoch']})",
                f"{train_s:.0f} ({ep['seconds_to_best_epoch']:.0f})"
                + (f" + {pre:.0f} pretrain" if pre else ""),
                f"{e['step']['median_ms']:.1f}" if "step" in e else "n/a",
                f"{e['seconds_per_10k_samples']:.1f}"
                + (f" ({len(e['sample_seconds'])} obs)" if name == "nre_c" else ""),
            ]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines += [
        "### Targets (E&E against NRE_C with the same encoder)",
        "",
        "| task | step speed-up (target ≥ 3) | epoch speed-up | MCMC speed-up (target ≥ 10) "
        "| C2ST E&E − NRE_C (target ≤ 0) |",
        "|---|---|---|---|---|",
    ]
    for task, res in results.items():
        t = res.get("targets", {})
        if not t:
            continue
        diff = t.get("c2st_difference")
        lines.append(
            f"| {task} | {t['step_speedup']:.1f}x | {t['epoch_speedup']:.1f}x | "
            f"{t['mcmc_speedup']:.1f}x ({t['mcmc_observations']} obs) | "
            + (f"{diff:+.3f} ± {t['c2st_sem_difference']:.3f}" if diff is not None else "n/a")
            + " |"
        )
    checks = {t: r["speed_check"] for t, r in results.items() if "speed_check" in r}
    if checks:
        lines += [
            "",
            "### Speed with a costlier encoder (speed only; networks trained "
            f"{cfg.speed_epochs} epochs)",
            "",
            "| task | encoder | E&E step ms | NRE_C step ms | step speed-up | E&E s / 10^4 "
            "| NRE_C s / 10^4 | MCMC speed-up | MACs @1000 E&E / NRE_C |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for task, c in checks.items():
            ee, nre = c["embed_emulate"], c["nre_c"]
            enc = ", ".join(f"{k}={v}" for k, v in c["encoder"].items())
            lines.append(
                f"| {task} | {enc} | {ee['step']['median_ms']:.1f} | "
                f"{nre['step']['median_ms']:.1f} | {c['step_speedup']:.1f}x | "
                f"{ee['seconds_per_10k_samples']:.1f} | {nre['seconds_per_10k_samples']:.1f} | "
                f"{c['mcmc_speedup']:.1f}x ({len(ee['sample_seconds'])} obs) | "
                f"{ee['macs_per_1000']:.2e} / {nre['macs_per_1000']:.2e} |"
            )
    return "\n".join(lines) + "\n"


def machine_notes(threads: int) -> str:
    """What the numbers were measured on."""
    import sbi

    return (
        f"{platform.platform()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"sbi {sbi.__version__}; {torch.get_num_threads()} torch thread(s) (--threads {threads}) "
        "on a 2-core machine shared with other jobs (load is not controlled: wall times are "
        "noisy; ratios are taken between methods timed alternately in the same process)."
    )


def verdicts(results: dict[str, Any]) -> list[str]:
    """One line per target and task: met or missed, and by how much."""
    lines = []
    for task, res in results.items():
        t = res.get("targets", {})
        if not t:
            continue
        step, mcmc = t["step_speedup"], t["mcmc_speedup"]
        parts = [
            f"training step {step:.1f}x faster "
            + (
                "(target >= 3x: met)" if step >= 3 else f"(target >= 3x: missed by {3 - step:.1f}x)"
            ),
            f"MCMC {mcmc:.1f}x faster "
            + (
                "(target >= 10x: met)"
                if mcmc >= 10
                else f"(target >= 10x: missed, a factor {10 / mcmc:.1f} short)"
            ),
        ]
        if "c2st_difference" in t:
            diff, sem = t["c2st_difference"], t["c2st_sem_difference"]
            ok = "met" if diff <= 0 else ("within 1 sem" if diff <= sem else "missed")
            parts.append(f"C2ST E&E - NRE_C = {diff:+.3f} ± {sem:.3f} (target <= 0: {ok})")
        check = res.get("speed_check")
        if check:
            parts.append(
                f"with the costlier encoder: step {check['step_speedup']:.1f}x, "
                f"MCMC {check['mcmc_speedup']:.1f}x"
            )
        lines.append(f"- **{task}**: " + "; ".join(parts) + ".")
    return lines


def protocol(payload: dict[str, Any]) -> list[str]:
    """How the numbers were produced."""
    cfg = payload["settings"]
    timing = cfg["timing_observations"]
    encoders = [
        f"  - {task}: `ConvEncoder1D({', '.join(f'{k}={v}' for k, v in res['encoder'].items())})`"
        f" (input {tuple(res['x_shape'])}); symmetry-NPE: the same with "
        f"`output_dim={res['npe_output_dim']}`"
        for task, res in payload["results"].items()
    ]
    return [
        "## Protocol",
        "",
        f"- Training data: {cfg['simulations']} simulations per task (theta and nuisance from "
        f"their priors), seed {cfg['seed']}; every method is trained in this one process from "
        "the same data, after `torch.manual_seed(seed)`.",
        "- One encoder architecture per task for all methods; E&E and NRE_C also start from "
        "the same initial encoder weights:",
        *encoders,
        f"- E&E: `EmbedEmulate` with `{payload['ee_kwargs']}` (cosine similarity; temperature "
        "learned from 0.15; one scalar mean/std z-scoring of x, as NRE_C gets with "
        "`z_score_x='structured'`), default `ResidualMLP` emulator. E&E + VICReg adds "
        f"`views=task.views, symmetry_weight={cfg['symmetry_weight']}` (training loss only; "
        "early stopping uses the pure InfoNCE). NRE_C: sbi's `NRE_C` with "
        "`classifier_nn('resnet', embedding_net_x=encoder, z_score_x='structured')` (sbi's "
        "default classifier) and sbi's default `num_classes=5`.",
        f"- Training (all methods, sbi's loop): batch {cfg['batch_size']}, Adam "
        f"lr {cfg['learning_rate']}, early stopping after {cfg['stop_after_epochs']} epochs "
        f"without validation improvement, at most {cfg['max_epochs']} epochs ('cap' in the "
        "table: the cap was reached, the validation loss may still have been improving). "
        "'s / epoch' is the median of sbi's per-epoch wall time (training + validation); "
        "'train s (to best)' is the whole run and, in brackets, the time up to the epoch "
        "with the best validation loss (the weights that are kept). symmetry-NPE's "
        "pretraining is shown separately.",
        f"- Training step: the trainers' own `_get_losses` + backward + gradient clipping + Adam "
        f"step on copies of the trained networks, batch {cfg['batch_size']}, median of "
        f"{cfg['step_repeats']} steps per method, the methods alternating on the same batches "
        "(NRE_C's loss evaluates the classifier on 11 (theta, x) pairs per x: K + 1 = 6 for "
        "the marginal and K = 5 for the joint term; E&E needs one encoder and one emulator "
        "pass per pair for all B x B logits). The VICReg variant's step includes simulating "
        "its two views.",
        f"- Posterior sampling: {cfg['timed_samples']} samples per observation, timed"
        + (
            f" (NRE_C only on the first {timing} observations)"
            if timing is not None
            else " on every observation"
        )
        + ". Ratio methods: the same sbi MCMC settings for all, `slice_np_vectorized`, "
        "20 chains, 50 warm-up steps (after sbi's 50 bracket-tuning steps), thin 1, sbi's "
        "default `resample` start (best of 10^4 prior draws per chain under the potential). "
        "symmetry-NPE: sbi's direct sampling."
        + (" (--quick: 4 chains, 10 warm-up steps, prior start.)" if cfg["quick"] else ""),
        f"- C2ST: sbi's random-forest C2ST between {cfg['posterior_samples']} posterior samples "
        "(a seeded random subset of the timed draw) and as many samples of the exact "
        "quadrature reference (shift marginalised), per observation; mean ± sem over "
        f"{cfg['observations']} observations with theta and shift from their priors.",
        f"- Calibration: {cfg['sbc_pairs']} pairs from the prior, {cfg['sbc_samples']} posterior "
        "samples each, through `sbi_symmetry.evaluation.calibrate` (sbi's `run_sbc`/"
        "`check_sbc`, `run_tarp`/`check_tarp`). SBC KS p-values per parameter; max coverage "
        "error = largest gap between empirical and nominal coverage of central intervals; "
        "TARP ATC (0 ideal) and KS p. Ratio methods: slice MCMC, the same settings for "
        f"all: {SBC_CHAINS} chains per pair started by sbi's `resample` from {SBC_CANDIDATES} "
        f"prior draws, {SBC_WARMUP} warm-up steps; all pairs at once with `sample_batched`, "
        "except for multi-channel x (Lorenz-96), whose start `sample_batched` cannot evaluate, "
        "one pair at a time. (Starting from plain prior draws leaves E&E's chains in local "
        "maxima of its sharp learned log ratio: prior-like samples, which pass SBC and TARP "
        "but barely contract.) Contraction = 1 - posterior var / prior var, averaged over the "
        "calibration pairs and the parameters.",
        "- Invariance error: mean squared distance between the summaries of two re-simulated "
        "views (same theta, new nuisance and noise) over their total variance "
        "(`sbi_symmetry.symmetry.diagnostics.invariance_error`; 0 invariant, about 2 none): E&E's "
        "unit-norm f(x), NRE_C's x-embedding, symmetry-NPE's embedding.",
        "- MACs: one forward pass of the trained estimator on 1000 (theta, x) pairs "
        "(`TrainedMethod.macs_per_1000`: for the ratio methods one log-ratio per pair, for "
        "NPE the flow's log-probability); average pooling is not counted.",
        f"- Speed check: E&E and NRE_C trained for {cfg['speed_epochs']} epochs with a costlier "
        "encoder (full resolution, no input averaging); step and 10^4-sample MCMC times as "
        f"above on {cfg['speed_observations']} observation(s). Speed only.",
        "",
    ]


def render_markdown(payload: dict[str, Any], json_name: str) -> str:
    """The results file from the JSON payload."""
    cfg = Settings(**{**payload["settings"], "methods": tuple(payload["settings"]["methods"])})
    results = payload["results"]
    text = [
        "# Embed and Emulate vs NRE_C (same encoder) vs symmetry-NPE",
        "",
        f"Command: `{payload['command']}`",
        "",
        f"Machine: {payload['machine']} Total wall time {payload['wall_seconds'] / 60:.1f} min.",
        "",
        "## Targets",
        "",
        *verdicts(results),
        "",
        "## Results",
        "",
        markdown_tables(results, cfg),
        *protocol(payload),
        f"Raw numbers (per observation, per epoch, per pair): `{json_name}`.",
        "",
    ]
    return "\n".join(text)


def write_results(
    out: Path, command: str, cfg: Settings, results: dict[str, Any], wall: float, notes: str
) -> None:
    """Write the JSON of raw numbers and the markdown results beside it."""
    json_path = out.with_suffix(".json")
    payload = {
        "command": command,
        "settings": dataclasses.asdict(cfg),
        "ee_kwargs": EE_KWARGS,
        "machine": notes,
        "wall_seconds": wall,
        "results": results,
    }
    json_path.write_text(json.dumps(payload, indent=1, default=str))
    out.write_text(render_markdown(json.loads(json_path.read_text()), json_path.name))


# ----------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--simulations", type=int, default=10_000)
    p.add_argument("--observations", type=int, default=10, help="for C2ST (reference tasks)")
    p.add_argument("--sbc-pairs", type=int, default=200)
    p.add_argument("--sbc-samples", type=int, default=200, help="posterior samples per pair")
    p.add_argument("--posterior-samples", type=int, default=2_000, help="per C2ST")
    p.add_argument("--timed-samples", type=int, default=10_000)
    p.add_argument(
        "--timing-observations",
        type=int,
        default=None,
        help="draw NRE_C's timed samples only on this many observations (default: all)",
    )
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--stop-after-epochs", type=int, default=20)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--symmetry-weight", type=float, default=0.05)
    p.add_argument(
        "--pretrain-simulations", type=int, default=None, help="default: per task (PLANS)"
    )
    p.add_argument("--step-repeats", type=int, default=30)
    p.add_argument("--speed-epochs", type=int, default=10, help="training of the speed check")
    p.add_argument("--speed-observations", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", type=Path, default=None, help="reference cache (default: temp)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument(
        "--render",
        type=Path,
        default=None,
        help="only rewrite the markdown from this JSON of an earlier run (into --out)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"markdown results (JSON beside it); default {DEFAULT_OUT} (none with --quick)",
    )
    return p.parse_args(argv)


def settings(args: argparse.Namespace) -> Settings:
    """Sizes from the flags; ``--quick`` shrinks everything."""
    cfg = Settings(
        simulations=args.simulations,
        observations=args.observations,
        sbc_pairs=args.sbc_pairs,
        sbc_samples=args.sbc_samples,
        posterior_samples=args.posterior_samples,
        timed_samples=args.timed_samples,
        timing_observations=args.timing_observations,
        max_epochs=args.max_epochs,
        stop_after_epochs=args.stop_after_epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        symmetry_weight=args.symmetry_weight,
        pretrain_simulations=args.pretrain_simulations,
        step_repeats=args.step_repeats,
        speed_epochs=args.speed_epochs,
        speed_observations=args.speed_observations,
        seed=args.seed,
        quick=args.quick,
        methods=tuple(m for m in METHODS if m in args.methods),
    )
    if args.quick:
        cfg.simulations = 200
        cfg.observations = 1
        cfg.sbc_pairs = 10
        cfg.sbc_samples = 8
        cfg.posterior_samples = 50
        cfg.timed_samples = 50
        cfg.timing_observations = 1
        cfg.max_epochs = 2
        cfg.batch_size = 50
        cfg.pretrain_simulations = 200
        cfg.step_repeats = 1
        cfg.speed_epochs = 2
    for name in ("simulations", "observations", "sbc_pairs", "sbc_samples", "step_repeats"):
        if getattr(cfg, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    if cfg.max_epochs < 2 or cfg.speed_epochs < 2:
        raise SystemExit("--max-epochs and --speed-epochs must be >= 2 (sbi trains at least two)")
    if cfg.posterior_samples > cfg.timed_samples:
        raise SystemExit("--posterior-samples must not exceed --timed-samples")
    return cfg


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the tables; write the results unless ``--quick`` without --out."""
    args = parse_args(argv)
    if args.render is not None:
        out = args.out if args.out is not None else args.render.with_suffix(".md")
        out.write_text(render_markdown(json.loads(args.render.read_text()), args.render.name))
        print(f"wrote {out}")
        return {}
    torch.set_num_threads(args.threads)
    cfg = settings(args)
    out = args.out if args.out is not None else (None if args.quick else DEFAULT_OUT)
    command = " ".join(
        [".venv/bin/python", "benchmarks/embed_emulate.py", *map(shlex.quote, sys.argv[1:])]
        if argv is None
        else [".venv/bin/python", "benchmarks/embed_emulate.py", *map(shlex.quote, argv)]
    )

    start = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f} s] {text}", flush=True)

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ee-bench-ref-") as tmp:
        cache = args.cache_dir if args.cache_dir is not None else Path(tmp)
        for name in args.tasks:
            results[name] = run_task(name, cfg, cache, log)
    wall = time.perf_counter() - start
    notes = machine_notes(args.threads)
    print(markdown_tables(results, cfg))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_results(out, command, cfg, results, wall, notes)
        print(f"wrote {out} and {out.with_suffix('.json')}")
    return results


if __name__ == "__main__":
    main()
