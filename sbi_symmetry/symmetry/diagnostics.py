"""Diagnostics of a symmetry embedding: invariance, collapse, and a picture of the summaries.

Invariance error. For a batch of inputs, two views ``a`` and ``b`` share the intrinsic
parameters and differ in nuisance and noise. With summaries ``z_a = f(a)`` and ``z_b = f(b)``,

    invariance_error = mean_i ||z_a,i - z_b,i||^2 / sum_d Var_d(z),

where ``Var_d`` is the (population) variance of dimension ``d`` over the pooled summaries
``z = [z_a; z_b]`` of the whole batch. It is 0 when the summaries ignore the nuisance and the
noise entirely, and about 2 when the two views' summaries are independent: for independent
``z_a, z_b`` with covariance ``S``, ``E||z_a - z_b||^2 = 2 tr S`` while the pooled variance is
``tr S``. Dividing by the spread of the summaries over the batch makes it invariant to the
scale of the summaries, and makes a collapsed (constant) embedding undefined rather than
"perfect".

Collapse statistics. The per-dimension standard deviation of the summaries (a dimension near 0
is collapsed) and the effective rank ``exp(H(p))`` with ``p_k = s_k / sum_j s_j`` the
normalised singular values of the centred summary matrix (Roy & Vetterli 2007): it is ``D``
when all ``D`` directions carry equal spread and 1 when the summaries lie on a line.

Example:
    >>> import torch
    >>> z = torch.randn(500, 3)
    >>> stats = collapse_statistics(z)
    >>> 2.8 < stats["effective_rank"] <= 3.0
    True
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from sbi_symmetry._validation import check_finite, check_int, check_tensor


def collapse_statistics(z: Tensor) -> dict[str, Any]:
    """Per-dimension spread and effective rank of a batch of summaries.

    Args:
        z: Summaries of shape ``(n, D)``, ``n >= 2``.

    Returns:
        ``{"std": [D floats], "min_std": float, "effective_rank": float}``; the effective rank
        is in ``[1, min(n, D)]``, or 0 for summaries that are all identical.

    Example:
        >>> import torch
        >>> line = torch.linspace(0, 1, 20)[:, None] * torch.tensor([[1.0, 2.0]])
        >>> round(collapse_statistics(line)["effective_rank"], 6)
        1.0
    """
    check_tensor(z, "z")
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"`z` must have shape (n, D) with n >= 2; got {tuple(z.shape)}.")
    check_finite(z, "z")
    z64 = z.detach().double()
    std = z64.std(dim=0)
    singular = torch.linalg.svdvals(z64 - z64.mean(dim=0))
    total = singular.sum()
    if float(total) <= 0.0:
        rank = 0.0
    else:
        p = singular / total
        p = p[p > 0]
        rank = math.exp(float(-(p * p.log()).sum()))
    return {"std": std.tolist(), "min_std": float(std.min()), "effective_rank": rank}


def invariance_error(embedding: nn.Module, views: Any, batch: Tensor) -> float:
    """Mean squared distance between two views' summaries over the summaries' total variance.

    0 means perfect invariance, about 2 none (see the module docstring). The embedding is run
    in eval mode without gradients; its train/eval mode is restored afterwards.

    Args:
        embedding: Module mapping data ``(n, ...)`` to summaries ``(n, D)``.
        views: A ``Views`` object: ``views(batch) -> (view_a, view_b)``.
        batch: What ``views`` takes: parameters ``theta`` for ``input_kind == "theta"`` or data
            ``x`` for ``"x"``; at least 2 rows (a few hundred for a stable estimate).

    Returns:
        The invariance error, or NaN (with a warning) if the summaries do not vary at all.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class SameTwice:
        ...     input_kind = "x"
        ...     def __call__(self, x):
        ...         return x, x.clone()
        >>> invariance_error(nn.Linear(4, 2), SameTwice(), torch.randn(50, 4))
        0.0
    """
    if not isinstance(embedding, nn.Module):
        raise TypeError(f"`embedding` must be a torch.nn.Module, got {type(embedding).__name__}.")
    if not callable(views):
        raise TypeError(f"`views` must be callable (a Views object), got {type(views).__name__}.")
    check_tensor(batch, "batch")
    if batch.ndim < 1 or batch.shape[0] < 2:
        raise ValueError(f"`batch` needs at least 2 rows; got shape {tuple(batch.shape)}.")
    was_training = embedding.training
    embedding.eval()
    try:
        with torch.no_grad():
            view_a, view_b = views(batch)
            if view_a.shape != view_b.shape:
                raise ValueError(
                    f"The two views have different shapes {tuple(view_a.shape)} and "
                    f"{tuple(view_b.shape)}."
                )
            z_a, z_b = embedding(view_a), embedding(view_b)
    finally:
        embedding.train(was_training)
    return summary_invariance(z_a, z_b)


def summary_invariance(z_a: Tensor, z_b: Tensor) -> float:
    """The invariance error of given summaries of paired views (see :func:`invariance_error`).

    Args:
        z_a: Summaries of the first views, shape ``(n, D)``.
        z_b: Summaries of the second views, same shape; row ``i`` pairs with ``z_a[i]``.

    Returns:
        ``mean_i ||z_a,i - z_b,i||^2 / sum_d Var_d([z_a; z_b])``, or NaN (with a warning) when
        the summaries are constant.

    Example:
        >>> import torch
        >>> z = torch.randn(2000, 3)
        >>> 1.8 < summary_invariance(z, torch.randn(2000, 3)) < 2.2
        True
        >>> summary_invariance(z, z)
        0.0
    """
    check_tensor(z_a, "z_a")
    check_tensor(z_b, "z_b")
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            f"`z_a` and `z_b` must both have shape (n, D); got {tuple(z_a.shape)} and "
            f"{tuple(z_b.shape)}."
        )
    check_finite(z_a, "z_a")
    check_finite(z_b, "z_b")
    z_a, z_b = z_a.detach().double(), z_b.detach().double()
    distance = ((z_a - z_b) ** 2).sum(dim=1).mean()
    spread = torch.cat([z_a, z_b]).var(dim=0, unbiased=False).sum()
    if float(spread) == 0.0:
        warnings.warn(
            "The summaries are constant over the batch (a collapsed embedding): the invariance "
            "error is undefined; returning NaN.",
            UserWarning,
            stacklevel=2,
        )
        return float("nan")
    return float(distance / spread)


def plot_summaries(
    embedding: nn.Module,
    task_or_views: Any,
    thetas: Tensor,
    num_nuisance: int = 200,
    ax: Any = None,
    dims: tuple[int, ...] | None = None,
) -> Any:
    """Scatter the summaries of a few fixed ``theta`` under random nuisance (the paper's Fig. 2).

    For each row of ``thetas``, ``num_nuisance`` data sets are simulated with fresh nuisance and
    noise and embedded; each ``theta`` gets one colour. A good symmetry embedding shows one
    tight cluster per ``theta``.

    Args:
        embedding: Module mapping data to summaries ``(n, D)``.
        task_or_views: A task (anything with ``simulate(theta)`` drawing the nuisance itself,
            e.g. ``DampedOscillator``) or a ``Views`` object with ``input_kind == "theta"``
            (its first view is used).
        thetas: Parameters of shape ``(k, theta_dim)``, one cluster each.
        num_nuisance: Draws of nuisance and noise per ``theta``.
        ax: Optional matplotlib axes to draw into (a 3-D axes for a 3-D scatter). Without it a
            new figure is made: 3-D for ``D = 3``, 2-D for ``D = 2``, a grid of pairwise
            scatters for ``D > 3`` and a strip plot for ``D = 1``.
        dims: Which summary dimensions to show (default: all, at most 4 in the pairwise grid).

    Returns:
        The matplotlib ``Figure`` (``plt.show`` is never called).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from sbi_symmetry.tasks import DampedOscillator
        >>> task = DampedOscillator()
        >>> emb = nn.Linear(200, 3)
        >>> fig = plot_summaries(emb, task, task.sample_prior(3), num_nuisance=20)
        >>> len(fig.axes)
        1
    """
    from matplotlib.figure import Figure

    check_tensor(thetas, "thetas")
    if thetas.ndim != 2 or thetas.shape[0] < 1:
        raise ValueError(f"`thetas` must have shape (k, theta_dim); got {tuple(thetas.shape)}.")
    check_int(num_nuisance, "num_nuisance", 1)
    summaries = _summaries_per_theta(embedding, task_or_views, thetas, num_nuisance)
    width = summaries.shape[-1]
    shown = tuple(range(min(width, 4))) if dims is None else tuple(dims)
    if not shown or any(not 0 <= d < width for d in shown):
        raise ValueError(f"`dims` must index the {width} summary dimensions; got {dims!r}.")
    labels = [_theta_label(t) for t in thetas.tolist()]
    colours = [f"C{k % 10}" for k in range(len(labels))]

    if ax is not None:
        fig = ax.figure
        _scatter(ax, summaries, shown[:3] if ax.name == "3d" else shown[:2], colours, labels)
        return fig
    if len(shown) == 3:
        fig = Figure(figsize=(6, 5))
        axes = fig.add_subplot(projection="3d")
        _scatter(axes, summaries, shown, colours, labels)
    elif len(shown) <= 2:
        fig = Figure(figsize=(5, 4))
        _scatter(fig.add_subplot(), summaries, shown, colours, labels)
    else:
        n = len(shown)
        fig = Figure(figsize=(2.6 * (n - 1), 2.6 * (n - 1)), layout="constrained")
        grid = fig.subplots(n - 1, n - 1, squeeze=False)
        for row in range(1, n):
            for col in range(n - 1):
                axes = grid[row - 1][col]
                if col >= row:
                    axes.set_visible(False)
                    continue
                _scatter(axes, summaries, (shown[col], shown[row]), colours, None)
        fig.legend(  # in the empty upper-right triangle of the grid
            handles=[
                grid[0][0].scatter([], [], s=8, color=c, label=lab)
                for c, lab in zip(colours, labels, strict=True)
            ],
            fontsize="small",
            loc="upper right",
        )
    fig.suptitle("Summaries of fixed θ under random nuisance")
    return fig


def _summaries_per_theta(
    embedding: nn.Module, source: Any, thetas: Tensor, num_nuisance: int
) -> Tensor:
    repeated = thetas.repeat_interleave(num_nuisance, dim=0)
    if getattr(source, "input_kind", None) == "theta":
        data = source(repeated)[0]
    elif callable(getattr(source, "simulate", None)):
        data = source.simulate(repeated)
    else:
        raise TypeError(
            "`task_or_views` must be a task with simulate(theta) or a Views object with "
            f"input_kind == 'theta'; got {type(source).__name__}."
        )
    was_training = embedding.training
    embedding.eval()
    try:
        with torch.no_grad():
            z = embedding(data)
    finally:
        embedding.train(was_training)
    check_tensor(z, "embedding(x)")
    if z.ndim != 2:
        raise ValueError(f"The embedding must return (n, D) summaries; got {tuple(z.shape)}.")
    return z.detach().cpu().reshape(thetas.shape[0], num_nuisance, -1)


def _scatter(
    ax: Any,
    summaries: Tensor,
    dims: tuple[int, ...],
    colours: list[str],
    labels: list[str] | None,
) -> None:
    for k, colour in enumerate(colours):
        points = summaries[k]
        label = None if labels is None else labels[k]
        if len(dims) == 1:
            ax.scatter(
                points[:, dims[0]],
                torch.full((len(points),), float(k)),
                s=6,
                color=colour,
                alpha=0.6,
                label=label,
            )
        else:
            ax.scatter(*(points[:, d] for d in dims), s=6, color=colour, alpha=0.6, label=label)
    if len(dims) == 1:
        ax.set_xlabel(f"$z_{dims[0]}$")
        ax.set_ylabel("θ index")
    else:
        ax.set_xlabel(f"$z_{dims[0]}$")
        ax.set_ylabel(f"$z_{dims[1]}$")
        if len(dims) == 3:
            ax.set_zlabel(f"$z_{dims[2]}$")
    if labels is not None:
        ax.legend(fontsize="small", loc="best", markerscale=2)


def _theta_label(theta: list[float]) -> str:
    return "θ = (" + ", ".join(f"{v:.3g}" for v in theta) + ")"
