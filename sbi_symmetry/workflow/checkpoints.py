"""Stage checkpoints of a run, so ``sbi-symmetry run --resume`` skips the finished stages.

After each stage :class:`StageCheckpoints` writes ``<out>/.stages/<stage>.pt`` (atomically): the
stage's result and the random state after it (torch's global generator, numpy's, and the run's
own generator). A resumed run loads the finished stages and their random state, so it gives the
same numbers as a run that was never interrupted. ``.stages/config.json`` holds the run's
settings; resuming with other settings is refused, naming the keys that differ (all but
:data:`MAY_CHANGE`).

The files are pickles (``torch.save``) of this package's and ``sbi``'s objects: load them only
from run folders you made, with the versions recorded in them.

Example:
    >>> import tempfile
    >>> from sbi_symmetry.workflow.config import RunConfig
    >>> cfg = RunConfig.from_preset("damped-oscillator", "fast")
    >>> gen = torch.Generator()
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     stages = StageCheckpoints(Path(tmp), cfg, resume=False)
    ...     first = stages.run("draw", lambda: torch.rand(2, generator=gen), gen)
    ...     again = StageCheckpoints(Path(tmp), cfg, resume=True)
    ...     second = again.run("draw", lambda: torch.rand(2, generator=gen), gen)
    >>> torch.equal(first, second), again.resumed
    (True, ['draw'])
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from sbi_symmetry._io import atomic_write, versions
from sbi_symmetry._random import random_states, set_random_states
from sbi_symmetry.workflow.config import CONFIG_FILE, RunConfig

__all__ = ["STAGES_DIR", "StageCheckpoints"]

STAGES_DIR = ".stages"
#: Settings a resumed run may change: ``workers`` (e.g. to 1 after a worker process died for
#: want of memory) changes how many methods still to train share the cores, and so their thread
#: count, which moves their numbers slightly (:mod:`sbi_symmetry.workflow.parallel`).
MAY_CHANGE = frozenset({"workers"})
T = TypeVar("T")


class StageCheckpoints:
    """Save each finished stage of a run; on resume, load it instead of running it again.

    Args:
        folder: The run's output folder.
        config: The run's settings (a resumed run must have the same).
        resume: Load the stages an earlier run of ``folder`` finished.

    Raises:
        ValueError: If ``resume`` and the earlier run had other settings.
    """

    def __init__(self, folder: Path, config: RunConfig, resume: bool) -> None:
        self.dir = Path(folder) / STAGES_DIR
        self.resume = resume
        self.resumed: list[str] = []
        saved = self.dir / CONFIG_FILE
        if resume and saved.exists():
            _check_same(json.loads(saved.read_text()), config.to_dict(), folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        config.save(saved)

    def run(self, name: str, stage: Callable[[], T], gen: torch.Generator) -> T:
        """Run one stage, or load it (and the random state after it) when resuming.

        Args:
            name: The stage's file name (without ``.pt``).
            stage: Computes the stage's result.
            gen: The run's generator, saved and restored with the global ones.

        Returns:
            The stage's result.
        """
        saved = self.load(name)
        if saved is not None:
            set_random_states(saved)
            gen.set_state(saved["gen"].to(gen.get_state().device))
            return saved["value"]
        value = stage()
        self.save(name, value, gen)
        return value

    def load(self, name: str) -> dict[str, Any] | None:
        """When resuming, what :meth:`save` wrote for ``name``; else (or if absent) ``None``.

        The dictionary holds ``"value"`` and the random states at the time it was saved
        (:func:`~sbi_symmetry._random.random_states`' keys, and ``"gen"``).

        Raises:
            ValueError: If the file is damaged (it names the file to delete).
        """
        path = self.dir / f"{name}.pt"
        if not (self.resume and path.exists()):
            return None
        try:
            saved = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a damaged file: run the stage again
            raise ValueError(
                f"The stage checkpoint {path} is damaged ({type(exc).__name__}); delete it "
                "to run that stage again."
            ) from exc
        self.resumed.append(name)
        return saved

    def save(self, name: str, value: Any, gen: torch.Generator) -> None:
        """Write ``value`` and the random states now (the global ones, ``gen``'s) atomically."""
        state = {
            "value": value,
            **random_states(),
            "gen": gen.get_state(),
            "versions": versions(),
        }
        atomic_write(self.dir / f"{name}.pt", lambda handle: torch.save(state, handle))

    def note(self, *names: str) -> str:
        """``" (resumed)"`` if every checkpoint of ``names`` (one or more) was loaded, else ``""``.

        For the stage lines; a stage with no checkpoint is never resumed.
        """
        return " (resumed)" if names and all(n in self.resumed for n in names) else ""


def _check_same(saved: dict[str, Any], settings: dict[str, Any], folder: Path) -> None:
    current = json.loads(json.dumps(settings))
    compared = (set(saved) | set(current)) - MAY_CHANGE
    keys = sorted(k for k in compared if saved.get(k) != current.get(k))
    if keys:
        detail = "; ".join(f"{k}: was {saved.get(k)!r}, now {current.get(k)!r}" for k in keys[:5])
        raise ValueError(
            f"--resume: the run in {folder} had other settings ({detail}). Resume with the same "
            "settings (e.g. --config on that folder), or start again with --overwrite."
        )
