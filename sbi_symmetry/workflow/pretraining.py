"""VICReg pretraining of a method's tower, saved and resumed with the method's training.

Example:
    >>> import torch
    >>> from sbi_symmetry.nets import ConvEncoder1D
    >>> from sbi_symmetry.tasks import DampedOscillator
    >>> task = DampedOscillator()
    >>> theta, x = task.sample_joint(64, generator=torch.Generator().manual_seed(0))
    >>> encoder = ConvEncoder1D.for_task(task, channels=2, num_blocks=1, output_dim=2)
    >>> settings = {"batch_size": 16, "max_epochs": 1, "show_progress_bar": False}
    >>> tower, seconds, used = pretrain_tower(task, theta, x, encoder, "shift", 0, settings)
    >>> used, tower.output_dim
    ('shift', 2)
"""

from __future__ import annotations

import copy
import time
from typing import Any

from torch import Tensor, nn

from sbi_symmetry.checkpoint import ResumableTraining
from sbi_symmetry.simulation.counting import CallWindow, add_calls
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
from sbi_symmetry.symmetry.pretrain import pretrain_vicreg
from sbi_symmetry.tasks.base import NuisanceTask
from sbi_symmetry.views import resolve_pretrain_views, shift_views

__all__ = ["EPOCHS_SUFFIX", "pretrain_tower"]

#: The pretraining's own epoch checkpoint beside the method's: ``<checkpoint stem><suffix>``.
EPOCHS_SUFFIX = "_pretraining.pt"


def pretrain_tower(
    task: NuisanceTask,
    theta: Tensor,
    x: Tensor,
    encoder: nn.Module,
    views: str,
    simulations: int,
    kwargs: dict[str, Any],
    checkpoint: ResumableTraining | None = None,
) -> tuple[SymmetryEmbedding, float, str]:
    """VICReg-pretrain a copy of ``encoder``; the embedding, its seconds and the views used.

    Args:
        task: The task (prior, views).
        theta: The training parameters (the hybrid loss's targets with shift views).
        x: The training simulations (the source of shift views).
        encoder: The tower to pretrain (copied).
        views: ``"shift"`` (noise-filled shifts of the stored ``x``: no simulator call),
            ``"resimulated"`` (the task's views of ``simulations`` fresh draws) or ``"auto"``.
        simulations: Parameter draws for re-simulated views.
        kwargs: :func:`~sbi_symmetry.symmetry.pretrain.pretrain_vicreg` settings.
        checkpoint: If given, a pretraining saved there is loaded instead of run again, and
            the views it simulated are counted on ``task``
            (:func:`~sbi_symmetry.simulation.counting.add_calls`); a new one is saved there.
            While it runs, its epochs are saved beside (``<checkpoint>_pretraining.pt``), so a
            cut pretraining continues from its last epoch, unless its views are re-simulated
            every epoch (the paper's set-up: the calls of the epochs before the cut could not
            be counted, so it starts again).

    Returns:
        The pretrained embedding, the seconds it took (when it ran) and the views used.
    """
    if checkpoint is None:
        return _pretrain(task, theta, x, encoder, views, simulations, kwargs)

    settings = kwargs
    if resolve_pretrain_views(task, views) == "shift" or kwargs.get("fresh_views") is not True:
        epochs = checkpoint.path.with_name(checkpoint.path.stem + EPOCHS_SUFFIX)
        settings = {**kwargs, "checkpoint_path": str(epochs), "resume": True}

    def pretrain() -> tuple[SymmetryEmbedding, float, str, int]:
        with CallWindow(task) as window:
            done = _pretrain(task, theta, x, encoder, views, simulations, settings)
        return (*done, window.calls)

    tower, seconds, used, calls = checkpoint.value("pretraining", pretrain)
    if "pretraining" in checkpoint.resumed:  # its views were simulated before the resume
        add_calls(task, calls)
    return tower, seconds, used


def _pretrain(
    task: NuisanceTask,
    theta: Tensor,
    x: Tensor,
    encoder: nn.Module,
    views: str,
    simulations: int,
    kwargs: dict[str, Any],
) -> tuple[SymmetryEmbedding, float, str]:
    """:func:`pretrain_tower` without a checkpoint."""
    start = time.perf_counter()
    used = resolve_pretrain_views(task, views)
    if used == "shift":  # views of the stored training set
        maker, inputs = shift_views(task), {"x": x, "theta": theta}
    else:
        maker, inputs = task.views, {"num_simulations": simulations}
    pretrained = pretrain_vicreg(copy.deepcopy(encoder), maker, task.prior, **inputs, **kwargs)
    return pretrained, time.perf_counter() - start, used
