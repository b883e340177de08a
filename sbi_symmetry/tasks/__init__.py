"""Problems with a nuisance symmetry: priors, vectorised simulators and exact references.

Example:
    >>> from sbi_symmetry.tasks import get_task
    >>> get_task("sine-gaussian").x_shape
    (500,)
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch

from sbi_symmetry._validation import check_choice
from sbi_symmetry.tasks.base import NuisanceTask, array_namespace
from sbi_symmetry.tasks.damped_oscillator import DampedOscillator
from sbi_symmetry.tasks.lorenz96 import Lorenz96
from sbi_symmetry.tasks.signal_in_noise import SignalInNoiseTask
from sbi_symmetry.tasks.sine_gaussian import SineGaussian

TASKS: dict[str, type[NuisanceTask]] = {
    DampedOscillator.name: DampedOscillator,
    SineGaussian.name: SineGaussian,
    Lorenz96.name: Lorenz96,
}

# What a task given as ``module:Object`` must have (and ``nuisance_prior`` or
# ``sample_nuisance``); ``reference_posterior`` is optional.
_PROTOCOL = ("prior", "simulate", "sample_prior", "sample_joint", "theta_dim", "parameter_names")


def get_task(name: str, device: str = "cpu") -> Any:
    """A built-in task by its command-line name, or your own given as ``module:Object``.

    ``module:Object`` imports ``module`` and takes ``Object`` from it (``Outer.Inner`` works): a
    class is instantiated (with ``device=`` when its constructor takes one), anything else is used
    as it is (so its ``device`` is its own). It must have ``prior``, ``simulate(theta,
    nuisance=None, generator=None)``, ``sample_prior``, ``sample_joint``, ``theta_dim``,
    ``parameter_names`` and ``nuisance_prior`` or ``sample_nuisance``; ``reference_posterior`` is
    optional. What the run also reads and the object lacks is added to it: ``sample_nuisance(num,
    generator=None)`` from ``nuisance_prior`` (its draws follow torch's global generator, which
    the run seeds), ``views`` (re-simulation with a fresh nuisance), ``parameter_labels`` (the
    names) and ``x_shape`` (from one simulation, which also checks that ``simulate`` returns a
    tensor ``(1, L)`` or ``(1, C, L)``).

    Args:
        name: One of ``TASKS``' keys, or ``"module:Object"``.
        device: Torch device for priors, grids and simulations.

    Returns:
        The task.

    Raises:
        ValueError: One line naming what is missing: the module, the attribute, or the protocol
            members the object lacks.

    Example:
        >>> get_task("sbi_symmetry.tasks:SineGaussian").x_shape
        (500,)
        >>> get_task("sbi_symmetry.tasks:nothing_here")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: --task sbi_symmetry.tasks:nothing_here: ... has no attribute 'nothing_here'.
    """
    if ":" in name:
        return _complete(_load(name, device), name)
    check_choice(name, "name", sorted(TASKS))
    return TASKS[name](device=device)


def _load(spec: str, device: str) -> Any:
    """Import ``module:Object`` and instantiate it if it is a class."""
    module_name, _, attr = spec.partition(":")
    where = f"--task {spec}"
    if not module_name or not attr:
        raise ValueError(f"{where}: give a task as module:Object, e.g. my_package.tasks:MyTask.")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # any failure to import is the user's to see
        text = " ".join(str(err).split())
        raise ValueError(f"{where}: cannot import module {module_name} ({text}).") from err
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{where}: module {module_name} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        return obj
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        params = []  # type: ignore[assignment]
    takes_device = any(p.name == "device" or p.kind is p.VAR_KEYWORD for p in params)
    try:
        return obj(device=device) if takes_device else obj()
    except Exception as err:  # the constructor's own error, in one line
        text = " ".join(str(err).split())
        raise ValueError(f"{where}: {attr}() failed: {type(err).__name__}: {text}") from err


def _complete(task: Any, spec: str) -> Any:
    """Check the task protocol and add what the run reads and ``task`` lacks (see get_task)."""
    missing = [m for m in _PROTOCOL if not hasattr(task, m)]
    if not (hasattr(task, "nuisance_prior") or hasattr(task, "sample_nuisance")):
        missing.append("nuisance_prior or sample_nuisance")
    missing += [
        m
        for m in ("simulate", "sample_prior", "sample_joint", "sample_nuisance")
        if hasattr(task, m) and not callable(getattr(task, m))
    ]
    if missing:
        raise ValueError(
            f"--task {spec}: {spec.partition(':')[2]} lacks {', '.join(missing)} (a task needs "
            f"{', '.join(_PROTOCOL)}, and nuisance_prior or sample_nuisance)."
        )
    added: dict[str, Any] = {}
    if not hasattr(task, "sample_nuisance"):
        added["sample_nuisance"] = lambda num, generator=None: task.nuisance_prior.sample((num,))
    if not hasattr(task, "views"):
        from sbi_symmetry.views import ResimulatedViews

        prior = getattr(task, "nuisance_prior", None) or _Sampler(task)
        added["views"] = ResimulatedViews(lambda th, nu: task.simulate(th, nu), prior)
    if not hasattr(task, "parameter_labels"):
        added["parameter_labels"] = tuple(task.parameter_names)
    if not hasattr(task, "x_shape"):
        added["x_shape"] = _data_shape(task, spec)
    for key, value in added.items():
        try:
            setattr(task, key, value)
        except AttributeError as err:
            raise ValueError(f"--task {spec}: cannot add `{key}` to the task ({err}).") from err
    return task


def _data_shape(task: Any, spec: str) -> tuple[int, ...]:
    """The shape of one simulation, from one draw (the caller's torch random state is kept)."""
    with torch.random.fork_rng(devices=[]):
        x = task.simulate(task.sample_prior(1))
    if not isinstance(x, torch.Tensor) or x.ndim not in (2, 3) or x.shape[0] != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"--task {spec}: simulate(sample_prior(1)) must return a tensor (1, L) or (1, C, L); "
            f"got {shape}."
        )
    return tuple(x.shape[1:])


class _Sampler:
    """``sample((n,))`` from a task's ``sample_nuisance(n)`` (what the views draw from)."""

    def __init__(self, task: Any) -> None:
        self.task = task

    def sample(self, shape: tuple[int, ...] = ()) -> torch.Tensor:
        return self.task.sample_nuisance(int(shape[0]) if shape else 1)


__all__ = [
    "TASKS",
    "DampedOscillator",
    "Lorenz96",
    "NuisanceTask",
    "SignalInNoiseTask",
    "SineGaussian",
    "array_namespace",
    "get_task",
]
