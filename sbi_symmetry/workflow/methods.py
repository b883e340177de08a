"""The methods the project compares, each trained the same way from the same simulations.

* ``symmetry_npe``: VICReg-pretrained
  :class:`~sbi_symmetry.symmetry.embedding.SymmetryEmbedding` + sbi NPE (method A);
* ``raw_npe``: sbi NPE on the raw data with its default network (baseline a);
* ``end_to_end_npe``: sbi NPE with the same encoder architecture trained jointly, no pretraining
  (baseline b);
* ``embed_emulate``: the contrastive two-tower ratio estimator (method B);
* ``nre_c``: sbi ``NRE_C`` with the same encoder as x-embedding (baseline for method B).

Every function returns a :class:`TrainedMethod` with the sbi posterior and its costs: trainable
parameters, multiply-accumulates of one training forward pass at batch 1000, wall times, and the
per-epoch loss curves. Nothing is written to disk (sbi's TensorBoard logging is off).

Example:
    >>> import torch
    >>> from sbi_symmetry.tasks import DampedOscillator
    >>> task = DampedOscillator()
    >>> theta, x = task.sample_joint(300, generator=torch.Generator().manual_seed(0))
    >>> m = raw_npe(task, theta, x, max_num_epochs=1, show_progress_bars=False)
    >>> m.posterior.sample((5,), x=x[:1], show_progress_bars=False).shape
    torch.Size([5, 2])
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, Literal

from sbi.inference import NPE, NRE_C
from sbi.inference.posteriors.posterior_parameters import MCMCPosteriorParameters
from sbi.neural_nets import classifier_nn, posterior_nn
from torch import Tensor, nn

from sbi_symmetry._sbi_compat import FlattenEmbedding, NullTracker, anneal, training_summary
from sbi_symmetry._validation import check_int
from sbi_symmetry.checkpoint import ResumableTraining
from sbi_symmetry.emulate import EmbedEmulate, product_estimator
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
from sbi_symmetry.symmetry.finetune import resolve_frozen_epochs, train_npe
from sbi_symmetry.tasks.base import NuisanceTask
from sbi_symmetry.workflow.pretraining import pretrain_tower
from sbi_symmetry.workflow.trained import TrainedMethod, combine
from sbi_symmetry.workflow.trained import finish as _finish


def mcmc_parameters(x: Tensor) -> MCMCPosteriorParameters:
    """MCMC settings for ratio-based posteriors: sbi's vectorised slice sampler.

    Chains start from prior samples resampled by the potential, except for multi-channel data
    ``(n, C, L)``: sbi 0.27's batched MCMC (``sample_batched``, used by SBC and TARP) passes each
    observation to the potential without its batch dimension while initialising, which splits a
    ``(C, L)`` observation into ``C`` i.i.d. trials; there the chains start from the prior and
    warm up longer.

    Args:
        x: The training data (only its number of dimensions matters).

    Returns:
        The posterior parameters for ``build_posterior``.
    """
    if x.ndim > 2:
        return MCMCPosteriorParameters(
            method="slice_np_vectorized",
            num_chains=20,
            warmup_steps=200,
            thin=1,
            init_strategy="proposal",
        )
    return MCMCPosteriorParameters(
        method="slice_np_vectorized",
        num_chains=20,
        warmup_steps=50,
        thin=1,
        init_strategy="resample",
    )


def _train_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    defaults = {"training_batch_size": 200, "stop_after_epochs": 20, "show_train_summary": False}
    return {**defaults, **kwargs}


def _train(
    trainer: Any,
    theta: Tensor,
    x: Tensor,
    train_kwargs: dict[str, Any],
    frozen: tuple[SymmetryEmbedding, int] | None = None,
    checkpoint: ResumableTraining | None = None,
    **extra: Any,
) -> tuple[nn.Module, float]:
    """Train an sbi trainer on ``(theta, x)``; return the estimator and the wall time.

    ``frozen``: an embedding inside the trainer's network and its frozen epochs
    (:func:`~sbi_symmetry.symmetry.finetune.train_npe`). ``train_kwargs["anneal"]``, if given
    and not 0: a last phase at the learning rate times it
    (:func:`~sbi_symmetry._sbi_compat.anneal`). ``checkpoint``: saves the training as it goes
    and resumes it; the seconds then include the earlier processes' training.
    """
    kwargs = _train_kwargs(train_kwargs)
    factor = kwargs.pop("anneal", 0.0)
    start = time.perf_counter()
    trainer.append_simulations(theta, x)
    with checkpoint.attach(trainer) if checkpoint is not None else nullcontext():
        if frozen is None:
            estimator = trainer.train(**kwargs, **extra)
        else:
            estimator = train_npe(trainer, frozen[0], frozen_epochs=frozen[1], **kwargs, **extra)
        if factor:  # the last phase, whichever way the first ones ran
            _end_line(trainer, kwargs)
            estimator = anneal(trainer, factor, **kwargs, **extra)
    seconds = time.perf_counter() - start + (checkpoint.earlier_seconds if checkpoint else 0.0)
    _end_line(trainer, kwargs)
    return estimator, seconds


def _end_line(trainer: Any, kwargs: dict[str, Any]) -> None:
    r"""End sbi 0.27's convergence message ("\r Neural network successfully converged ...").

    It has no newline; print one so that the next output starts on its own line. sbi prints
    it when the last ``train`` call stopped early; that call's cap counts from its start.
    """
    ends = [0, *training_summary(trainer)["epochs_trained"]]
    if ends[-1] - ends[-2] <= kwargs.get("max_num_epochs", 2**31 - 1):
        print()


def _npe(
    name: str,
    task: NuisanceTask,
    theta: Tensor,
    x: Tensor,
    builder: Any,
    show_progress_bars: bool,
    train_kwargs: dict[str, Any],
    frozen: tuple[SymmetryEmbedding, int] | None = None,
    checkpoint: ResumableTraining | None = None,
    **finish: Any,
) -> TrainedMethod:
    trainer = NPE(
        task.prior,
        density_estimator=builder,
        tracker=NullTracker(),
        show_progress_bars=show_progress_bars,
    )
    estimator, seconds = _train(trainer, theta, x, train_kwargs, frozen, checkpoint)
    posterior = trainer.build_posterior(estimator)
    return _finish(name, trainer, estimator, seconds, theta, x, posterior, **finish)


def raw_npe(
    task: NuisanceTask,
    theta: Tensor,
    x: Tensor,
    *,
    model: str = "maf",
    flow_kwargs: dict[str, Any] | None = None,
    show_progress_bars: bool = True,
    checkpoint: ResumableTraining | None = None,
    **train_kwargs: Any,
) -> TrainedMethod:
    """NPE from sbi on the raw data with its default network and default ``z_score_x``.

    Multi-channel data ``(n, C, L)`` are flattened (sbi's flows take vectors).

    Args:
        task: The task (its prior is used).
        theta: Training parameters ``(n, d)``.
        x: Training simulations ``(n, *x_shape)``.
        model: Flow name for ``posterior_nn``.
        flow_kwargs: Extra ``posterior_nn`` arguments (e.g. ``hidden_features``); none by
            default, i.e. sbi's default network.
        show_progress_bars: Show sbi's progress.
        checkpoint: Saves the training as it goes and resumes it
            (:class:`~sbi_symmetry.checkpoint.ResumableTraining`); ``None``: not saved.
        **train_kwargs: Passed to ``NPE.train`` (e.g. ``max_num_epochs``).

    Returns:
        The trained method.
    """
    flat = {"embedding_net": FlattenEmbedding()} if x.ndim > 2 else {}  # (B, C, L) data
    builder = posterior_nn(model, **flat, **(flow_kwargs or {}))
    return _npe(
        "raw_npe", task, theta, x, builder, show_progress_bars, train_kwargs, checkpoint=checkpoint
    )


def end_to_end_npe(
    task: NuisanceTask,
    theta: Tensor,
    x: Tensor,
    encoder: nn.Module,
    *,
    model: str = "maf",
    flow_kwargs: dict[str, Any] | None = None,
    show_progress_bars: bool = True,
    checkpoint: ResumableTraining | None = None,
    **train_kwargs: Any,
) -> TrainedMethod:
    """NPE from sbi with ``encoder`` as embedding, trained jointly with the flow, no pretraining.

    ``z_score_x="structured"`` (one mean and scale for all samples) gives the encoder the same
    kind of input scaling a pretrained :class:`SymmetryEmbedding` applies, without breaking the
    shift symmetry the way per-index standardisation would.

    Args:
        task: The task.
        theta: Training parameters.
        x: Training simulations.
        encoder: A fresh encoder (copied, so the caller's module is not trained).
        model: Flow name.
        flow_kwargs: Extra ``posterior_nn`` arguments (e.g. ``hidden_features``).
        show_progress_bars: Show sbi's progress.
        checkpoint: As for :func:`raw_npe`.
        **train_kwargs: Passed to ``NPE.train``.

    Returns:
        The trained method.
    """
    net = copy.deepcopy(encoder)
    builder = posterior_nn(model, embedding_net=net, z_score_x="structured", **(flow_kwargs or {}))
    return _npe(
        "end_to_end_npe",
        task,
        theta,
        x,
        builder,
        show_progress_bars,
        train_kwargs,
        checkpoint=checkpoint,
    )


def symmetry_npe(
    task: NuisanceTask,
    theta: Tensor,
    x: Tensor,
    encoder: nn.Module,
    *,
    model: str = "maf",
    flow_kwargs: dict[str, Any] | None = None,
    pretrain_simulations: int = 20_000,
    pretrain_views: str = "auto",
    pretrain_kwargs: dict[str, Any] | None = None,
    embedding: SymmetryEmbedding | None = None,
    frozen_epochs: int | Literal["auto"] = 0,
    show_progress_bars: bool = True,
    checkpoint: ResumableTraining | None = None,
    **train_kwargs: Any,
) -> TrainedMethod:
    """VICReg-pretrain ``encoder`` on the task's views, then train NPE on the embedding.

    Args:
        task: The task (its ``views`` and ``prior`` drive pretraining).
        theta: Training parameters for NPE.
        x: Training simulations for NPE.
        encoder: A fresh encoder (copied, so the caller's module is not trained).
        model: Flow name.
        flow_kwargs: Extra ``posterior_nn`` arguments (e.g. ``hidden_features``);
            ``z_score_x`` is always ``"none"`` (the embedding scales its own input).
        pretrain_simulations: Parameter draws for re-simulated pretraining views (two
            simulator calls each; see ``PretrainConfig.fresh_views``).
        pretrain_views: ``"resimulated"`` (the task's views of fresh draws), ``"shift"``
            (noise-filled shifts of the training set ``x``: no simulator call) or ``"auto"``
            (``"shift"`` where :func:`~sbi_symmetry.views.supports_shift_views` accepts the
            task, else ``"resimulated"``); ``extra["pretrain_views"]`` says which ran.
        pretrain_kwargs: Overrides of :class:`~sbi_symmetry.symmetry.pretrain.PretrainConfig`.
        embedding: An already pretrained embedding to reuse instead of pretraining (copied,
            with its freeze mode).
        frozen_epochs: NPE epochs with the embedding frozen before it is fine-tuned
            (:func:`~sbi_symmetry.symmetry.finetune.train_npe`); 0 fine-tunes from the start;
            ``"auto"``: 20, at most 4,500 optimiser steps. ``extra["frozen_epochs"]`` says the
            setting that ran (sbi trains ``frozen_epochs + 1`` epochs).
        show_progress_bars: Progress bars for pretraining and training.
        checkpoint: Saves the pretrained embedding (with the views it simulated, still counted
            when resumed) and the NPE training as it goes, and resumes them
            (:class:`~sbi_symmetry.checkpoint.ResumableTraining`); ``None``: not saved.
        **train_kwargs: Passed to ``NPE.train``.

    Returns:
        The trained method; ``extra["embedding"]`` is the embedding as sbi left it.
    """
    frozen_epochs = resolve_frozen_epochs(frozen_epochs, len(theta), **_train_kwargs(train_kwargs))
    pretrain_seconds, views_used = 0.0, "reused"
    pretrained = embedding
    if pretrained is None:
        settings = {"show_progress_bar": show_progress_bars, **(pretrain_kwargs or {})}
        pretrained, pretrain_seconds, views_used = pretrain_tower(
            task, theta, x, encoder, pretrain_views, pretrain_simulations, settings, checkpoint
        )
    embedding = copy.deepcopy(pretrained)  # sbi fine-tunes this copy; `pretrained` stays as is
    builder = embedding.posterior_nn(model, **(flow_kwargs or {}))
    pre_history = {
        f"pretrain_{k}": list(v)
        for k, v in pretrained.history.items()
        if k in ("train_total", "val_total")
    }
    return _npe(
        "symmetry_npe",
        task,
        theta,
        x,
        builder,
        show_progress_bars,
        train_kwargs,
        frozen=(embedding, frozen_epochs) if frozen_epochs else None,
        checkpoint=checkpoint,
        pretrain_seconds=pretrain_seconds,
        extra={
            "embedding": embedding,
            "pretrained_embedding": pretrained,
            "pretrain_views": views_used,
            "frozen_epochs": frozen_epochs,
        },
        history=pre_history,
    )


def embed_emulate(
    task: NuisanceTask,
    theta: Tensor,
    x: Tensor,
    encoder: nn.Module,
    *,
    show_progress_bars: bool = True,
    estimator_kwargs: dict[str, Any] | None = None,
    pretrain_kwargs: dict[str, Any] | None = None,
    pretrain_views: str = "auto",
    pretrain_simulations: int = 20_000,
    members: int = 1,
    checkpoints: Callable[[int], ResumableTraining | None] | None = None,
    **train_kwargs: Any,
) -> TrainedMethod:
    """Train :class:`~sbi_symmetry.emulate.EmbedEmulate`; its posterior is a ``TwoTowerPosterior``.

    Args:
        task: The task.
        theta: Training parameters.
        x: Training simulations.
        encoder: The data tower ``f(x)`` (copied).
        show_progress_bars: Show sbi's progress.
        estimator_kwargs: Extra arguments of ``EmbedEmulate`` (temperature, views, ...).
        pretrain_kwargs: If given, VICReg-pretrain the data tower first, as symmetry NPE does
            (:class:`~sbi_symmetry.symmetry.pretrain.PretrainConfig` overrides), and train the
            whole pretrained embedding (its input scaling included) with the ratio.
        pretrain_views: Views of that pretraining, as in :func:`symmetry_npe`.
        pretrain_simulations: Parameter draws for re-simulated views, as in :func:`symmetry_npe`.
        members: Estimators to train on the same simulations, one after another, each with its
            own pretraining (seed ``pretrain_kwargs["seed"] + k``; re-simulated views are drawn
            again) and a fresh emulator; more than one: the posterior is their product
            (:func:`~sbi_symmetry.emulate.product_estimator`), costs add up.
        checkpoints: ``checkpoints(k)``: where member ``k`` (from 0) saves its pretraining and
            training as they go and resumes them, as in :func:`symmetry_npe`; ``None``: not saved.
        **train_kwargs: Passed to ``EmbedEmulate.train``.

    Returns:
        The trained method; with pretraining, ``extra["pretrain_views"]`` says which views ran.
    """
    check_int(members, "members", 1)
    trained, estimator_kwargs = [], estimator_kwargs or {}
    for k in range(members):  # one after another, each from its own pretraining
        tower, pretrain_seconds, extra = copy.deepcopy(encoder), 0.0, {}
        checkpoint = checkpoints(k) if checkpoints is not None else None
        if pretrain_kwargs is not None:
            kwargs = {"show_progress_bar": show_progress_bars, **pretrain_kwargs}
            if kwargs.get("seed") is not None:
                kwargs["seed"] += k  # member 0: the seed given
            tower, pretrain_seconds, used = pretrain_tower(
                task, theta, x, encoder, pretrain_views, pretrain_simulations, kwargs, checkpoint
            )
            tower = copy.deepcopy(tower)  # trained below; the saved pretraining stays as it is
            tower.freeze = "none"  # the ratio trains all of it
            extra["pretrain_views"] = used
        trainer = EmbedEmulate(
            task.prior, encoder=tower, show_progress_bars=show_progress_bars, **estimator_kwargs
        )
        estimator, seconds = _train(trainer, theta, x, train_kwargs, checkpoint=checkpoint)
        args = (trainer, estimator, seconds, theta, x, None, pretrain_seconds, extra)
        trained.append(_finish("embed_emulate", *args))
    if members > 1:  # one member: its estimator as trained
        estimator = product_estimator([m.estimator for m in trained])
    posterior = trainer.build_posterior(estimator)  # two-tower sampler, MCMC only as fallback
    return combine(trained, estimator, posterior)


def nre_c(
    task: NuisanceTask,
    theta: Tensor,
    x: Tensor,
    encoder: nn.Module,
    *,
    model: str = "resnet",
    num_classes: int = 5,
    show_progress_bars: bool = True,
    checkpoint: ResumableTraining | None = None,
    **train_kwargs: Any,
) -> TrainedMethod:
    """``NRE_C`` from sbi with ``encoder`` as x-embedding (default classifier and classes).

    Args:
        task: The task.
        theta: Training parameters.
        x: Training simulations.
        encoder: The x-embedding (copied).
        model: ``classifier_nn`` model.
        num_classes: NRE-C's number of classes ``K``.
        show_progress_bars: Show sbi's progress.
        checkpoint: As for :func:`raw_npe`.
        **train_kwargs: Passed to ``NRE_C.train``.

    Returns:
        The trained method.
    """
    builder = classifier_nn(model, embedding_net_x=copy.deepcopy(encoder), z_score_x="structured")
    trainer = NRE_C(
        task.prior, classifier=builder, tracker=NullTracker(), show_progress_bars=show_progress_bars
    )
    estimator, seconds = _train(
        trainer, theta, x, train_kwargs, checkpoint=checkpoint, num_classes=num_classes
    )
    posterior = trainer.build_posterior(estimator, posterior_parameters=mcmc_parameters(x))
    return _finish("nre_c", trainer, estimator, seconds, theta, x, posterior)
