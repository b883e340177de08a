r"""Calibration with ``sbi``'s own diagnostics: SBC ranks, expected coverage and TARP.

For a test pair ``(theta*, x*)`` drawn from the joint, the SBC rank of each parameter is the
number of posterior samples below ``theta*``; for a calibrated posterior the ranks are uniform.
The central credible interval of level ``alpha`` of a marginal contains ``theta*`` exactly when
``|u - 1/2| <= alpha / 2`` with ``u = (rank + 1/2) / (N + 1)`` (the rank's mid-point on
``[0, 1]`` for ``N`` samples), so the expected coverage curve (the P-P plot of the
symmetry-embedding paper's Fig. 4) is read off the same ranks at no extra cost. TARP (Lemos et al.
2023) adds a joint, distance-based coverage test.

Example:
    >>> import torch
    >>> ranks = torch.randint(0, 101, (500, 2))
    >>> alpha, cov = coverage_from_ranks(ranks, 100)
    >>> cov.shape
    torch.Size([21, 2])
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from sbi.diagnostics import check_sbc, check_tarp, run_sbc, run_tarp
from sbi.inference.posteriors.direct_posterior import DirectPosterior
from torch import Tensor
from torch.distributions import Distribution

from sbi_symmetry._random import seeded

#: Messages of sbi's ``sample_batched`` warnings about its own batching, silenced in ``calibrate``.
_SBI_BATCHING_NOTES = (
    "Capping max_sampling_batch_size",
    "Note that for batched sampling, we use num_chains many chains",
)


def coverage_from_ranks(
    ranks: Tensor, num_posterior_samples: int, num_levels: int = 21
) -> tuple[Tensor, Tensor]:
    """Empirical coverage of central credible intervals, per parameter.

    Args:
        ranks: SBC ranks, shape ``(N, d)``, values in ``[0, num_posterior_samples]``.
        num_posterior_samples: Samples per posterior used for the ranks.
        num_levels: Number of credibility levels in ``[0, 1]``.

    Returns:
        ``alpha`` of shape ``(num_levels,)`` and coverage of shape ``(num_levels, d)``.
    """
    alpha = torch.linspace(0, 1, num_levels, dtype=torch.float64)
    u = (ranks.double() + 0.5) / (num_posterior_samples + 1)
    inside = (u[None] - 0.5).abs() <= alpha[:, None, None] / 2
    return alpha, inside.double().mean(1)


@dataclass
class CalibrationResult:
    """SBC, expected-coverage and TARP results for one posterior.

    Attributes:
        ranks: SBC ranks, ``(N, d)``.
        ks_pvals: Kolmogorov-Smirnov p-values of rank uniformity, one per parameter.
        c2st_ranks: C2ST between ranks and uniform ranks, one per parameter (0.5 is ideal).
        alpha: Credibility levels of the coverage curve.
        coverage: Empirical coverage per level and parameter, ``(levels, d)``.
        tarp_atc: TARP area-to-curve (0 ideal; > 0 too wide, < 0 too narrow).
        tarp_ks_pval: TARP Kolmogorov-Smirnov p-value.
        tarp_ecp, tarp_alpha: The TARP coverage curve.
        num_posterior_samples: Samples per posterior.
    """

    ranks: Tensor
    ks_pvals: Tensor
    c2st_ranks: Tensor
    alpha: Tensor
    coverage: Tensor
    tarp_atc: float
    tarp_ks_pval: float
    tarp_ecp: Tensor
    tarp_alpha: Tensor
    num_posterior_samples: int
    extra: dict[str, Any] = field(default_factory=dict)

    def is_calibrated(self, level: float = 0.05) -> bool:
        """No significant deviation: every KS p-value above ``level / d`` (Bonferroni).

        Args:
            level: Family-wise significance level.

        Returns:
            ``True`` when uniformity is not rejected for any parameter.
        """
        return bool((self.ks_pvals > level / self.ks_pvals.numel()).all())

    def max_coverage_error(self) -> float:
        """Largest absolute gap between empirical coverage and nominal level."""
        return float((self.coverage - self.alpha[:, None]).abs().max())

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no per-pair ranks)."""
        return {
            "num_pairs": int(self.ranks.shape[0]),
            "num_posterior_samples": self.num_posterior_samples,
            "ks_pvals": [float(v) for v in self.ks_pvals],
            "c2st_ranks": [float(v) for v in self.c2st_ranks],
            "calibrated": self.is_calibrated(),
            "max_coverage_error": self.max_coverage_error(),
            "tarp_atc": self.tarp_atc,
            "tarp_ks_pval": self.tarp_ks_pval,
        }


def sampling_time_limit(posterior: Any, seconds: float | None) -> dict[str, float]:
    """``{"max_sampling_time": seconds}`` for posteriors that accept it (sbi's NPE), else ``{}``.

    Args:
        posterior: An sbi posterior.
        seconds: The limit, or ``None`` for none.

    Returns:
        Keyword arguments for ``sample`` / ``sample_batched``.
    """
    if seconds is None or not isinstance(posterior, DirectPosterior):
        return {}
    return {"max_sampling_time": seconds}


class _Replay:
    """Posterior stand-in that hands sbi's diagnostics samples already drawn for ``xs``.

    ``run_sbc`` and ``run_tarp`` each call ``posterior.sample_batched``; replaying one draw lets
    both run unchanged on the same samples, so an expensive (MCMC) posterior is sampled once.
    """

    def __init__(self, samples: Tensor, xs: Tensor) -> None:
        self.samples, self.xs = samples, xs

    def sample_batched(self, sample_shape: Any, x: Tensor, **_: Any) -> Tensor:
        if x.shape != self.xs.shape or not torch.equal(x, self.xs):
            raise RuntimeError("internal: replayed samples were drawn for other observations")
        return self.samples[: int(torch.Size(sample_shape).numel())]


def calibrate(
    posterior: Any,
    prior: Distribution,
    thetas: Tensor,
    xs: Tensor,
    *,
    num_posterior_samples: int = 500,
    samples: Tensor | None = None,
    show_progress_bar: bool = False,
    seed: int = 0,
    max_sampling_time: float | None = None,
    sample_kwargs: dict[str, Any] | None = None,
) -> CalibrationResult:
    """Run SBC (``run_sbc``/``check_sbc``) and TARP (``run_tarp``/``check_tarp``) from ``sbi``.

    The posterior is sampled once with ``posterior.sample_batched`` and both diagnostics are
    computed from those samples.

    Args:
        posterior: Any sbi posterior with ``sample_batched`` (NPE, MCMC, VI, ...).
        prior: The prior the test pairs were drawn from.
        thetas: True parameters, ``(N, d)``, drawn from ``prior``.
        xs: Their simulations, ``(N, *x_shape)``.
        num_posterior_samples: Posterior samples per test pair.
        samples: Optional samples already drawn, ``(num_posterior_samples, N, d)``.
        show_progress_bar: Show sbi's progress bars.
        seed: Seed of torch's and numpy's global generators (sbi's samplers draw from them)
            for sampling and for TARP's reference points; the caller's state is restored.
        max_sampling_time: For NPE posteriors (rejection of samples outside the prior), give up
            with sbi's RuntimeError after this many seconds instead of waiting indefinitely when
            almost all the flow's mass leaks out of the prior.
        sample_kwargs: Extra arguments of ``posterior.sample_batched``, e.g. ``num_chains``
            for MCMC posteriors (sbi runs that many chains for *every* observation).

    Returns:
        A :class:`CalibrationResult`; its ``extra["samples"]`` holds the posterior samples.
    """
    if thetas.ndim != 2 or thetas.shape[0] != xs.shape[0]:
        raise ValueError(
            "`thetas` must be (N, d) and `xs` must have the same number of rows; got "
            f"{tuple(thetas.shape)} and {tuple(xs.shape)}."
        )
    given = samples is not None
    with seeded(seed):  # torch and numpy (sbi's slice sampler); restored afterwards
        if samples is None:
            with warnings.catch_warnings():
                # sbi's notes on its own batching choices (a capped sampling batch; one set of MCMC
                # chains per observation) say nothing about the result; keep the output readable.
                for note in _SBI_BATCHING_NOTES:
                    warnings.filterwarnings("ignore", message=note, category=UserWarning)
                samples = posterior.sample_batched(
                    (num_posterior_samples,),
                    x=xs,
                    show_progress_bars=show_progress_bar,
                    **sampling_time_limit(posterior, max_sampling_time),
                    **(sample_kwargs or {}),
                )
        expected = (num_posterior_samples, thetas.shape[0], thetas.shape[1])
        if tuple(samples.shape) != expected:
            source = "`samples` must have" if given else "posterior.sample_batched should return"
            raise ValueError(
                f"{source} shape {expected} (num_posterior_samples, N, d of `thetas`); got "
                f"{tuple(samples.shape)}."
            )
        replay = _Replay(samples, xs)
        ranks, dap = run_sbc(
            thetas, xs, replay, num_posterior_samples=num_posterior_samples, show_progress_bar=False
        )
        checks = check_sbc(ranks, prior.sample((thetas.shape[0],)), dap, num_posterior_samples)
        alpha, coverage = coverage_from_ranks(ranks, num_posterior_samples)
        ecp, tarp_alpha = run_tarp(
            thetas, xs, replay, num_posterior_samples=num_posterior_samples, show_progress_bar=False
        )
        atc, ks = check_tarp(ecp, tarp_alpha)
    return CalibrationResult(
        ranks=ranks,
        ks_pvals=checks["ks_pvals"],
        c2st_ranks=checks["c2st_ranks"],
        alpha=alpha,
        coverage=coverage,
        tarp_atc=float(atc),
        tarp_ks_pval=float(ks),
        tarp_ecp=ecp,
        tarp_alpha=tarp_alpha,
        num_posterior_samples=num_posterior_samples,
        extra={"samples": samples},
    )
