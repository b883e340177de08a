"""Typed sub-settings of a run: keyword arguments checked against what they are passed to.

Each class is a ``dict`` of keyword arguments for one callable (an encoder's constructor, sbi's
``NPE.train``, :class:`~sbi_symmetry.symmetry.pretrain.PretrainConfig` ...) that refuses, when it
is built, any key that callable does not take, naming the key and the valid ones. A typo in a
preset or a saved ``config.json`` then fails at once instead of hours later when its stage starts.
Being plain dictionaries underneath, they serialise to JSON as they are.

Example:
    >>> EncoderSettings(channels=8, num_blocks=2)["channels"]
    8
    >>> PretrainSettings(max_epoch=3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: `pretrain` setting(s) ['max_epoch'] unknown; valid: ['batch_size', ...].
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from functools import cache
from typing import Any, ClassVar

from sbi_symmetry._validation import check_int


class CheckedKwargs(dict):
    """Keyword arguments for one callable, checked against its signature when built.

    Subclasses name the setting (``field``), the callable (``target``), the parameters the
    run supplies itself (``supplied``), which may not be set here, and the keys the run itself
    reads before calling it (``added``).
    """

    field: ClassVar[str] = ""
    supplied: ClassVar[frozenset[str]] = frozenset()
    added: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, values: Any = (), /, **kwargs: Any) -> None:
        super().__init__(values, **kwargs)
        for key, value in self.items():  # JSON gives lists: keep settings equal after a round trip
            if isinstance(value, list):
                self[key] = tuple(value)
        valid = self.valid_keys()
        unknown = sorted(set(self) - valid)
        if unknown:
            raise ValueError(
                f"`{self.field}` setting(s) {unknown} unknown; valid: {sorted(valid)}."
            )

    @staticmethod
    def target() -> Callable[..., Any]:
        """The callable these keyword arguments go to."""
        raise NotImplementedError

    @classmethod
    def valid_keys(cls) -> frozenset[str]:
        """The keyword arguments allowed here."""
        return (_parameters(cls.target()) | cls.added) - cls.supplied

    def arguments(self) -> dict[str, Any]:
        """What goes to :meth:`target`: the settings without the run's own ``added`` keys.

        Example:
            >>> EESettings(pretrain="auto", temperature=0.1).arguments()
            {'temperature': 0.1}
        """
        return {key: value for key, value in self.items() if key not in self.added}


@cache
def _parameters(target: Callable[..., Any]) -> frozenset[str]:
    if dataclasses.is_dataclass(target):
        return frozenset(f.name for f in dataclasses.fields(target))
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    params = inspect.signature(target).parameters.values()
    return frozenset(p.name for p in params if p.kind not in skip and p.name != "self")


class EncoderSettings(CheckedKwargs):
    """``ConvEncoder1D`` arguments (its input length and channels come from the task)."""

    field = "encoder"
    supplied = frozenset({"input_length", "in_channels"})

    @staticmethod
    def target() -> Callable[..., Any]:  # noqa: D102
        from sbi_symmetry.nets.conv import ConvEncoder1D

        return ConvEncoder1D.__init__


class EEEncoderSettings(EncoderSettings):
    """``ConvEncoder1D`` arguments of Embed and Emulate's data tower (and NRE_C's x-embedding)."""

    field = "ee_encoder"


class ExpanderSettings(CheckedKwargs):
    """``Expander`` arguments (its input width is the encoder's output)."""

    field = "expander"
    supplied = frozenset({"input_dim"})

    @staticmethod
    def target() -> Callable[..., Any]:  # noqa: D102
        from sbi_symmetry.nets.heads import Expander

        return Expander.__init__


class FlowSettings(CheckedKwargs):
    """sbi ``posterior_nn`` arguments of the flows behind an encoder."""

    field = "flow"
    supplied = frozenset({"model", "embedding_net", "z_score_x"})

    @staticmethod
    def target() -> Callable[..., Any]:  # noqa: D102
        from sbi.neural_nets import posterior_nn

        return posterior_nn


class PretrainSettings(CheckedKwargs):
    """``PretrainConfig`` overrides (``seed`` and ``device`` are the run's)."""

    field = "pretrain"
    supplied = frozenset({"seed", "device"})

    @staticmethod
    def target() -> Callable[..., Any]:  # noqa: D102
        from sbi_symmetry.symmetry.pretrain.config import PretrainConfig

        return PretrainConfig


class NPETrainSettings(CheckedKwargs):
    """sbi ``NPE.train`` arguments (every NPE), and ``anneal`` (a second, slower phase)."""

    field = "npe_train"
    supplied = frozenset({"show_progress_bars"})
    added = frozenset({"anneal"})

    @staticmethod
    def target() -> Callable[..., Any]:  # noqa: D102
        from sbi.inference import NPE

        return NPE.train


class EETrainSettings(CheckedKwargs):
    """``EmbedEmulate.train`` arguments (also ``NRE_C``'s), and ``anneal`` as for NPE."""

    field = "ee_train"
    supplied = frozenset({"show_progress_bars"})
    added = frozenset({"anneal"})

    @staticmethod
    def target() -> Callable[..., Any]:  # noqa: D102
        from sbi_symmetry.emulate.trainer import EmbedEmulate

        return EmbedEmulate.train


def check_nre_c_train(settings: EETrainSettings) -> None:
    """Refuse ``ee_train`` keys that ``NRE_C.train`` does not take (they go to both trainers).

    Args:
        settings: The run's ``ee_train``, when the ``nre_c`` method is selected.

    Example:
        >>> check_nre_c_train(EETrainSettings(refine_emulator=False))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `ee_train` setting(s) ['refine_emulator'] go to NRE_C.train too (...
    """
    from sbi.inference import NRE_C

    valid = (_parameters(NRE_C.train) | EETrainSettings.added) - EETrainSettings.supplied
    unknown = sorted(set(settings) - valid)
    if unknown:
        raise ValueError(
            f"`ee_train` setting(s) {unknown} go to NRE_C.train too (the nre_c method is "
            f"selected), which does not take them; drop them or nre_c. Valid for both: "
            f"{sorted(valid & EETrainSettings.valid_keys())}."
        )


class EESettings(CheckedKwargs):
    """``EmbedEmulate`` constructor arguments (prior and encoder: the run's), and ``pretrain``.

    ``pretrain``: ``True`` VICReg-pretrains the data tower first with the run's ``pretrain``
    settings and views (as symmetry NPE); a dict also overrides some of those settings;
    ``"auto"`` (the ``fast`` presets) pretrains only where the views are shifts of the stored
    training set (no simulator call). ``members``: train that many estimators on the same
    simulations, one after another, each with its own pretraining, and use their product
    (:func:`~sbi_symmetry.emulate.product_estimator`; default 1: one estimator).

    Example:
        >>> EESettings(members=0)
        Traceback (most recent call last):
        ...
        ValueError: `ee.members` must be an integer >= 1 (estimators in the product); got 0.
    """

    field = "ee"
    supplied = frozenset({"prior", "encoder", "show_progress_bars"})
    added = frozenset({"pretrain", "members"})

    def __init__(self, values: Any = (), /, **kwargs: Any) -> None:
        super().__init__(values, **kwargs)
        check_int(self.get("members", 1), "ee.members", 1, " (estimators in the product)")

    @staticmethod
    def target() -> Callable[..., Any]:  # noqa: D102
        from sbi_symmetry.emulate.trainer import EmbedEmulate

        return EmbedEmulate.__init__


#: The typed sub-settings of :class:`~sbi_symmetry.workflow.config.RunConfig`, by field.
SUB_SETTINGS: dict[str, type[CheckedKwargs]] = {
    cls.field: cls
    for cls in (
        EncoderSettings,
        EEEncoderSettings,
        ExpanderSettings,
        FlowSettings,
        PretrainSettings,
        NPETrainSettings,
        EETrainSettings,
        EESettings,
    )
}
