"""The benchmarks' settings: the workflow's ``fast`` preset plus each benchmark's overrides.

Every tower, expander, flow and pretraining setting the benchmark scripts use is read from
:meth:`~sbi_symmetry.workflow.config.RunConfig.from_preset` and changed here, once, where a
benchmark departs from the preset:

* ``embed_emulate.py`` (:func:`ee_plan`): the preset's E&E tower for every method (E&E, NRE_C; the
  same architecture with a 3-D head, 8-D on Lorenz-96, for symmetry-NPE), the sine-Gaussian
  averaged over 4 samples with 8 channels, Lorenz-96 with a 32-unit head; the preset's
  pretraining as recorded (plain VICReg, the frozen backbone, re-simulated views) shortened to 30
  epochs (patience 10) on 20 000 parameter draws (Lorenz-96: the preset's 5 000, one fixed bank
  of views); the preset's flow;
* ``symmetry_npe.py`` (:data:`SYMMETRY_NPE`): the preset's NPE tower, expander and flow, and its
  pretraining three times as long (120 epochs, no early stop) on 10^5 parameter draws.

Pretraining settings keep the key order the recorded results print (sorted, overrides last).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sbi_symmetry.workflow.config import RunConfig

#: The preset every benchmark starts from.
PRESET = "fast"
#: ``--quick``: pretraining shrunk to a smoke test (both scripts).
QUICK_PRETRAIN: dict[str, Any] = {"batch_size": 64, "max_epochs": 2}
#: Symmetry NPE's settings in the fast preset when the recorded pages were made (until
#: 2026-12-04): a flow of 25 hidden units, fine-tuned from the first epoch, and (but on
#: Lorenz-96) 6 channels and 1 block. The preset now has 16 channels, 2 blocks, a flow of 50
#: and a frozen start (``frozen_epochs`` 20, since 2026-12-07 at most 4,500 steps: ``"auto"``;
#: sbi trains one epoch more) and, since 2026-12-06, a dilated second block; benchmarks keep
#: the recorded values so that every page's command still makes that page, and name the new
#: ones where they measure them.
RECORDED_NPE: dict[str, Any] = {"flow": {"hidden_features": 25}, "frozen_epochs": 0}
RECORDED_ENCODER: dict[str, Any] = {"channels": 6, "num_blocks": 1, "dilation": 1}
#: Embed and Emulate's likewise (until 2026-12-04): a data tower of 6 channels and 1 block (but
#: on Lorenz-96) and ``EmbedEmulate``'s default emulator, 64 wide with 2 blocks. The preset now
#: has 16 channels and 2 blocks and an emulator 128 wide with 3 blocks.
RECORDED_EE: dict[str, Any] = {
    "emulator_kwargs": {"hidden_dim": 64, "num_blocks": 2},
    "pretrain": False,
}
#: Pretraining as recorded (until 2026-12-06): plain VICReg. The preset's symmetry NPE has
#: pretrained with the hybrid loss (``supervised_weight`` 10) since, and its E&E tower on free
#: shift views (``ee.pretrain="auto"``, the ``False`` above) since 2026-12-05.
RECORDED_PRETRAIN: dict[str, Any] = {"supervised_weight": 0.0}
#: The larger emulator the lever and seed benchmarks measured (the ``fast`` preset's since).
LARGE_EMULATOR: dict[str, int] = {"hidden_dim": 128, "num_blocks": 3}
#: ``npe_train`` keys the preset gained after the recorded pages were made (a last phase at a
#: tenth of the learning rate, since 2026-12-05); ``preset`` leaves them out.
LATER_NPE_TRAIN: tuple[str, ...] = ("anneal",)


def preset(task: str) -> RunConfig:
    """The workflow's settings for ``task`` under :data:`PRESET`, as recorded (see above)."""
    cfg = RunConfig.from_preset(task, PRESET)
    encoder, ee_encoder = dict(cfg.encoder), dict(cfg.ee_encoder)
    if task != "lorenz96":
        encoder.update(RECORDED_ENCODER)
        ee_encoder.update(RECORDED_ENCODER)
    return RunConfig.from_preset(
        task,
        PRESET,
        encoder=encoder,
        ee_encoder=ee_encoder,
        ee={**cfg.ee, **RECORDED_EE},
        pretrain={**cfg.pretrain, **RECORDED_PRETRAIN},
        npe_train={k: v for k, v in cfg.npe_train.items() if k not in LATER_NPE_TRAIN},
        **RECORDED_NPE,
    )


def merged(base: RunConfig, changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` with each dict-valued one updating ``base``'s dict of that name.

    Example:
        >>> cfg = RunConfig.from_preset("damped-oscillator", "fast")
        >>> merged(cfg, {"npe_train": {"anneal": 0.0}})["npe_train"]["training_batch_size"]
        200
    """
    return {
        key: {**getattr(base, key), **value} if isinstance(value, dict) else value
        for key, value in changes.items()
    }


def _with(settings: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """``settings`` as a plain dict in sorted key order, with ``overrides`` on top."""
    return {**dict(sorted(settings.items())), **overrides}


_SHO = preset("damped-oscillator")
#: sbi training shared by both scripts (their CLI defaults): the preset's batch and learning
#: rate, sbi's patience of 20 epochs.
TRAINING: dict[str, Any] = {
    "batch_size": _SHO.npe_train["training_batch_size"],
    "learning_rate": _SHO.npe_train["learning_rate"],
    "stop_after_epochs": 20,
}


# ------------------------------------------------------------------------- embed_emulate.py
@dataclass(frozen=True)
class TaskPlan:
    """Per-task settings of ``embed_emulate.py``.

    Attributes:
        encoder: ``ConvEncoder1D`` keyword arguments shared by every method: the data tower of
            E&E and the x-embedding of NRE_C use them as they are (same architecture, same
            initial weights); symmetry-NPE uses the same architecture with ``output_dim``
            replaced by ``npe_output_dim``.
        npe_output_dim: Summary width for symmetry-NPE's flow.
        pretrain: ``PretrainConfig`` overrides for symmetry-NPE.
        pretrain_simulations: Parameter draws for symmetry-NPE's pretraining.
        flow: ``posterior_nn`` arguments of symmetry-NPE's flow.
        vicreg: Whether to run E&E with the VICReg regulariser on this task.
        speed_encoder: A costlier encoder (no input averaging) for which only the speed of
            E&E and NRE_C is measured, to show how the speed-ups scale with the encoder's cost;
            ``None`` for none.
    """

    encoder: dict[str, Any]
    npe_output_dim: int
    pretrain: dict[str, Any]
    pretrain_simulations: int
    flow: dict[str, Any]
    vicreg: bool = True
    speed_encoder: dict[str, Any] | None = None

    def npe_encoder(self) -> dict[str, Any]:
        """Symmetry-NPE's encoder: the shared architecture with its own summary width."""
        return {**self.encoder, "output_dim": self.npe_output_dim}


#: Full-resolution encoder (no input averaging), for the speed-only comparison.
FULL_RESOLUTION: dict[str, Any] = {
    "output_dim": 16,
    "channels": 8,
    "num_blocks": 2,
    "kernel_size": 9,
}
#: E&E estimator settings used for both E&E variants (see the results file for why).
EE_KWARGS: dict[str, Any] = {
    **_SHO.ee.arguments(),  # without the run's own `pretrain` choice
    "learn_temperature": True,
    "z_score_x": "structured",
}

#: ``embed_emulate.py``'s departures from the preset, per task: tower, summary width,
#: pretraining, its parameter draws, whether E&E + VICReg and the speed check run.
_EE_OVERRIDES: dict[str, dict[str, Any]] = {
    # The input averaged over windows of 8 samples (both signals are heavily oversampled), one
    # residual block of small convolutions, mean pooling, a small head.
    "damped-oscillator": {"npe_output_dim": 3, "speed_encoder": FULL_RESOLUTION},
    "sine-gaussian": {
        "encoder": {"downsample": 4, "channels": 8},
        "npe_output_dim": 3,
        "speed_encoder": FULL_RESOLUTION,
    },
    # Sites as the length axis, the 16 snapshots as channels, circular padding (exactly
    # invariant to the cyclic site shift after mean pooling), a smaller head. Re-simulated views
    # cost two Lorenz-96 integrations per pair and epoch (about a minute per epoch here), so
    # pretraining draws one fixed bank of views and E&E's VICReg variant is not run.
    "lorenz96": {
        "encoder": {"hidden_dim": 32},
        "npe_output_dim": 8,
        "pretrain": {"fresh_views": False},
        "pretrain_simulations": None,  # the preset's
        "vicreg": False,
    },
}


def ee_plan(task: str) -> TaskPlan:
    """``embed_emulate.py``'s settings for ``task``: the preset with :data:`_EE_OVERRIDES`."""
    base, extra = preset(task), dict(_EE_OVERRIDES[task])
    draws = extra.pop("pretrain_simulations", 20_000)
    return TaskPlan(
        encoder={**base.ee_encoder, **extra.pop("encoder", {})},
        pretrain=_with(
            base.pretrain,
            max_epochs=30,
            stop_after_epochs=10,
            # as recorded: fresh views, the frozen backbone (the default until 2026-12-04)
            **{"fresh_views": True, "freeze": "backbone", **extra.pop("pretrain", {})},
        ),
        pretrain_simulations=base.pretrain_simulations if draws is None else draws,
        flow=dict(base.flow),
        **extra,
    )


#: The tasks of ``embed_emulate.py`` and their plans.
EE_PLANS: dict[str, TaskPlan] = {task: ee_plan(task) for task in _EE_OVERRIDES}


# ------------------------------------------------------------------------- symmetry_npe.py
@dataclass(frozen=True)
class NPEPlan:
    """Settings of ``symmetry_npe.py`` (the same for both of its tasks).

    Attributes:
        encoder: ``ConvEncoder1D`` arguments of both embedding methods: the input averaged over
            windows of 8 samples (SHO: >= 57 samples per period, SG: >= 25), one residual block
            of 6-channel convolutions of width 5, mean pooling, a small head to an 8-D summary;
            sized so that the whole NPE forward pass stays under a quarter of sbi's raw NPE.
        expander: The VICReg expander (pretraining only): 8 -> 64 -> 64 -> 32.
        flow: ``posterior_nn`` arguments of the flow behind an embedding.
        pretrain: ``PretrainConfig`` overrides; fresh views every epoch.
        pretrain_simulations: Parameter draws for pretraining.
    """

    encoder: dict[str, Any]
    expander: dict[str, Any]
    flow: dict[str, Any]
    pretrain: dict[str, Any]
    pretrain_simulations: int


def npe_plan(task: str = "damped-oscillator") -> NPEPlan:
    """``symmetry_npe.py``'s settings: the preset's, pretrained 120 epochs on 10^5 draws."""
    base = preset(task)
    return NPEPlan(
        encoder=dict(base.encoder),
        expander=dict(base.expander),
        flow=dict(base.flow),
        pretrain=_with(base.pretrain, max_epochs=120, stop_after_epochs=120, fresh_views=True),
        pretrain_simulations=100_000,
    )


SYMMETRY_NPE = npe_plan()
