"""An anisotropic binary tree of cells over a box, with point location and neighbour search.

A cell is given by a per-dimension refinement level ``l`` and an integer index ``i``: along
dimension ``a`` the box is cut into ``n0 * 2**l[a]`` equal slices and the cell is slice
``i[a]``. Splitting a cell along a set of dimensions halves it along each of them. The leaves
(cells that are not split) always partition the box.

Example:
    >>> import torch
    >>> tree = CellTree(low=torch.zeros(2), high=torch.ones(2), initial_cells=4)
    >>> leaves = tree.root(lambda centres: torch.zeros(centres.shape[0]))
    >>> leaves.size
    16
    >>> kids = tree.split(leaves.take(torch.arange(16) == 0), torch.tensor([[True, False]]),
    ...                   lambda centres: torch.zeros(centres.shape[0]))
    >>> tree.centres(kids.level, kids.index).tolist()
    [[0.0625, 0.125], [0.1875, 0.125]]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

#: Maps cell centres ``(n, d)`` (float64) to the log-density of the integrand there, ``(n,)``.
LogDensity = Callable[[Tensor], Tensor]


@dataclass
class Leaves:
    """Leaf cells with their log masses.

    Attributes:
        level: Per-dimension refinement level, ``(n, d)`` int64.
        index: Integer index at that level, ``(n, d)`` int64.
        log_mass: ``log(density at the centre * cell volume / box volume)``, ``(n,)`` float64.
        tag: Row of the ancestor in a reference partition (set by the caller, inherited by
            children), ``(n,)`` int64.
    """

    level: Tensor
    index: Tensor
    log_mass: Tensor
    tag: Tensor

    @property
    def size(self) -> int:
        """Number of leaves."""
        return int(self.log_mass.shape[0])

    def take(self, mask: Tensor) -> Leaves:
        """The leaves selected by a boolean mask (or index tensor)."""
        return Leaves(self.level[mask], self.index[mask], self.log_mass[mask], self.tag[mask])

    @staticmethod
    def cat(parts: list[Leaves]) -> Leaves:
        """Concatenate several sets of leaves."""
        return Leaves(
            torch.cat([p.level for p in parts]),
            torch.cat([p.index for p in parts]),
            torch.cat([p.log_mass for p in parts]),
            torch.cat([p.tag for p in parts]),
        )


class CellTree:
    """Geometry of the tree over the box ``[low, high]`` and evaluation of cell masses.

    Args:
        low: Lower corner, shape ``(d,)``.
        high: Upper corner, shape ``(d,)``.
        initial_cells: Cells per dimension at level 0 (``n0``).

    Attributes:
        evaluations: Number of cell centres evaluated so far.
    """

    def __init__(self, low: Tensor, high: Tensor, initial_cells: int) -> None:
        self.low = low.to(torch.float64)
        self.width = high.to(torch.float64) - self.low
        self.dim = int(self.low.shape[0])
        self.n0 = initial_cells
        self.evaluations = 0

    def sizes(self, level: Tensor) -> Tensor:
        """Cell widths, ``(n, d)``."""
        return self.width / (self.n0 * torch.pow(2.0, level.to(torch.float64)))

    def centres(self, level: Tensor, index: Tensor) -> Tensor:
        """Cell centres, ``(n, d)`` float64."""
        return self.low + (index.to(torch.float64) + 0.5) * self.sizes(level)

    def evaluate(
        self, level: Tensor, index: Tensor, tag: Tensor, log_density: LogDensity
    ) -> Leaves:
        """Midpoint-rule masses of the given cells."""
        levels = level.sum(-1).to(torch.float64)
        log_volume = -(self.dim * math.log(self.n0) + levels * math.log(2.0))
        self.evaluations += int(level.shape[0])
        return Leaves(level, index, log_density(self.centres(level, index)) + log_volume, tag)

    def root(self, log_density: LogDensity) -> Leaves:
        """The level-0 grid of ``n0**d`` cells, evaluated."""
        index = torch.cartesian_prod(*[torch.arange(self.n0)] * self.dim).reshape(-1, self.dim)
        level = torch.zeros_like(index)
        return self.evaluate(level, index, torch.arange(index.shape[0]), log_density)

    def split(self, leaves: Leaves, dims: Tensor, log_density: LogDensity) -> Leaves:
        """Children of each leaf, halved along the dimensions flagged in ``dims`` (``(n, d)``)."""
        parts = []
        code = (dims.long() * (2 ** torch.arange(self.dim))).sum(-1)
        for pattern in code.unique().tolist():
            rows = code == pattern
            axes = [a for a in range(self.dim) if pattern >> a & 1]
            bits = torch.zeros(2 ** len(axes), self.dim, dtype=torch.int64)
            bits[:, axes] = torch.tensor(list(itertools.product((0, 1), repeat=len(axes))))
            grow = torch.zeros(self.dim, dtype=torch.int64)
            grow[axes] = 1
            index = ((1 + grow) * leaves.index[rows][:, None, :] + bits[None]).reshape(-1, self.dim)
            level = (leaves.level[rows] + grow).repeat_interleave(bits.shape[0], dim=0)
            tag = leaves.tag[rows].repeat_interleave(bits.shape[0])
            parts.append(self.evaluate(level, index, tag, log_density))
        return Leaves.cat(parts)

    def locate(self, leaves: Leaves, points: Tensor) -> Tensor:
        """Row of the leaf containing each point, ``-1`` for points outside the box."""
        out = torch.full((points.shape[0],), -1, dtype=torch.int64)
        unit = (points - self.low) / self.width
        inside = ((unit >= 0) & (unit < 1)).all(-1)
        groups, group_of = torch.unique(leaves.level, dim=0, return_inverse=True)
        for g, level in enumerate(groups):
            rows = torch.nonzero(group_of == g)[:, 0]
            counts = self.n0 * torch.pow(2, level)
            sorted_keys, order = torch.sort(_flat_key(leaves.index[rows], counts))
            probe = torch.floor(unit * counts).long().clamp(min=0)
            probe = torch.minimum(probe, counts - 1)
            probe_keys = _flat_key(probe, counts)
            pos = torch.searchsorted(sorted_keys, probe_keys).clamp(max=rows.numel() - 1)
            found = (sorted_keys[pos] == probe_keys) & inside
            out[found] = rows[order[pos[found]]]
        return out

    def neighbours(self, leaves: Leaves, selected: Tensor) -> Tensor:
        """Mask of the leaves touching a selected leaf (probed just across faces and corners)."""
        steps = torch.tensor(list(itertools.product((-1, 0, 1), repeat=self.dim)))
        steps = steps[(steps != 0).any(-1)].to(torch.float64)
        size = self.sizes(leaves.level[selected])
        centre = self.centres(leaves.level[selected], leaves.index[selected])
        gap = 0.25 * self.sizes(leaves.level.max(0).values[None])  # below the smallest cell
        probes = centre[:, None, :] + steps[None] * (0.5 * size[:, None, :] + gap)
        rows = self.locate(leaves, probes.reshape(-1, self.dim))
        mask = torch.zeros(leaves.size, dtype=torch.bool)
        mask[rows[rows >= 0]] = True
        return mask


def _flat_key(index: Tensor, counts: Tensor) -> Tensor:
    """Row-major integer key of cells of one level vector (``counts`` cells per dimension)."""
    key = torch.zeros(index.shape[0], dtype=torch.int64)
    for axis in range(index.shape[1]):
        key = key * counts[axis] + index[:, axis]
    return key
