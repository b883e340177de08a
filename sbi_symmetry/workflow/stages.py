"""The stages of ``sbi-symmetry run``, each a small function from plain data to plain data.

1. :func:`simulate`: training pairs, held-out observations and calibration pairs (seeded);
2. :func:`train_methods`: the selected density estimators (NPE), then (3.) the ratio
   estimators, each group in registry order;
4. :func:`references`: exact reference posteriors of the held-out observations (when the task
   has them);
5. :func:`accuracy`: posterior samples per method and observation, C2ST against the reference,
   widths against the reference and the Cramer-Rao bound, contraction;
6. :func:`calibration`: SBC, expected coverage and TARP with sbi's own diagnostics.

The random stream is seeded once by the pipeline and then consumed by the stages in this order;
each method trains, is sampled at the observations and is calibrated from streams seeded afresh
from the seed (training and sampling from its name too). So the same seed gives the same
numbers, and a method's numbers do not depend on which others run.

Example:
    >>> import torch
    >>> from sbi_symmetry.tasks import DampedOscillator
    >>> from sbi_symmetry.workflow.config import RunConfig
    >>> cfg = RunConfig.from_preset("damped-oscillator", "fast", num_simulations=500)
    >>> sims = simulate(DampedOscillator(), cfg, torch.Generator().manual_seed(0))
    >>> sims.x.shape, sims.x_o.shape, sims.x_cal.shape
    (torch.Size([500, 200]), torch.Size([5, 200]), torch.Size([200, 200]))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from sbi.inference.posteriors import MCMCPosterior
from torch import Tensor
from tqdm.auto import tqdm

from sbi_symmetry._random import derived_seed, seeded
from sbi_symmetry.evaluation import c2st_score, calibrate, interval_ratio, std_ratio, summarise
from sbi_symmetry.evaluation.calibration import CalibrationResult
from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.reference.protocol import is_signal_model
from sbi_symmetry.simulation.counting import simulator_calls
from sbi_symmetry.workflow import parallel
from sbi_symmetry.workflow.config import RunConfig
from sbi_symmetry.workflow.registry import METHODS, TOWER_SETTINGS, TrainingContext, label
from sbi_symmetry.workflow.trained import TrainedMethod

#: Seconds before sbi gives up rejecting an NPE's samples outside the prior (a badly trained
#: flow can put almost all its mass there; better a clear error than a run that never ends).
SAMPLING_TIME_LIMIT = 600.0


@dataclass
class Simulations:
    """The data of a run (all drawn from one seeded generator)."""

    theta: Tensor
    x: Tensor
    theta_o: Tensor
    shift_o: Tensor
    x_o: Tensor
    theta_cal: Tensor
    x_cal: Tensor
    #: Simulator calls counted for each set (``training``, ``observations``, ``calibration``).
    calls: dict[str, int] = field(default_factory=dict)


def simulate(task: Any, config: RunConfig, gen: torch.Generator) -> Simulations:
    """Training pairs, observations (theta and nuisance from their priors), calibration pairs.

    Args:
        task: The task.
        config: The run's settings (sizes).
        gen: The run's generator.

    Returns:
        The simulations (``theta_o``, ``shift_o``, ``x_o``: the held-out observations).

    Example:
        >>> from sbi_symmetry.tasks import SineGaussian
        >>> cfg = RunConfig.from_preset("sine-gaussian", num_simulations=500, sbc_pairs=50)
        >>> sims = simulate(SineGaussian(), cfg, torch.Generator().manual_seed(0))
        >>> sims.theta.shape[0], sims.theta_o.shape[0], sims.theta_cal.shape[0]
        (500, 5, 100)
    """
    count = simulator_calls(task)
    calls: dict[str, int] = {}

    def counted(name: str) -> None:
        nonlocal count
        calls[name], count = simulator_calls(task) - count, simulator_calls(task)

    theta, x = task.sample_joint(config.num_simulations, generator=gen)
    counted("training")
    theta_o = task.sample_prior(config.num_observations, generator=gen)
    shift_o = task.sample_nuisance(config.num_observations, generator=gen)
    x_o = task.simulate(theta_o, shift_o, generator=gen)
    counted("observations")
    num_cal = max(config.sbc_pairs, config.sbc_pairs_ratio)
    theta_cal, x_cal = task.sample_joint(num_cal, generator=gen)
    counted("calibration")
    return Simulations(theta, x, theta_o, shift_o, x_o, theta_cal, x_cal, calls)


def training_context(
    task: Any, sims: Simulations, config: RunConfig, show_progress: bool
) -> TrainingContext:
    """What the methods train from, with the NPE tower (``config.encoder``) built.

    Args:
        task: The task.
        sims: The simulations.
        config: The run's settings.
        show_progress: Progress bars.

    Returns:
        The context shared by every method's training.

    Example:
        >>> import torch
        >>> from sbi_symmetry.tasks import DampedOscillator
        >>> task, cfg = DampedOscillator(), RunConfig.from_preset("damped-oscillator", "fast")
        >>> sims = Simulations(*[torch.zeros(1)] * 7)  # the towers need the task only
        >>> ctx = training_context(task, sims, cfg, show_progress=False)
        >>> list(ctx.towers), ctx.towers["npe"].output_dim
        (['npe'], 8)
    """
    ctx = TrainingContext(task, sims.theta, sims.x, config, {}, show_progress)
    ctx.towers["npe"] = _tower(task, config, "npe")
    return ctx


def _tower(task: Any, config: RunConfig, kind: str) -> ConvEncoder1D:
    """A fresh encoder for ``kind``'s tower, from a random stream of its own.

    The stream is seeded from the training seed and ``kind``.
    """
    with seeded(derived_seed(config.method_seed, "tower", kind), config.device):
        return ConvEncoder1D.for_task(task, **getattr(config, TOWER_SETTINGS[kind]))


def train_methods(
    ctx: TrainingContext,
    kind: str | None = None,
    *,
    skip: Collection[str] = (),
    done: Callable[[str, TrainedMethod], None] | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> dict[str, TrainedMethod]:
    """Train the selected methods (of one kind, or all) from the same simulations, side by side.

    Each kind's shared tower (the NPE tower, built in :func:`training_context`; the ratio tower,
    built here when a ratio method is selected) draws its initial weights from a stream of its
    own, whatever methods are selected; each method copies its tower, so methods of a kind start
    from the same weights. Each method then trains from its own random stream, up to
    ``config.workers`` at once (:mod:`sbi_symmetry.workflow.parallel`).

    Args:
        ctx: The training context.
        kind: ``"npe"``, ``"ratio"`` or ``None`` (every selected method).
        skip: Methods not to train (e.g. loaded from a checkpoint).
        done: Called with each method as soon as it has trained.
        meanwhile: Work for this process while the methods train in workers, started when a
            core would idle; not called when they train in turn here
            (see :func:`sbi_symmetry.workflow.parallel.train_methods`).

    Returns:
        The trained methods by name, in registry order.
    """
    names = [
        name
        for name, spec in METHODS.items()
        if name in ctx.config.methods and kind in (None, spec.kind) and name not in skip
    ]
    for name in ctx.config.methods:  # skipped methods count: their kind's tower stays built
        needed = METHODS[name].kind
        if kind in (None, needed) and needed not in ctx.towers:
            ctx.towers[needed] = _tower(ctx.task, ctx.config, needed)
    run = [name for name in ctx.config.methods if kind in (None, METHODS[name].kind)]
    return parallel.train_methods(ctx, names, ctx.config.workers, done, meanwhile, len(run))


def references(task: Any, sims: Simulations, config: RunConfig, show_progress: bool) -> list[Any]:
    """Exact reference posteriors of the observations (none for tasks without a likelihood).

    Args:
        task: The task.
        sims: The simulations (observations).
        config: The run's settings (samples, seed).
        show_progress: Progress bar.

    Returns:
        One :class:`~sbi_symmetry.reference.ReferencePosterior` per observation, or ``[]``.

    Example:
        >>> from sbi_symmetry.tasks import Lorenz96
        >>> sims = Simulations(*[torch.zeros(1)] * 7)
        >>> references(Lorenz96(), sims, RunConfig(task="lorenz96"), False)  # no likelihood
        []
    """
    if not (is_signal_model(task) or callable(getattr(task, "reference_posterior", None))):
        return []
    refs = [
        task.reference_posterior(
            sims.x_o[i : i + 1], num_samples=config.posterior_samples, seed=config.seed + i
        )
        for i in tqdm(
            range(config.num_observations), desc="reference posteriors", disable=not show_progress
        )
    ]
    for ref in refs:  # a task of your own may return samples or an object with ``samples``
        got = reference_samples(ref)
        if not (isinstance(got, Tensor) and got.ndim == 2 and got.shape[1] == task.theta_dim):
            raise ValueError(
                f"{type(task).__name__}.reference_posterior must return samples "
                f"(num_samples, {task.theta_dim}) or an object with such `samples`; got "
                f"{getattr(got, 'shape', type(got).__name__)}."
            )
    return refs


def reference_samples(ref: Any) -> Tensor:
    """The samples of a reference: a ``ReferencePosterior``'s ``samples``, or the tensor itself.

    Args:
        ref: What ``task.reference_posterior`` returned.

    Returns:
        ``(num_samples, theta_dim)`` samples.
    """
    return getattr(ref, "samples", ref)


@dataclass
class Accuracy:
    """Posterior samples and accuracy metrics of every method.

    Attributes:
        samples: Per method, one ``(posterior_samples, d)`` tensor per observation.
        metrics: Per method, ``costs``, timing, contraction and (with references) C2ST and
            widths, as written to ``metrics.json``.
        crb: Cramer-Rao bounds of the observations ``(n, d)``, or ``None``.
    """

    samples: dict[str, list[Tensor]]
    metrics: dict[str, dict[str, Any]]
    crb: Tensor | None


def accuracy(
    task: Any,
    sims: Simulations,
    trained: dict[str, TrainedMethod],
    refs: list[Any],
    config: RunConfig,
    gen: torch.Generator,
    show_progress: bool,
    loaded: dict[str, tuple[list[Tensor], dict[str, Any]]] | None = None,
    done: Callable[[str, tuple[list[Tensor], dict[str, Any]]], None] | None = None,
) -> Accuracy:
    """Sample every posterior at every observation and compare with the references.

    Args:
        task: The task.
        sims: The simulations.
        trained: The trained methods.
        refs: Reference posteriors (may be empty).
        config: The run's settings.
        gen: The run's generator (prior variance for the contraction).
        show_progress: Progress bars.
        loaded: Methods done before (``(samples, metrics)`` by name, as given to ``done``):
            taken as they are. Each method samples from its own stream, so the others' numbers
            do not depend on which were loaded.
        done: Called with each method's ``(samples, metrics)`` as soon as it is done.

    Returns:
        Samples and metrics.
    """
    crb = task.cramer_rao_bound(sims.theta_o, sims.shift_o) if is_signal_model(task) else None
    prior_var = task.sample_prior(20_000, generator=gen).double().var(0)
    result = Accuracy({}, {k: {"costs": v.summary()} for k, v in trained.items()}, crb)
    for name, method in trained.items():
        if loaded and name in loaded:
            result.samples[name], result.metrics[name] = loaded[name]
            continue
        start = time.perf_counter()
        # its own stream: how many draws another method's sampler used must not matter
        stream = seeded(derived_seed(config.seed, "accuracy", name), config.device)
        with naming_failures(name), stream:
            draws = [
                method.sample(
                    sims.x_o[i : i + 1],
                    config.posterior_samples,
                    max_sampling_time=SAMPLING_TIME_LIMIT,
                )
                for i in tqdm(
                    range(config.num_observations),
                    desc=f"sampling {name}",
                    disable=not show_progress,
                )
            ]
        took = time.perf_counter() - start
        result.samples[name] = draws
        entry = result.metrics[name]
        total = config.num_observations * config.posterior_samples
        entry["seconds_per_10k_samples"] = took / total * 10_000
        entry["contraction"] = [(1 - s.double().var(0) / prior_var).tolist() for s in draws]
        if refs:
            entry.update(_against_references(draws, refs, crb, config.seed))
        if done is not None:
            done(name, (draws, entry))
    return result


def _against_references(
    draws: list[Tensor], refs: list[Any], crb: Tensor | None, seed: int
) -> dict[str, Any]:
    pairs = list(zip(draws, [reference_samples(r) for r in refs], strict=True))
    scores = [c2st_score(s, r, seed=seed) for s, r in pairs]
    out: dict[str, Any] = {
        "c2st": {**summarise(scores), "per_observation": scores},
        "std_over_reference": [std_ratio(s, r).tolist() for s, r in pairs],
        "interval_over_reference": [interval_ratio(s, r).tolist() for s, r in pairs],
    }
    if crb is not None:
        out["std_over_crb"] = [(s.double().std(0) / crb[i]).tolist() for i, s in enumerate(draws)]
    return out


def calibration(
    task: Any,
    sims: Simulations,
    trained: dict[str, TrainedMethod],
    config: RunConfig,
    show_progress: bool,
    loaded: dict[str, CalibrationResult] | None = None,
    done: Callable[[str, CalibrationResult], None] | None = None,
) -> dict[str, CalibrationResult]:
    """SBC, expected coverage and TARP of every method on the calibration pairs.

    Methods sampled by MCMC (``nre_c``) get ``config.sbc_pairs_ratio`` pairs, the others
    ``config.sbc_pairs`` (:meth:`~sbi_symmetry.workflow.registry.MethodSpec.calibration_pairs`).

    Args:
        task: The task (prior).
        sims: The simulations (calibration pairs).
        trained: The trained methods.
        config: The run's settings.
        show_progress: Progress bars.
        loaded: Methods calibrated before, taken as they are (each calibration is seeded by
            ``config.seed`` alone).
        done: Called with each method's result as soon as it is done.

    Returns:
        The calibration results by method.
    """
    results = {}
    for name, method in trained.items():
        if loaded and name in loaded:
            results[name] = loaded[name]
            continue
        pairs = METHODS[name].calibration_pairs(config)
        with naming_failures(name):
            results[name] = calibrate(
                method.posterior,
                task.prior,
                sims.theta_cal[:pairs],
                sims.x_cal[:pairs],
                num_posterior_samples=config.sbc_posterior_samples,
                show_progress_bar=show_progress,
                seed=config.seed,
                max_sampling_time=SAMPLING_TIME_LIMIT,
                sample_kwargs=_batched_sampling(method.posterior),
            )
        if done is not None:
            done(name, results[name])
    return results


def _batched_sampling(posterior: Any) -> dict[str, Any]:
    """Calibration samples many observations at once: MCMC runs fewer chains per observation.

    sbi runs ``num_chains`` chains for every observation of a batch; 5 per observation instead of
    20 makes batched slice sampling about 3x faster for the same number of samples.
    """
    return {"num_chains": 5} if isinstance(posterior, MCMCPosterior) else {}


@contextmanager
def naming_failures(name: str) -> Iterator[None]:
    """Re-raise sampling failures (e.g. sbi's timeout on a leaking flow) with the method's name.

    Args:
        name: The method's name.

    Example:
        >>> with naming_failures("raw_npe"):
        ...     raise RuntimeError("timed out")
        Traceback (most recent call last):
        ...
        RuntimeError: sampling the NPE (raw data) posterior failed: timed out
    """
    try:
        yield
    except RuntimeError as err:
        raise RuntimeError(f"sampling the {label(name)} posterior failed: {err}") from err
