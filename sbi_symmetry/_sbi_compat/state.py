"""The training state of an ``sbi`` trainer, taken out and put back (sbi 0.27 internals).

Part of :mod:`sbi_symmetry._sbi_compat`: every private name of sbi this package touches is there.

``sbi``'s ``train(resume_training=True)`` continues a training in the same process: the network,
the Adam state, the training/validation split, the epoch count and early stopping's bookkeeping
all live on the trainer. :func:`trainer_state` copies them (and the random generators' states,
which draw the batch order) into a dictionary that ``torch.save`` writes; :func:`load_trainer_state`
puts them back on a trainer that holds the same simulations, building the network first if it
has none. The data are not part of the state: the caller appends them again.

The private fields are sbi 0.27's (``_neural_net``, ``optimizer``, ``epoch``, ``_val_loss``,
``_best_val_loss``, ``_epochs_since_last_improvement``, ``_best_model_state_dict``, ``_summary``,
``train_indices``, ``val_indices``; the simulations in ``_theta_roundwise``/``_x_roundwise``; the
network built by ``_initialize_neural_network``); :func:`on_epoch_end` hooks sbi's per-epoch
``_maybe_show_progress``. Single-round NPE and ratio trainers (``NRE_C``, ``EmbedEmulate``,
whose ``refinement`` summary is kept too) in one process are supported.

Example:
    >>> import torch
    >>> from sbi.inference import NPE
    >>> from sbi.utils import BoxUniform
    >>> from sbi_symmetry._sbi_compat import NullTracker
    >>> prior = BoxUniform(torch.zeros(1), torch.ones(1))
    >>> theta = prior.sample((100,))
    >>> def npe():
    ...     trainer = NPE(prior, density_estimator="mdn", tracker=NullTracker(),
    ...                   show_progress_bars=False)
    ...     return trainer.append_simulations(theta, theta)
    >>> first = npe()
    >>> _ = first.train(max_num_epochs=2)
    >>> second = npe()  # a new process, say, with the same simulations
    >>> load_trainer_state(second, trainer_state(first))
    >>> second.epoch, second._neural_net is not None
    (3, True)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.optim import Adam

from sbi_symmetry._random import random_states, set_random_states
from sbi_symmetry._sbi_compat import appended_simulations, get_neural_net
from sbi_symmetry.distributed.process import is_distributed

__all__ = [
    "check_supported",
    "data_fingerprint",
    "load_trainer_state",
    "on_epoch_end",
    "trainer_state",
]

#: Scalar and dictionary fields of sbi 0.27's training loop, copied as they are.
_FIELDS = (
    "epoch",
    "_val_loss",
    "_best_val_loss",
    "_epochs_since_last_improvement",
    "_best_model_state_dict",
    "_summary",
    "train_indices",
    "val_indices",
)


def check_supported(trainer: Any) -> None:
    """Refuse a trainer whose state :func:`load_trainer_state` cannot put back.

    Supported: ``sbi``'s NPE trainers and its ratio trainers (``NRE_C`` and this package's
    ``EmbedEmulate``, which run the same training loop), with one round of simulations, in one
    process.

    Args:
        trainer: The trainer to check.

    Raises:
        TypeError: Another trainer, several rounds, or several processes (``torchrun``).
    """
    from sbi.inference.trainers.npe.npe_base import PosteriorEstimatorTrainer
    from sbi.inference.trainers.nre.nre_base import RatioEstimatorTrainer

    if not isinstance(trainer, (PosteriorEstimatorTrainer, RatioEstimatorTrainer)):
        raise TypeError(
            "`trainer`: resumable training supports sbi's NPE and ratio trainers; got "
            f"{type(trainer).__name__}."
        )
    if len(getattr(trainer, "_data_round_index", [])) > 1:
        raise TypeError("`trainer`: resumable training supports one round of simulations.")
    if is_distributed():
        raise TypeError("resumable training runs in one process; under torchrun it is refused.")


def data_fingerprint(trainer: Any) -> dict[str, Any]:
    """A cheap identity of the trainer's simulations: their number, shapes and a few sums.

    A state saved on other simulations must not be put back; this catches it without hashing
    every row (the sums run over the first 1,000 rows and the last one).

    Args:
        trainer: An sbi trainer with simulations appended.

    Returns:
        A dictionary that compares equal for the same simulations.
    """
    theta, x = trainer._theta_roundwise[0], trainer._x_roundwise[0]
    rows = torch.cat([torch.arange(min(1000, len(theta))), torch.tensor([len(theta) - 1])])
    return {
        "rows": appended_simulations(trainer),
        "theta_shape": tuple(theta.shape),
        "x_shape": tuple(x.shape),
        "theta_sum": float(theta[rows].double().sum()),
        "x_sum": float(x[rows].double().sum()),
    }


def trainer_state(trainer: Any) -> dict[str, Any]:
    """Copy what ``train(resume_training=True)`` continues from, and the random states.

    Args:
        trainer: A single-round sbi NPE or ratio trainer that has trained at least one epoch.

    Returns:
        A dictionary of tensors and plain values (for ``torch.save``).
    """
    net = get_neural_net(trainer)
    if net is None or getattr(trainer, "optimizer", None) is None:
        raise ValueError("`trainer` has not trained yet: there is no state to save.")
    state = {name: copy.deepcopy(getattr(trainer, name, None)) for name in _FIELDS}
    state["net"] = copy.deepcopy(net.state_dict())
    state["optimizer"] = copy.deepcopy(trainer.optimizer.state_dict())
    if hasattr(trainer, "refinement"):  # EmbedEmulate's last-phase summary
        state["refinement"] = copy.deepcopy(trainer.refinement)
    state["data"] = data_fingerprint(trainer)
    state["random"] = random_states()
    return state


def load_trainer_state(trainer: Any, state: dict[str, Any]) -> None:
    """Put a :func:`trainer_state` back; build the trainer's network first if it has none.

    Afterwards ``trainer.train(..., resume_training=True)`` continues the saved training: the
    same split, weights, Adam state, epoch and early-stopping count, and the same batch order
    (the global random generators are set to the saved states).

    Args:
        trainer: A single-round sbi NPE or ratio trainer holding the simulations the state
            was saved with (same network builder).
        state: What :func:`trainer_state` returned.

    Raises:
        TypeError: An unsupported trainer (:func:`check_supported`).
        ValueError: The trainer holds other simulations than the state was saved with.
    """
    check_supported(trainer)
    if data_fingerprint(trainer) != state["data"]:
        raise ValueError(
            "`state` belongs to other simulations than `trainer` holds (number, shapes or values "
            f"differ: saved {state['data']}, now {data_fingerprint(trainer)})."
        )
    for name in (*_FIELDS, "refinement"):
        if name in state:
            setattr(trainer, name, copy.deepcopy(state[name]))
    if get_neural_net(trainer) is None:  # as sbi's first train() call builds it
        trainer._initialize_neural_network(retrain_from_scratch=False, start_idx=0)
    net = get_neural_net(trainer)
    net.load_state_dict(state["net"])
    net.to(trainer._device)  # as sbi's loop does, before Adam (whose state follows the net)
    trainer.optimizer = Adam(list(net.parameters()))  # sbi's parameter order
    trainer.optimizer.load_state_dict(state["optimizer"])
    set_random_states(state["random"])


@contextmanager
def on_epoch_end(trainer: Any, callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback()`` after each epoch of ``trainer``'s training loop, within the block.

    sbi 0.27's loop calls ``_maybe_show_progress(show, epoch)`` once per epoch, after the epoch
    count moved on and before early stopping looks at the epoch's validation loss; the hook runs
    sbi's own first. A state saved there resumes exactly (:func:`load_trainer_state`).

    Args:
        trainer: An sbi trainer.
        callback: Called with no argument.

    Yields:
        Nothing.
    """
    show, own = trainer._maybe_show_progress, vars(trainer).get("_maybe_show_progress")

    def hook(*args: Any) -> None:
        show(*args)  # sbi's (a static method in 0.27), or an outer hook's
        callback()

    trainer._maybe_show_progress = hook
    try:
        yield
    finally:
        if own is None:
            del trainer._maybe_show_progress  # the class's own again
        else:
            trainer._maybe_show_progress = own
