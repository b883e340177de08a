"""Figures of the report: posteriors against the reference, coverage, TARP, SBC ranks, losses.

Every function returns a ``matplotlib.figure.Figure`` built without ``pyplot``: no backend is
chosen for you, nothing is shown, and nothing stays alive in pyplot's figure registry. Save it
with ``fig.savefig(path)``.

The posteriors are drawn with ``sbi.analysis.pairplot`` (kernel density estimates on the diagonal,
68% and 95% contours above it), every method over the reference in black, on limits that follow
the *reference* (:func:`posterior_limits`), so a method several times too wide runs off the panel
instead of squeezing the reference into a spike.

Example:
    >>> import torch
    >>> ref = torch.randn(500, 2)
    >>> fig = plot_posteriors({"NPE": ref + 0.1}, ref, labels=["a", "b"])
    >>> len(fig.axes)
    4
    >>> posterior_limits(ref, bounds=[(-1.0, 1.0), (None, None)])[0]
    (-1.0, 1.0)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sbi.analysis import pairplot
from scipy.stats import binom, gaussian_kde
from torch import Tensor

from sbi_symmetry.evaluation.calibration import CalibrationResult

_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
#: Most samples per set that the density estimates of the corner plot use.
_KDE_SAMPLES = 2000
Bounds = Sequence[tuple[float | None, float | None]]


def prior_bounds(prior: Any) -> list[tuple[float | None, float | None]] | None:
    """Lower and upper bound of each parameter of ``prior``'s support (``None`` where unbounded).

    Args:
        prior: A torch distribution (e.g. sbi's ``BoxUniform``).

    Returns:
        One ``(low, high)`` per parameter, or ``None`` when the support names no bounds.

    Example:
        >>> from sbi.utils import BoxUniform
        >>> prior_bounds(BoxUniform(torch.zeros(2), torch.tensor([1.0, 2.0])))
        [(0.0, 1.0), (0.0, 2.0)]
    """
    support = getattr(prior, "support", None)
    base = getattr(support, "base_constraint", support)
    low, high = getattr(base, "lower_bound", None), getattr(base, "upper_bound", None)
    if low is None and high is None:
        return None
    shape = torch.as_tensor(low if low is not None else high).flatten().shape
    lows = torch.full(shape, -np.inf) if low is None else torch.as_tensor(low).flatten()
    highs = torch.full(shape, np.inf) if high is None else torch.as_tensor(high).flatten()
    return [
        (None if not np.isfinite(a) else float(a), None if not np.isfinite(b) else float(b))
        for a, b in zip(lows.tolist(), highs.tolist(), strict=True)
    ]


def posterior_limits(
    reference: Tensor | None,
    samples: Sequence[Tensor] = (),
    *,
    truth: Tensor | None = None,
    bounds: Bounds | None = None,
    widen: float = 1.0,
) -> list[tuple[float, float]]:
    """Axis limits per parameter that follow the reference, not the widest method.

    The central 99% interval of the reference (without one: the central 95% of all methods'
    samples pooled), widened by ``widen`` times its width on each side, stretched to show the
    true value, and clipped to the prior's bounds.

    Args:
        reference: Reference samples ``(m, d)``, or ``None``.
        samples: Other sample sets ``(n, d)`` (used only without a reference).
        truth: Optional true parameter ``(d,)``, kept inside the limits.
        bounds: Optional ``(low, high)`` per parameter (``None``: unbounded), e.g.
            :func:`prior_bounds`.
        widen: Margin on each side, in widths of the central interval.

    Returns:
        One ``(low, high)`` per parameter.
    """
    if reference is not None:
        base, q = reference.detach().double().cpu(), 0.005
    else:
        base, q = torch.cat([s.detach().double().cpu() for s in samples]), 0.025
    lo, hi = torch.quantile(base, q, dim=0), torch.quantile(base, 1 - q, dim=0)
    width = hi - lo
    width = torch.where(width > 0, width, 0.1 * lo.abs().clamp(min=1.0))
    lo, hi = lo - widen * width, hi + widen * width
    if truth is not None:
        t = truth.detach().double().cpu().flatten()
        lo, hi = torch.minimum(lo, t - 0.05 * width), torch.maximum(hi, t + 0.05 * width)
    limits = []
    for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
        low, high = bounds[i] if bounds is not None else (None, None)
        a, b = max(a, low) if low is not None else a, min(b, high) if high is not None else b
        limits.append((a, b) if b > a else (a - 0.5, a + 0.5))
    return limits


def plot_posteriors(
    samples: Mapping[str, Tensor],
    reference: Tensor | None,
    *,
    labels: Sequence[str],
    truth: Tensor | None = None,
    limits: Sequence[tuple[float, float]] | None = None,
    title: str | None = None,
    bounds: Bounds | None = None,
) -> Figure:
    """Posteriors of several methods over the reference, with sbi's pairplot (paper Fig. 3).

    Args:
        samples: Method name -> samples ``(n, d)``, one colour each.
        reference: Reference samples ``(m, d)`` drawn in black, or ``None``.
        labels: One axis label per parameter.
        truth: Optional true parameter ``(d,)``, a red cross (a red line on the diagonal).
        limits: Axis limits per parameter; default :func:`posterior_limits` (from the
            reference, clipped to ``bounds``), the same for every method.
        title: Optional figure title.
        bounds: The prior's ``(low, high)`` per parameter, to clip the default limits.

    Returns:
        The figure (``d x d`` axes: densities on the diagonal, contours above it, the legend
        below it).
    """
    d = len(labels)
    sets = {k: _thin(v) for k, v in samples.items()}
    if reference is not None:
        sets["reference"] = _thin(reference)
    colours = [_COLOURS[k % len(_COLOURS)] for k in range(len(samples))]
    colours += ["black"] if reference is not None else []
    if limits is None:
        limits = posterior_limits(reference, list(samples.values()), truth=truth, bounds=bounds)
    limits = [tuple(map(float, lim)) for lim in limits]
    t = None if truth is None else truth.detach().double().cpu().flatten().numpy()
    fig = Figure(figsize=(2.5 * d + 1.2, 2.5 * d + 0.4))
    if d == 1:
        _one_parameter(fig.subplots(), sets, colours, limits[0], labels[0], t)
    else:
        try:
            _pairplot(fig, sets, colours, limits, labels, t, smooth=True)
        except (np.linalg.LinAlgError, ValueError):  # a set too narrow for a density estimate
            fig = Figure(figsize=fig.get_size_inches())
            _pairplot(fig, sets, colours, limits, labels, t, smooth=False)
    if title:
        fig.suptitle(title)
    return fig


def _thin(samples: Tensor) -> np.ndarray:
    """At most ``_KDE_SAMPLES`` rows, as float64 numpy."""
    return samples.detach().double().cpu().numpy()[:_KDE_SAMPLES]


def _pairplot(
    fig: Figure,
    sets: Mapping[str, np.ndarray],
    colours: Sequence[str],
    limits: Sequence[tuple[float, float]],
    labels: Sequence[str],
    truth: np.ndarray | None,
    smooth: bool,
) -> None:
    """Draw ``sets`` on ``fig`` with sbi's pairplot (KDE and contours, or histograms)."""
    d = len(labels)
    axes = fig.subplots(d, d, squeeze=False)
    widths = [1.8 if name == "reference" else 1.3 for name in sets]
    points = [] if truth is None else [truth[None, :]]
    with warnings.catch_warnings():  # sbi hands numpy torch scalars (numpy 2 deprecation)
        warnings.filterwarnings("ignore", "__array_wrap__", DeprecationWarning)
        _sbi_pairplot(fig, axes, sets, colours, limits, labels, points, smooth, widths)
    for row in range(1, d):  # the empty cells below the diagonal hold the legend only
        for col in range(row):
            axes[row, col].set_xlabel("")


def _sbi_pairplot(
    fig: Figure,
    axes: Any,
    sets: Mapping[str, np.ndarray],
    colours: Sequence[str],
    limits: Sequence[tuple[float, float]],
    labels: Sequence[str],
    points: list[np.ndarray],
    smooth: bool,
    widths: Sequence[float],
) -> None:
    """One call of ``sbi.analysis.pairplot`` on our figure (no pyplot)."""
    if smooth:
        diag, upper = "kde", "contour"
        diag_kw = [
            {"bins": 200, "mpl_kwargs": {"color": c, "lw": w}}
            for c, w in zip(colours, widths, strict=True)
        ]
        upper_kw = [
            {"levels": [0.68, 0.95], "bins": 120, "mpl_kwargs": {"colors": c, "linewidths": w}}
            for c, w in zip(colours, widths, strict=True)
        ]
    else:
        diag, upper = "hist", "scatter"
        diag_kw = [{"mpl_kwargs": {"color": c, "bins": 40, "density": True}} for c in colours]
        upper_kw = [{"mpl_kwargs": {"color": c, "s": 2, "alpha": 0.3}} for c in colours]
    pairplot(
        list(sets.values()),
        points=points or None,
        limits=[list(lim) for lim in limits],
        labels=list(labels),
        diag=diag,
        upper=upper,
        lower=None,
        diag_kwargs=diag_kw,
        upper_kwargs=upper_kw,
        fig_kwargs={
            "legend": True,
            "samples_labels": list(sets),
            "samples_colors": list(colours),
            "points_labels": ["truth"],
            "points_colors": ["red"],
            "points_diag": {"ls": "--", "lw": 1},
            "points_offdiag": {"marker": "+", "markersize": 12, "mew": 2},
            "legend_kwargs": {"fontsize": 8},
            "fig_subplots_adjust": {"top": 0.92, "hspace": 0.45, "wspace": 0.25},
        },
        fig=fig,
        axes=axes,
    )


def _one_parameter(
    ax: Any,
    sets: Mapping[str, np.ndarray],
    colours: Sequence[str],
    limits: tuple[float, float],
    label: str,
    truth: np.ndarray | None,
) -> None:
    """A single parameter: one density estimate per set (sbi's pairplot needs two)."""
    grid = np.linspace(*limits, 200)
    for (name, s), colour in zip(sets.items(), colours, strict=True):
        values = s[:, 0]
        if np.ptp(values) > 0:
            ax.plot(grid, gaussian_kde(values)(grid), color=colour, label=name)
        else:
            ax.axvline(values[0], color=colour, label=name)
    if truth is not None:
        ax.axvline(truth[0], color="red", ls="--", lw=1, label="truth")
    ax.set_xlim(limits)
    ax.set_xlabel(label)
    ax.set_ylabel("posterior density")
    ax.legend(fontsize=8)


def plot_coverage(results: Mapping[str, CalibrationResult], *, labels: Sequence[str]) -> Figure:
    """Expected coverage (P-P) per parameter with 1-, 2-, 3-sigma binomial bands (Fig. 4).

    The bands are those of the method tested on the fewest pairs (the widest).

    Args:
        results: Method name -> calibration result.
        labels: One label per parameter.

    Returns:
        The figure, one panel per parameter.
    """
    d = len(labels)
    fig = Figure(figsize=(3.6 * d, 3.4))
    axes = fig.subplots(1, d, squeeze=False)
    for p, ax in enumerate(axes[0]):
        n = min(res.ranks.shape[0] for res in results.values())  # the widest bands
        grid = np.linspace(0, 1, 101)
        for z, shade in ((3, 0.12), (2, 0.2), (1, 0.3)):
            lo = binom.ppf(0.5 - 0.5 * _erf(z), n, grid) / n
            hi = binom.ppf(0.5 + 0.5 * _erf(z), n, grid) / n
            ax.fill_between(grid, lo, hi, color="grey", alpha=shade, lw=0)
        for k, (name, res) in enumerate(results.items()):
            ax.plot(res.alpha.numpy(), res.coverage[:, p].numpy(), color=_COLOURS[k], label=name)
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlabel("credibility level")
        ax.set_ylabel("empirical coverage")
        ax.set_title(labels[p])
    axes[0, 0].legend(fontsize=7, title=f"bands: {n} pairs", title_fontsize=7)
    fig.tight_layout()
    return fig


def plot_tarp(results: Mapping[str, CalibrationResult]) -> Figure:
    """TARP: expected coverage probability against credibility level, with the diagonal.

    A curve on the diagonal is calibrated; above it the posteriors are too wide (conservative),
    below it too narrow (overconfident). The legend gives each method's ATC (area to curve,
    0 is ideal) and TARP's KS p-value.

    Args:
        results: Method name -> calibration result (``tarp_ecp``, ``tarp_alpha``).

    Returns:
        The figure.
    """
    fig = Figure(figsize=(4.4, 4.0))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="ideal")
    for k, (name, res) in enumerate(results.items()):
        text = f"{name} (ATC {res.tarp_atc:+.2f}, KS p {format_pvalue(res.tarp_ks_pval)})"
        alpha = res.tarp_alpha.detach().cpu().numpy()
        ecp = res.tarp_ecp.detach().cpu().numpy()
        ax.plot(alpha, ecp, color=_COLOURS[k % len(_COLOURS)], label=text)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("credibility level")
    ax.set_ylabel("expected coverage probability (TARP)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def format_pvalue(p: float) -> str:
    """A p-value with two decimals, ``"<0.01"`` below 0.01 (never a misleading ``0.00``).

    Example:
        >>> format_pvalue(0.4567), format_pvalue(0.0004)
        ('0.46', '<0.01')
    """
    return "<0.01" if p < 0.01 else f"{p:.2f}"


def _erf(z: float) -> float:
    """Probability mass within ``z`` standard deviations of a Gaussian."""
    return float(torch.erf(torch.tensor(z / 2**0.5)))


def plot_sbc_ranks(
    results: Mapping[str, CalibrationResult], *, labels: Sequence[str], num_bins: int = 20
) -> Figure:
    """SBC rank histograms per method and parameter with the 99% band of uniform ranks.

    Args:
        results: Method name -> calibration result.
        labels: One label per parameter.
        num_bins: Histogram bins.

    Returns:
        The figure (methods in rows, parameters in columns).
    """
    names = list(results)
    d = len(labels)
    fig = Figure(figsize=(3.2 * d, 2.4 * len(names)))
    axes = fig.subplots(len(names), d, squeeze=False)
    for r, name in enumerate(names):
        res = results[name]
        n = res.ranks.shape[0]
        lo, hi = binom.ppf([0.005, 0.995], n, 1 / num_bins)
        for p in range(d):
            ax = axes[r, p]
            ax.axhspan(lo, hi, color="grey", alpha=0.3, lw=0)
            ax.hist(
                res.ranks[:, p].numpy(),
                bins=num_bins,
                range=(0, res.num_posterior_samples),
                color=_COLOURS[r % len(_COLOURS)],
            )
            ax.set_title(f"{name}: {labels[p]}", fontsize=9)
            ax.set_yticks([])
            if r == len(names) - 1:
                ax.set_xlabel(f"rank among {res.num_posterior_samples} posterior samples")
    fig.tight_layout()
    return fig


def plot_loss_curves(
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    ylabels: Mapping[str, str] | None = None,
    titles: Mapping[str, str] | None = None,
) -> Figure:
    """Training (solid) and validation (dashed) loss per epoch, one panel per model.

    Args:
        histories: Model name -> ``{"train": [...], "validation": [...]}``.
        ylabels: Optional y-axis label per model (default ``"loss"``).
        titles: Optional panel title per model (default: the name).

    Returns:
        The figure.
    """
    names = list(histories)
    fig = Figure(figsize=(3.8 * len(names), 3.2))
    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        h = histories[name]
        for key, style in (("train", "-"), ("validation", "--")):
            values = list(h.get(key, []))
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=key)
        ax.set_title((titles or {}).get(name, name), fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel((ylabels or {}).get(name, "loss"), fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
