"""The sbi-facing symmetry embedding: a pretrained encoder with its own input scaling.

:class:`SymmetryEmbedding` wraps an encoder ``f`` (e.g. a VICReg-pretrained
:class:`~sbi_symmetry.nets.conv.ConvEncoder1D`) so that it can be handed to ``sbi`` as
``embedding_net``. It

* owns the input scaling learnt in pretraining, ``f((x - mean) / std)``, stored as buffers (a
  scalar, or one per channel), so the encoder sees in ``sbi`` exactly what it saw in pretraining;
* freezes all of the encoder (``"all"``), only its convolutional ``backbone`` (``"backbone"``:
  the ``head`` is fine-tuned together with the flow, as in the paper) or nothing (``"none"``);
  frozen parts stay in ``eval()`` even though ``sbi`` calls ``.train()`` on the whole estimator
  at the start of every epoch, so BatchNorm statistics and Dropout in a frozen part never move;
* saves and loads itself as ``weights.pt`` (a ``state_dict``, loaded with ``weights_only=True``)
  plus ``config.json`` (encoder class and constructor arguments, freeze mode, scaling, versions);
  no pickled code.

Use it with ``z_score_x="none"``::

    posterior_nn("maf", embedding_net=embedding, z_score_x="none")
    # or, equivalently and harder to get wrong:
    embedding.posterior_nn("maf")

Why: ``sbi`` applies ``z_score_x`` *before* the embedding. Its default, ``"independent"``,
subtracts a mean and divides by a standard deviation computed separately for every time index
over the training set. For data with a time-shift symmetry this breaks the symmetry (a feature
arriving at a noisy index is scaled differently from the same feature arriving elsewhere), and
it changes what the pretrained encoder sees (a rescaled and reshaped input it never met in
pretraining). ``"structured"`` rescales all indices alike, which keeps the symmetry, but stacks a
second scaling on top of the embedding's own. The embedding already standardises its input, so
``"none"`` is right. As a guard, the first rows that reach :meth:`SymmetryEmbedding.forward`
(a few groups of at least 32, smaller batches pooled across calls) are compared with the
pretraining statistics: if a group has mean ~ 0 and std ~ 1 while the pretraining data did not,
a ``UserWarning`` says that ``x`` looks standardised by ``sbi`` (once per embedding).

Example:
    >>> import torch
    >>> from torch import nn
    >>> encoder = nn.Sequential(nn.Flatten(), nn.Linear(8, 2))
    >>> emb = SymmetryEmbedding(encoder, input_mean=1.0, input_std=2.0, freeze="none")
    >>> emb(torch.ones(5, 8)).shape
    torch.Size([5, 2])
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from sbi_symmetry._validation import check_choice, check_finite, check_int, check_tensor
from sbi_symmetry.symmetry.io import load_embedding, save_embedding

FreezeMode = Literal["all", "backbone", "none"]
FREEZE_MODES: tuple[str, ...] = get_args(FreezeMode)

_SCALE_CHECK_MIN_ROWS = 32
_SCALE_CHECK_BATCHES = 3


class SymmetryEmbedding(nn.Module):
    """An encoder with its own input scaling and freezing, ready for ``sbi``'s ``embedding_net``.

    Args:
        encoder: Module mapping ``(B, L)`` or ``(B, C, L)`` to ``(B, D)``. ``freeze="backbone"``
            needs ``encoder.backbone`` and ``encoder.head`` (as on ``ConvEncoder1D``).
        input_mean: Subtracted from ``x`` before the encoder; a float, or one value per channel.
        input_std: Divides ``x`` after the mean is removed; a float > 0, or one per channel.
        freeze: ``"all"`` (nothing trainable, always in eval mode), ``"backbone"`` (the
            backbone is frozen and kept in eval mode, the head trains) or ``"none"`` (every
            parameter trainable). Default ``"none"``, as ``pretrain_vicreg``'s ``freeze``
            setting and the ``fast`` presets; ``emb.freeze = ...`` changes it.
        output_dim: Width ``D`` of the summaries; taken from ``encoder.output_dim`` when omitted.

    Attributes:
        encoder: The wrapped encoder.
        history: Per-epoch pretraining records (empty unless made by ``pretrain_vicreg``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class Tiny(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.backbone = nn.Linear(6, 4)
        ...         self.head = nn.Linear(4, 2)
        ...         self.output_dim = 2
        ...     def forward(self, x):
        ...         return self.head(self.backbone(x).relu())
        >>> emb = SymmetryEmbedding(Tiny(), freeze="backbone").train()
        >>> emb.encoder.backbone.training, emb.encoder.head.training
        (False, True)
        >>> [p.requires_grad for p in emb.encoder.backbone.parameters()]
        [False, False]
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        input_mean: float | Sequence[float] | Tensor = 0.0,
        input_std: float | Sequence[float] | Tensor = 1.0,
        freeze: FreezeMode = "none",
        output_dim: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"`encoder` must be a torch.nn.Module, got {type(encoder).__name__}.")
        self.encoder = encoder
        mean = _as_scale_vector(input_mean, "input_mean")
        std = _as_scale_vector(input_std, "input_std")
        if bool((std <= 0).any()):
            raise ValueError(f"`input_std` must be > 0; got {std.tolist()}.")
        if mean.numel() != std.numel():
            raise ValueError(
                f"`input_mean` and `input_std` must have the same length (one value, or one per "
                f"channel); got {mean.numel()} and {std.numel()}."
            )
        device = _module_device(encoder)
        self.register_buffer("input_mean", mean.to(device))
        self.register_buffer("input_std", std.to(device))
        if output_dim is None:
            output_dim = getattr(encoder, "output_dim", None)
        if output_dim is not None:
            check_int(output_dim, "output_dim", 1)
        self._output_dim: int | None = output_dim
        self.history: dict[str, list[Any]] = {}
        self._freeze: str = "none"
        self.reset_input_check()
        self.freeze = freeze

    # ----------------------------------------------------------------------------- freezing
    @property
    def freeze(self) -> str:
        """The freeze mode; assigning a new mode re-applies ``requires_grad`` and eval modes."""
        return self._freeze

    @freeze.setter
    def freeze(self, mode: str) -> None:
        check_freeze_mode(self.encoder, mode)
        self._freeze = mode
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(mode == "none" or mode == "backbone")
        if mode == "backbone":
            for parameter in self.encoder.backbone.parameters():
                parameter.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> SymmetryEmbedding:
        """Set train/eval mode, keeping frozen parts in eval mode whatever ``mode`` is.

        ``sbi`` calls ``.train()`` on its whole estimator each epoch; this override is what
        stops BatchNorm running statistics and Dropout inside a frozen part from changing.

        Args:
            mode: ``True`` for training mode, ``False`` for evaluation mode.

        Returns:
            ``self``.
        """
        super().train(mode)
        if self._freeze == "all":
            self.encoder.eval()
        elif self._freeze == "backbone":
            self.encoder.backbone.eval()
        return self

    # ----------------------------------------------------------------------------- forward
    @property
    def output_dim(self) -> int:
        """Width ``D`` of the summaries."""
        if self._output_dim is None:
            raise AttributeError(
                f"The output width of {type(self.encoder).__name__} is unknown until the first "
                "forward pass; pass `output_dim=` to SymmetryEmbedding."
            )
        return self._output_dim

    def forward(self, x: Tensor) -> Tensor:
        """Scale ``x`` with the stored mean and std, then encode it.

        Args:
            x: Data of shape ``(B, L)`` or ``(B, C, L)`` (any shape the encoder takes, with the
                batch first), on the embedding's device. Floating-point data of another dtype
                (e.g. float64 from numpy) are cast to the embedding's dtype first.

        Returns:
            Summaries of shape ``(B, D)``.
        """
        check_tensor(x, "x")
        if not torch.is_floating_point(x):
            raise TypeError(f"`x` must be a floating-point tensor; got dtype {x.dtype}.")
        x = x.to(self.input_mean.dtype)
        if x.ndim < 2:
            raise ValueError(
                f"`x` must have a batch dimension, e.g. (B, L) or (B, C, L); got shape "
                f"{tuple(x.shape)}. Use x.unsqueeze(0) for a single observation."
            )
        if x.device != self.input_mean.device:
            raise ValueError(
                f"`x` is on {x.device} but the embedding is on {self.input_mean.device}; move "
                "one of them explicitly (the embedding never moves data between devices)."
            )
        check_finite(x, "x")  # a NaN x_o would give a silent NaN posterior
        mean, std = self._broadcast_scaling(x)
        if self._scale_checks < _SCALE_CHECK_BATCHES:
            self._check_not_standardised(x)
        z = self.encoder((x - mean) / std)
        if not isinstance(z, Tensor) or z.ndim != 2 or z.shape[0] != x.shape[0]:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(
                f"The encoder must return summaries of shape (B, D) = ({x.shape[0]}, D); got "
                f"{shape}."
            )
        if self._output_dim is None:
            self._output_dim = int(z.shape[1])
        return z

    def _broadcast_scaling(self, x: Tensor) -> tuple[Tensor, Tensor]:
        channels = self.input_mean.numel()
        if channels == 1:
            return self.input_mean.reshape(()), self.input_std.reshape(())
        if x.ndim < 3 or x.shape[1] != channels:
            raise ValueError(
                f"The embedding scales {channels} channels separately, so `x` must have shape "
                f"(B, {channels}, ...); got {tuple(x.shape)}."
            )
        view = (channels,) + (1,) * (x.ndim - 2)
        return self.input_mean.reshape(view), self.input_std.reshape(view)

    def reset_input_check(self) -> None:
        """Re-arm the check for sbi-standardised input on the next rows it receives."""
        self._scale_checks = 0
        self._scale_sums: list[Tensor] | None = None  # per-channel count, sum, sum of squares
        self._scale_rows = 0

    def _check_not_standardised(self, x: Tensor) -> None:
        """Warn once if ``x`` looks z-scored by sbi although the pretraining data were not.

        Statistics are pooled over calls until ``_SCALE_CHECK_MIN_ROWS`` rows have been seen,
        so the check does not depend on the batch size (``training_batch_size=20`` included).
        """
        ref_mean = self.input_mean.double().cpu()
        ref_std = self.input_std.double().cpu()
        # Standardised data have mean 0 and std 1; the check only makes sense if the
        # pretraining data were clearly different from that.
        far = bool(((ref_mean.abs() > 0.3) | ((ref_std.log()).abs() > math.log(1.4))).any())
        if not far:
            self._scale_checks = _SCALE_CHECK_BATCHES
            return
        values = x.detach().double()
        if self.input_mean.numel() > 1:  # one row per channel
            values = values.transpose(0, 1).reshape(x.shape[1], -1)
        else:
            values = values.reshape(1, -1)
        count = values.new_full((values.shape[0],), values.shape[1])
        sums = [count, values.sum(1), values.square().sum(1)]
        if self._scale_sums is not None:
            sums = [a + b for a, b in zip(self._scale_sums, sums, strict=True)]
        self._scale_sums, self._scale_rows = sums, self._scale_rows + x.shape[0]
        if self._scale_rows < _SCALE_CHECK_MIN_ROWS:
            return
        count, total, squares = (t.cpu() for t in sums)
        self._scale_sums, self._scale_rows = None, 0
        self._scale_checks += 1
        mean = total / count
        std = ((squares / count - mean.square()).clamp_min(0) * count / (count - 1)).sqrt()
        looks_standard = bool(((mean.abs() < 0.15) & ((std - 1).abs() < 0.2)).all())
        if looks_standard:
            self._scale_checks = _SCALE_CHECK_BATCHES
            warnings.warn(
                "SymmetryEmbedding received data with mean ~0 and std ~1, but its pretraining "
                f"data had mean {_fmt(ref_mean)} and std {_fmt(ref_std)}: it looks as if sbi "
                "z-scored x before the embedding (z_score_x='independent' is sbi's default, and "
                "it also breaks the shift symmetry). Build the estimator with z_score_x='none', "
                "e.g. embedding.posterior_nn('maf').",
                UserWarning,
                stacklevel=3,
            )

    # ----------------------------------------------------------------------------- sbi builders
    def posterior_nn(self, model: str = "maf", **kwargs: Any) -> Callable:
        """``sbi.neural_nets.posterior_nn`` with this embedding and ``z_score_x="none"``.

        Args:
            model: Any model name ``posterior_nn`` takes (``"maf"``, ``"nsf"``, ``"zuko_maf"``...).
            **kwargs: Passed on to ``posterior_nn``; ``z_score_x`` other than ``"none"`` is
                refused (see the module docstring).

        Returns:
            The builder for ``NPE(prior, density_estimator=...)``.
        """
        return symmetry_posterior_nn(self, model=model, **kwargs)

    def posterior_flow_nn(self, model: str = "mlp", **kwargs: Any) -> Callable:
        """``sbi.neural_nets.posterior_flow_nn`` (for FMPE) with this embedding, no x z-scoring.

        Args:
            model: Vector-field network name (``"mlp"``, ``"ada_mlp"``, ...).
            **kwargs: Passed on to ``posterior_flow_nn``.

        Returns:
            The builder for ``FMPE(prior, vf_estimator=...)``.
        """
        from sbi.neural_nets import posterior_flow_nn

        _refuse_z_score(kwargs)
        return posterior_flow_nn(model, embedding_net=self, z_score_x="none", **kwargs)

    def classifier_nn(self, model: str = "mlp", **kwargs: Any) -> Callable:
        """``sbi.neural_nets.classifier_nn`` (for NRE) with this x-embedding, no x z-scoring.

        Args:
            model: ``"linear"``, ``"mlp"`` or ``"resnet"``.
            **kwargs: Passed on to ``classifier_nn``.

        Returns:
            The builder for ``NRE_C(prior, classifier=...)``.
        """
        from sbi.neural_nets import classifier_nn

        _refuse_z_score(kwargs)
        return classifier_nn(model, embedding_net_x=self, z_score_x="none", **kwargs)

    # ----------------------------------------------------------------------------- save / load
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write ``path/weights.pt`` (state_dict) and ``path/config.json``.

        Args:
            path: A folder; created if missing.
            overwrite: Replace existing files. Without it an existing ``weights.pt`` or
                ``config.json`` in ``path`` raises ``FileExistsError``.
        """
        save_embedding(self, path, overwrite=overwrite)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        encoder: nn.Module | None = None,
        map_location: str | torch.device = "cpu",
        freeze: FreezeMode | None = None,
    ) -> SymmetryEmbedding:
        """Rebuild an embedding written by :meth:`save`.

        Args:
            path: The folder given to :meth:`save`.
            encoder: An encoder instance with the saved architecture (weights are overwritten).
                Needed for encoder classes that ``load`` cannot rebuild from ``config.json``
                (anything not in :data:`~sbi_symmetry.symmetry.io.KNOWN_ENCODERS`).
            map_location: Device the weights are loaded onto.
            freeze: Freeze mode of the result; the saved mode when omitted.

        Returns:
            The embedding, in eval mode, on ``map_location``.
        """
        return load_embedding(cls, path, encoder=encoder, map_location=map_location, freeze=freeze)


def check_freeze_mode(encoder: nn.Module, mode: str) -> None:
    """Raise ``ValueError`` unless ``mode`` is a freeze mode that ``encoder`` supports.

    Args:
        encoder: The encoder to be wrapped.
        mode: ``"all"``, ``"backbone"`` (needs ``encoder.backbone`` and ``encoder.head``) or
            ``"none"``.

    Example:
        >>> from torch import nn
        >>> check_freeze_mode(nn.Linear(3, 2), "all")
        >>> check_freeze_mode(nn.Linear(3, 2), "backbone")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: freeze='backbone' needs an encoder with `backbone` and `head` submodules; ...
    """
    check_choice(mode, "freeze", FREEZE_MODES)
    if mode == "backbone":
        missing = [
            n for n in ("backbone", "head") if not isinstance(getattr(encoder, n, None), nn.Module)
        ]
        if missing:
            raise ValueError(
                f"freeze='backbone' needs an encoder with `backbone` and `head` submodules; "
                f"{type(encoder).__name__} has no {' or '.join(missing)}. Use "
                "freeze='all' or freeze='none', or give the encoder these attributes."
            )


def symmetry_posterior_nn(embedding: nn.Module, model: str = "maf", **kwargs: Any) -> Callable:
    """``sbi``'s ``posterior_nn`` for a pretrained embedding, with ``z_score_x="none"``.

    Args:
        embedding: The embedding, usually a :class:`SymmetryEmbedding`.
        model: Density estimator name (``"maf"``, ``"nsf"``, ``"zuko_maf"``, ...).
        **kwargs: Passed to ``posterior_nn``. ``z_score_x`` may only be ``"none"``: sbi's
            default ``"independent"`` standardises each time index separately before the
            embedding, breaking the shift symmetry and what the encoder was pretrained on.

    Returns:
        A builder for ``NPE(prior, density_estimator=...)``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> emb = SymmetryEmbedding(nn.Linear(4, 2), freeze="all")
        >>> build = symmetry_posterior_nn(emb, "maf", num_transforms=1)
        >>> estimator = build(torch.rand(10, 2), torch.rand(10, 4))
        >>> estimator.embedding_net is emb
        True
    """
    from sbi.neural_nets import posterior_nn

    _refuse_z_score(kwargs)
    build = posterior_nn(model, embedding_net=embedding, z_score_x="none", **kwargs)
    build.embedding_net = embedding  # lets train_npe check the pairing before training
    return build


def _refuse_z_score(kwargs: dict[str, Any]) -> None:
    value = kwargs.pop("z_score_x", "none")
    if value not in ("none", None):
        raise ValueError(
            f"`z_score_x` must be 'none' with a SymmetryEmbedding, got {value!r}: the embedding "
            "scales its input itself, and sbi's z-scoring runs before it ('independent' "
            "standardises each time index separately, which breaks the shift symmetry)."
        )


def _as_scale_vector(value: float | Sequence[float] | Tensor, name: str) -> Tensor:
    tensor = torch.as_tensor(value, dtype=torch.float32).detach().reshape(-1).cpu()
    if tensor.numel() == 0 or not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"`{name}` must be one or more finite numbers; got {value!r}.")
    return tensor.clone()


def _module_device(module: nn.Module) -> torch.device:
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _fmt(values: Tensor) -> str:
    items = [f"{v:.3g}" for v in values.tolist()]
    return items[0] if len(items) == 1 else "[" + ", ".join(items) + "]"
