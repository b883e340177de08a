"""``EmbedEmulate``: ``sbi``'s NRE trainer with the symmetric InfoNCE loss over the whole batch.

The trainer subclasses ``sbi``'s ``RatioEstimatorTrainer`` (the base of ``NRE_A``/``NRE_B``/
``NRE_C``) rather than ``NRE_B``: it shares their data handling, training loop, early stopping and
sbi's posteriors (``build_posterior(sample_with="mcmc")`` etc.; its default is the MCMC-free
:class:`~sbi_symmetry.emulate.TwoTowerPosterior`), but its
loss is neither NRE-B's (one-sided, ``K - 1`` random negatives) nor NRE-C's, so it should not
pass ``isinstance(trainer, NRE_B)`` nor offer a ``num_atoms`` argument that means nothing here:
every other pair of the batch is a negative, in both directions.

Only the loss changes (:meth:`EmbedEmulate.pair_loss`, which ``sbi`` calls as its loss): ``B``
encoder passes, ``B`` emulator passes, one ``B x B`` matrix product, symmetric InfoNCE per pair
(:mod:`sbi_symmetry.losses.infonce`).
Optionally a VICReg term (Bardes et al. 2022) on the encoder's outputs for two fresh views of the
batch (``views``; e.g. ``ResimulatedViews``: the same ``theta`` re-simulated with independent
nuisance and noise) pushes the encoder towards invariance under the nuisance while it learns the
ratio. It is added during training only: the validation loss that drives early stopping is the
training loss without it (the contrastive terms, i.e. the quality of the ratio). After early
stopping, ``train`` refines the emulator and the data tower's head MLP on the frozen backbone's
cached features with the ``x -> theta`` term (:mod:`sbi_symmetry.emulate.refine`;
``refine_emulator=False`` skips it).

Several processes (``torchrun --nproc_per_node=N``): ``train`` runs unchanged. Its hooks into
``sbi``'s loop, active only when ``torch.distributed`` is initialised with more than one process:
``training_batch_size`` is the *global* batch (divisible by ``N``); every rank holds the same
simulations (checked), rank 0's train/validation split is used everywhere, and each step every
rank takes its share of one global batch (:class:`~sbi_symmetry.distributed.ShardedSampler`);
the InfoNCE candidates (and the VICReg statistics) are the whole global batch, gathered with
gradients; the weights are averaged by ``DistributedDataParallel``; the training and validation
losses are averaged over ranks, so early stopping picks the same epoch everywhere; only rank 0
prints or logs to the tracker. Limitations: ``dataloader_kwargs`` may not set the sampler or the
batch size; each rank keeps the whole data set in memory (as ``sbi`` does); a last partial
global batch is dropped (as ``sbi`` does), and a validation set smaller than ``N`` is refused.

Example:
    >>> import torch
    >>> from sbi.utils import BoxUniform
    >>> from sbi_symmetry.nets.mlp import ResidualMLP
    >>> prior = BoxUniform(-torch.ones(2), torch.ones(2))
    >>> theta = prior.sample((200,))
    >>> x = theta + 0.1 * torch.randn(200, 2)
    >>> trainer = EmbedEmulate(prior, encoder=ResidualMLP(2, 8), show_progress_bars=False)
    >>> estimator = trainer.append_simulations(theta, x).train(max_num_epochs=1)
    >>> estimator.embedding_dim
    8
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution
from torch.utils.tensorboard.writer import SummaryWriter

import sbi_symmetry.distributed as distributed
from sbi_symmetry._sbi_compat import (
    NullTracker,
    RatioTrainerHooks,
    Tracker,
    appended_simulations,
)
from sbi_symmetry._validation import (
    check_choice,
    check_in_support,
    check_int,
    check_row_weight,
    check_simulations,
)
from sbi_symmetry.emulate.builder import Builder, embed_emulate_classifier
from sbi_symmetry.emulate.checks import check_settings, check_split, check_temperature
from sbi_symmetry.emulate.estimator import SIMILARITIES, EmbedEmulateRatioEstimator, Similarity
from sbi_symmetry.emulate.posterior import TwoTowerPosterior
from sbi_symmetry.emulate.refine import RefineSummary, refine_emulator
from sbi_symmetry.emulate.sharding import ShardedTrainingHooks
from sbi_symmetry.emulate.training_loss import TrainingLoss


class EmbedEmulate(ShardedTrainingHooks, RatioTrainerHooks):
    """Embed and Emulate (Jiang, Lu & Willett): contrastive two-tower ratio estimation in ``sbi``.

    Args:
        prior: Prior over ``theta`` (may be ``None`` and given to ``build_posterior``).
        encoder: ``f(x)`` mapping ``(B, *x_shape)`` to ``(B, n)``; ``None`` builds a flattening
            ``ResidualMLP`` with ``embedding_dim`` outputs.
        emulator: ``g(theta)`` mapping ``(B, theta_dim)`` to ``(B, n)``; ``None`` builds a
            ``ResidualMLP`` to the encoder's width.
        classifier: Instead of ``encoder``/``emulator``: a builder from
            :func:`~sbi_symmetry.emulate.builder.embed_emulate_classifier`.
        embedding_dim: Width of the default encoder.
        temperature: (Initial) temperature of the logits, in ``[1e-3, 1e3]``.
        similarity: ``"cosine"`` (unit sphere, the default), ``"scaled"`` (only the emulator's
            embedding on the unit sphere) or ``"dot"`` (see the estimator).
        learn_temperature: Learn ``log(temperature)`` with the networks (the default; a fixed
            temperature caps every log-ratio at ``1 / temperature`` with cosine similarity,
            which left posteriors up to 30x too wide in ``benchmarks/results/ee_levers_*.md``).
        z_score_theta: Standardise ``theta`` with the first batch's statistics.
        z_score_x: ``"none"`` or ``"structured"`` (see the estimator).
        emulator_kwargs: Arguments of the default emulator
            (:func:`~sbi_symmetry.emulate.builder.default_emulator`: a ``ResidualMLP``, 64 wide
            with 2 residual blocks unless these say otherwise; ``fourier_features=m`` puts
            ``m`` random Fourier features of ``theta`` in front of it).
        views: Optional ``Views`` (``input_kind`` ``"theta"`` or ``"x"``) for the symmetry
            regulariser.
        symmetry_weight: Weight of the VICReg term (0 switches it off).
        vicreg_kwargs: Extra arguments of ``vicreg_loss`` (its term weights).
        prior_negatives: Extra parameters drawn from the prior for every batch, candidates of
            each ``x -> theta`` softmax beside the batch's own (they cost no simulation; see
            :mod:`sbi_symmetry.losses.infonce`); 0 for the batch alone. Needs ``prior``.
        local_negatives: Gaussian neighbours of each true parameter that it must be told from
            (the local contrastive term of :mod:`sbi_symmetry.losses.local`, added to each
            pair's loss; no simulation); 0 for none. Needs ``prior``.
        local_scales: ``(low, high)``: each pair's neighbours are spread by a scale drawn
            log-uniformly in this range, times the parameters' z-scoring std.
        row_weight: Weight of the loss's ``x -> theta`` term during training, in ``(0, 1)``;
            the ``theta -> x`` term gets ``1 - row_weight`` (1/2, the default, is the
            symmetric loss; see :mod:`sbi_symmetry.losses.infonce`).
        device: Training device.
        logging_level: As in ``sbi``.
        summary_writer: Deprecated in ``sbi``; use ``tracker``.
        tracker: ``sbi`` tracker; default :class:`~sbi_symmetry._sbi_compat.NullTracker`
            (nothing is written to ``./sbi-logs``).
        show_progress_bars: As in ``sbi``.
    """

    def __init__(
        self,
        prior: Distribution | None = None,
        encoder: nn.Module | None = None,
        emulator: nn.Module | None = None,
        *,
        classifier: Builder | None = None,
        embedding_dim: int = 16,
        temperature: float = 0.15,
        similarity: Similarity = "cosine",
        learn_temperature: bool = True,
        z_score_theta: bool = True,
        z_score_x: Literal["none", "structured"] = "none",
        emulator_kwargs: dict[str, Any] | None = None,
        views: Any = None,
        symmetry_weight: float = 0.0,
        vicreg_kwargs: dict[str, Any] | None = None,
        prior_negatives: int = 0,
        local_negatives: int = 0,
        local_scales: tuple[float, float] = (0.02, 0.5),
        row_weight: float = 0.5,
        device: str = "cpu",
        logging_level: int | str = "warning",
        summary_writer: SummaryWriter | None = None,
        tracker: Tracker | None = None,
        show_progress_bars: bool = True,
    ) -> None:
        if classifier is not None:
            if encoder is not None or emulator is not None:
                raise ValueError(
                    "Pass either `classifier` (a builder) or `encoder`/`emulator`, not both."
                )
            if isinstance(classifier, str) or not callable(classifier):
                raise TypeError(
                    "`classifier` must be a builder callable(batch_theta, batch_x) returning an "
                    "EmbedEmulateRatioEstimator, e.g. embed_emulate_classifier(encoder); sbi's "
                    f"named classifiers are not two-tower networks. Got {classifier!r}."
                )
            build = classifier
        else:
            check_temperature(temperature)
            check_choice(similarity, "similarity", SIMILARITIES)
            build = embed_emulate_classifier(
                encoder,
                emulator,
                embedding_dim=embedding_dim,
                emulator_kwargs=emulator_kwargs,
                similarity=similarity,
                temperature=temperature,
                learn_temperature=learn_temperature,
                z_score_theta=z_score_theta,
                z_score_x=z_score_x,
            )
        local_scales = check_settings(
            prior, views, symmetry_weight, prior_negatives, local_negatives, local_scales
        )
        row_weight = check_row_weight(row_weight, "(0, 1)")
        if tracker is None and summary_writer is None:
            tracker = NullTracker()
        super().__init__(
            prior=prior,
            classifier=build,
            device=device,
            logging_level=logging_level,
            summary_writer=summary_writer,
            tracker=tracker,
            show_progress_bars=show_progress_bars,
        )
        self._views = views
        self._symmetry_weight = float(symmetry_weight)
        self._vicreg_kwargs = dict(vicreg_kwargs or {})
        self._prior_negatives = prior_negatives
        self._row_weight = row_weight
        self._local = (local_negatives, local_scales)
        self._parallel_loss: nn.Module | None = None
        self.refinement: RefineSummary | None = None

    def append_simulations(
        self,
        theta: Tensor,
        x: Tensor,
        exclude_invalid_x: bool = False,
        from_round: int = 0,
        algorithm: str = "EmbedEmulate",
        data_device: str | None = None,
    ) -> EmbedEmulate:
        """``sbi``'s ``append_simulations``, after checking the batch.

        ``theta`` must be ``(N, theta_dim)`` with the prior's ``theta_dim`` and finite (and
        inside the prior's support with ``local_negatives``), ``x`` ``(N, ...)``, both
        floating-point tensors with ``N >= 1``; float64 is cast to float32.
        Non-finite ``x`` rows follow ``sbi``'s ``exclude_invalid_x``.

        Args:
            theta: Parameters, ``(N, theta_dim)``.
            x: Simulations, ``(N, *x_shape)``.
            exclude_invalid_x: Drop rows whose ``x`` holds NaN/inf (``sbi``'s meaning).
            from_round: ``sbi``'s round index of the data.
            algorithm: Name used in ``sbi``'s messages.
            data_device: Where ``sbi`` keeps the data (default: the training device).

        Returns:
            The trainer (chainable).
        """
        theta, x = check_simulations(theta, x, self._prior)
        if self._local[0] > 0:  # the local term weighs each true parameter by its prior density
            check_in_support(theta, self._prior, "the local contrastive term (`local_negatives`)")
        super().append_simulations(theta, x, exclude_invalid_x, from_round, algorithm, data_device)
        return self

    def train(
        self,
        training_batch_size: int = 200,
        learning_rate: float = 5e-4,
        validation_fraction: float = 0.1,
        stop_after_epochs: int = 20,
        max_num_epochs: int = 2**31 - 1,
        clip_max_norm: float | None = 5.0,
        resume_training: bool = False,
        discard_prior_samples: bool = False,
        retrain_from_scratch: bool = False,
        show_train_summary: bool = False,
        dataloader_kwargs: dict | None = None,
        refine_emulator: bool = True,
    ) -> EmbedEmulateRatioEstimator:
        """Train with symmetric InfoNCE; arguments as ``NRE_B.train`` without ``num_atoms``.

        Each batch of ``training_batch_size`` pairs is its own set of negatives (``B - 1`` per
        pair and direction), so there is no ``num_atoms``: larger batches mean more negatives.
        Both the training and the validation batches must hold at least 2 pairs. As everywhere
        in ``sbi`` 0.27, ``max_num_epochs=N`` runs ``N + 1`` epochs.

        Then, unless ``refine_emulator=False``, a last phase (:meth:`refine`, seconds): the
        encoder's backbone frozen and its features cached, only the emulator, the encoder's head
        MLP (where it can be split off) and the temperature trained further on the
        ``x -> theta`` term alone, on the same split (:mod:`sbi_symmetry.emulate.refine`). With
        the emulator alone, on 12 runs (damped oscillator, sine-Gaussian, a phase nuisance; 4
        training seeds each), it lowered C2ST on every run and left all 12 calibrated on 200
        SBC pairs (``benchmarks/results/ee_loss_side.md``); the head narrows the posteriors
        further (``benchmarks/results/ee_head_refine.md``).

        Args:
            training_batch_size: Pairs per batch (also the number of candidates per softmax).
            learning_rate: Adam learning rate.
            validation_fraction: Fraction of the simulations held out for early stopping.
            stop_after_epochs: Epochs without validation improvement before stopping.
            max_num_epochs: Upper bound on the epochs (see above).
            clip_max_norm: Gradient-norm clipping (``None`` for none).
            resume_training: Continue the previous run (optimiser, split, epochs).
            discard_prior_samples: Drop round-0 simulations.
            retrain_from_scratch: Rebuild the estimator (a given encoder module is reused).
            show_train_summary: Print the summary at the end.
            dataloader_kwargs: Passed to the data loaders.
            refine_emulator: Run :meth:`refine` after training (same learning rate and
                clipping, its own batch of 1000).

        Returns:
            The trained :class:`EmbedEmulateRatioEstimator`.
        """
        if not isinstance(refine_emulator, bool):
            raise TypeError(f"`refine_emulator` must be True or False; got {refine_emulator!r}.")
        check_int(
            training_batch_size,
            "training_batch_size",
            2,
            " (the other pairs of a batch are the negatives)",
        )
        distributed.local_batch_size(training_batch_size, "training_batch_size")
        check_split(appended_simulations(self), validation_fraction)
        if distributed.is_distributed() and self._symmetry_weight > 0:
            # Fresh views are drawn with torch's global RNG: independent streams per rank.
            base = distributed.broadcast_object(int(torch.randint(0, 2**62, ())))
            torch.manual_seed(distributed.rank_seed(base, "views"))
        self.refinement = None
        try:
            estimator = self.train_nre(
                training_batch_size=training_batch_size,
                learning_rate=learning_rate,
                validation_fraction=validation_fraction,
                stop_after_epochs=stop_after_epochs,
                max_num_epochs=max_num_epochs,
                clip_max_norm=clip_max_norm,
                resume_training=resume_training,
                discard_prior_samples=discard_prior_samples,
                retrain_from_scratch=retrain_from_scratch,
                show_train_summary=show_train_summary and distributed.is_main_process(),
                dataloader_kwargs=dataloader_kwargs,
            )  # type: ignore[return-value]
        finally:
            self._parallel_loss = None  # releases DDP's hooks and its reference to the net
        if refine_emulator:
            start = int(discard_prior_samples and self._round > 0)  # sbi's first round used
            estimator = self.refine(
                learning_rate=learning_rate,
                clip_max_norm=clip_max_norm,
                starting_round=start,
            )
        return estimator

    def refine(
        self,
        training_batch_size: int = 1000,
        learning_rate: float = 5e-4,
        stop_after_epochs: int = 30,
        max_num_epochs: int = 1000,
        clip_max_norm: float | None = 5.0,
        starting_round: int = 0,
        tune_head: bool = True,
    ) -> EmbedEmulateRatioEstimator:
        """Retrain the emulator and the data tower's head on frozen features, ``x -> theta`` term.

        Uses the last :meth:`train`'s training and validation split; the summary of what it
        did is kept in ``self.refinement``. See :mod:`sbi_symmetry.emulate.refine`.

        Args:
            training_batch_size: Pairs per batch, the candidates of each softmax.
            learning_rate: Adam's learning rate.
            stop_after_epochs: Patience of the early stopping.
            max_num_epochs: Upper bound on the epochs.
            clip_max_norm: Gradient-norm clipping (``None`` for none).
            starting_round: First round of simulations, as the training used.
            tune_head: Retrain the data tower's head MLP too, on cached pooled features
                (see :func:`~sbi_symmetry.emulate.refine.refine_emulator`).

        Returns:
            The refined estimator (the same object, changed in place).
        """
        net = self._neural_net
        if not isinstance(net, EmbedEmulateRatioEstimator) or not hasattr(self, "val_indices"):
            raise ValueError("Call `train` before `refine`: there is no trained estimator yet.")
        theta, x, _ = self.get_simulations(starting_round)
        self.refinement = refine_emulator(
            net,
            theta.to(self._device),
            x.to(self._device),
            self.train_indices,
            self.val_indices,
            training_batch_size=training_batch_size,
            learning_rate=learning_rate,
            stop_after_epochs=stop_after_epochs,
            max_num_epochs=max_num_epochs,
            clip_max_norm=clip_max_norm,
            tune_head=tune_head,
            show_progress_bar=self._show_progress_bars and distributed.is_main_process(),
        )
        return net

    def build_posterior(
        self,
        density_estimator: EmbedEmulateRatioEstimator | None = None,
        prior: Distribution | None = None,
        sample_with: str = "two_tower",
        **kwargs: Any,
    ) -> Any:
        """The posterior: by default a :class:`~sbi_symmetry.emulate.TwoTowerPosterior` (no MCMC).

        ``sample_with="two_tower"`` (the default) encodes ``x_o`` once and samples by exact
        rejection or adaptive importance sampling through the emulator, falling back to sbi's
        MCMC where that cannot work; ``kwargs`` are its settings. Any of sbi's ``sample_with``
        (``"mcmc"``, ``"rejection"``, ``"vi"``, ``"importance"``), or a ``posterior_parameters``,
        builds sbi's own posterior exactly as ``NRE_C.build_posterior`` does.

        Args:
            density_estimator: The estimator; default: the last one trained.
            prior: The prior; default: the trainer's.
            sample_with: ``"two_tower"`` or one of sbi's samplers.
            **kwargs: :class:`~sbi_symmetry.emulate.TwoTowerPosterior`'s settings, or sbi's.

        Returns:
            The posterior.
        """
        if sample_with != "two_tower" or "posterior_parameters" in kwargs:
            method = "mcmc" if sample_with == "two_tower" else sample_with
            return super().build_posterior(density_estimator, prior, method, **kwargs)
        estimator = density_estimator if density_estimator is not None else self._neural_net
        prior = prior if prior is not None else self._prior
        if estimator is None or prior is None:
            raise ValueError("Train first (or pass `density_estimator`), and give a `prior`.")
        return TwoTowerPosterior(estimator, prior, **kwargs)

    def network_built(self, net: nn.Module) -> None:
        """Check the builder's network and give every rank rank 0's initial weights."""
        if not isinstance(net, EmbedEmulateRatioEstimator):
            raise TypeError(
                "EmbedEmulate needs the classifier builder to return an "
                f"EmbedEmulateRatioEstimator; it returned {type(net).__name__}."
            )
        distributed.broadcast_module(net)  # rank 0's initial weights everywhere

    def pair_loss(self, theta: Tensor, x: Tensor) -> Tensor:
        """Per-pair symmetric InfoNCE (+ the weighted VICReg term while training).

        The whole batch is the set of negatives (sbi's ``num_atoms`` means nothing here).

        Args:
            theta: Parameters of the batch, ``(B, theta_dim)``.
            x: Data of the batch, ``(B, *x_shape)``.

        Returns:
            Losses of shape ``(B,)``.
        """
        if theta.shape[0] * distributed.get_world_size() < 2:
            raise ValueError(
                f"A batch of {theta.shape[0]} pair(s) reached the loss; symmetric InfoNCE needs "
                "at least 2. Use more simulations, or a `validation_fraction` leaving 2 per side."
            )
        net = self.neural_net
        assert isinstance(net, EmbedEmulateRatioEstimator)
        loss = TrainingLoss(
            net,
            self._views,
            self._symmetry_weight,
            self._vicreg_kwargs,
            self._prior,
            self._prior_negatives,
            *self._local,
            row_weight=self._row_weight,
        )
        if distributed.is_distributed() and net.training and torch.is_grad_enabled():
            if self._parallel_loss is None or self._parallel_loss.module.net is not net:
                self._parallel_loss = distributed.data_parallel(loss)
            return self._parallel_loss(theta, x)
        return loss(theta, x)
