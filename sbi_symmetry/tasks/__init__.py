"""Problems with a nuisance symmetry: priors, vectorised simulators and exact references.

Example:
    >>> from sbi_symmetry.tasks import get_task
    >>> get_task("sine-gaussian").x_shape
    (500,)
"""

from __future__ import annotations

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


def get_task(name: str, device: str = "cpu") -> NuisanceTask:
    """Instantiate a built-in task by its command-line name.

    Args:
        name: One of ``TASKS``' keys.
        device: Torch device for priors, grids and simulations.

    Returns:
        The task.
    """
    check_choice(name, "name", sorted(TASKS))
    return TASKS[name](device=device)


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
