"""Every use of sbi 0.27 internals, in one package, so that the next sbi release breaks only it.

* :class:`NullTracker` and :class:`FlattenEmbedding` work around two sharp edges (TensorBoard
  logs written to ``./sbi-logs``; ``next(embedding_net.parameters())`` on a parameter-free net);
* :func:`anneal` resumes a trained trainer at a lower learning rate (``optimizer``, early
  stopping's count, ``resume_training``);
* :func:`training_summary` reads the per-epoch record sbi keeps on a trainer (``_summary``);
* :func:`get_neural_net` / :func:`set_neural_net` read and replace the network a trainer trains
  (``_neural_net``), :func:`batch_losses` computes one batch's losses as sbi's loop does
  (``_get_losses``);
* :class:`RatioTrainerHooks` is sbi's NRE trainer with its *private* hooks (``_loss``,
  ``_initialize_neural_network``, ``_train_epoch``, ``_validate_epoch``, ``_summarize``,
  ``_report_convergence_at_end``, ``_maybe_show_progress``) overridden once, here, and forwarded
  to named, documented methods that :class:`~sbi_symmetry.emulate.EmbedEmulate` implements;
* ``LossArgsNRE`` / ``LossArgsNRE_C`` are sbi's private loss-argument dataclasses, ``Tracker``
  the protocol of sbi's ``tracker=`` argument (``sbi.sbi_types``);
* :mod:`sbi_symmetry._sbi_compat.state` takes an NPE or ratio trainer's training state out and
  puts it back (for :class:`~sbi_symmetry.checkpoint.ResumableTraining`), and hooks its epoch
  loop.

``tests/test_sbi_compat.py`` checks each against the installed sbi.

Example:
    >>> tracker = NullTracker()
    >>> tracker.log_metric("loss", 1.0)
    >>> tracker.log_dir is None
    True
"""

from __future__ import annotations

from typing import Any

import torch
from sbi.inference.trainers._contracts import LossArgsNRE, LossArgsNRE_C
from sbi.inference.trainers.nre.nre_base import RatioEstimatorTrainer
from sbi.sbi_types import Tracker
from torch import Tensor, nn

__all__ = [
    "FlattenEmbedding",
    "LossArgsNRE",
    "LossArgsNRE_C",
    "NullTracker",
    "RatioTrainerHooks",
    "Tracker",
    "anneal",
    "batch_losses",
    "get_neural_net",
    "set_neural_net",
    "training_summary",
]


class NullTracker:
    """An sbi ``Tracker`` that records nothing, so training writes no ``./sbi-logs`` folder.

    Pass it as ``tracker=NullTracker()`` to any sbi trainer (``NPE``, ``NRE_C``, ...).
    """

    @property
    def log_dir(self) -> None:
        """No directory: nothing is written."""
        return None

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Ignore one metric."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Ignore several metrics."""

    def log_params(self, params: dict[str, Any]) -> None:
        """Ignore parameters."""

    def add_figure(self, name: str, figure: Any, step: int | None = None) -> None:
        """Ignore a figure."""

    def flush(self) -> None:
        """Nothing to flush."""


class FlattenEmbedding(nn.Module):
    """``(B, C, L) -> (B, C * L)`` for sbi's flows, which take vectors.

    sbi 0.27 reads ``next(embedding_net.parameters())`` when it builds a network, which raises
    ``StopIteration`` for a module without parameters such as ``nn.Flatten``; this one carries an
    empty, frozen parameter so that the lookup works and nothing is trained.

    Example:
        >>> import torch
        >>> FlattenEmbedding()(torch.zeros(4, 3, 5)).shape
        torch.Size([4, 15])
    """

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        """Flatten everything but the batch dimension."""
        return x.reshape(x.shape[0], -1)


def training_summary(trainer: Any) -> dict[str, list[float]]:
    """The per-epoch record sbi keeps on a trainer after ``train()`` (sbi 0.27: ``_summary``).

    Args:
        trainer: A trained sbi trainer (``NPE``, ``NRE_C``, ``EmbedEmulate`` ...).

    Returns:
        sbi's dictionary with ``epochs_trained``, ``training_loss``, ``validation_loss``,
        ``epoch_durations_sec`` (lists, one entry per epoch or per round).

    Example:
        >>> import torch
        >>> from sbi.inference import NPE
        >>> from sbi.utils import BoxUniform
        >>> prior = BoxUniform(torch.zeros(1), torch.ones(1))
        >>> theta = prior.sample((100,))
        >>> trainer = NPE(prior, tracker=NullTracker(), show_progress_bars=False)
        >>> _ = trainer.append_simulations(theta, theta).train(max_num_epochs=1)
        >>> sorted(training_summary(trainer))[:2]
        ['best_validation_loss', 'epoch_durations_sec']
    """
    summary = getattr(trainer, "_summary", None)
    if not isinstance(summary, dict) or "epochs_trained" not in summary:
        raise TypeError(
            f"{type(trainer).__name__} has no sbi training summary; train it first (this "
            "package supports sbi 0.27's trainers)."
        )
    return summary


def appended_simulations(trainer: Any) -> int:
    """Rows appended to an sbi trainer so far, over all rounds (sbi 0.27: ``_theta_roundwise``).

    Args:
        trainer: An sbi trainer (``NPE``, ``NRE_C``, ``EmbedEmulate`` ...).

    Returns:
        The number of ``(theta, x)`` rows, 0 before any ``append_simulations``.
    """
    return sum(int(theta.shape[0]) for theta in getattr(trainer, "_theta_roundwise", []))


def get_neural_net(trainer: Any) -> nn.Module | None:
    """The network an sbi trainer trains (sbi 0.27: ``_neural_net``); ``None`` before ``train``.

    Args:
        trainer: Any sbi trainer (``NPE``, ``NRE_C``, ``EmbedEmulate`` ...).

    Returns:
        The density or ratio estimator sbi built, the very object it trains.

    Example:
        >>> import torch
        >>> from sbi.inference import NPE
        >>> from sbi.utils import BoxUniform
        >>> get_neural_net(NPE(BoxUniform(torch.zeros(1), torch.ones(1)), tracker=NullTracker()))
    """
    return trainer._neural_net


def get_net_builder(trainer: Any) -> Any:
    """The function an sbi trainer builds its network with (sbi 0.27: ``_build_neural_net``).

    Args:
        trainer: Any sbi trainer.

    Returns:
        The builder passed as ``density_estimator``/``classifier`` (or sbi's own), or ``None``.
    """
    return getattr(trainer, "_build_neural_net", None)


def set_neural_net(trainer: Any, net: nn.Module) -> None:
    """Make ``net`` the network of ``trainer`` (for :func:`batch_losses` on a copy, say).

    Args:
        trainer: Any sbi trainer.
        net: A network of the kind the trainer builds (its losses call it).
    """
    trainer._neural_net = net


def restart_patience(trainer: Any) -> None:
    """Restart early stopping's count of epochs without improvement (sbi 0.27: a private field).

    Before ``train(resume_training=True)``, so that a resumed phase gets the full
    ``stop_after_epochs`` however the previous phase ended; the best validation loss and the
    weights that reached it are kept.

    Args:
        trainer: A trained sbi trainer.

    Example:
        >>> import torch
        >>> from sbi.inference import NPE
        >>> from sbi.utils import BoxUniform
        >>> prior = BoxUniform(torch.zeros(1), torch.ones(1))
        >>> trainer = NPE(prior, tracker=NullTracker(), show_progress_bars=False)
        >>> _ = trainer.append_simulations(prior.sample((50,)), prior.sample((50,)))
        >>> _ = trainer.train(max_num_epochs=1)
        >>> restart_patience(trainer)
    """
    if not hasattr(trainer, "_epochs_since_last_improvement"):
        raise TypeError(
            f"{type(trainer).__name__} keeps no early-stopping count; train it first (this "
            "package supports sbi 0.27's trainers)."
        )
    trainer._epochs_since_last_improvement = 0


def anneal(trainer: Any, factor: float, **train_kwargs: Any) -> nn.Module:
    """Resume a trained sbi trainer at its learning rate times ``factor`` until it stops again.

    A step decay of the learning rate: after early stopping (or the epoch cap) ended a first
    phase, the same trainer (same training/validation split, Adam state and best weights) goes on
    with every parameter group's rate multiplied by ``factor`` and early stopping restarted
    (sbi 0.27: ``optimizer``, ``_epochs_since_last_improvement``, ``resume_training``). The
    weights kept are the best on the validation set over both phases.

    Args:
        trainer: A trained sbi trainer (``NPE``, ``NRE_C``, ``EmbedEmulate`` ...).
        factor: Multiplier of the learning rate, in ``(0, 1)``.
        **train_kwargs: ``train`` arguments of the phase; ``max_num_epochs`` caps it (counted
            from its start), ``resume_training`` is this function's to set.

    Returns:
        The trained network, as ``trainer.train`` returns it.

    Raises:
        ValueError: ``factor`` outside ``(0, 1)``, or ``resume_training`` passed.

    Example:
        >>> import torch
        >>> from sbi.inference import NPE
        >>> from sbi.utils import BoxUniform
        >>> prior = BoxUniform(torch.zeros(1), torch.ones(1))
        >>> trainer = NPE(prior, tracker=NullTracker(), show_progress_bars=False)
        >>> _ = trainer.append_simulations(prior.sample((50,)), prior.sample((50,)))
        >>> _ = trainer.train(max_num_epochs=2)
        >>> _ = anneal(trainer, 0.1, max_num_epochs=2)
        >>> trainer.optimizer.param_groups[0]["lr"]
        5e-05
    """
    if not 0.0 < factor < 1.0:
        raise ValueError(f"`factor` must be in (0, 1) (a lower learning rate); got {factor}.")
    if "resume_training" in train_kwargs:
        raise ValueError("`resume_training` is anneal's to set.")
    if getattr(trainer, "optimizer", None) is None:
        raise TypeError(f"{type(trainer).__name__} has no optimizer yet: train it first.")
    for group in trainer.optimizer.param_groups:
        group["lr"] *= factor
    return resume(trainer, **train_kwargs)


def resume(trainer: Any, **train_kwargs: Any) -> nn.Module:
    """Train a trained sbi trainer for one more phase, early stopping restarted.

    sbi 0.27 counts ``max_num_epochs`` from the first epoch of the first phase; here it caps the
    new phase alone (counted from its start; no cap if not given).

    Args:
        trainer: A trained sbi trainer.
        **train_kwargs: ``train`` arguments of the phase, without ``resume_training``.

    Returns:
        The trained network, as ``trainer.train`` returns it.

    Example:
        >>> import torch
        >>> from sbi.inference import NPE
        >>> from sbi.utils import BoxUniform
        >>> prior = BoxUniform(torch.zeros(1), torch.ones(1))
        >>> trainer = NPE(prior, tracker=NullTracker(), show_progress_bars=False)
        >>> _ = trainer.append_simulations(prior.sample((50,)), prior.sample((50,)))
        >>> _ = trainer.train(max_num_epochs=2)
        >>> _ = resume(trainer, max_num_epochs=2)
        >>> training_summary(trainer)["epochs_trained"]  # each call's last epoch (cap + 1)
        [3, 6]
    """
    restart_patience(trainer)
    cap = train_kwargs.pop("max_num_epochs", 2**31 - 1)
    done = int(training_summary(trainer)["epochs_trained"][-1])
    return trainer.train(**train_kwargs, max_num_epochs=done + cap, resume_training=True)


def batch_losses(trainer: Any, theta: Tensor, x: Tensor, loss_args: Any) -> Tensor:
    """The losses of one batch exactly as sbi's training loop computes them (it averages them).

    sbi 0.27: ``trainer._get_losses([theta, x], loss_args)`` (moves the batch to the trainer's
    device and calls its loss with ``loss_args``'s fields as keywords).

    Args:
        trainer: An sbi trainer whose network is built (:func:`get_neural_net` not ``None``).
        theta: Parameters of the batch, ``(B, theta_dim)``.
        x: Data of the batch, ``(B, *x_shape)``.
        loss_args: The trainer's loss arguments, e.g. ``LossArgsNRE(num_atoms=2)`` or
            ``LossArgsNRE_C(num_atoms=6, gamma=1.0)``.

    Returns:
        Per-pair losses ``(B,)`` (``EmbedEmulate``, ``NRE_A``/``NRE_B``), or their mean for
        losses that average themselves (``NRE_C``'s is a scalar).
    """
    return trainer._get_losses([theta, x], loss_args)


class RatioTrainerHooks(RatioEstimatorTrainer):
    """sbi's ratio-estimator trainer with its private hooks forwarded to named methods.

    Subclasses implement :meth:`pair_loss` and may override :meth:`network_built`,
    :meth:`reduce_epoch_loss` and :meth:`reports_here`; they read the network through
    :attr:`neural_net` and train through :meth:`train_nre` (sbi's ``train`` with the loss
    arguments it expects). Nothing else of sbi's private API is touched outside this class.

    ========================================  ==============================================
    sbi 0.27's private hook                   forwarded to
    ========================================  ==============================================
    ``_initialize_neural_network``            sbi's, then :meth:`network_built` (``net``)
    ``_loss(theta, x, num_atoms)``            :meth:`pair_loss` (``theta, x``)
    ``_train_epoch``, ``_validate_epoch``     sbi's, then :meth:`reduce_epoch_loss`
    ``_summarize``,                           sbi's, if :meth:`reports_here`
    ``_report_convergence_at_end``
    ``_maybe_show_progress`` (static)         sbi's, with ``show and reports_here()``
    ========================================  ==============================================

    Example:
        >>> import torch
        >>> from sbi.utils import BoxUniform
        >>> class Squared(RatioTrainerHooks):
        ...     def pair_loss(self, theta, x):
        ...         return self.neural_net.unnormalized_log_ratio(theta, x) ** 2
        ...     def reports_here(self):  # silent: no progress line, no convergence warning
        ...         return False
        >>> prior = BoxUniform(torch.zeros(1), torch.ones(1))
        >>> theta = prior.sample((50,))
        >>> trainer = Squared(prior, tracker=NullTracker(), show_progress_bars=False)
        >>> net = trainer.append_simulations(theta, theta).train_nre(max_num_epochs=1)
        >>> net is trainer.neural_net
        True
    """

    # ---- the named hooks subclasses implement ---------------------------------------------
    def pair_loss(self, theta: Tensor, x: Tensor) -> Tensor:
        """The per-pair loss of a batch (training and validation); sbi averages it.

        Args:
            theta: Parameters of the batch, ``(B, theta_dim)``, on the training device.
            x: Data of the batch, ``(B, *x_shape)``.

        Returns:
            Losses of shape ``(B,)``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement pair_loss(theta, x).")

    def network_built(self, net: nn.Module) -> None:
        """Called after every network (re)initialisation of ``train`` (a no-op by default).

        Args:
            net: The network sbi trains (:attr:`neural_net`), built from the classifier
                builder on the first ``train`` or with ``retrain_from_scratch=True``.
        """

    def reduce_epoch_loss(self, value: float) -> float:
        """The epoch's mean training or validation loss as sbi should see it (identity).

        Args:
            value: This process's mean loss over the epoch.

        Returns:
            The loss sbi records and uses for early stopping.
        """
        return value

    def reports_here(self) -> bool:
        """Whether this process prints sbi's progress, summaries and convergence messages."""
        return True

    # ---- accessors and entry point -----------------------------------------------------------
    @property
    def neural_net(self) -> nn.Module | None:
        """The network sbi trains (``None`` before the first ``train``; sbi: ``_neural_net``)."""
        return get_neural_net(self)

    def train_nre(self, **train_kwargs: Any) -> nn.Module:
        """Sbi's ``train`` with two-atom NRE loss arguments (:meth:`pair_loss` ignores them).

        Args:
            **train_kwargs: sbi's ``RatioEstimatorTrainer.train`` arguments except
                ``loss_kwargs`` and ``num_atoms``.

        Returns:
            The trained network.
        """
        return super().train(**train_kwargs, loss_kwargs=LossArgsNRE(num_atoms=2))

    # ---- sbi 0.27's private hooks, overridden here only --------------------------------------
    def _initialize_neural_network(self, retrain_from_scratch: bool, start_idx: int) -> None:
        """Run sbi's (re)initialisation, then :meth:`network_built`."""
        super()._initialize_neural_network(retrain_from_scratch, start_idx)
        self.network_built(get_neural_net(self))

    def _loss(self, theta: Tensor, x: Tensor, num_atoms: int = 2, **_: Any) -> Tensor:
        """The per-batch loss sbi asks for: :meth:`pair_loss` (``num_atoms`` unused)."""
        return self.pair_loss(theta, x)

    def _train_epoch(self, train_loader: Any, clip_max_norm: Any, loss_args: Any) -> float:
        """Run sbi's training epoch; its mean loss through :meth:`reduce_epoch_loss`."""
        return self.reduce_epoch_loss(super()._train_epoch(train_loader, clip_max_norm, loss_args))

    def _validate_epoch(self, val_loader: Any, loss_args: Any) -> float:
        """Run sbi's validation epoch; its mean loss through :meth:`reduce_epoch_loss`."""
        return self.reduce_epoch_loss(super()._validate_epoch(val_loader, loss_args))

    def _summarize(self, round_: int) -> None:
        """Log sbi's summary of the round to the tracker, where :meth:`reports_here`."""
        if self.reports_here():
            super()._summarize(round_)

    def _report_convergence_at_end(self, epoch: int, max_num_epochs: int) -> None:
        """Print or warn sbi's convergence message, where :meth:`reports_here`."""
        if self.reports_here():
            super()._report_convergence_at_end(epoch, max_num_epochs)

    def _maybe_show_progress(self, show: bool, epoch: int) -> None:
        """Print sbi's per-epoch progress line (static in sbi), where :meth:`reports_here`."""
        RatioEstimatorTrainer._maybe_show_progress(show and self.reports_here(), epoch)
