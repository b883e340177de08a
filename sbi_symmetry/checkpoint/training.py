"""Resumable training: save an sbi training as it goes, continue it after an interruption.

A 10^6-simulation NPE trains for one to two hours on a laptop CPU; ``sbi`` keeps its progress
on the trainer object only, so a crash or a closed session loses all of it. Inside
:meth:`ResumableTraining.attach` every ``train`` call of the trainer (one per phase: sbi's
``train``, and each ``resume``/``anneal`` phase of this package) is numbered, and the trainer's
state (:func:`~sbi_symmetry._sbi_compat.state.trainer_state`) is written to one file at most
every ``every_s`` seconds of training and at the end of each phase. Run the same code again
with ``resume=True`` (same simulations, same settings): phases that had finished are not
trained again (their end state is put back), the phase that was cut continues from its last
save, with the same training/validation split, weights, Adam state, early-stopping count and
batch order, so the result equals the uninterrupted run's (on the same machine and thread
count). Named results computed before the training (a pretrained embedding) are kept too
(:meth:`ResumableTraining.value`). The trainer is one of ``sbi``'s NPEs, ``NRE_C`` or
:class:`~sbi_symmetry.emulate.EmbedEmulate` (its ``train`` call, the refining phase at its end
included, is one phase: the refining saves nothing of its own, so a cut during it goes on from
the last save of the epochs before, which are trained again from there).

Example:
    >>> import tempfile
    >>> import torch
    >>> from sbi.inference import NPE
    >>> from sbi.utils import BoxUniform
    >>> from sbi_symmetry._sbi_compat import NullTracker, anneal
    >>> prior = BoxUniform(torch.zeros(1), torch.ones(1))
    >>> theta = prior.sample((100,))
    >>> def train(path):
    ...     trainer = NPE(prior, density_estimator="mdn", tracker=NullTracker(),
    ...                   show_progress_bars=False).append_simulations(theta, theta)
    ...     saver = ResumableTraining(path, every_s=0)
    ...     with saver.attach(trainer):
    ...         trainer.train(max_num_epochs=3)
    ...         anneal(trainer, 0.1, max_num_epochs=2)
    ...     return saver
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     first, again = train(f"{tmp}/npe.pt"), train(f"{tmp}/npe.pt")  # again: all loaded
    >>> first.resumed, again.resumed
    ([], ['phase 1', 'phase 2'])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from sbi_symmetry._io import atomic_write, versions
from sbi_symmetry._random import random_states, set_random_states
from sbi_symmetry._sbi_compat import get_neural_net
from sbi_symmetry._sbi_compat.state import (
    check_supported,
    load_trainer_state,
    on_epoch_end,
    trainer_state,
)

__all__ = ["ResumableTraining"]

T = TypeVar("T")
#: The one ``train`` argument a resumed phase need not repeat: the file's continuation sets it.
_OWN = frozenset({"resume_training"})


class ResumableTraining:
    """Keep an sbi training (NPE, ``NRE_C``, ``EmbedEmulate``), and results before it, in a file.

    Args:
        path: The file (written atomically; its folder must exist).
        resume: Continue from ``path`` if it exists; ``False`` starts afresh and replaces it.
        every_s: Save during a phase at most this often (seconds of training); phases are
            always saved at their end. ``0``: after every epoch.
        log: Called with one line at each save (e.g. ``print``, or a progress file's writer).

    Raises:
        ValueError: ``every_s`` negative, or the folder of ``path`` missing.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        resume: bool = True,
        every_s: float = 60.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ValueError(f"`path`: the folder {self.path.parent} does not exist.")
        if not every_s >= 0:
            raise ValueError(f"`every_s` must be a number of seconds >= 0; got {every_s}.")
        self.every_s, self.log = float(every_s), log
        saved = _read(self.path) if resume and self.path.exists() else {}
        self._values: dict[str, Any] = saved.get("values", {})
        self._training: dict[str, Any] | None = saved.get("training")
        #: Seconds of training the file records from earlier processes (0 for a fresh start).
        self.earlier_seconds: float = float(saved.get("seconds", 0.0))
        #: What was loaded instead of computed: value names and ``"phase <n>"`` (finished phases).
        self.resumed: list[str] = []
        self._calls, self._phase = 0, (0, {})
        self._started = self._last = time.monotonic()
        self._attached, self._closed_s = False, self.earlier_seconds

    def value(self, name: str, compute: Callable[[], T]) -> T:
        """``compute()``, saved under ``name``; when resuming, the saved value instead.

        The random generators' states after ``compute`` are saved and put back with it, so the
        code after it draws what it would have drawn.

        Args:
            name: The value's key in the file.
            compute: Computes it (e.g. a pretraining).

        Returns:
            The value.
        """
        if name in self._values:
            set_random_states(self._values[name]["random"])
            self.resumed.append(name)
            return self._values[name]["value"]
        value = compute()
        self._values[name] = {"value": value, "random": random_states()}
        self._write()
        return value

    @contextmanager
    def attach(self, trainer: Any) -> Iterator[ResumableTraining]:
        """Within the block, number ``trainer.train`` calls, save them, resume them.

        Args:
            trainer: A single-round sbi trainer with its simulations appended: an NPE, ``NRE_C``
                or :class:`~sbi_symmetry.emulate.EmbedEmulate` (whose ``train`` call, its last
                refining phase included, is one phase).

        Yields:
            This object.

        Raises:
            TypeError: An unsupported trainer (another kind, several rounds, several processes).
        """
        check_supported(trainer)
        train = trainer.train
        trainer.train = lambda *args, **kwargs: self._train(trainer, train, args, kwargs)
        self._started = self._last = time.monotonic()
        self._attached = True
        try:
            with on_epoch_end(trainer, lambda: self._epoch(trainer)):
                yield self
        finally:
            self._closed_s, self._attached = self.seconds, False
            del trainer.train  # the class's own again

    @property
    def seconds(self) -> float:
        """Seconds of training so far: earlier processes' and blocks', and this block's."""
        now = time.monotonic() - self._started if self._attached else 0.0
        return self._closed_s + now

    def _train(
        self, trainer: Any, train: Callable[..., nn.Module], args: tuple, kwargs: dict[str, Any]
    ) -> nn.Module:
        """One phase: loaded if it had finished, continued if it was cut, else trained."""
        if args:
            raise TypeError("pass `train`'s arguments by keyword when its training is resumable.")
        if kwargs.get("retrain_from_scratch"):
            raise ValueError("`retrain_from_scratch=True` cannot be resumed (a new network).")
        call, self._calls = self._calls, self._calls + 1
        saved = self._training
        if saved is not None and call <= saved["call"]:
            if call == saved["call"]:  # a finished phase's cap was derived from a later epoch
                _check_same(saved["kwargs"], kwargs, call, cap=not saved["done"])
            load_trainer_state(trainer, saved["state"])
            if call < saved["call"] or saved["done"]:
                self.resumed.append(f"phase {call + 1}")
                return get_neural_net(trainer)
            kwargs = {**kwargs, "resume_training": True}  # the same cap: checked above
        self._phase = (call, _simple(kwargs))
        net = train(**kwargs)
        self._save(trainer, done=True)
        return net

    def _epoch(self, trainer: Any) -> None:
        """After each epoch: save if ``every_s`` seconds have passed since the last save."""
        if time.monotonic() - self._last >= self.every_s:
            self._save(trainer, done=False)

    def _save(self, trainer: Any, done: bool) -> None:
        call, kwargs = self._phase
        state = trainer_state(trainer)
        self._training = {"call": call, "kwargs": kwargs, "done": done, "state": state}
        self._write()
        self._last = time.monotonic()
        if self.log is not None:
            best = state["_best_val_loss"]
            end = "finished" if done else "saved"
            self.log(
                f"phase {call + 1} {end} at epoch {state['epoch']} (best validation loss "
                f"{best:.4f}; {self.seconds:.0f} s of training) -> {self.path}"
            )

    def _write(self) -> None:
        content = {
            "values": self._values,
            "training": self._training,
            "seconds": self.seconds,
            "versions": versions(),
        }
        atomic_write(self.path, lambda handle: torch.save(content, handle))


def _read(path: Path) -> dict[str, Any]:
    """The content of a checkpoint file; a damaged one is refused, naming it."""
    try:  # holds numpy's random state and the user's values: not weights-only
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a damaged file
        raise ValueError(
            f"The training checkpoint {path} is damaged ({type(exc).__name__}); delete it to "
            "train from the start."
        ) from exc


def _simple(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The plain-valued ``train`` arguments of a phase (what a resumed phase must repeat).

    Plain: numbers, strings, ``None``, and dicts, lists and tuples of them (``dataloader_kwargs``);
    a callable such as ``calibration_kernel`` cannot be compared and is left out.
    """
    return {k: v for k, v in kwargs.items() if k not in _OWN and _plain(v)}


def _plain(value: Any) -> bool:
    """Whether ``value`` compares by content: a number, string, ``None`` or a container of them."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return isinstance(value, (bool, int, float, str, type(None)))


def _check_same(saved: dict[str, Any], kwargs: dict[str, Any], call: int, cap: bool) -> None:
    """Refuse to continue phase ``call`` with other plain ``train`` arguments than it had.

    ``cap``: compare ``max_num_epochs`` too. A phase cut part way is called with the cap it
    started with (``resume``/``anneal`` count it from the last finished phase's end, which the
    loaded state still holds); a finished phase's cap is not compared: for ``resume``/``anneal``
    it is computed from the state loaded, which has moved on, and the phase is loaded, not run.
    """
    now = _simple(kwargs)
    keys = sorted(
        k
        for k in set(saved) | set(now)
        if saved.get(k) != now.get(k) and (cap or k != "max_num_epochs")
    )
    if keys:
        detail = "; ".join(f"{k}: was {saved.get(k)!r}, now {now.get(k)!r}" for k in keys)
        raise ValueError(
            f"resuming phase {call + 1} with other `train` arguments ({detail}); resume with the "
            "same settings, or start afresh (resume=False)."
        )
