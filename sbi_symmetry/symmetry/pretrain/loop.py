"""Self-supervised VICReg pretraining of a symmetry embedding.

:func:`pretrain_vicreg` trains an encoder ``f`` so that two *views* of the same intrinsic
parameters (same ``theta``, independent nuisance and noise, or two augmentations of one stored
data set) get the same summary, while the VICReg variance and covariance terms keep the summaries
spread out and decorrelated. The loss is applied to ``h(f(view))`` for a small expander ``h``
that is discarded afterwards; see :mod:`sbi_symmetry.losses.vicreg` for the maths.

The loop:

* draws ``num_simulations`` parameters from the prior (or takes the stored ``x``) under
  ``torch.manual_seed(seed)``, holds out ``validation_fraction`` of them with one *fixed* bank of
  validation views, and makes fresh training views every epoch (``fresh_views=True``: re-simulated
  on the fly with new nuisance and noise for the same ``theta``) or uses one fixed bank
  (``False``); ``"auto"``, the default, is fresh for views of stored data (no simulator call)
  and one bank for re-simulated views (``2 * num_simulations`` calls in all);
* scales inputs by a scalar (or per-channel) mean and std of the training views, computed once
  and stored in the returned :class:`~sbi_symmetry.symmetry.embedding.SymmetryEmbedding`, which
  applies it itself;
* optimises with AdamW under a learning-rate schedule stepped once per optimisation step: a
  linear warm-up to ``learning_rate`` over ``warmup_epochs``, then a cosine decay to
  ``min_learning_rate`` over the remaining epochs (or a constant rate). The rate applied in the
  last step of each epoch is recorded in ``history["lr"]``, so what ran is what is reported;
* optionally adds a supervised term (``supervised_weight > 0``, the hybrid loss of
  :mod:`sbi_symmetry.losses.supervised`): a linear read-out of the summary regresses the
  standardised parameters shared by both views, which simulation-based inference always has;
* stops early when the validation total (VICReg, plus the weighted supervised term) has not
  improved for ``stop_after_epochs`` epochs and restores the best weights;
* records per epoch the train and validation loss terms, the rate, and collapse statistics of the
  validation summaries (per-dimension std, effective rank) plus their invariance error;
* is deterministic under ``seed`` (bitwise on CPU), and can write a checkpoint every epoch and
  resume from it with the same result as an uninterrupted run. It seeds torch's (and numpy's)
  global generators, which the views use, inside :func:`~sbi_symmetry._random.seeded`, so the
  caller's random state is the same after the call as before. The encoder's initial weights
  are the caller's: seed before building it to make the whole run reproducible.

Under ``torchrun --nproc_per_node=N`` (``torch.distributed`` initialised, ``N > 1``) the same call
trains data-parallel (:mod:`sbi_symmetry.distributed`): ``batch_size`` is the global batch, each
rank embeds its ``batch_size / N`` rows of every step, the VICReg statistics are computed over the
gathered global batch and the gradients are averaged, so the optimisation is that of one process
(with ``fresh_views=False`` the same run to float tolerance; fresh views are drawn per rank from
seeds derived from ``seed``, the epoch and the rank). Every rank draws the same parameters and
validation bank (checked); validation chunks and the input-scaling pass are shared out. Rank 0
alone shows the progress bar and writes the checkpoint, which holds the global state only, so a
run resumes under any number of processes.

Example:
    >>> import torch
    >>> from torch import nn
    >>> class NoisyCopies:  # two noisy copies of stored data (a stand-in for AugmentedViews)
    ...     input_kind = "x"
    ...     def __call__(self, x):
    ...         return x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)
    >>> x = torch.randn(200, 6)
    >>> emb = pretrain_vicreg(nn.Linear(6, 2), NoisyCopies(), x=x, batch_size=32,
    ...                       max_epochs=2, freeze="none", show_progress_bar=False)
    >>> emb(x[:5]).shape, len(emb.history["val_total"])
    (torch.Size([5, 2]), 2)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution
from tqdm.auto import tqdm

import sbi_symmetry.distributed as distributed
from sbi_symmetry._random import seeded
from sbi_symmetry.losses.supervised import supervised_term
from sbi_symmetry.losses.vicreg import VICRegLoss
from sbi_symmetry.nets.heads import Expander, ReadoutExpander
from sbi_symmetry.symmetry.diagnostics import collapse_statistics, summary_invariance
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding, check_freeze_mode
from sbi_symmetry.symmetry.pretrain.checkpoint import CheckpointFile, RunState, TrainingState
from sbi_symmetry.symmetry.pretrain.config import PretrainConfig, _resolve_config
from sbi_symmetry.symmetry.pretrain.data import (
    PretrainData,
    _check_inputs,
    _check_theta,
    _check_views,
    _checked_views,
    _probe_encoder,
    _probe_expander,
    prepare_data,
    split_sizes,
)
from sbi_symmetry.symmetry.pretrain.schedule import make_scheduler

if TYPE_CHECKING:
    from sbi_symmetry.views import Views

_LOSS_TERMS = ("total", "invariance", "variance", "covariance", "supervised")


def pretrain_vicreg(
    encoder: nn.Module,
    views: Views,
    prior: Distribution | None = None,
    *,
    num_simulations: int = 20_000,
    x: Tensor | None = None,
    theta: Tensor | None = None,
    expander: nn.Module | None = None,
    config: PretrainConfig | None = None,
    callback: Callable[[int, dict[str, list[Any]]], None] | None = None,
    **config_overrides: Any,
) -> SymmetryEmbedding:
    """Pretrain ``encoder`` with VICReg on pairs of views and wrap it for ``sbi``.

    Every check on the inputs (batch size, views, data, encoder output, split sizes, devices)
    runs before the first optimisation step.

    Args:
        encoder: Module mapping a batch of views ``(B, L)`` / ``(B, C, L)`` to ``(B, D)``.
            Moved to ``config.device`` and trained in place; all of its parameters are
            trained (``requires_grad`` is switched on) until ``freeze`` is applied at the end.
        views: A ``Views`` object. ``input_kind == "theta"``: called with parameters drawn from
            ``prior``; ``"x"``: called with rows of the stored ``x``.
        prior: Prior over the intrinsic parameters (needed for ``input_kind == "theta"``).
        num_simulations: Parameter draws for ``input_kind == "theta"`` (ignored with ``x``).
        x: Stored data for ``input_kind == "x"``, shape ``(n, ...)``.
        theta: Parameters of the stored ``x``, shape ``(n, theta_dim)``: needed by the hybrid
            loss's supervised term (``supervised_weight > 0``), unused otherwise. With
            re-simulated views the drawn parameters serve.
        expander: Projector used only during pretraining; default
            ``Expander(D)`` with ``D`` the encoder's output width (probed if it has no
            ``output_dim``).
        config: A :class:`PretrainConfig`; keyword overrides are applied on top of it.
        callback: Called as ``callback(epoch, history)`` after each epoch (and its checkpoint),
            ``epoch`` counted from 1; on every rank under several processes (the history is the
            same on all; check ``sbi_symmetry.distributed.is_main_process()`` to log once).
        **config_overrides: Any :class:`PretrainConfig` field, e.g. ``max_epochs=50``.

    Returns:
        A :class:`SymmetryEmbedding` in eval mode with the best weights, the input scaling,
        ``freeze=config.freeze`` and ``history``.

    Example:
        >>> pretrain_vicreg(nn.Linear(6, 2), views=None, batch_size=2)  # full run: see the module
        Traceback (most recent call last):
        ...
        ValueError: `batch_size` must be an integer >= 3 (VICReg batch statistics); got 2.
    """
    cfg = _resolve_config(config, config_overrides)
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"`encoder` must be a torch.nn.Module, got {type(encoder).__name__}.")
    kind = _check_views(views)
    # what runs is what is recorded (checkpoint, resume check): True or False, never "auto"
    cfg = _resolve_config(cfg, {"fresh_views": cfg.fresh_for(kind)})
    distributed.local_batch_size(cfg.batch_size)  # a global batch, split evenly over the ranks
    checkpoint = (  # only rank 0 owns (and writes) the file; its errors are raised on every rank
        distributed.on_main_process(lambda: CheckpointFile(cfg))
        if cfg.checkpoint_path is not None
        else None
    )
    inputs_given = _check_inputs(kind, prior, x, num_simulations, torch.device(cfg.device))
    _check_theta(kind, theta, inputs_given, cfg.supervised_weight, torch.device(cfg.device))
    if kind == "x":
        num_simulations = inputs_given.shape[0]
    split_sizes(num_simulations, cfg)
    check_freeze_mode(encoder, cfg.freeze)

    with seeded(cfg.seed, cfg.device):  # the caller's random state is restored afterwards
        data = prepare_data(views, prior, inputs_given, num_simulations, cfg, theta)
        state = _build_state(encoder, expander, data, cfg)
        if cfg.checkpoint_path is not None:  # read by rank 0, sent to all (any world resumes)
            saved = distributed.on_main_process(lambda: checkpoint.load(), share_result=True)
            if saved is not None:
                state.restore(saved)
        _run_epochs(state, views, data, cfg.vicreg_loss(), checkpoint, callback)

    embedding = state.embedding
    embedding.load_state_dict(state.run.best_embedding)
    state.expander.load_state_dict(state.run.best_expander)
    embedding.history = state.run.history
    embedding.freeze = cfg.freeze
    embedding.reset_input_check()  # pretraining batches used it up; sbi's first batches count
    return embedding.eval()


def _build_state(
    encoder: nn.Module, expander: nn.Module | None, data: PretrainData, cfg: PretrainConfig
) -> TrainingState:
    """Embedding with the input scaling, probed encoder and expander, optimiser and schedule."""
    device = torch.device(cfg.device)
    encoder.to(device)
    embedding = SymmetryEmbedding(encoder, input_mean=data.mean, input_std=data.std, freeze="none")
    embedding.to(device)
    output_dim = _probe_encoder(embedding, data.val_a)
    if expander is None:
        expander = Expander(output_dim)
    elif not isinstance(expander, nn.Module):
        raise TypeError(f"`expander` must be a torch.nn.Module, got {type(expander).__name__}.")
    expander.to(device)
    _probe_expander(expander, embedding, data.val_a)
    if data.train_targets is not None:  # the hybrid loss: a read-out of theta beside it
        expander = ReadoutExpander(expander, output_dim, data.train_targets.shape[1]).to(device)
    distributed.broadcast_module(embedding)  # rank 0's initial weights on every rank
    distributed.broadcast_module(expander)
    optimizer = torch.optim.AdamW(
        [*encoder.parameters(), *expander.parameters()],
        lr=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
    )
    scheduler = make_scheduler(optimizer, cfg, data.train_inputs.shape[0] // cfg.batch_size)
    run = RunState(history={key: [] for key in _history_keys()})
    fingerprint = data.fingerprint()
    distributed.check_same_on_all_ranks(fingerprint, "pretraining data (inputs, validation views)")
    return TrainingState(
        cfg, fingerprint, embedding, expander, optimizer, scheduler, run, data.generator
    )


def _run_epochs(
    state: TrainingState,
    views: Any,
    data: PretrainData,
    loss_fn: VICRegLoss,
    checkpoint: CheckpointFile | None,
    callback: Callable[[int, dict[str, list[Any]]], None] | None,
) -> None:
    """Train until early stopping or the epoch cap; checkpoint and report after every epoch."""
    cfg, run = state.cfg, state.run
    progress = tqdm(
        total=cfg.max_epochs,
        initial=run.epochs_done,
        desc="VICReg pretraining",
        unit="epoch",
        disable=not (cfg.show_progress_bar and distributed.is_main_process()),
    )
    try:
        while not run.finished:
            epoch = run.epochs_done + 1
            started = time.perf_counter()
            train_terms, lr = _train_epoch(state, views, data, loss_fn, epoch)
            val_terms, stats = _validate(state, data, loss_fn)
            seconds = time.perf_counter() - started
            _record(run.history, epoch, train_terms, val_terms, stats, lr, seconds)
            _early_stopping_update(state, val_terms["total"], epoch)
            run.epochs_done = epoch
            if cfg.checkpoint_path is not None:  # global state, written by rank 0 only
                distributed.on_main_process(lambda: checkpoint.write(state.to_checkpoint()))
            progress.update(1)
            progress.set_postfix(
                train=train_terms["total"],
                val=val_terms["total"],
                inv=val_terms["invariance"],
                var=val_terms["variance"],
                cov=val_terms["covariance"],
            )
            if callback is not None:
                callback(epoch, run.history)
    finally:
        progress.close()


def _train_epoch(
    state: TrainingState, views: Any, data: PretrainData, loss_fn: VICRegLoss, epoch: int
) -> tuple[dict[str, float], float]:
    """One epoch of optimisation; mean loss terms and the last step's learning rate."""
    cfg, embedding, expander = state.cfg, state.embedding, state.expander
    embedding.train()
    expander.train()
    train_inputs = data.train_inputs
    device = train_inputs.device
    if distributed.is_distributed():  # fresh views: independent per rank, resumable per epoch
        torch.manual_seed(distributed.rank_seed(cfg.seed, "views", epoch))
    order = torch.randperm(train_inputs.shape[0], generator=state.generator).to(device)
    steps = train_inputs.shape[0] // cfg.batch_size
    sums = torch.zeros(len(_LOSS_TERMS), device=device, dtype=torch.float64)
    params = [*embedding.parameters(), *expander.parameters()]
    lr = math.nan
    for step in range(steps):
        index = distributed.rank_share(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
        view_a, view_b = _training_views(views, data, index, epoch)
        targets = None if data.train_targets is None else data.train_targets[index]
        try:
            summaries = embedding(torch.cat([view_a, view_b]))
            # VICReg over all ranks' rows (no-op in one process); the supervised term per row
            terms = _loss_terms(expander, summaries, loss_fn, targets, cfg, global_batch=True)
        except ValueError as error:
            raise RuntimeError(
                f"VICReg failed in epoch {epoch}, step {step + 1}: {error} If the summaries "
                "became NaN/inf, lower learning_rate or set clip_grad_norm."
            ) from error
        state.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        distributed.average_gradients(params)
        if cfg.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
        lr = float(state.optimizer.param_groups[0]["lr"])
        state.optimizer.step()
        state.scheduler.step()
        sums += torch.stack([terms[t].detach() for t in _LOSS_TERMS]).double()
    if data.train_targets is not None:  # the supervised term is per rank: the same history
        sums = distributed.all_reduce_sum(sums) / distributed.get_world_size()
    means = (sums / steps).tolist()
    return dict(zip(_LOSS_TERMS, means, strict=True)), lr


def _training_views(
    views: Any, data: PretrainData, index: Tensor, epoch: int
) -> tuple[Tensor, Tensor]:
    """The views of one step: from the fixed bank, or fresh (checked to keep their shape)."""
    if data.bank is not None:
        return data.bank[0][index], data.bank[1][index]
    device = data.train_inputs.device
    view_a, view_b = _checked_views(views, data.train_inputs[index], device)
    if tuple(view_a.shape[1:]) != data.view_shape:
        raise ValueError(
            f"`views` returned shape {tuple(view_a.shape[1:])} per row in epoch {epoch}, "
            f"{data.view_shape} before; views must always have the same shape."
        )
    return view_a, view_b


def _validate(
    state: TrainingState, data: PretrainData, loss_fn: VICRegLoss
) -> tuple[dict[str, float], dict[str, Any]]:
    """Validation loss terms, collapse statistics and invariance error of the fixed bank."""
    embedding, expander, val_a, val_b = state.embedding, state.expander, data.val_a, data.val_b
    embedding.eval()
    expander.eval()
    num = val_a.shape[0]
    chunks = max(1, num // state.cfg.batch_size)
    sums = torch.zeros(len(_LOSS_TERMS), dtype=torch.float64)
    summaries_a, summaries_b = [], []
    parts, sharded = distributed.shard_items(torch.arange(num).tensor_split(chunks))
    with torch.no_grad():
        for index in parts:  # the single-process chunks, shared out over the ranks
            index = index.to(val_a.device)
            y_a, y_b = embedding(val_a[index]), embedding(val_b[index])
            summaries_a.append(y_a)
            summaries_b.append(y_b)
            targets = None if data.val_targets is None else data.val_targets[index]
            terms = _loss_terms(expander, torch.cat([y_a, y_b]), loss_fn, targets, state.cfg)
            values = torch.stack([terms[t] for t in _LOSS_TERMS]).double().cpu()
            sums += values * len(index)
    z_a, z_b = torch.cat(summaries_a), torch.cat(summaries_b)
    if sharded:
        sums = distributed.all_reduce_sum(sums)
        z_a, z_b = distributed.gather_rows(z_a), distributed.gather_rows(z_b)
    stats = collapse_statistics(z_a)
    stats["invariance_error"] = summary_invariance(z_a, z_b)
    means = (sums / num).tolist()
    return dict(zip(_LOSS_TERMS, means, strict=True)), stats


def _loss_terms(
    expander: nn.Module,
    summaries: Tensor,
    loss_fn: VICRegLoss,
    targets: Tensor | None,
    cfg: PretrainConfig,
    global_batch: bool = False,
) -> dict[str, Tensor]:
    """VICReg's terms for both views' summaries (stacked), the supervised term, their total."""
    vicreg = loss_fn(*expander(summaries).chunk(2), global_batch=global_batch)
    terms = {name: getattr(vicreg, name) for name in ("invariance", "variance", "covariance")}
    terms["supervised"] = torch.zeros((), device=summaries.device)
    if targets is not None:
        terms["supervised"] = supervised_term(*expander.readout(summaries).chunk(2), targets)
    terms["total"] = vicreg.total + cfg.supervised_weight * terms["supervised"]
    return terms


def _record(
    history: dict[str, list[Any]],
    epoch: int,
    train: dict[str, float],
    val: dict[str, float],
    stats: dict[str, Any],
    lr: float,
    seconds: float,
) -> None:
    """Append one epoch to ``history``; refuse a non-finite training loss."""
    history["epoch"].append(epoch)
    for term in _LOSS_TERMS:
        history[f"train_{term}"].append(train[term])
        history[f"val_{term}"].append(val[term])
    history["lr"].append(lr)
    history["summary_std"].append(stats["std"])
    history["effective_rank"].append(stats["effective_rank"])
    history["val_invariance_error"].append(stats["invariance_error"])
    history["epoch_time_s"].append(seconds)
    if not all(math.isfinite(train[t]) for t in _LOSS_TERMS):
        raise RuntimeError(
            f"The VICReg training loss is not finite in epoch {epoch} ({train}); lower "
            "learning_rate or set clip_grad_norm."
        )


def _state_copy(module: nn.Module) -> dict[str, Tensor]:
    """A detached copy of the module's weights (the best epoch's, kept for the end)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _early_stopping_update(state: TrainingState, val_total: float, epoch: int) -> None:
    """Keep the best weights; end the run after ``stop_after_epochs`` or ``max_epochs``."""
    run = state.run
    if val_total < run.best_total:
        run.best_total, run.best_epoch, run.bad_epochs = val_total, epoch, 0
        run.best_embedding = _state_copy(state.embedding)
        run.best_expander = _state_copy(state.expander)
    else:
        run.bad_epochs += 1
    run.finished = run.bad_epochs >= state.cfg.stop_after_epochs or epoch >= state.cfg.max_epochs


def _history_keys() -> list[str]:
    """The keys of ``history``, in order (the same in every checkpoint)."""
    keys = ["epoch"]
    keys += [f"train_{t}" for t in _LOSS_TERMS] + [f"val_{t}" for t in _LOSS_TERMS]
    return [*keys, "lr", "summary_std", "effective_rank", "val_invariance_error", "epoch_time_s"]
