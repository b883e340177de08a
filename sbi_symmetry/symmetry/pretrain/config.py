"""Settings of :func:`~sbi_symmetry.symmetry.pretrain.pretrain_vicreg`, checked when built.

Example:
    >>> cfg = PretrainConfig(max_epochs=20)
    >>> cfg.warmup, cfg.vicreg_loss().invariance_weight
    (1, 25.0)
    >>> PretrainConfig(batch_size=2)
    Traceback (most recent call last):
    ...
    ValueError: `batch_size` must be an integer >= 3 (VICReg batch statistics); got 2.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Literal

import torch

from sbi_symmetry._validation import check_choice, check_int, check_number
from sbi_symmetry.losses.vicreg import MIN_BATCH_SIZE, VICRegLoss
from sbi_symmetry.symmetry.embedding import FREEZE_MODES


@dataclass
class PretrainConfig:
    """Settings of :func:`pretrain_vicreg` (every field can also be passed as a keyword).

    Attributes:
        batch_size: Pairs of views per optimisation step (at least 3; much larger than the
            expander width for the covariance term to work). Under several processes: the
            global batch over all of them, a multiple of their number.
        learning_rate: Peak learning rate of AdamW, reached at the end of the warm-up.
        weight_decay: AdamW's decoupled weight decay.
        max_epochs: Most epochs to train (exactly this many, not one more).
        warmup_epochs: Epochs of linear warm-up; ``None`` means 5% of ``max_epochs`` rounded.
            Must be below ``max_epochs``, so the nominal rate is really reached.
        schedule: ``"cosine"`` (decay to ``min_learning_rate`` after the warm-up) or
            ``"constant"``.
        min_learning_rate: Final rate of the cosine schedule.
        validation_fraction: Share of the simulations held out for validation.
        stop_after_epochs: Patience of early stopping on the validation total (VICReg
            plus ``supervised_weight`` times the supervised term).
        fresh_views: ``True``: new nuisance/noise (or augmentation) for the training views
            every epoch; ``False``: one fixed bank of training views, drawn once; ``"auto"``
            (the default): fresh where views cost no simulator call (``input_kind == "x"``:
            augmentations or shifts of stored data), one bank where they re-simulate
            (``input_kind == "theta"``), so pretraining spends exactly ``2 * num_simulations``
            simulator calls (:func:`~sbi_symmetry.views.split_budget` sizes it). On a phase
            nuisance a bank of 30,000 draws (60,000 calls) matched the C2ST of fresh views
            (2.2 million calls): ``benchmarks/results/fast_encoder_seeds.md``.
        seed: Seed of ``torch.manual_seed`` at the start of the run.
        device: Where training runs; the encoder and expander are moved there, data (prior
            samples, ``x``, views) must already be there.
        show_progress_bar: Show a tqdm bar with the epoch's loss terms.
        invariance_weight: VICReg ``lambda``.
        variance_weight: VICReg ``mu``.
        covariance_weight: VICReg ``nu``.
        gamma: VICReg target standard deviation.
        supervised_weight: Weight ``w`` of the hybrid loss's supervised term: a linear read-out
            of the summary regresses the standardised parameters of both views
            (:mod:`sbi_symmetry.losses.supervised`), and early stopping watches the VICReg
            total plus ``w`` times it. ``0`` (the default) is plain VICReg.
        freeze: Freeze mode of the returned embedding inside sbi's training: ``"none"`` (the
            default: NPE fine-tunes the whole pretrained encoder, the most accurate at a
            given simulation budget in ``benchmarks/results/symmetry_npe_levers_*.md``),
            ``"backbone"`` (only the head trains; the paper's set-up) or ``"all"`` (nothing
            trains); :func:`~sbi_symmetry.symmetry.cached_npe` takes either of the last two.
        input_scaling: ``"scalar"`` (one mean/std), ``"channel"`` (one per input channel) or
            ``"none"``.
        clip_grad_norm: Clip the gradient norm to this value; ``None`` for no clipping.
        checkpoint_path: File written (atomically) after every epoch; ``None`` for none.
        resume: Continue from ``checkpoint_path`` if it exists.
        overwrite_checkpoint: Allow replacing an existing ``checkpoint_path`` without resuming.

    Example:
        >>> cfg = PretrainConfig(batch_size=128, max_epochs=40)
        >>> cfg.warmup, cfg.to_dict()["batch_size"]
        (2, 128)
    """

    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    max_epochs: int = 100
    warmup_epochs: int | None = None
    schedule: Literal["cosine", "constant"] = "cosine"
    min_learning_rate: float = 0.0
    validation_fraction: float = 0.1
    stop_after_epochs: int = 10
    fresh_views: bool | Literal["auto"] = "auto"
    seed: int = 0
    device: str = "cpu"
    show_progress_bar: bool = True
    invariance_weight: float = 25.0
    variance_weight: float = 25.0
    covariance_weight: float = 1.0
    gamma: float = 1.0
    supervised_weight: float = 0.0
    freeze: Literal["all", "backbone", "none"] = "none"
    input_scaling: Literal["scalar", "channel", "none"] = "scalar"
    clip_grad_norm: float | None = None
    checkpoint_path: str | None = None
    resume: bool = False
    overwrite_checkpoint: bool = False

    def __post_init__(self) -> None:
        check_int(self.batch_size, "batch_size", MIN_BATCH_SIZE, " (VICReg batch statistics)")
        check_int(self.max_epochs, "max_epochs", 1)
        check_int(self.stop_after_epochs, "stop_after_epochs", 1)
        check_int(self.seed, "seed")
        if self.warmup_epochs is not None:
            check_int(self.warmup_epochs, "warmup_epochs", 0)
        if self.warmup >= self.max_epochs:
            raise ValueError(
                f"`warmup_epochs` ({self.warmup}) must be below `max_epochs` "
                f"({self.max_epochs}), or the learning rate never reaches its nominal value."
            )
        check_number(self.learning_rate, "learning_rate", positive=True)
        check_number(self.weight_decay, "weight_decay")
        check_number(self.min_learning_rate, "min_learning_rate")
        if self.min_learning_rate > self.learning_rate:
            raise ValueError("`min_learning_rate` must not exceed `learning_rate`.")
        for name in (
            "invariance_weight",
            "variance_weight",
            "covariance_weight",
            "supervised_weight",
        ):
            check_number(getattr(self, name), name)
        check_number(self.gamma, "gamma", positive=True)
        if self.clip_grad_norm is not None:
            check_number(self.clip_grad_norm, "clip_grad_norm", positive=True)
        if not (isinstance(self.validation_fraction, float) and 0 < self.validation_fraction < 1):
            raise ValueError(
                f"`validation_fraction` must be a float in (0, 1); got "
                f"{self.validation_fraction!r}."
            )
        check_choice(self.schedule, "schedule", ("cosine", "constant"))
        check_choice(self.freeze, "freeze", FREEZE_MODES)
        check_choice(self.input_scaling, "input_scaling", ("scalar", "channel", "none"))
        if not (isinstance(self.fresh_views, bool) or self.fresh_views == "auto"):
            raise ValueError(
                f"`fresh_views` must be True, False or 'auto'; got {self.fresh_views!r}."
            )
        self.device = str(torch.device(self.device))
        if self.checkpoint_path is not None:
            self.checkpoint_path = os.fspath(self.checkpoint_path)

    @property
    def warmup(self) -> int:
        """Warm-up epochs in effect (``warmup_epochs``, or 5% of ``max_epochs`` if ``None``)."""
        if self.warmup_epochs is None:
            return round(0.05 * self.max_epochs)
        return self.warmup_epochs

    def fresh_for(self, input_kind: str) -> bool:
        """Whether training views are drawn fresh every epoch for views of ``input_kind``.

        Args:
            input_kind: The views' ``input_kind``: ``"theta"`` (re-simulated) or ``"x"``.

        Returns:
            ``fresh_views`` itself, or for ``"auto"``: fresh only for views of stored data.

        Example:
            >>> cfg = PretrainConfig()
            >>> cfg.fresh_for("x"), cfg.fresh_for("theta")
            (True, False)
            >>> PretrainConfig(fresh_views=True).fresh_for("theta")
            True
        """
        if self.fresh_views == "auto":
            return input_kind == "x"
        return bool(self.fresh_views)

    def vicreg_loss(self) -> VICRegLoss:
        """The VICReg loss with these weights (the one loss object training and validation use)."""
        return VICRegLoss(
            invariance_weight=self.invariance_weight,
            variance_weight=self.variance_weight,
            covariance_weight=self.covariance_weight,
            gamma=self.gamma,
        )

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dictionary."""
        return dataclasses.asdict(self)


def _resolve_config(config: PretrainConfig | None, overrides: dict[str, Any]) -> PretrainConfig:
    if config is None:
        config = PretrainConfig()
    elif not isinstance(config, PretrainConfig):
        raise TypeError(f"`config` must be a PretrainConfig, got {type(config).__name__}.")
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(
            f"Unknown pretraining option(s) {unknown}; valid options: {sorted(fields)}."
        )
    return dataclasses.replace(config, **overrides)
