r"""Refine the emulator (and the data tower's head) on frozen features with the ``x -> theta`` term.

After :class:`~sbi_symmetry.emulate.EmbedEmulate` has trained both towers with the symmetric
InfoNCE loss, the data tower's backbone is frozen: every training ``x`` runs through it once, its
features are cached, and only the emulator ``g``, the last layers of the data tower's head (the
MLP after the pooling; ``tune_head``) and a learned temperature ``tau`` train further, on

    loss_i = -L_ii + logsumexp_j L_ij,        L_ij = <f(x_i), g(theta_j)> / tau,

the row (``x -> theta``) half of the symmetric loss (``row_weight=1`` in
:func:`~sbi_symmetry.losses.infonce.symmetric_infonce`): given ``x_i``, tell its parameter from
the batch's other ``B - 1``. This is NRE-B's classification with the batch as candidates; its
optimum is ``h = log r(theta, x) + c(x)``, and since ``c(x)`` cancels in
``p(theta | x) = p(theta) exp(h(theta, x)) / Z(x)``, the posterior is still exact (only ratios
of different observations stop being comparable, which no posterior uses).

Why: the column term (``theta -> x``) also asks the critic to tell data sets apart; with towers
of finite capacity it trades sharpness in ``x -> theta`` for that. Retraining only the emulator on
the row term narrowed every one of four damped-oscillator runs (posterior std in the frequency
2.13x -> 1.70x the exact one on average, mean C2ST 0.689 -> 0.674), with SBC still passing
(``benchmarks/results/ee_loss_side.md``). Letting the head's MLP retrain too, on the cached
pooled features, narrowed the pretrained oscillator towers further (mean std in the frequency
1.69x -> 1.51x, widest observation 4.92x -> 2.56x, mean C2ST 0.639 -> 0.634; sine-Gaussian and
phase-nuisance runs level or better, all calibrated; ``benchmarks/results/ee_head_refine.md``).
The backbone never runs again after the cache, so the phase costs seconds.

Where the head cannot be split off (no ``head`` ``nn.Sequential`` in the tower, several, frozen
layers, or a tower that changes the head's output), the data tower is left as it is and the
emulator trains alone, as with ``tune_head=False``; ``RefineSummary.tuned_head`` says which.

Early stopping is on the same validation rows as the main training, scored with the same row
loss; the starting point counts as a candidate, so the refined estimator never has a worse
validation row loss than the one it started from.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from sbi_symmetry.emulate import EmbedEmulateRatioEstimator
    >>> theta = torch.randn(300, 2)
    >>> x = theta + 0.1 * torch.randn(300, 2)
    >>> est = EmbedEmulateRatioEstimator(nn.Linear(2, 8), nn.Linear(2, 8), theta, x)
    >>> summary = refine_emulator(est, theta, x, max_num_epochs=3)
    >>> summary.best_validation_loss <= summary.initial_validation_loss
    True
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

import sbi_symmetry.distributed as distributed
from sbi_symmetry._validation import (
    check_choice,
    check_int,
    check_number,
    check_row_weight,
    check_simulations,
)
from sbi_symmetry.emulate.estimator import EmbedEmulateRatioEstimator
from sbi_symmetry.losses.infonce import symmetric_infonce
from sbi_symmetry.losses.nrec import contrastive_nrec
from sbi_symmetry.nets.modes import restored_modes
from sbi_symmetry.nets.split import split_head, tail_reproduces


@dataclass(frozen=True)
class RefineSummary:
    """What a refinement did.

    Attributes:
        epochs: Epochs run (early stopping included).
        initial_validation_loss: Mean validation row loss before refining.
        best_validation_loss: The best one reached (the estimator keeps its weights).
        seconds: Wall time, encoding included.
        tuned_head: Whether the data tower's head trained too (``tune_head`` and a head
            that could be split off; see :func:`refine_emulator`).
    """

    epochs: int
    initial_validation_loss: float
    best_validation_loss: float
    seconds: float
    tuned_head: bool = False


def refine_emulator(
    estimator: EmbedEmulateRatioEstimator,
    theta: Tensor,
    x: Tensor,
    train_indices: Tensor | None = None,
    val_indices: Tensor | None = None,
    *,
    training_batch_size: int = 1000,
    learning_rate: float = 5e-4,
    stop_after_epochs: int = 30,
    max_num_epochs: int = 1000,
    clip_max_norm: float | None = 5.0,
    row_weight: float = 1.0,
    tune_head: bool = True,
    loss: Literal["row", "nrec"] = "row",
    show_progress_bar: bool = False,
) -> RefineSummary:
    """Train the emulator, the data tower's head and the temperature on cached features.

    Args:
        estimator: A trained estimator; changed in place (its encoder is left untouched).
        theta: Training parameters, ``(N, theta_dim)``.
        x: Their simulations, ``(N, *x_shape)``.
        train_indices: Rows to train on; default: a random 90% (with ``val_indices``).
        val_indices: Rows for early stopping; default: the other 10%.
        training_batch_size: Pairs per batch, the candidates of each softmax (>= 2). Larger
            than the main training's 200 by default: a batch costs emulator passes only.
        learning_rate: Adam's learning rate.
        stop_after_epochs: Epochs without a better validation loss before stopping.
        max_num_epochs: Upper bound on the epochs.
        clip_max_norm: Gradient-norm clipping (``None`` for none).
        row_weight: Weight of the ``x -> theta`` term; 1 (the default) is the row term alone,
            1/2 the symmetric training loss (for comparison: it leaves the posterior as it was
            in ``benchmarks/results/ee_loss_side.md``).
        tune_head: Also retrain the last layers of the data tower's ``head`` (those after its
            parameter-free pooling, e.g. the MLP of
            :class:`~sbi_symmetry.nets.conv.ConvEncoder1D`), on cached pooled features: the
            backbone still runs once. Needs exactly one ``head`` ``nn.Sequential`` in the tower,
            whose trainable layers are not frozen; otherwise only the emulator trains
            (``RefineSummary.tuned_head`` says which happened).
        loss: ``"row"`` (the default): the row term weighted by ``row_weight``; ``"nrec"``:
            NRE-C's loss (:func:`~sbi_symmetry.losses.nrec.contrastive_nrec`, ``K = B - 1``,
            ``gamma = 1``; ``row_weight`` unused), whose optimum is ``log r`` itself. Measured
            in ``benchmarks/results/ee_loss_side.md`` section 6 (not the default).
        show_progress_bar: Print the epoch count.

    Returns:
        A :class:`RefineSummary`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from sbi_symmetry.emulate import EmbedEmulateRatioEstimator
        >>> theta = torch.randn(100, 1)
        >>> est = EmbedEmulateRatioEstimator(nn.Linear(1, 4), nn.Linear(1, 4), theta, theta)
        >>> refine_emulator(est, theta, theta, max_num_epochs=2).epochs <= 2
        True
    """
    check_int(training_batch_size, "training_batch_size", 2, " (the batch is the candidates)")
    check_number(learning_rate, "learning_rate", positive=True)
    check_int(stop_after_epochs, "stop_after_epochs", 1)
    check_int(max_num_epochs, "max_num_epochs", 1)
    check_row_weight(row_weight, "(0, 1]")
    check_choice(loss, "loss", ("row", "nrec"))
    theta, x = check_simulations(theta, x)  # (N, d) and (N, ...), theta finite
    train_indices, val_indices = _split(theta.shape[0], train_indices, val_indices)
    start = time.perf_counter()
    with restored_modes(estimator):
        try:
            cached = _cached_summary(estimator, x, tune_head)
            phase = _RowPhase(estimator, theta, cached, row_weight, loss)
            optimizer = torch.optim.Adam(phase.params, lr=learning_rate)
            initial = best = phase.validate(val_indices, training_batch_size)
            state, waited, epoch = phase.snapshot(), 0, 0
            while waited < stop_after_epochs and epoch < max_num_epochs:
                phase.epoch(train_indices, training_batch_size, optimizer, clip_max_norm)
                epoch += 1
                value = phase.validate(val_indices, training_batch_size)
                if value < best:
                    best, waited, state = value, 0, phase.snapshot()
                else:
                    waited += 1
                if show_progress_bar:
                    print(f"\r Refining the emulator: epoch {epoch}, best {best:.4f}", end="")
            if show_progress_bar:
                print()
            phase.restore(state)
        finally:
            estimator.clear_cache()
    distributed.broadcast_module(estimator)  # rank 0's refinement everywhere
    seconds = time.perf_counter() - start
    return RefineSummary(epoch, initial, best, seconds, phase.head is not None)


class _RowPhase:
    """The refinement's trainable part, its loss, one epoch, one validation, snapshots."""

    def __init__(
        self,
        estimator: EmbedEmulateRatioEstimator,
        theta: Tensor,
        cached: tuple[Tensor, nn.Module | None],
        row_weight: float,
        loss: str = "row",
    ) -> None:
        self.estimator, self.theta, self.row_weight = estimator, theta, row_weight
        self.kind, self.offsets = loss, None  # offsets: NRE-C's draws (fixed in validation)
        self.features, self.head = cached
        self.modules = [estimator.embedding_net_theta] + ([] if self.head is None else [self.head])
        self.params = [p for module in self.modules for p in module.parameters()]
        if isinstance(estimator.log_temperature, nn.Parameter):
            self.params.append(estimator.log_temperature)

    def loss(self, idx: Tensor) -> Tensor:
        """Mean loss of the pairs ``idx``, each against the others as candidates."""
        est = self.estimator
        f = self.features[idx] if self.head is None else self.head(self.features[idx])
        if self.kind == "nrec":
            f_x, g_theta = est._project(f, "x"), est.emulate(self.theta[idx])
            return contrastive_nrec(f_x, g_theta, est.temperature, generator=self.offsets).mean()
        return symmetric_infonce(
            est._project(f, "x"),
            est.emulate(self.theta[idx]),
            est.temperature,
            row_weight=self.row_weight,
        ).mean()

    def epoch(
        self, rows: Tensor, batch: int, optimizer: torch.optim.Optimizer, clip: float | None
    ) -> None:
        """One pass over ``rows`` in shuffled batches (a last batch of one row is skipped)."""
        for module in self.modules:
            module.train()
        for idx in rows[torch.randperm(len(rows))].split(batch):
            if len(idx) < 2:
                continue
            optimizer.zero_grad()
            self.loss(idx).backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(self.params, max_norm=clip)
            optimizer.step()

    def validate(self, rows: Tensor, batch: int) -> float:
        """Mean loss over ``rows`` in fixed batches, weighted by batch size."""
        for module in self.modules:
            module.eval()
        self.offsets = torch.Generator().manual_seed(0)  # the same candidates every time
        try:
            with torch.no_grad():
                batches = [i for i in rows.split(batch) if len(i) > 1]
                total = sum(float(self.loss(i)) * len(i) for i in batches)
        finally:
            self.offsets = None
        return total / sum(len(i) for i in batches)

    def snapshot(self) -> tuple[list[dict[str, Tensor]], Tensor]:
        """A copy of everything the refinement changes."""
        states = [copy.deepcopy(module.state_dict()) for module in self.modules]
        return states, self.estimator.log_temperature.detach().clone()

    def restore(self, state: tuple[list[dict[str, Tensor]], Tensor]) -> None:
        """Put back a :meth:`snapshot`."""
        for module, saved in zip(self.modules, state[0], strict=True):
            module.load_state_dict(saved)
        with torch.no_grad():
            self.estimator.log_temperature.copy_(state[1])


def _split(
    num: int, train_indices: Tensor | None, val_indices: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The given split, or a random 90/10 one; refuse a side with fewer than 2 rows."""
    if (train_indices is None) != (val_indices is None):
        raise ValueError("Pass both `train_indices` and `val_indices`, or neither.")
    if train_indices is None or val_indices is None:
        order = torch.randperm(num)
        val_indices, train_indices = order[: num // 10], order[num // 10 :]
    train_indices, val_indices = (
        _indices(train_indices, "train", num),
        _indices(val_indices, "val", num),
    )
    if bool(torch.isin(train_indices, val_indices).any()):
        raise ValueError("`train_indices` and `val_indices` share rows; they must be disjoint.")
    if min(len(train_indices), len(val_indices)) < 2:
        raise ValueError(
            f"Refining needs at least 2 training and 2 validation rows; got {len(train_indices)} "
            f"and {len(val_indices)} (of {num} simulations)."
        )
    return train_indices, val_indices


def _indices(indices: Tensor, side: str, num: int) -> Tensor:
    """``{side}_indices`` as a flat long tensor of row numbers in ``[0, num)``, else an error."""
    indices = torch.as_tensor(indices)
    if indices.dtype == torch.bool or indices.is_floating_point() or indices.is_complex():
        raise TypeError(f"`{side}_indices` must be integer row numbers; got dtype {indices.dtype}.")
    indices = indices.long().reshape(-1)
    if len(indices) and not (0 <= int(indices.min()) and int(indices.max()) < num):
        raise ValueError(f"`{side}_indices` must lie in [0, {num}) (the simulations' rows).")
    return indices


def _cached_summary(
    estimator: EmbedEmulateRatioEstimator, x: Tensor, tune_head: bool, chunk: int = 1000
) -> tuple[Tensor, nn.Module | None]:
    """What the refinement caches: ``(f(x), None)``, or ``(features, tail)`` to tune the head.

    Every row runs through the data tower once, in eval mode and without grad. With
    ``tune_head``, the input of the head's trainable tail (:func:`~sbi_symmetry.nets.split.
    split_head`) is kept instead of the summary, if every parameter of the tail is trainable and
    the tail applied to it reproduces the tower's output; otherwise the refinement falls back to
    the emulator alone.
    """
    tower = estimator.embedding_net_x
    split = split_head(tower) if tune_head else None
    if split is not None and not all(p.requires_grad for p in split.tail.parameters()):
        split = None
    captured: list[Tensor] = []
    capture = split.capture(captured) if split is not None else contextlib.nullcontext()
    estimator.eval()
    with torch.no_grad():
        with capture:
            f_x = torch.cat([tower(part) for part in x.split(chunk)])
        if split is None:
            return f_x, None
        features = torch.cat(captured)
        if tail_reproduces(split.tail, features, f_x):
            return features, split.tail
    return f_x, None
