"""Figures of the report: posteriors against the reference, coverage, SBC ranks, loss curves.

Every function returns a ``matplotlib.figure.Figure`` built without ``pyplot``: no backend is
chosen for you, nothing is shown, and nothing stays alive in pyplot's figure registry. Save it
with ``fig.savefig(path)``.

Example:
    >>> import torch
    >>> ref = torch.randn(500, 2)
    >>> fig = plot_posteriors({"NPE": ref + 0.1}, ref, labels=["a", "b"])
    >>> len(fig.axes)
    4
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.stats import binom
from torch import Tensor

from sbi_symmetry.evaluation.calibration import CalibrationResult

_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def plot_posteriors(
    samples: Mapping[str, Tensor],
    reference: Tensor | None,
    *,
    labels: Sequence[str],
    truth: Tensor | None = None,
    limits: Sequence[tuple[float, float]] | None = None,
    title: str | None = None,
) -> Figure:
    """Corner plot of several posteriors over the reference (the paper's Fig. 3).

    Args:
        samples: Method name -> samples ``(n, d)``.
        reference: Reference samples ``(m, d)`` drawn in black, or ``None``.
        labels: One axis label per parameter.
        truth: Optional true parameter ``(d,)`` marked in every panel.
        limits: Optional axis limits per parameter; defaults to the pooled 0.5-99.5% range.
        title: Optional figure title.

    Returns:
        The figure.
    """
    d = len(labels)
    sets = {k: v.detach().double().cpu().numpy() for k, v in samples.items()}
    ref = None if reference is None else reference.detach().double().cpu().numpy()
    pooled = np.concatenate([*sets.values(), *([] if ref is None else [ref])])
    if limits is None:
        lo, hi = np.percentile(pooled, 0.5, axis=0), np.percentile(pooled, 99.5, axis=0)
        pad = 0.1 * (hi - lo + 1e-12)
        limits = [(float(a - p), float(b + p)) for a, b, p in zip(lo, hi, pad, strict=True)]
    fig = Figure(figsize=(2.6 * d + 0.6, 2.6 * d))
    axes = fig.subplots(d, d, squeeze=False)
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            entries = [*sets.items()] + ([("reference", ref)] if ref is not None else [])
            for k, (name, s) in enumerate(entries):
                colour = "black" if name == "reference" else _COLOURS[k % len(_COLOURS)]
                if i == j:
                    bins = np.linspace(*limits[i], 40)
                    ax.hist(
                        s[:, i],
                        bins=bins,
                        density=True,
                        histtype="step",
                        color=colour,
                        label=name,
                        lw=1.5 if name == "reference" else 1.2,
                    )
                else:
                    ax.scatter(
                        s[:2000, j], s[:2000, i], s=1.0, alpha=0.25, color=colour, rasterized=True
                    )
            if truth is not None:
                t = truth.detach().double().cpu().flatten().numpy()
                if i == j:
                    ax.axvline(t[i], color="red", ls="--", lw=1)
                else:
                    ax.plot(t[j], t[i], "r+", ms=10)
            ax.set_xlim(limits[j])
            if i != j:
                ax.set_ylim(limits[i])
            if i == d - 1:
                ax.set_xlabel(labels[j])
            if j == 0 and i > 0:
                ax.set_ylabel(labels[i])
            if i == j:
                ax.set_yticks([])
    axes[0, 0].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_coverage(results: Mapping[str, CalibrationResult], *, labels: Sequence[str]) -> Figure:
    """Expected coverage (P-P) per parameter with 1-, 2-, 3-sigma binomial bands (Fig. 4).

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
        n = next(iter(results.values())).ranks.shape[0]
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
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


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
    fig.tight_layout()
    return fig


def plot_loss_curves(histories: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """Training (solid) and validation (dashed) loss per epoch, one panel per model.

    Args:
        histories: Model name -> ``{"train": [...], "validation": [...]}``.

    Returns:
        The figure.
    """
    names = list(histories)
    fig = Figure(figsize=(3.6 * len(names), 3.0))
    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        h = histories[name]
        for key, style in (("train", "-"), ("validation", "--")):
            values = list(h.get(key, []))
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=key)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
