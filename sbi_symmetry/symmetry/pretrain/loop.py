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
  on the fly with new nuisance and noise for the same ``theta``) or uses one fixed bank;
* scales inputs by a scalar (or per-channel) mean and std of the training views, computed once and
  stored in the returned :class:`~sbi_symmetry.symmetry.embedding.SymmetryEmbedding`, which applies it
  itself;
* optimises with AdamW under a learning-rate schedule stepped once per optimisation step: a
  linear warm-up to ``learning_rate`` over ``warmup_epochs``, then a cosine decay to
  ``min_learning_rate`` over the remaining epochs (or a constant rate). The rate applied in the
  last step of each epoch is recorded in ``history["lr"]``, so what ran is what is reported;
* stops early when the validation VICReg total has not improved for ``stop_after_epochs`` epochs
  and restores the best weights;
* records per epoch the train and validation loss terms, the rate, and collapse statistics of the
  validation summaries (per-dimension std, effective rank) plus their invariance error;
* is deterministic under ``seed`` (bitwise on CPU), and can write a checkpoint every epoch and
  resume from it with the same result as an uninterrupted run.

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

import copy
import dataclasses
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution
from tqdm.auto import tqdm

import sbi_symmetry.distributed as distributed
from sbi_symmetry._validation import check_finite, check_tensor
from sbi_symmetry.losses.vicreg import MIN_BATCH_SIZE, vicreg_loss
from sbi_symmetry.nets.heads import Expander
from sbi_symmetry.symmetry.diagnostics import collapse_statistics, summary_invariance
from sbi_symmetry.symmetry.embedding import FREEZE_MODES, SymmetryEmbedding, check_freeze_mode

if TYPE_CHECKING:
    from sbi_symmetry.views import Views

_CHECKPOINT_FORMAT = "sbi_symmetry.pretrain_checkpoint"
# Config fields that may change between an interrupted run and its resumption.
_RESUMABLE_CHANGES = frozenset(
    {"resume", "show_progress_bar", "overwrite_checkpoint", "checkpoint_path", "device"}
)
_LOSS_TERMS = ("total", "invariance", "variance", "covariance")


@dataclass
class PretrainConfig:
    """Settings of :func:`pretrain_vicreg` (every field can also be passed as a keyword).

    Attributes:
        batch_size: Pairs of views per optimisation step (at least 3; much larger than the
            expander width for the covariance term to work). Under several processes: the
            global batch over all of them, a multiple of their number.
        learning_rate: Peak learning rate of AdamW, reached at the end of the warm-up.
        weight_decay: AdamW's decoupled weight decay.
        max_epochs: Most epochs to train (exactly this many, not one more).
        warmup_epochs: Epochs of linear warm-up; ``None`` means 5% of ``max_epochs`` rounded.
            Must be below ``max_epochs``, so the nominal rate is really reached.
        schedule: ``"cosine"`` (decay to ``min_learning_rate`` after the warm-up) or
            ``"constant"``.
        min_learning_rate: Final rate of the cosine schedule.
        validation_fraction: Share of the simulations held out for validation.
        stop_after_epochs: Patience of early stopping on the validation VICReg total.
        fresh_views: New nuisance/noise (or augmentation) for the training views every epoch;
            ``False`` draws one fixed bank of training views.
        seed: Seed of ``torch.manual_seed`` at the start of the run.
        device: Where training runs; the encoder and expander are moved there, data (prior
            samples, ``x``, views) must already be there.
        show_progress_bar: Show a tqdm bar with the epoch's loss terms.
        invariance_weight: VICReg ``lambda``.
        variance_weight: VICReg ``mu``.
        covariance_weight: VICReg ``nu``.
        gamma: VICReg target standard deviation.
        freeze: Freeze mode of the returned embedding (``"all"``, ``"backbone"``, ``"none"``).
        input_scaling: ``"scalar"`` (one mean/std), ``"channel"`` (one per input channel) or
            ``"none"``.
        clip_grad_norm: Clip the gradient norm to this value; ``None`` for no clipping.
        checkpoint_path: File written (atomically) after every epoch; ``None`` for none.
        resume: Continue from ``checkpoint_path`` if it exists.
        overwrite_checkpoint: Allow replacing an existing ``checkpoint_path`` without resuming.
    """

    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    max_epochs: int = 100
    warmup_epochs: int | None = None
    schedule: Literal["cosine", "constant"] = "cosine"
    min_learning_rate: float = 0.0
    validation_fraction: float = 0.1
    stop_after_epochs: int = 10
    fresh_views: bool = True
    seed: int = 0
    device: str = "cpu"
    show_progress_bar: bool = True
    invariance_weight: float = 25.0
    variance_weight: float = 25.0
    covariance_weight: float = 1.0
    gamma: float = 1.0
    freeze: Literal["all", "backbone", "none"] = "backbone"
    input_scaling: Literal["scalar", "channel", "none"] = "scalar"
    clip_grad_norm: float | None = None
    checkpoint_path: str | None = None
    resume: bool = False
    overwrite_checkpoint: bool = False

    def __post_init__(self) -> None:
        _check_int(self.batch_size, "batch_size", MIN_BATCH_SIZE, " (VICReg batch statistics)")
        _check_int(self.max_epochs, "max_epochs", 1)
        _check_int(self.stop_after_epochs, "stop_after_epochs", 1)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"`seed` must be an integer; got {self.seed!r}.")
        if self.warmup_epochs is not None:
            _check_int(self.warmup_epochs, "warmup_epochs", 0)
        if self.warmup >= self.max_epochs:
            raise ValueError(
                f"`warmup_epochs` ({self.warmup}) must be below `max_epochs` "
                f"({self.max_epochs}), or the learning rate never reaches its nominal value."
            )
        _check_number(self.learning_rate, "learning_rate", positive=True)
        _check_number(self.weight_decay, "weight_decay")
        _check_number(self.min_learning_rate, "min_learning_rate")
        if self.min_learning_rate > self.learning_rate:
            raise ValueError("`min_learning_rate` must not exceed `learning_rate`.")
        for name in ("invariance_weight", "variance_weight", "covariance_weight"):
            _check_number(getattr(self, name), name)
        _check_number(self.gamma, "gamma", positive=True)
        if self.clip_grad_norm is not None:
            _check_number(self.clip_grad_norm, "clip_grad_norm", positive=True)
        if not (isinstance(self.validation_fraction, float) and 0 < self.validation_fraction < 1):
            raise ValueError(
                f"`validation_fraction` must be a float in (0, 1); got "
                f"{self.validation_fraction!r}."
            )
        _check_choice(self.schedule, "schedule", ("cosine", "constant"))
        _check_choice(self.freeze, "freeze", FREEZE_MODES)
        _check_choice(self.input_scaling, "input_scaling", ("scalar", "channel", "none"))
        self.device = str(torch.device(self.device))
        if self.checkpoint_path is not None:
            self.checkpoint_path = os.fspath(self.checkpoint_path)

    @property
    def warmup(self) -> int:
        """Warm-up epochs in effect (``warmup_epochs``, or 5% of ``max_epochs`` if ``None``)."""
        if self.warmup_epochs is None:
            return round(0.05 * self.max_epochs)
        return self.warmup_epochs

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dictionary."""
        return dataclasses.asdict(self)


def scheduled_learning_rate(
    step: int,
    *,
    peak: float,
    total_steps: int,
    warmup_steps: int,
    schedule: Literal["cosine", "constant"] = "cosine",
    minimum: float = 0.0,
) -> float:
    """Learning rate of optimisation step ``step`` (0-based) under warm-up then cosine/constant.

    Warm-up: ``peak * (step + 1) / warmup_steps`` for ``step < warmup_steps``, so the last
    warm-up step runs at ``peak``. Then ``peak`` (constant) or
    ``minimum + (peak - minimum) * (1 + cos(pi * (step - warmup_steps) / decay_steps)) / 2``
    with ``decay_steps = total_steps - warmup_steps`` (cosine), which starts at ``peak``.

    Args:
        step: Optimisation step, counted from 0.
        peak: The nominal learning rate.
        total_steps: Number of steps of the whole run.
        warmup_steps: Number of warm-up steps.
        schedule: ``"cosine"`` or ``"constant"``.
        minimum: The rate the cosine decays to.

    Returns:
        The learning rate.

    Example:
        >>> [scheduled_learning_rate(s, peak=1.0, total_steps=6, warmup_steps=2) for s in (0, 1, 2)]
        [0.5, 1.0, 1.0]
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return minimum + (peak - minimum) * 0.5 * (1.0 + math.cos(math.pi * progress))


def pretrain_vicreg(
    encoder: nn.Module,
    views: Views,
    prior: Distribution | None = None,
    *,
    num_simulations: int = 20_000,
    x: Tensor | None = None,
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
    """
    cfg = _resolve_config(config, config_overrides)
    device = torch.device(cfg.device)
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"`encoder` must be a torch.nn.Module, got {type(encoder).__name__}.")
    kind = _check_views(views)
    distributed.local_batch_size(cfg.batch_size)  # a global batch, split evenly over the ranks
    checkpoint = (  # only rank 0 owns (and writes) the file; its errors are raised on every rank
        distributed.on_main_process(lambda: _CheckpointFile(cfg))
        if cfg.checkpoint_path is not None
        else None
    )
    inputs_given = _check_inputs(kind, prior, x, num_simulations, device)
    if kind == "x":
        num_simulations = inputs_given.shape[0]
    num_val = round(num_simulations * cfg.validation_fraction)
    num_train = num_simulations - num_val
    if num_val < MIN_BATCH_SIZE or num_train < cfg.batch_size:
        raise ValueError(
            f"{num_simulations} simulations with validation_fraction="
            f"{cfg.validation_fraction} give {num_train} training and {num_val} validation "
            f"samples; need at least batch_size={cfg.batch_size} training and "
            f"{MIN_BATCH_SIZE} validation samples. Use more simulations or a smaller batch_size."
        )
    check_freeze_mode(encoder, cfg.freeze)

    # ---- data: parameters or stored x, split, validation bank, scaling (all seeded) ----------
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    inputs = _draw_theta(prior, num_simulations, device) if kind == "theta" else inputs_given
    order = torch.randperm(num_simulations, generator=generator).to(device)
    train_inputs, val_inputs = inputs[order[:num_train]], inputs[order[num_train:]]
    chunk = max(cfg.batch_size, 1024)
    val_a, val_b = _views_in_chunks(views, val_inputs, chunk, device)
    view_shape = tuple(val_a.shape[1:])
    bank = None if cfg.fresh_views else _views_in_chunks(views, train_inputs, chunk, device)
    mean, std = _input_scaling(views, train_inputs, bank, cfg.input_scaling, chunk, view_shape)

    # ---- modules: embedding with scaling, encoder probe, expander, optimiser, schedule -------
    encoder.to(device)
    embedding = SymmetryEmbedding(encoder, input_mean=mean, input_std=std, freeze="none")
    embedding.to(device)
    output_dim = _probe_encoder(embedding, val_a)
    if expander is None:
        expander = Expander(output_dim)
    elif not isinstance(expander, nn.Module):
        raise TypeError(f"`expander` must be a torch.nn.Module, got {type(expander).__name__}.")
    expander.to(device)
    _probe_expander(expander, embedding, val_a)
    distributed.broadcast_module(embedding)  # rank 0's initial weights on every rank
    distributed.broadcast_module(expander)
    steps_per_epoch = num_train // cfg.batch_size
    total_steps = cfg.max_epochs * steps_per_epoch
    warmup_steps = cfg.warmup * steps_per_epoch
    optimizer = torch.optim.AdamW(
        [*encoder.parameters(), *expander.parameters()],
        lr=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: scheduled_learning_rate(
            step,
            peak=1.0,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            schedule=cfg.schedule,
            minimum=cfg.min_learning_rate / cfg.learning_rate,
        ),
    )
    state = _RunState(history={key: [] for key in _history_keys()})
    fingerprint = [num_simulations, float(inputs.double().sum()), float(val_a.double().sum())]
    distributed.check_same_on_all_ranks(fingerprint, "pretraining data (inputs, validation views)")

    saved = (  # read by rank 0, sent to all: a checkpoint of any world size resumes on any
        distributed.on_main_process(lambda: checkpoint.load(), share_result=True)
        if cfg.checkpoint_path is not None
        else None
    )
    if saved is not None:
        _restore(
            saved,
            cfg,
            fingerprint,
            embedding,
            expander,
            optimizer,
            scheduler,
            state,
            generator,
            device,
        )

    progress = tqdm(
        total=cfg.max_epochs,
        initial=state.epochs_done,
        desc="VICReg pretraining",
        unit="epoch",
        disable=not (cfg.show_progress_bar and distributed.is_main_process()),
    )
    try:
        while not state.finished:
            epoch = state.epochs_done + 1
            started = time.perf_counter()
            train_terms, lr = _train_epoch(
                embedding,
                expander,
                views,
                train_inputs,
                bank,
                optimizer,
                scheduler,
                generator,
                cfg,
                epoch,
                view_shape,
            )
            val_terms, stats = _validate(embedding, expander, val_a, val_b, cfg)
            _record(
                state.history,
                epoch,
                train_terms,
                val_terms,
                stats,
                lr,
                time.perf_counter() - started,
            )
            _early_stopping_update(state, val_terms["total"], epoch, embedding, expander, cfg)
            state.epochs_done = epoch
            if cfg.checkpoint_path is not None:  # global state, written by rank 0 only
                distributed.on_main_process(
                    lambda: checkpoint.write(
                        _checkpoint_dict(
                            cfg,
                            fingerprint,
                            embedding,
                            expander,
                            optimizer,
                            scheduler,
                            state,
                            generator,
                            device,
                        )
                    )
                )
            progress.update(1)
            progress.set_postfix(
                train=train_terms["total"],
                val=val_terms["total"],
                inv=val_terms["invariance"],
                var=val_terms["variance"],
                cov=val_terms["covariance"],
            )
            if callback is not None:
                callback(epoch, state.history)
    finally:
        progress.close()

    embedding.load_state_dict(state.best_embedding)
    expander.load_state_dict(state.best_expander)
    embedding.history = state.history
    embedding.freeze = cfg.freeze
    embedding.reset_input_check()  # pretraining batches used it up; sbi's first batches count
    return embedding.eval()


# ==================================================================================== internals
@dataclass
class _RunState:
    history: dict[str, list[Any]]
    epochs_done: int = 0
    finished: bool = False
    best_total: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_embedding: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    best_expander: dict[str, Tensor] = dataclasses.field(default_factory=dict)


def _history_keys() -> list[str]:
    keys = ["epoch"]
    keys += [f"train_{t}" for t in _LOSS_TERMS] + [f"val_{t}" for t in _LOSS_TERMS]
    return [*keys, "lr", "summary_std", "effective_rank", "val_invariance_error", "epoch_time_s"]


def _check_int(value: object, name: str, minimum: int, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}{why}; got {value!r}.")


def _check_number(value: object, name: str, positive: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"`{name}` must be a finite number {bound}; got {value!r}.")


def _check_choice(value: object, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}; got {value!r}.")


def _resolve_config(config: PretrainConfig | None, overrides: dict[str, Any]) -> PretrainConfig:
    if config is None:
        config = PretrainConfig()
    elif not isinstance(config, PretrainConfig):
        raise TypeError(f"`config` must be a PretrainConfig, got {type(config).__name__}.")
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(
            f"Unknown pretraining option(s) {unknown}; valid options: {sorted(fields)}."
        )
    return dataclasses.replace(config, **overrides)


def _check_views(views: Any) -> str:
    kind = getattr(views, "input_kind", None)
    if not callable(views) or kind not in ("theta", "x"):
        raise TypeError(
            "`views` must be a Views object: callable, with input_kind 'theta' (e.g. "
            "ResimulatedViews) or 'x' (e.g. AugmentedViews); got "
            f"{type(views).__name__} with input_kind={kind!r}."
        )
    return kind


def _check_inputs(
    kind: str,
    prior: Distribution | None,
    x: Tensor | None,
    num_simulations: int,
    device: torch.device,
) -> Tensor:
    if kind == "theta":
        if prior is None:
            raise ValueError(
                "`views` simulate from parameters (input_kind='theta'), so `prior` is required."
            )
        if x is not None:
            raise ValueError(
                "`x` was given but `views` simulate from parameters (input_kind='theta'); use "
                "views with input_kind='x' (e.g. AugmentedViews) to pretrain on stored data."
            )
        if not hasattr(prior, "sample"):
            raise TypeError(f"`prior` must be a distribution, got {type(prior).__name__}.")
        _check_int(num_simulations, "num_simulations", 1)
        return torch.empty(0)
    if x is None:
        raise ValueError(
            "`views` augment stored data (input_kind='x'), so `x` is required (and `prior` "
            "is not used)."
        )
    check_tensor(x, "x")
    if x.ndim < 2 or not torch.is_floating_point(x):
        raise ValueError(
            f"`x` must be a floating-point tensor of shape (n, L) or (n, C, L); got "
            f"{tuple(x.shape)} of dtype {x.dtype}."
        )
    _check_device(x, device, "x")
    check_finite(x, "x")
    return x


def _check_device(value: Tensor, device: torch.device, name: str) -> None:
    if value.device != device and not (value.device.type == device.type and device.index is None):
        raise ValueError(
            f"{name} is on {value.device} but pretraining runs on device={str(device)!r}; move "
            "it there explicitly (pretraining never moves data between devices)."
        )


def _draw_theta(prior: Any, num: int, device: torch.device) -> Tensor:
    theta = prior.sample((num,))
    if theta.ndim == 1:
        theta = theta.unsqueeze(-1)
    if theta.ndim != 2 or theta.shape[0] != num:
        raise ValueError(
            f"`prior.sample((n,))` must return (n, theta_dim); got {tuple(theta.shape)}."
        )
    _check_device(theta, device, "The prior's samples")
    check_finite(theta, "prior samples")
    return theta


def _checked_views(views: Any, batch: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    pair = views(batch)
    if not (isinstance(pair, tuple | list) and len(pair) == 2):
        raise TypeError(f"`views` must return two tensors; got {type(pair).__name__}.")
    view_a, view_b = pair
    check_tensor(view_a, "first view")
    check_tensor(view_b, "second view")
    if view_a.shape != view_b.shape:
        raise ValueError(
            f"The two views must have the same shape; got {tuple(view_a.shape)} and "
            f"{tuple(view_b.shape)}."
        )
    if view_a.ndim < 2 or view_a.shape[0] != batch.shape[0]:
        raise ValueError(
            f"`views` must return one row per input ({batch.shape[0]}); got shape "
            f"{tuple(view_a.shape)}."
        )
    _check_device(view_a, device, "The output of `views`")
    return view_a, view_b


def _views_in_chunks(
    views: Any, inputs: Tensor, chunk: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    parts = [
        _checked_views(views, inputs[i : i + chunk], device)
        for i in range(0, inputs.shape[0], chunk)
    ]
    view_a = torch.cat([p[0] for p in parts])
    view_b = torch.cat([p[1] for p in parts])
    check_finite(view_a, "views (first view)")
    check_finite(view_b, "views (second view)")
    return view_a, view_b


def _input_scaling(
    views: Any,
    train_inputs: Tensor,
    bank: tuple[Tensor, Tensor] | None,
    mode: str,
    chunk: int,
    view_shape: tuple[int, ...],
) -> tuple[Tensor, Tensor]:
    """Mean and std of the training views, over everything or per channel (dim 1)."""
    if mode == "none":
        return torch.zeros(1), torch.ones(1)
    if mode == "channel" and len(view_shape) < 2:
        raise ValueError(
            "input_scaling='channel' needs views of shape (n, C, L); got views of shape "
            f"(n, {view_shape[0]}). Use input_scaling='scalar'."
        )

    def reduce(v: Tensor) -> tuple[Tensor, Tensor, int]:
        v = v.detach().double()
        if mode == "channel":
            v = v.transpose(0, 1).reshape(v.shape[1], -1)
        else:
            v = v.reshape(1, -1)
        return v.sum(dim=1).cpu(), (v**2).sum(dim=1).cpu(), v.shape[1]

    # Fresh views under several processes: each rank simulates its share of the chunks.
    starts, sharded = distributed.shard_items(range(0, train_inputs.shape[0], chunk))
    sharded = sharded and bank is None

    def batches() -> Iterator[Tensor]:
        if bank is not None:
            yield from bank
            return
        if sharded:  # independent random streams per rank
            torch.manual_seed(distributed.rank_seed(int(torch.randint(0, 2**62, ())), "scaling"))
        for i in starts:
            yield from _checked_views(views, train_inputs[i : i + chunk], train_inputs.device)

    total, total_sq, count = 0.0, 0.0, 0
    for v in batches():  # streamed: fresh views are not all kept in memory
        if tuple(v.shape[1:]) != view_shape:
            raise ValueError(
                f"`views` returned shape {tuple(v.shape[1:])} per row, then {view_shape}; views "
                "must always have the same shape."
            )
        check_finite(v, "training views")
        s, sq, n = reduce(v)
        total, total_sq, count = total + s, total_sq + sq, count + n
    if sharded:
        sums = distributed.all_reduce_sum(torch.stack([total, total_sq, total * 0 + count]))
        total, total_sq, count = sums[0], sums[1], int(sums[2][0])
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(0).sqrt()
    if bool((std == 0).any()):
        raise ValueError("The training views are constant (zero standard deviation).")
    return mean.float(), std.float()


def _probe_encoder(embedding: SymmetryEmbedding, sample: Tensor) -> int:
    encoder = embedding.encoder
    embedding.eval()
    try:
        with torch.no_grad():
            z = embedding(sample[: min(4, sample.shape[0])])
            z_one = embedding(sample[:1])
    except Exception as error:
        raise ValueError(
            f"The encoder failed on a probe batch of views of shape "
            f"{(min(4, sample.shape[0]), *sample.shape[1:])} (and of one view, as sbi probes): "
            f"{error}"
        ) from error
    finally:
        embedding.train()
    if z_one.shape != (1, z.shape[1]):
        raise ValueError(
            f"The encoder returned {tuple(z_one.shape)} for a batch of one; expected "
            f"(1, {z.shape[1]})."
        )
    check_finite(z, "encoder output on the probe batch")
    declared = getattr(encoder, "output_dim", None)
    if declared is not None and declared != z.shape[1]:
        raise ValueError(
            f"encoder.output_dim is {declared} but the encoder returned {z.shape[1]} columns."
        )
    return int(z.shape[1])


def _probe_expander(expander: nn.Module, embedding: SymmetryEmbedding, sample: Tensor) -> None:
    expander.eval()
    try:
        with torch.no_grad():
            out = expander(embedding(sample[: min(4, sample.shape[0])]))
    except Exception as error:
        raise ValueError(f"The expander failed on the encoder's summaries: {error}") from error
    finally:
        expander.train()
    if not isinstance(out, Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"The expander must return (B, K); got {shape}.")


def _loss(
    embedding: SymmetryEmbedding,
    expander: nn.Module,
    view_a: Tensor,
    view_b: Tensor,
    cfg: PretrainConfig,
) -> Any:
    z = expander(embedding(torch.cat([view_a, view_b])))
    z_a, z_b = z.chunk(2)
    return vicreg_loss(
        z_a,
        z_b,
        invariance_weight=cfg.invariance_weight,
        variance_weight=cfg.variance_weight,
        covariance_weight=cfg.covariance_weight,
        gamma=cfg.gamma,
        global_batch=True,  # statistics of all ranks' rows (no-op in one process)
    )


def _train_epoch(
    embedding: SymmetryEmbedding,
    expander: nn.Module,
    views: Any,
    train_inputs: Tensor,
    bank: tuple[Tensor, Tensor] | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    cfg: PretrainConfig,
    epoch: int,
    view_shape: tuple[int, ...],
) -> tuple[dict[str, float], float]:
    embedding.train()
    expander.train()
    device = train_inputs.device
    if distributed.is_distributed():  # fresh views: independent per rank, resumable per epoch
        torch.manual_seed(distributed.rank_seed(cfg.seed, "views", epoch))
    order = torch.randperm(train_inputs.shape[0], generator=generator).to(device)
    steps = train_inputs.shape[0] // cfg.batch_size
    sums = torch.zeros(len(_LOSS_TERMS), device=device, dtype=torch.float64)
    lr = math.nan
    for step in range(steps):
        index = distributed.rank_share(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
        if bank is None:
            view_a, view_b = _checked_views(views, train_inputs[index], device)
            if tuple(view_a.shape[1:]) != view_shape:
                raise ValueError(
                    f"`views` returned shape {tuple(view_a.shape[1:])} per row in epoch {epoch}, "
                    f"{view_shape} before; views must always have the same shape."
                )
        else:
            view_a, view_b = bank[0][index], bank[1][index]
        try:
            terms = _loss(embedding, expander, view_a, view_b, cfg)
        except ValueError as error:
            raise RuntimeError(
                f"VICReg failed in epoch {epoch}, step {step + 1}: {error} If the summaries "
                "became NaN/inf, lower learning_rate or set clip_grad_norm."
            ) from error
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        distributed.average_gradients([*embedding.parameters(), *expander.parameters()])
        if cfg.clip_grad_norm is not None:
            params = [*embedding.parameters(), *expander.parameters()]
            nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
        lr = float(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        sums += torch.stack([getattr(terms, t).detach() for t in _LOSS_TERMS]).double()
    means = (sums / steps).tolist()
    return dict(zip(_LOSS_TERMS, means, strict=True)), lr


def _validate(
    embedding: SymmetryEmbedding,
    expander: nn.Module,
    val_a: Tensor,
    val_b: Tensor,
    cfg: PretrainConfig,
) -> tuple[dict[str, float], dict[str, Any]]:
    embedding.eval()
    expander.eval()
    num = val_a.shape[0]
    chunks = max(1, num // cfg.batch_size)
    sums = torch.zeros(len(_LOSS_TERMS), dtype=torch.float64)
    summaries_a, summaries_b = [], []
    parts, sharded = distributed.shard_items(torch.arange(num).tensor_split(chunks))
    with torch.no_grad():
        for index in parts:  # the single-process chunks, shared out over the ranks
            index = index.to(val_a.device)
            a, b = val_a[index], val_b[index]
            y_a, y_b = embedding(a), embedding(b)
            summaries_a.append(y_a)
            summaries_b.append(y_b)
            expanded = expander(torch.cat([y_a, y_b])).chunk(2)
            terms = vicreg_loss(
                *expanded,
                invariance_weight=cfg.invariance_weight,
                variance_weight=cfg.variance_weight,
                covariance_weight=cfg.covariance_weight,
                gamma=cfg.gamma,
            )
            values = torch.stack([getattr(terms, t) for t in _LOSS_TERMS]).double().cpu()
            sums += values * len(index)
    z_a, z_b = torch.cat(summaries_a), torch.cat(summaries_b)
    if sharded:
        sums = distributed.all_reduce_sum(sums)
        z_a, z_b = distributed.gather_rows(z_a), distributed.gather_rows(z_b)
    stats = collapse_statistics(z_a)
    stats["invariance_error"] = summary_invariance(z_a, z_b)
    means = (sums / num).tolist()
    return dict(zip(_LOSS_TERMS, means, strict=True)), stats


def _record(
    history: dict[str, list[Any]],
    epoch: int,
    train: dict[str, float],
    val: dict[str, float],
    stats: dict[str, Any],
    lr: float,
    seconds: float,
) -> None:
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
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _early_stopping_update(
    state: _RunState,
    val_total: float,
    epoch: int,
    embedding: SymmetryEmbedding,
    expander: nn.Module,
    cfg: PretrainConfig,
) -> None:
    if val_total < state.best_total:
        state.best_total, state.best_epoch, state.bad_epochs = val_total, epoch, 0
        state.best_embedding = _state_copy(embedding)
        state.best_expander = _state_copy(expander)
    else:
        state.bad_epochs += 1
    state.finished = state.bad_epochs >= cfg.stop_after_epochs or epoch >= cfg.max_epochs


# ---------------------------------------------------------------------------------- checkpoints
class _CheckpointFile:
    """A checkpoint file this run owns: refuses to replace files it did not write."""

    def __init__(self, cfg: PretrainConfig) -> None:
        assert cfg.checkpoint_path is not None
        self.path = Path(cfg.checkpoint_path)
        self.resume = cfg.resume
        if self.path.is_dir():
            raise ValueError(f"`checkpoint_path` must be a file path; {self.path} is a folder.")
        if not self.path.parent.is_dir():
            raise FileNotFoundError(
                f"The folder of `checkpoint_path` ({self.path.parent}) does not exist."
            )
        if self.path.exists() and not (cfg.resume or cfg.overwrite_checkpoint):
            raise FileExistsError(
                f"{self.path} exists; pass resume=True to continue from it or "
                "overwrite_checkpoint=True to replace it."
            )
        self._stamp: tuple[int, int, int] | None = None
        self.run_id = uuid.uuid4().hex

    def load(self) -> dict[str, Any] | None:
        if not (self.resume and self.path.exists()):
            return None
        saved = torch.load(self.path, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict) or saved.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"{self.path} is not a pretraining checkpoint.")
        return saved

    def _current_stamp(self) -> tuple[int, int, int] | None:
        if not self.path.exists():
            return None
        info = self.path.stat()
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def write(self, payload: dict[str, Any]) -> None:
        current = self._current_stamp()
        if self._stamp is not None and current is not None and current != self._stamp:
            raise FileExistsError(
                f"{self.path} was changed by someone else during this run; not overwriting it."
            )
        payload["run_id"] = self.run_id
        tmp = self.path.with_name(f".{self.path.name}.{self.run_id}.tmp")
        try:
            torch.save(payload, tmp)
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()
        self._stamp = self._current_stamp()


def _rng_state(generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _checkpoint_dict(
    cfg: PretrainConfig,
    fingerprint: list[float],
    embedding: SymmetryEmbedding,
    expander: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: _RunState,
    generator: torch.Generator,
    device: torch.device,
) -> dict[str, Any]:
    return {
        "format": _CHECKPOINT_FORMAT,
        "config": cfg.to_dict(),
        "fingerprint": fingerprint,
        "embedding": embedding.state_dict(),
        "expander": expander.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epochs_done": state.epochs_done,
        "finished": state.finished,
        "history": state.history,
        "best": {
            "total": state.best_total,
            "epoch": state.best_epoch,
            "bad_epochs": state.bad_epochs,
            "embedding": state.best_embedding,
            "expander": state.best_expander,
        },
        "rng": _rng_state(generator, device),
    }


def _restore(
    saved: dict[str, Any],
    cfg: PretrainConfig,
    fingerprint: list[float],
    embedding: SymmetryEmbedding,
    expander: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: _RunState,
    generator: torch.Generator,
    device: torch.device,
) -> None:
    now, then = cfg.to_dict(), saved["config"]
    changed = sorted(k for k in now if k not in _RESUMABLE_CHANGES and now[k] != then.get(k))
    if changed:
        raise ValueError(
            f"Cannot resume from {cfg.checkpoint_path}: setting(s) {changed} differ from the "
            f"checkpoint ({ {k: then.get(k) for k in changed} })."
        )
    if saved["fingerprint"] != fingerprint:
        raise ValueError(
            f"Cannot resume from {cfg.checkpoint_path}: the training data differ from the "
            "checkpoint's (different prior, views, x or num_simulations)."
        )
    embedding.load_state_dict(saved["embedding"])
    expander.load_state_dict(saved["expander"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    state.history = copy.deepcopy(saved["history"])
    state.epochs_done = int(saved["epochs_done"])
    state.finished = bool(saved["finished"])
    best = saved["best"]
    state.best_total, state.best_epoch = float(best["total"]), int(best["epoch"])
    state.bad_epochs = int(best["bad_epochs"])
    state.best_embedding = {k: v.to(device) for k, v in best["embedding"].items()}
    state.best_expander = {k: v.to(device) for k, v in best["expander"].items()}
    rng = saved["rng"]
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["generator"])
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)
