"""The compared methods, one entry each: the pipeline, the report and the CLI read this table.

Adding a method is one :class:`MethodSpec` in :data:`METHODS`: its name (for ``--methods``), its
label (tables and figures), its kind (``"npe"``: a density estimator; ``"ratio"``: a ratio
estimator; the kind decides which encoder it shares) and the function that trains it from a
:class:`TrainingContext`; ``mcmc=True`` marks a method sampled by MCMC, which gets
``sbc_pairs_ratio`` calibration pairs. The order of the table is the order in
which methods start training (light ones last when methods train side by side); each draws from
its own random stream (:mod:`sbi_symmetry.workflow.parallel`).

Example:
    >>> [spec.name for spec in METHODS.values()]
    ['symmetry_npe', 'raw_npe', 'end_to_end_npe', 'embed_emulate', 'nre_c']
    >>> METHODS["nre_c"].kind, METHODS["nre_c"].label
    ('ratio', 'NRE-C (same encoder)')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from torch import Tensor, nn

from sbi_symmetry._io import atomic_write_text
from sbi_symmetry.checkpoint import ResumableTraining
from sbi_symmetry.nets.heads import Expander
from sbi_symmetry.views import resolve_pretrain_views, split_budget
from sbi_symmetry.workflow import methods as M
from sbi_symmetry.workflow.pretraining import EPOCHS_SUFFIX

if TYPE_CHECKING:
    from sbi_symmetry.workflow.config import RunConfig

Kind = Literal["npe", "ratio"]

#: Seconds of training between two saves of a method's progress (and at each phase's end).
SAVE_EVERY_S = 60.0
#: The ``RunConfig`` field each kind's shared tower is built from.
TOWER_SETTINGS: dict[str, str] = {"npe": "encoder", "ratio": "ee_encoder"}


@dataclass
class TrainingContext:
    """What every method's training function gets.

    Attributes:
        task: The task (prior, views, shapes).
        theta: Training parameters ``(n, d)``.
        x: Training simulations ``(n, *x_shape)``.
        config: The run's settings.
        towers: The shared initial encoders by kind (``"npe"``: ``config.encoder``, ``"ratio"``:
            ``config.ee_encoder``); methods copy them, so methods of a kind start from the same
            weights.
        show_progress: Progress bars.
        progress_dir: Where the methods save their pretraining and training as they go
            (:meth:`checkpoint`), so an interrupted run resumes them; ``None``: not saved.
    """

    task: Any
    theta: Tensor
    x: Tensor
    config: RunConfig
    towers: dict[str, nn.Module]
    show_progress: bool
    progress_dir: Path | None = None

    def checkpoint(self, method: str, member: int = 0) -> ResumableTraining | None:
        """Where ``method`` saves its training: ``<progress_dir>/progress_<method>.pt``.

        Embed and Emulate's further members (``member`` k >= 1, from ``ee.members``) save in
        ``progress_<method>_member<k + 1>.pt`` (and ``.txt``, ``_pretraining.pt``) instead.

        Saved every :data:`SAVE_EVERY_S` seconds of training and at each phase's end; the last
        save's line (phase, epoch, best validation loss) is in ``progress_<method>.txt``, the
        pretraining's epochs in ``progress_<method>_pretraining.pt``.

        Args:
            method: The method's name.
            member: Which of the method's trainings (from 0).

        Returns:
            The checkpoint (resuming what the file holds), or ``None`` without ``progress_dir``.
        """
        if self.progress_dir is None:
            return None
        name = method if member == 0 else f"{method}_member{member + 1}"
        path = Path(self.progress_dir) / f"progress_{name}.pt"
        note = path.with_suffix(".txt")
        return ResumableTraining(
            path, every_s=SAVE_EVERY_S, log=lambda line: atomic_write_text(note, line + "\n")
        )

    def clear_progress(self, method: str) -> None:
        """Delete ``method``'s :meth:`checkpoint` files, every member's (once it is saved)."""
        if self.progress_dir is None:
            return
        for path in Path(self.progress_dir).glob(f"progress_{method}*"):
            rest = path.name.removeprefix(f"progress_{method}")
            if rest in (".pt", ".txt", EPOCHS_SUFFIX) or rest.startswith("_member"):
                path.unlink(missing_ok=True)

    def npe_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``NPE.train`` (with the progress switch)."""
        return {"show_progress_bars": self.show_progress, **self.config.npe_train}

    def ratio_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the ratio trainers' ``train`` (with the progress switch)."""
        return {"show_progress_bars": self.show_progress, **self.config.ee_train}


@dataclass(frozen=True)
class MethodSpec:
    """One compared method.

    Attributes:
        name: Identifier (``--methods``, ``metrics.json``).
        label: Name shown in tables and figures.
        kind: ``"npe"`` or ``"ratio"`` (decides the shared tower).
        train: Trains the method from a :class:`TrainingContext`.
        light: Cheap to train (no encoder): side by side with others it starts last, so it
            fills a worker that the long trainings left idle at the end.
        mcmc: Sampled by MCMC (slow): calibrated on ``sbc_pairs_ratio`` pairs, not ``sbc_pairs``.

    Example:
        >>> spec = METHODS["symmetry_npe"]
        >>> spec.kind, spec.tower_setting
        ('npe', 'encoder')
    """

    name: str
    label: str
    kind: Kind
    train: Callable[[TrainingContext], M.TrainedMethod]
    light: bool = False
    mcmc: bool = False

    @property
    def tower_setting(self) -> str:
        """The ``RunConfig`` field of the encoder shared by its kind (``encoder``/``ee_encoder``).

        Example:
            >>> METHODS["embed_emulate"].tower_setting
            'ee_encoder'
        """
        return TOWER_SETTINGS[self.kind]

    def calibration_pairs(self, config: RunConfig) -> int:
        """Test pairs for its SBC / coverage / TARP: fewer for a method sampled by MCMC.

        Args:
            config: The run's settings.

        Returns:
            ``config.sbc_pairs_ratio`` for MCMC-sampled methods (``NRE_C``), else
            ``config.sbc_pairs`` (Embed and Emulate's own sampler is as fast as a flow's).

        Example:
            >>> from sbi_symmetry.workflow.config import RunConfig
            >>> cfg = RunConfig(sbc_pairs=200, sbc_pairs_ratio=100)
            >>> [METHODS[name].calibration_pairs(cfg) for name in ("embed_emulate", "nre_c")]
            [200, 100]
        """
        return config.sbc_pairs_ratio if self.mcmc else config.sbc_pairs


def _pretraining(
    ctx: TrainingContext, encoder: nn.Module, overrides: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Tensor, Tensor, int]:
    """The run's VICReg settings for ``encoder``, and the training set and view draws it leaves.

    With ``config.view_fraction`` the re-simulated views come out of ``num_simulations``, so the
    method trains on the rest of the training set.
    """
    cfg = ctx.config
    pretrain = {
        "seed": cfg.method_seed,
        "device": cfg.device,
        "expander": Expander(encoder.output_dim, **cfg.expander),
        **cfg.pretrain,
        **(overrides or {}),
    }
    theta, x, draws = ctx.theta, ctx.x, cfg.pretrain_simulations
    if cfg.view_fraction is not None:  # equal totals: the views come out of num_simulations
        split = split_budget(len(theta), cfg.view_fraction)
        theta, x, draws = theta[: split.training], x[: split.training], split.view_pairs
    return pretrain, theta, x, draws


def _symmetry_npe(ctx: TrainingContext) -> M.TrainedMethod:
    encoder, cfg = ctx.towers["npe"], ctx.config
    pretrain, theta, x, draws = _pretraining(ctx, encoder)
    method = M.symmetry_npe(
        ctx.task,
        theta,
        x,
        encoder,
        pretrain_simulations=draws,
        pretrain_views=cfg.pretrain_views,
        pretrain_kwargs=pretrain,
        flow_kwargs=dict(cfg.flow),
        frozen_epochs=cfg.frozen_epochs,
        checkpoint=ctx.checkpoint("symmetry_npe"),
        **ctx.npe_kwargs(),
    )
    method.extra["training_simulations"] = len(theta)
    return method


def _raw_npe(ctx: TrainingContext) -> M.TrainedMethod:
    checkpoint = ctx.checkpoint("raw_npe")
    return M.raw_npe(ctx.task, ctx.theta, ctx.x, checkpoint=checkpoint, **ctx.npe_kwargs())


def _end_to_end_npe(ctx: TrainingContext) -> M.TrainedMethod:
    flow = dict(ctx.config.flow)
    return M.end_to_end_npe(
        ctx.task,
        ctx.theta,
        ctx.x,
        ctx.towers["npe"],
        flow_kwargs=flow,
        checkpoint=ctx.checkpoint("end_to_end_npe"),
        **ctx.npe_kwargs(),
    )


def _embed_emulate(ctx: TrainingContext) -> M.TrainedMethod:
    estimator, encoder, cfg = ctx.config.ee.arguments(), ctx.towers["ratio"], ctx.config
    choice = cfg.ee.get("pretrain", False)  # True, "auto", or PretrainConfig overrides
    if choice == "auto":  # pretrain only where the views cost no simulator call
        choice = resolve_pretrain_views(ctx.task, cfg.pretrain_views) == "shift"
    pretrain, theta, x, draws = None, ctx.theta, ctx.x, cfg.pretrain_simulations
    if choice is not False:  # plain VICReg unless `ee.pretrain` names the hybrid term itself
        overrides = {"supervised_weight": 0.0, **(choice if isinstance(choice, dict) else {})}
        pretrain, theta, x, draws = _pretraining(ctx, encoder, overrides)
    method = M.embed_emulate(
        ctx.task,
        theta,
        x,
        encoder,
        estimator_kwargs=estimator,
        pretrain_kwargs=pretrain,
        pretrain_views=cfg.pretrain_views,
        pretrain_simulations=draws,
        members=cfg.ee.get("members", 1),
        checkpoints=lambda k: ctx.checkpoint("embed_emulate", member=k),
        **ctx.ratio_kwargs(),
    )
    method.extra["training_simulations"] = len(theta)
    return method


def _nre_c(ctx: TrainingContext) -> M.TrainedMethod:
    checkpoint = ctx.checkpoint("nre_c")
    return M.nre_c(
        ctx.task, ctx.theta, ctx.x, ctx.towers["ratio"], checkpoint=checkpoint, **ctx.ratio_kwargs()
    )


#: Every method the run can compare, in training order.
METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("symmetry_npe", "symmetry NPE", "npe", _symmetry_npe),
        MethodSpec("raw_npe", "NPE (raw data)", "npe", _raw_npe, light=True),
        MethodSpec("end_to_end_npe", "NPE (same encoder, no pretraining)", "npe", _end_to_end_npe),
        MethodSpec("embed_emulate", "Embed and Emulate", "ratio", _embed_emulate),
        MethodSpec("nre_c", "NRE-C (same encoder)", "ratio", _nre_c, mcmc=True),
    )
}


def label(name: str) -> str:
    """The display label of method ``name``.

    Example:
        >>> label("raw_npe")
        'NPE (raw data)'
    """
    return METHODS[name].label


def parse_methods(text: str) -> tuple[str, ...]:
    """Method names from a comma-separated list, checked against :data:`METHODS`.

    Args:
        text: E.g. ``"symmetry_npe,end_to_end_npe"``.

    Returns:
        The names, in the order given.

    Example:
        >>> parse_methods("raw_npe, nre_c")
        ('raw_npe', 'nre_c')
    """
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise ValueError(
            f"--methods must be a comma-separated list of {list(METHODS)}; got {text!r}"
            + (f" (unknown: {unknown})." if unknown else ".")
        )
    return names
