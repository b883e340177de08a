"""Checkpoints of a pretraining run: one state object, written atomically every epoch.

A checkpoint holds the *global* state of the run (weights, optimiser, schedule, early-stopping
bookkeeping, history, random states), so it resumes under any number of processes and gives the
same result as an uninterrupted run. The file is replaced atomically
(:func:`sbi_symmetry._io.atomic_write`), and a run never replaces a file it did not write itself
unless asked to (``resume`` or ``overwrite_checkpoint``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sbi_symmetry._io import atomic_write
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
from sbi_symmetry.symmetry.pretrain.config import PretrainConfig

_CHECKPOINT_FORMAT = "sbi_symmetry.pretrain_checkpoint"
# Config fields that may change between an interrupted run and its resumption.
_RESUMABLE_CHANGES = frozenset(
    {"resume", "show_progress_bar", "overwrite_checkpoint", "checkpoint_path", "device"}
)


@dataclass
class RunState:
    """Progress and early-stopping bookkeeping of a run.

    Attributes:
        history: Per-epoch records (see ``pretrain_vicreg``).
        epochs_done: Epochs finished.
        finished: Early stopping or the epoch cap ended the run.
        best_total: Best validation total so far.
        best_epoch: Its epoch.
        bad_epochs: Epochs since it improved.
        best_embedding: The embedding's weights at the best epoch.
        best_expander: The expander's weights at the best epoch.

    Example:
        >>> run = RunState(history={"epoch": []})
        >>> run.epochs_done, run.finished
        (0, False)
    """

    history: dict[str, list[Any]]
    epochs_done: int = 0
    finished: bool = False
    best_total: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_embedding: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    best_expander: dict[str, Tensor] = dataclasses.field(default_factory=dict)


@dataclass
class TrainingState:
    """Everything a checkpoint saves and restores, in one place.

    Attributes:
        cfg: The settings of the run.
        fingerprint: Numbers identifying the training data.
        embedding: The embedding being trained.
        expander: The VICReg projector.
        optimizer: AdamW over both.
        scheduler: The learning-rate schedule.
        run: Progress and early stopping.
        generator: The generator of the epoch orders.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> emb = SymmetryEmbedding(nn.Linear(3, 2), freeze="none")
        >>> expander = nn.Linear(2, 4)
        >>> opt = torch.optim.AdamW([*emb.parameters(), *expander.parameters()])
        >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        >>> run = RunState(history={"epoch": [1]}, epochs_done=1)
        >>> state = TrainingState(PretrainConfig(max_epochs=2), [3, 0.0, 0.0], emb, expander,
        ...                       opt, sched, run, torch.Generator())
        >>> saved = state.to_checkpoint()
        >>> state.run.epochs_done, state.run.history = 0, {"epoch": []}
        >>> state.restore(saved)
        >>> state.run.epochs_done, state.run.history
        (1, {'epoch': [1]})
    """

    cfg: PretrainConfig
    fingerprint: list[float]
    embedding: SymmetryEmbedding
    expander: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    run: RunState
    generator: torch.Generator

    @property
    def device(self) -> torch.device:
        """The training device."""
        return torch.device(self.cfg.device)

    def to_checkpoint(self) -> dict[str, Any]:
        """The checkpoint's content (tensors and plain data)."""
        run = self.run
        return {
            "format": _CHECKPOINT_FORMAT,
            "config": self.cfg.to_dict(),
            "fingerprint": self.fingerprint,
            "embedding": self.embedding.state_dict(),
            "expander": self.expander.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epochs_done": run.epochs_done,
            "finished": run.finished,
            "history": run.history,
            "best": {
                "total": run.best_total,
                "epoch": run.best_epoch,
                "bad_epochs": run.bad_epochs,
                "embedding": run.best_embedding,
                "expander": run.best_expander,
            },
            "rng": _rng_state(self.generator, self.device),
        }

    def restore(self, saved: dict[str, Any]) -> None:
        """Continue from a checkpoint written by a run with the same settings and data.

        Args:
            saved: The loaded checkpoint.
        """
        _check_resumable(saved, self.cfg, self.fingerprint)
        self.embedding.load_state_dict(saved["embedding"])
        self.expander.load_state_dict(saved["expander"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        run, best, device = self.run, saved["best"], self.device
        run.history = copy.deepcopy(saved["history"])
        run.epochs_done = int(saved["epochs_done"])
        run.finished = bool(saved["finished"])
        run.best_total, run.best_epoch = float(best["total"]), int(best["epoch"])
        run.bad_epochs = int(best["bad_epochs"])
        run.best_embedding = {k: v.to(device) for k, v in best["embedding"].items()}
        run.best_expander = {k: v.to(device) for k, v in best["expander"].items()}
        rng = saved["rng"]
        torch.set_rng_state(rng["torch"])
        self.generator.set_state(rng["generator"])
        if "cuda" in rng and device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], device)


def _check_resumable(saved: dict[str, Any], cfg: PretrainConfig, fingerprint: list[float]) -> None:
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


class CheckpointFile:
    """A checkpoint file this run owns: refuses to replace files it did not write.

    Args:
        cfg: The settings (``checkpoint_path``, ``resume``, ``overwrite_checkpoint``).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     cfg = PretrainConfig(checkpoint_path=f"{folder}/run.pt", resume=True)
        ...     CheckpointFile(cfg).write({"format": "sbi_symmetry.pretrain_checkpoint"})
        ...     sorted(CheckpointFile(cfg).load())
        ['format', 'run_id']
    """

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
        """The saved checkpoint when resuming from an existing file, else ``None``."""
        if not (self.resume and self.path.exists()):
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
            raise ValueError(
                f"The checkpoint {self.path} is damaged and cannot be read ({error}). Delete it "
                "(or pass resume=False, overwrite_checkpoint=True) to start over."
            ) from error
        if not isinstance(saved, dict) or saved.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"{self.path} is not a pretraining checkpoint.")
        return saved

    def _current_stamp(self) -> tuple[int, int, int] | None:
        if not self.path.exists():
            return None
        info = self.path.stat()
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def write(self, payload: dict[str, Any]) -> None:
        """Replace the file with ``payload`` (refused if someone else changed it meanwhile)."""
        current = self._current_stamp()
        if self._stamp is not None and current is not None and current != self._stamp:
            raise FileExistsError(
                f"{self.path} was changed by someone else during this run; not overwriting it."
            )
        payload["run_id"] = self.run_id
        atomic_write(self.path, lambda handle: torch.save(payload, handle))
        self._stamp = self._current_stamp()


def _rng_state(generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state
