r"""Reference posterior by nested sampling (``bilby`` + ``dynesty``) with the shift left free.

The sampler explores ``(theta, shift)`` under the task's own uniform priors with the Gaussian
likelihood of ``task.log_likelihood``,

.. math::

    \log p(x_o \mid \theta, s) = -\frac{L}{2}\log(2\pi\sigma^2)
    - \frac{1}{2\sigma^2} \sum_i \bigl(x_i - h(\theta; t_i - s)\bigr)^2,

written in numpy through ``task.waveform`` (which accepts numpy arrays). Dropping the shift
column of the posterior samples marginalises it. Unlike the published set-up, the shift is
**never** fixed at its true value.

``bilby`` writes files (a dynesty pickle, and checkpoints unless told otherwise): every run gets
its own temporary directory as ``outdir``, checkpointing, result saving and plots are off, and
the directory is deleted afterwards, so nothing is left in the working directory.

Example:
    >>> import torch
    >>> from sbi_symmetry.tasks import DampedOscillator
    >>> task = DampedOscillator()
    >>> g = torch.Generator().manual_seed(0)
    >>> x_o = task.simulate(torch.tensor([[1.0, 0.3]]), torch.tensor([[0.5]]), generator=g)
    >>> ref = nested_sampling_posterior(task, x_o, num_samples=40, nlive=50, dlogz=1.0)
    >>> ref.samples.shape, ref.method
    (torch.Size([40, 2]), 'dynesty')
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import Any

import bilby
import numpy as np
import torch
from bilby.core.utils import random as bilby_random
from torch import Tensor

from sbi_symmetry._validation import check_int, check_positive
from sbi_symmetry.reference.protocol import SignalModel
from sbi_symmetry.reference.result import ReferencePosterior

#: Name of the nuisance parameter in the sampler.
SHIFT = "shift"


class ShiftedSignalLikelihood(bilby.Likelihood):
    """Gaussian likelihood ``p(x_o | theta, shift)`` of a signal-in-noise task, for ``bilby``.

    Args:
        task: The task (its ``waveform``, time grid and noise level are used).
        x_o: One observation, shape ``(L,)`` or ``(1, L)``.
    """

    def __init__(self, task: SignalModel, x_o: Tensor) -> None:
        super().__init__()
        self.task = task
        self.names = tuple(task.parameter_names)
        self.x = task.check_observation(x_o).detach().to("cpu", torch.float64).numpy()[0]
        self.times = task.times.detach().to("cpu", torch.float64).numpy()
        self.scale = 0.5 / task.noise_std**2
        self.log_norm = -0.5 * task.num_samples * math.log(2 * math.pi * task.noise_std**2)

    def log_likelihood(self, parameters: dict[str, float] | None = None) -> float:
        """``log p(x_o | theta, shift)`` at ``parameters`` (a dict with every name and shift)."""
        if parameters is None:
            raise ValueError("`parameters` must map each parameter name and 'shift' to a value.")
        theta = np.array([parameters[name] for name in self.names], dtype=np.float64)
        signal = self.task.waveform(theta, self.times - float(parameters[SHIFT]))
        return float(self.log_norm - self.scale * np.sum((self.x - signal) ** 2))

    def log_likelihood_ratio(self, parameters: dict[str, float] | None = None) -> float:
        """Not used (``use_ratio=False``): the plain log-likelihood."""
        return self.log_likelihood(parameters)


def bilby_priors(task: SignalModel) -> bilby.core.prior.PriorDict:
    """``bilby`` uniform priors identical to the task's ``theta`` and shift priors.

    Args:
        task: The task.

    Returns:
        A ``PriorDict`` over the parameter names and ``"shift"``.

    Example:
        >>> from sbi_symmetry.tasks import SineGaussian
        >>> sorted(bilby_priors(SineGaussian()))
        ['f0', 'shift', 'tau']
    """
    priors = bilby.core.prior.PriorDict()
    bounds = zip(task.parameter_names, task.theta_low, task.theta_high, strict=True)
    for name, low, high in bounds:
        priors[name] = bilby.core.prior.Uniform(float(low), float(high), name=name)
    low, high = float(task.nuisance_low[0]), float(task.nuisance_high[0])
    priors[SHIFT] = bilby.core.prior.Uniform(low, high, name=SHIFT)
    return priors


@contextlib.contextmanager
def _quiet_seeded_bilby(seed: int, verbose: bool) -> Iterator[None]:
    """Seed bilby's global generator and lower its logging; restore both afterwards."""
    logger = logging.getLogger("bilby")
    old_level, old_rng = logger.level, bilby_random.Generator.rng
    if not verbose:
        logger.setLevel(logging.WARNING)
    bilby_random.Generator.rng = np.random.default_rng(seed)
    try:
        yield
    finally:
        logger.setLevel(old_level)
        bilby_random.Generator.rng = old_rng


def nested_sampling_posterior(
    task: SignalModel,
    x_o: Tensor,
    num_samples: int = 10_000,
    seed: int = 0,
    nlive: int = 500,
    dlogz: float = 0.1,
    sample: str = "act-walk",
    verbose: bool = False,
    **sampler_kwargs: Any,
) -> ReferencePosterior:
    """Posterior ``p(theta | x_o)`` from ``bilby`` + ``dynesty`` with the shift sampled freely.

    dynesty returns weighted nested samples. Rejection sampling turns them into independent,
    equally weighted samples (their number is ``settings["independent_samples"]``, close to the
    effective sample size ``settings["effective_samples"] = (sum w)^2 / sum w^2``). If there
    are at least ``num_samples`` of them a random subset is returned; otherwise the samples are
    **resampled with replacement** (probability = weight) to ``num_samples``, so some repeat.
    Use ``num_samples <= settings["independent_samples"]`` where repeats matter (e.g. a C2ST,
    whose classifier can recognise repeated points).

    Args:
        task: A signal-in-noise task with a single uniform shift nuisance.
        x_o: One observation, shape ``(L,)`` or ``(1, L)``.
        num_samples: Number of posterior samples to return.
        seed: Seeds dynesty's ``rstate``, bilby's global generator (initial live points) and
            the resampling, so a rerun gives identical samples.
        nlive: Number of live points.
        dlogz: dynesty's stopping criterion on the remaining evidence.
        sample: dynesty/bilby sampling method (bilby's default ``"act-walk"``).
        verbose: Keep bilby's info logging and dynesty's progress output.
        **sampler_kwargs: Passed on to ``bilby.run_sampler`` (e.g. ``bound``, ``nact``).

    Returns:
        A :class:`ReferencePosterior` with ``method="dynesty"``, dynesty's log-evidence and its
        error, and the number of likelihood calls of the sampler.
    """
    check_int(num_samples, "num_samples", 1)
    check_int(nlive, "nlive", 1)
    check_positive(dlogz, "dlogz")
    likelihood = ShiftedSignalLikelihood(task, x_o)
    priors = bilby_priors(task)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sbi-symmetry-dynesty-") as outdir:
        with _quiet_seeded_bilby(seed, verbose):
            result = bilby.run_sampler(
                likelihood=likelihood,
                priors=priors,
                sampler="dynesty",
                outdir=outdir,
                label="reference",
                nlive=nlive,
                dlogz=dlogz,
                sample=sample,
                rstate=np.random.default_rng(seed),
                use_ratio=False,
                save=False,
                plot=False,
                check_point=False,
                check_point_plot=False,
                resume=False,
                print_progress=verbose,
                **sampler_kwargs,
            )
    wall = time.perf_counter() - start

    nested = result.nested_samples
    points = nested[list(task.parameter_names)].to_numpy(dtype=np.float64)
    weights = nested["weights"].to_numpy(dtype=np.float64)
    theta, independent = _equal_weight_samples(points, weights, num_samples, seed)
    if independent < num_samples:
        warnings.warn(
            f"num_samples={num_samples} exceeds the {independent} independent samples of this "
            "dynesty run, so they were resampled with replacement and some repeat; repeats make "
            "a C2ST against these samples too high. Ask for fewer samples or raise nlive.",
            UserWarning,
            stacklevel=3,
        )
    settings: dict[str, Any] = {
        "nlive": nlive,
        "dlogz": dlogz,
        "sample": sample,
        **{key: _jsonable(value) for key, value in sampler_kwargs.items()},
        "num_nested_samples": len(weights),
        "effective_samples": float(weights.sum() ** 2 / np.sum(weights**2)),
        "independent_samples": independent,
        "dynesty_version": _dynesty_version(),
        "bilby_version": bilby.__version__,
    }
    return ReferencePosterior(
        samples=torch.from_numpy(theta).to(torch.float32),
        log_evidence=float(result.log_evidence),
        log_evidence_error=float(result.log_evidence_err),
        method="dynesty",
        wall_time_s=wall,
        num_likelihood_evaluations=int(result.num_likelihood_evaluations),
        settings=settings,
    )


def _equal_weight_samples(
    points: np.ndarray, weights: np.ndarray, num_samples: int, seed: int
) -> tuple[np.ndarray, int]:
    """Equally weighted draws from weighted nested samples, and the number of independent ones.

    Rejection sampling (keep point ``i`` with probability ``w_i / max w``) gives independent,
    equally weighted samples. If there are at least ``num_samples`` of them, a random subset
    without replacement is returned (no repeats); otherwise ``num_samples`` points are drawn
    with replacement with probability ``w_i / sum w``, so some repeat.
    """
    rng = np.random.default_rng(seed)
    keep = weights > rng.uniform(0.0, weights.max(), weights.shape)
    pool = points[keep]
    if pool.shape[0] >= num_samples:
        return pool[rng.choice(pool.shape[0], num_samples, replace=False)], int(pool.shape[0])
    rows = rng.choice(points.shape[0], num_samples, replace=True, p=weights / weights.sum())
    return points[rows], int(pool.shape[0])


def _jsonable(value: Any) -> Any:
    """Numbers, strings, booleans, None and lists of them pass; anything else becomes ``repr``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return repr(value)


def _dynesty_version() -> str:
    import dynesty

    return str(dynesty.__version__)
