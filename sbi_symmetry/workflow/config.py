"""Settings of the end-to-end run, and their checks; the presets are in :mod:`.presets`.

``fast`` is sized so the default run (damped oscillator) finishes in a few minutes on a 2-core
laptop while the symmetry embedding still beats sbi's NPE on raw data; ``paper`` uses the sizes of
the symmetry-embedding paper (10^5 simulations, 100 pretraining epochs, the paper's convolution
sizes) and takes hours on a CPU.

Example:
    >>> cfg = RunConfig.from_preset("damped-oscillator", "fast")
    >>> cfg.num_simulations > 0
    True
    >>> RunConfig.from_preset("damped-oscillator", "fast", num_simulations=500).num_simulations
    500
    >>> RunConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> RunConfig.from_preset("damped-oscillator", "fast", pretrain={"max_epoch": 3})
    Traceback (most recent call last):
    ...
    ValueError: `pretrain` setting(s) ['max_epoch'] unknown; valid: ['batch_size', ...].
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from sbi_symmetry._io import atomic_write_text
from sbi_symmetry._validation import check_choice, check_int
from sbi_symmetry.symmetry.pretrain.config import PretrainConfig
from sbi_symmetry.symmetry.pretrain.data import split_sizes
from sbi_symmetry.tasks import TASKS, get_task
from sbi_symmetry.views import resolve_pretrain_views, split_budget, supports_shift_views
from sbi_symmetry.workflow.presets import PRESET_SETTINGS
from sbi_symmetry.workflow.registry import METHODS
from sbi_symmetry.workflow.settings import SUB_SETTINGS, CheckedKwargs, check_nre_c_train

Preset = Literal["fast", "paper"]
PRESETS: tuple[str, ...] = ("fast", "paper")
#: The file every run writes its settings to (re-run them with ``sbi-symmetry run --config``).
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class RunConfig:
    """Everything ``sbi-symmetry run`` does, in one place (JSON-serialisable).

    Attributes:
        task: Task name (``sbi_symmetry.tasks.TASKS``), or your own task as ``module:Object``
            (see :func:`sbi_symmetry.tasks.get_task`; its presets are the default task's).
        preset: The preset these settings came from.
        num_simulations: Training simulations for every method.
        pretrain_simulations: Parameter draws for VICReg pretraining on re-simulated views
            (two simulator calls each: one bank by default, every epoch again with
            ``pretrain={"fresh_views": True}``; unused when the views are shifts of the
            training set).
        pretrain_views: ``"shift"`` (noise-filled time shifts of the stored training set: no
            simulator call; signal-in-white-noise tasks with one time shift only),
            ``"resimulated"`` (two simulator calls per view pair) or
            ``"auto"`` (the default: ``"shift"`` where the task qualifies, see
            :func:`~sbi_symmetry.views.supports_shift_views`, else ``"resimulated"``).
        view_fraction: Equal totals for re-simulated views. ``None`` (default): symmetry NPE
            spends ``2 * pretrain_simulations`` calls on views beside ``num_simulations``. A
            number in ``(0, 1)``: ``num_simulations`` is every method's *total* of simulator
            calls, and symmetry NPE splits it with
            :func:`~sbi_symmetry.views.split_budget`: that share on one bank of re-simulated
            views (``pretrain_simulations`` is then unused), the rest (the first rows of the
            shared training set) for NPE. Needs re-simulated views and
            ``fresh_views`` not ``True``; shift views cost no call, so nothing is to split.
        frozen_epochs: Symmetry NPE's first NPE epochs with the pretrained embedding frozen,
            before it is fine-tuned (:func:`~sbi_symmetry.symmetry.train_npe`; sbi trains
            ``frozen_epochs + 1``); 0 fine-tunes from the first epoch; ``"auto"`` (``fast``):
            20 epochs, at most 4,500 steps (10 epochs at 10^5 simulations, 1 at 10^6, so 11
            and 2 trained; :func:`~sbi_symmetry.symmetry.finetune.frozen_epochs_for`).
        num_observations: Held-out observations compared against the reference posterior.
        posterior_samples: Samples per observation for C2ST and the corner plots.
        sbc_pairs: Test pairs for SBC / expected coverage / TARP of the NPE methods.
        sbc_pairs_ratio: Test pairs for a method sampled by MCMC (``nre_c``; slower).
        sbc_posterior_samples: Posterior samples per SBC pair.
        encoder: ``ConvEncoder1D`` keyword arguments for the summary network (symmetry NPE and
            the end-to-end baseline); ``input_length`` and ``in_channels`` come from the task.
            Every sub-setting below is checked against what it is passed to when the config is
            built (:mod:`sbi_symmetry.workflow.settings`).
        ee_encoder: ``ConvEncoder1D`` keyword arguments for Embed and Emulate's data tower.
        expander: ``Expander`` keyword arguments (the VICReg projector, pretraining only).
        flow: ``posterior_nn`` keyword arguments of the flows behind an encoder (sbi's NPE on
            raw data always keeps sbi's defaults).
        pretrain: ``PretrainConfig`` overrides.
        npe_train: ``NPE.train`` keyword arguments (every NPE), and ``anneal``: after training
            stops, resume at the learning rate times ``anneal`` until early stopping stops it
            again (:func:`~sbi_symmetry.symmetry.train_npe`; 0 or absent: no second phase).
        ee_train: ``EmbedEmulate.train`` keyword arguments (the ratio methods), and ``anneal``
            as for ``npe_train``.
        ee: ``EmbedEmulate`` keyword arguments, and ``pretrain``: ``True`` VICReg-pretrains
            Embed and Emulate's data tower first, on the views and with the ``pretrain``
            settings symmetry NPE uses, but without the hybrid loss's supervised term (a dict:
            ``pretrain`` overrides for it, ``supervised_weight`` included); ``"auto"`` (the
            ``fast`` presets) only where those views are shifts of the training set (no
            simulator call); ``False`` (absent) never. ``members``: that many trainings, their
            product sampled (default 1; ``benchmarks/results/ee_{pretrain,members}.md``).
        methods: Which methods to run (names of :data:`~sbi_symmetry.workflow.registry.METHODS`).
        seed: Seed of every random draw; each method trains from its own stream derived from
            it (:mod:`sbi_symmetry.workflow.parallel`).
        training_seed: Seed of the methods' training streams (initial weights and pretraining
            included) instead of ``seed``; the data and observations still follow ``seed``.
            Vary it to see how much training alone moves the numbers. ``None`` (default): ``seed``.
        device: Torch device for training.
        workers: Methods trained at once, each in its own process with its share of torch's
            threads: 0 (default) chooses (every method at once on CPU, 1 on an accelerator),
            1 trains them in turn in this process.
    """

    task: str = "damped-oscillator"
    preset: str = "fast"
    num_simulations: int = 10_000
    pretrain_simulations: int = 10_000
    pretrain_views: str = "auto"
    view_fraction: float | None = None
    frozen_epochs: int | Literal["auto"] = 0
    num_observations: int = 5
    posterior_samples: int = 2_000
    sbc_pairs: int = 200
    sbc_pairs_ratio: int = 100
    sbc_posterior_samples: int = 200
    encoder: CheckedKwargs = field(default_factory=dict)  # type: ignore[assignment]
    ee_encoder: CheckedKwargs = field(default_factory=dict)  # type: ignore[assignment]
    expander: CheckedKwargs = field(default_factory=dict)  # type: ignore[assignment]
    flow: CheckedKwargs = field(default_factory=dict)  # type: ignore[assignment]
    pretrain: CheckedKwargs = field(default_factory=dict)  # type: ignore[assignment]
    npe_train: CheckedKwargs = field(default_factory=dict)  # type: ignore[assignment]
    ee_train: CheckedKwargs = field(default_factory=dict)  # type: ignore[assignment]
    ee: CheckedKwargs = field(default_factory=dict)  # type: ignore[assignment]
    methods: tuple[str, ...] = ("symmetry_npe", "raw_npe", "end_to_end_npe", "embed_emulate")
    seed: int = 0
    training_seed: int | None = None
    device: str = "cpu"
    workers: int = 0

    def __post_init__(self) -> None:
        for name, kind in SUB_SETTINGS.items():  # checked (and typed) when built
            value = getattr(self, name)
            if not isinstance(value, kind):
                object.__setattr__(self, name, kind(value))
        object.__setattr__(self, "methods", tuple(self.methods))

    @classmethod
    def from_preset(cls, task: str, preset: str = "fast", **overrides: Any) -> RunConfig:
        """Settings for ``task`` under ``preset``, with keyword overrides on top.

        Args:
            task: Task name.
            preset: ``"fast"`` or ``"paper"``.
            **overrides: Any field.

        Returns:
            The configuration.

        Example:
            >>> RunConfig.from_preset("lorenz96", "paper", seed=3).seed
            3
            >>> RunConfig.from_preset("lorenz96", simulatons=3)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: unknown run setting(s) ['simulatons']; valid: ['device', ...].
        """
        check_choice(preset, "preset", PRESETS)
        if is_task_spec(task):  # your own task: the default task's preset
            base = cls(**{**PRESET_SETTINGS[(RunConfig.task, preset)], "task": task})
        else:
            check_choice(task, "task", sorted({t for t, _ in PRESET_SETTINGS}))
            base = cls(**PRESET_SETTINGS[(task, preset)])
        _check_names(overrides)
        cfg = replace(base, **overrides)
        cfg.validate()
        return cfg

    @property
    def method_seed(self) -> int:
        """The seed of the methods' training streams: ``training_seed``, else ``seed``.

        Example:
            >>> RunConfig(seed=3).method_seed, RunConfig(seed=3, training_seed=7).method_seed
            (3, 7)
        """
        return self.seed if self.training_seed is None else self.training_seed

    def validate(self) -> None:
        """Raise ``ValueError`` for settings that cannot work.

        Example:
            >>> RunConfig(num_simulations=100).validate()
            Traceback (most recent call last):
            ...
            ValueError: `num_simulations` must be at least 500 for a meaningful run; got 100.
        """
        if is_task_spec(self.task):
            get_task(self.task, device="cpu")  # imports and checks it; one line if it cannot
        else:
            check_choice(self.task, "task", sorted(TASKS))
        check_int(self.seed, "seed", 0)
        if self.training_seed is not None:
            check_int(self.training_seed, "training_seed", 0)
        check_int(self.workers, "workers", 0)
        if self.frozen_epochs != "auto":
            check_int(self.frozen_epochs, "frozen_epochs", 0, why=' or "auto"')
        for name in ("npe_train", "ee_train"):
            factor = getattr(self, name).get("anneal", 0.0)
            if not (isinstance(factor, int | float) and 0.0 <= factor < 1.0):
                msg = f"`{name}.anneal` must be a number in [0, 1) (0: no second phase)"
                raise ValueError(f"{msg}; got {factor!r}.")
        check_choice(self.pretrain_views, "pretrain_views", ("auto", "resimulated", "shift"))
        counts = ("num_simulations", "pretrain_simulations", "num_observations")
        counts += ("posterior_samples", "sbc_pairs", "sbc_pairs_ratio", "sbc_posterior_samples")
        for name in counts:
            check_int(getattr(self, name), name, 1)
        check_int(self.num_observations, "num_observations", 2, " (a mean and its error)")
        check_int(self.posterior_samples, "posterior_samples", 10, " (C2ST's 5 folds, widths)")
        if self.num_simulations < 500:
            msg = "`num_simulations` must be at least 500 for a meaningful run"
            raise ValueError(f"{msg}; got {self.num_simulations}.")
        unknown = set(self.methods) - set(METHODS)
        if unknown or not self.methods:
            raise ValueError(
                f"`methods` must be one or more of {list(METHODS)}; unknown: {sorted(unknown)}."
            )
        choice = self.ee.get("pretrain", False)
        if not (isinstance(choice, bool | dict) or choice == "auto"):
            raise ValueError(
                f"`ee.pretrain` must be True, False, 'auto' (only where the views cost no "
                f"simulator call) or a dict of `pretrain` overrides; got {choice!r}."
            )
        if isinstance(choice, dict):
            SUB_SETTINGS["pretrain"](choice)  # names an unknown key
        if self.pretrain_views == "shift" and self._pretrains():
            task = get_task(self.task, device="cpu")
            if not supports_shift_views(task):
                raise ValueError(
                    f"`pretrain_views='shift'` needs a signal-in-white-noise task with one time "
                    f"shift; {self.task} is not one (see sbi_symmetry.views.shift_views). Use "
                    "'auto' or 'resimulated'."
                )
        if self.view_fraction is not None:
            self._check_view_fraction()
        self._check_pretrain_batches()
        if "nre_c" in self.methods:
            check_nre_c_train(self.ee_train)

    def _pretrains(self) -> bool:
        """Whether a selected method runs VICReg pretraining (symmetry NPE, or E&E's option)."""
        return bool(self._pretrain_settings())

    def _pretrain_settings(self) -> list[dict[str, Any]]:
        """The ``pretrain`` settings of each pretraining the selected methods run."""
        settings = [dict(self.pretrain)] if "symmetry_npe" in self.methods else []
        choice = self.ee.get("pretrain", False)
        if choice == "auto":
            choice = self._views() == "shift"
        if "embed_emulate" in self.methods and choice is not False:
            settings.append({**self.pretrain, **(choice if isinstance(choice, dict) else {})})
        return settings

    def _views(self) -> str:
        """The views ``pretrain_views`` means for this task: ``"shift"`` or ``"resimulated"``."""
        return resolve_pretrain_views(get_task(self.task, "cpu"), self.pretrain_views)

    def _check_view_fraction(self) -> None:
        """``view_fraction`` splits ``num_simulations`` and needs one bank of re-simulated views."""
        fraction = self.view_fraction
        ok = isinstance(fraction, int | float) and not isinstance(fraction, bool)
        if not ok or not 0 < fraction < 1:  # NaN fails too
            raise ValueError(
                f"`view_fraction` must be None or a number in (0, 1) (the share of each "
                f"method's num_simulations spent on re-simulated views); got {fraction!r}."
            )
        try:  # both parts usable, or it says why
            split_budget(self.num_simulations, float(fraction))
        except ValueError as error:
            raise ValueError(f"`num_simulations` with `view_fraction`: {error}") from error
        if self.pretrain.get("fresh_views") is True:
            raise ValueError(
                "`view_fraction` sizes one bank of views; fresh views (pretrain={'fresh_views': "
                "True}) cost two calls per draw and epoch, which no split can bound. Drop one."
            )
        if self._views() == "shift" and self._pretrains():
            raise ValueError(
                f"`view_fraction` splits calls between training set and re-simulated views, but "
                f"{self.task}'s views are shifts of the stored training set (pretrain_views="
                f"{self.pretrain_views!r}): they cost no simulator call, so the whole budget "
                "already trains. Leave view_fraction unset, or set pretrain_views='resimulated'."
            )

    def _check_pretrain_batches(self) -> None:
        """The view pairs of the run fill a pretraining batch, for each pretraining."""
        if self.view_fraction is not None:
            pairs = split_budget(self.num_simulations, float(self.view_fraction)).view_pairs
            source = f"`view_fraction`={self.view_fraction} of num_simulations="
            source += f"{self.num_simulations} buys {pairs} view pairs"
        elif self._views() == "shift":
            pairs = self.num_simulations
            source = f"shift views come from the num_simulations={pairs} stored simulations"
        else:
            pairs = self.pretrain_simulations
            source = f"pretrain_simulations={pairs} gives {pairs} view pairs"
        for values in self._pretrain_settings():
            sizes = {k: values[k] for k in ("batch_size", "validation_fraction") if k in values}
            try:
                split_sizes(pairs, PretrainConfig(**sizes))
            except ValueError as error:
                raise ValueError(f"{source} for pretraining: {error}") from error

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary (the sub-settings stay checked mappings).

        Example:
            >>> RunConfig().to_dict()["methods"]
            ('symmetry_npe', 'raw_npe', 'end_to_end_npe', 'embed_emulate')
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """The config saved by :meth:`to_dict` (unknown keys refused, settings checked).

        Args:
            values: A dictionary as written to ``config.json``.

        Returns:
            The configuration.
        """
        _check_names(values)
        cfg = cls(**values)
        cfg.validate()
        return cfg

    @classmethod
    def from_json(cls, path: str | Path) -> RunConfig:
        """Read a ``config.json`` written by :meth:`save` (or by ``sbi-symmetry run``).

        Args:
            path: The file.

        Returns:
            The configuration.

        Example:
            >>> import tempfile
            >>> cfg = RunConfig.from_preset("sine-gaussian", "fast", methods=("raw_npe",))
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     cfg.save(Path(folder) / "config.json")
            ...     RunConfig.from_json(Path(folder) / "config.json") == cfg
            True
        """
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read a run config from {path}: {error}") from error
        if not isinstance(values, dict):
            raise ValueError(f"{path} does not hold a run config (a JSON object).")
        return cls.from_dict(values)

    def save(self, path: str | Path) -> None:
        """Write the settings as JSON (atomically), to re-run with ``--config``.

        Args:
            path: The file to write.
        """
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")


def is_task_spec(task: object) -> bool:
    """Whether ``task`` names your own task as ``module:Object`` (not a built-in name).

    Example:
        >>> is_task_spec("my_package.tasks:MyTask"), is_task_spec("lorenz96")
        (True, False)
    """
    return isinstance(task, str) and ":" in task


def _check_names(values: dict[str, Any]) -> None:
    """Refuse keys that are not ``RunConfig`` fields, naming them and the valid ones."""
    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown run setting(s) {unknown}; valid: {sorted(known)}.")
