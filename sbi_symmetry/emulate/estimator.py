r"""The two-tower Embed-and-Emulate ratio estimator, an ``sbi`` ``RatioEstimator``.

An encoder ``f`` maps data to ``R^n``, an emulator ``g`` maps parameters to the same space, and

    log r(theta, x) = <f(x), g(theta)> / temperature

(with ``f`` and ``g`` projected to the unit sphere for ``similarity="cosine"``, only ``g`` for
``"scaled"``). Because the towers only meet in the final inner product, a batch of ``B`` pairs
needs ``B`` encoder and ``B`` emulator passes for all ``B^2`` logits, and during MCMC the
observation is encoded once and only the cheap emulator runs for each ``theta``.

``sbi``'s shape contract: ``unnormalized_log_ratio(theta, x)`` takes ``theta`` of shape
``(*batch, theta_dim)`` and ``x`` of shape ``(*batch, *x_shape)`` (equal or broadcastable batch
shapes; ``x`` must carry at least one batch dimension) and returns ``(*batch,)``. Within a call
consecutive repeats of the same ``x`` row are encoded once: that covers the patterns ``sbi``
produces (one ``x_o`` repeated for every ``theta`` in the ratio potential, iid trials and batched
MCMC as ``AAABBB``, ``NRE_B``/``NRE_C``'s ``repeat_rows``). In ``eval()`` mode the embeddings of
the last distinct rows are also cached across calls, keyed on their content and on the version
counters of the encoder's parameters and buffers (so optimiser steps, ``load_state_dict`` and
``.to()`` invalidate it), and dropped on every ``train()``/``eval()`` switch. Cached embeddings
are detached: in ``eval()`` mode gradients reach ``theta`` and the emulator, not the encoder.

Example:
    >>> import torch
    >>> from torch import nn
    >>> theta, x = torch.randn(50, 2), torch.randn(50, 10)
    >>> est = EmbedEmulateRatioEstimator(nn.Linear(10, 8), nn.Linear(2, 8), theta, x)
    >>> est.unnormalized_log_ratio(theta[:3], x[:3]).shape
    torch.Size([3])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from sbi.neural_nets.ratio_estimators import RatioEstimator
from torch import Tensor, nn
from typing_extensions import Self

from sbi_symmetry._validation import check_choice, check_finite, check_tensor
from sbi_symmetry.emulate.checks import TEMPERATURE_BOUNDS
from sbi_symmetry.losses.infonce import symmetric_infonce
from sbi_symmetry.losses.local import LocalCandidates, local_contrastive
from sbi_symmetry.nets.modes import restored_modes

Similarity = Literal["cosine", "scaled", "dot"]
SIMILARITIES = ("cosine", "scaled", "dot")


class Standardize(nn.Module):
    """``(input - shift) / scale`` with fixed buffers (z-scoring from a build batch).

    Args:
        shift: Subtracted; broadcast against the input's trailing dimensions.
        scale: Divides; same broadcasting.

    Example:
        >>> import torch
        >>> Standardize(torch.tensor(1.0), torch.tensor(2.0))(torch.tensor([3.0]))
        tensor([1.])
    """

    def __init__(self, shift: Tensor, scale: Tensor) -> None:
        super().__init__()
        self.register_buffer("shift", shift.detach().clone())
        self.register_buffer("scale", scale.detach().clone())

    def forward(self, inputs: Tensor) -> Tensor:
        """Return ``(inputs - shift) / scale``."""
        return (inputs - self.shift) / self.scale


class EmbedEmulateRatioEstimator(RatioEstimator):
    """``log r(theta, x) = <f(x), g(theta)> / temperature`` as an ``sbi`` ratio estimator.

    Args:
        encoder: ``f``: maps ``(B, *x_shape)`` to ``(B, n)`` (a ``ConvEncoder1D``, a pretrained
            ``SymmetryEmbedding``, any module).
        emulator: ``g``: maps ``(B, theta_dim)`` to ``(B, n)`` (e.g. a ``ResidualMLP``).
        batch_theta: Parameters of the build batch, ``(N, theta_dim)``: give the shape and the
            z-scoring statistics.
        batch_x: Data of the build batch, ``(N, *x_shape)``; used to probe the encoder.
        similarity: ``"cosine"`` (both embeddings on the unit sphere; logits bounded by
            ``1 / temperature``), ``"scaled"`` (only ``g(theta)`` on the unit sphere: the norm of
            ``f(x)`` sets each observation's sharpness, and ``|f(x)| / temperature`` bounds its
            logits) or ``"dot"`` (plain inner product).
        temperature: Initial (or fixed) temperature, > 0.
        learn_temperature: Train ``log(temperature)`` with the networks (the default).
        temperature_bounds: The learned temperature is clamped to this range.
        z_score_theta: Standardise each parameter with the build batch's mean and std before
            the emulator (as ``sbi`` does).
        z_score_x: ``"none"`` (default: the encoder sees ``x`` as stored; right for a
            pretrained encoder that owns its scaling) or ``"structured"`` (one scalar mean and
            std over the whole build batch, which keeps shift symmetries intact).

    Attributes:
        embedding_net: The data tower ``x -> f(x)`` before normalisation (z-scoring included),
            as ``sbi``'s embedding-space diagnostics expect.
    """

    def __init__(
        self,
        encoder: nn.Module,
        emulator: nn.Module,
        batch_theta: Tensor,
        batch_x: Tensor,
        *,
        similarity: Similarity = "cosine",
        temperature: float = 0.15,
        learn_temperature: bool = True,
        temperature_bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
        z_score_theta: bool = True,
        z_score_x: Literal["none", "structured"] = "none",
    ) -> None:
        check_tensor(batch_theta, "batch_theta")
        check_tensor(batch_x, "batch_x")
        if batch_theta.ndim != 2:
            raise ValueError(
                f"`batch_theta` must have shape (N, theta_dim); got {tuple(batch_theta.shape)}."
            )
        if batch_x.ndim < 2 or batch_x.shape[0] != batch_theta.shape[0]:
            raise ValueError(
                "`batch_x` must have shape (N, *x_shape) with the N of `batch_theta` "
                f"({batch_theta.shape[0]}); got {tuple(batch_x.shape)}."
            )
        if not isinstance(encoder, nn.Module) or not isinstance(emulator, nn.Module):
            raise TypeError("`encoder` and `emulator` must be torch.nn.Module instances.")
        check_choice(similarity, "similarity", SIMILARITIES)
        check_choice(z_score_x, "z_score_x", ("none", "structured"))
        low, high = temperature_bounds
        if not (0 < low < high < math.inf):
            raise ValueError(
                f"`temperature_bounds` must be (low, high) with 0 < low < high; got "
                f"{temperature_bounds!r}."
            )
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise TypeError(f"`temperature` must be a number; got {type(temperature).__name__}.")
        if not (low <= temperature <= high):
            raise ValueError(
                f"`temperature` must be > 0 and within temperature_bounds {temperature_bounds}; "
                f"got {temperature!r}."
            )
        check_finite(batch_theta, "batch_theta")
        check_finite(batch_x, "batch_x")

        theta_tower: nn.Module = emulator
        if z_score_theta:
            mean = batch_theta.mean(0)
            std = batch_theta.std(0) if batch_theta.shape[0] > 1 else torch.ones_like(mean)
            theta_tower = nn.Sequential(Standardize(mean, std.clamp_min(1e-8)), emulator)
        x_tower: nn.Module = encoder
        if z_score_x == "structured":
            std = batch_x.std() if batch_x.numel() > 1 else torch.ones(())
            x_tower = nn.Sequential(Standardize(batch_x.mean(), std.clamp_min(1e-8)), encoder)

        super().__init__(
            net=nn.Identity(),
            theta_shape=batch_theta.shape[1:],
            x_shape=batch_x.shape[1:],
            embedding_net_theta=theta_tower,
            embedding_net_x=x_tower,
        )
        self.similarity: Similarity = similarity
        self.temperature_bounds = (float(low), float(high))
        log_t = torch.tensor(math.log(temperature), dtype=torch.float32)
        if learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)
        self._z_scored = (z_score_theta, z_score_x == "structured")
        self.cache_enabled = True
        self._cache: tuple[Tensor, list[Tensor], tuple[tuple[int, int], ...], Tensor] | None = None
        self.embedding_dim = self._probe_widths(batch_theta, batch_x)

    # ------------------------------------------------------------------ structure
    @property
    def encoder(self) -> nn.Module:
        """The data encoder ``f`` as given (without z-scoring)."""
        tower = self.embedding_net_x
        return tower[1] if self._z_scored[1] else tower  # type: ignore[index]

    @property
    def emulator(self) -> nn.Module:
        """The parameter emulator ``g`` as given (without z-scoring)."""
        tower = self.embedding_net_theta
        return tower[1] if self._z_scored[0] else tower  # type: ignore[index]

    @property
    def embedding_net(self) -> nn.Module:
        """``x -> f(x)`` (z-scoring included, normalisation not): for ``sbi`` diagnostics."""
        return self.embedding_net_x

    @property
    def temperature(self) -> Tensor:
        """The current temperature (a scalar tensor, clamped to ``temperature_bounds``)."""
        low, high = self.temperature_bounds
        return self.log_temperature.clamp(math.log(low), math.log(high)).exp()

    @property
    def theta_scale(self) -> Tensor:
        """Per-parameter scale of ``theta``: the z-scoring std, or ones without z-scoring."""
        tower = self.embedding_net_theta
        if self._z_scored[0]:
            return tower[0].scale  # type: ignore[index]
        return torch.ones(self.theta_shape)

    def _probe_widths(self, batch_theta: Tensor, batch_x: Tensor) -> int:
        """Run both towers on two rows of the build batch and check they agree in width."""
        rows = min(2, batch_theta.shape[0])
        with restored_modes(self, eval=True), torch.no_grad():
            z_x = self.embedding_net_x(batch_x[:rows])
            z_theta = self.embedding_net_theta(batch_theta[:rows])
        self._cache = None
        if z_x.ndim != 2 or z_x.shape[0] != rows:
            raise ValueError(
                f"`encoder` must map (B, *x_shape) to (B, n); it mapped "
                f"{tuple(batch_x[:rows].shape)} to {tuple(z_x.shape)}."
            )
        if z_theta.ndim != 2 or z_theta.shape[0] != rows:
            raise ValueError(
                f"`emulator` must map (B, theta_dim) to (B, n); it mapped "
                f"{tuple(batch_theta[:rows].shape)} to {tuple(z_theta.shape)}."
            )
        if z_x.shape[1] != z_theta.shape[1]:
            raise ValueError(
                f"`encoder` and `emulator` must have the same output width (they meet in an "
                f"inner product); the encoder gives {z_x.shape[1]} and the emulator "
                f"{z_theta.shape[1]}."
            )
        return int(z_x.shape[1])

    def train(self, mode: bool = True) -> Self:
        """Switch mode (as ``nn.Module.train``) and drop the observation cache."""
        self._cache = None
        return super().train(mode)

    def clear_cache(self) -> None:
        """Forget the cached observation embedding.

        Needed only after changes the cache cannot see: edits through ``.data`` or new
        ``Parameter`` objects assigned into the encoder.
        """
        self._cache = None

    def _apply(self, fn: Callable[[Tensor], Tensor], *args: Any, **kwargs: Any) -> Self:
        # .to(), .double(), .cuda(), ... : the cached embedding would be stale.
        self._cache = None
        return super()._apply(fn, *args, **kwargs)

    # ------------------------------------------------------------------ towers
    def _project(self, z: Tensor, side: Literal["x", "theta"]) -> Tensor:
        """Unit-normalise ``z`` where the similarity asks for it (both sides, or theta's)."""
        unit = self.similarity == "cosine" or (self.similarity == "scaled" and side == "theta")
        return F.normalize(z, dim=-1) if unit else z

    def _check_x(self, x: Tensor, name: str = "x") -> tuple[int, ...]:
        check_tensor(x, name)
        event = tuple(self.x_shape)
        if x.ndim <= len(event) or tuple(x.shape[x.ndim - len(event) :]) != event:
            want = ", ".join(str(s) for s in event)
            raise ValueError(
                f"`{name}` must have shape (batch, {want}) with an explicit batch dimension "
                f"(for one observation x_o pass shape (1, {want})); got {tuple(x.shape)}."
            )
        return tuple(x.shape[: x.ndim - len(event)])

    def _check_theta(self, theta: Tensor, name: str = "theta") -> tuple[int, ...]:
        check_tensor(theta, name)
        dim = int(self.theta_shape[0])
        if theta.ndim < 1 or theta.shape[-1] != dim:
            raise ValueError(
                f"`{name}` must have shape (..., {dim}) (one column per parameter); got "
                f"{tuple(theta.shape)}."
            )
        return tuple(theta.shape[:-1])

    def _tower_tensors(self) -> list[Tensor]:
        return [*self.embedding_net_x.parameters(), *self.embedding_net_x.buffers()]

    @staticmethod
    def _fingerprint(tensors: list[Tensor]) -> tuple[tuple[int, int], ...]:
        # In-place updates (optimiser steps, load_state_dict) bump `_version`; moves change
        # the storage pointer.
        return tuple((t.data_ptr(), t._version) for t in tensors)

    def _embed_distinct(self, rows: Tensor) -> Tensor:
        """Projected embeddings of ``rows`` (``(m, *x_shape)``), cached in eval mode."""
        use_cache = self.cache_enabled and not self.training
        if use_cache and self._cache is not None:
            cached_x, tensors, key, cached_z = self._cache
            if (
                cached_x.shape == rows.shape
                and cached_x.dtype == rows.dtype
                and cached_x.device == rows.device
                and key == self._fingerprint(tensors)
                and torch.equal(cached_x, rows)
            ):
                return cached_z
        check_finite(rows, "x")  # a NaN x_o would give a silent NaN posterior
        z = self._project(self.embedding_net_x(rows), "x")
        if use_cache:
            tensors = self._tower_tensors()
            self._cache = (rows.detach().clone(), tensors, self._fingerprint(tensors), z.detach())
        return z

    def encode(self, x: Tensor) -> Tensor:
        """Embed data: ``(*batch, *x_shape) -> (*batch, n)`` (unit norm for cosine).

        Consecutive repeats of a row are encoded once (see the module docstring).

        Args:
            x: Data with at least one batch dimension.

        Returns:
            The embeddings.
        """
        prefix = self._check_x(x)
        flat = x.reshape(-1, *self.x_shape)
        num = flat.shape[0]
        if num == 0:
            return flat.new_zeros(*prefix, self.embedding_dim)
        rows = flat.reshape(num, -1)
        new = torch.ones(num, dtype=torch.bool, device=x.device)
        new[1:] = (rows[1:] != rows[:-1]).any(dim=1)
        starts = new.nonzero().squeeze(1)
        if starts.numel() == num:
            z = self._embed_distinct(flat)
        elif starts.numel() == 1:
            z = self._embed_distinct(flat[:1]).expand(num, -1)
        else:
            z = self._embed_distinct(flat[starts])[new.cumsum(0) - 1]
        return z.reshape(*prefix, z.shape[-1])

    def emulate(self, theta: Tensor) -> Tensor:
        """Embed parameters: ``(*batch, theta_dim) -> (*batch, n)`` (unit norm for cosine).

        Args:
            theta: Parameters.

        Returns:
            The embeddings.
        """
        prefix = self._check_theta(theta)
        z = self._project(self.embedding_net_theta(theta.reshape(-1, theta.shape[-1])), "theta")
        return z.reshape(*prefix, z.shape[-1])

    # ------------------------------------------------------------------ sbi contract
    def unnormalized_log_ratio(self, theta: Tensor, x: Tensor) -> Tensor:
        """``<f(x), g(theta)> / temperature`` for matching (or broadcastable) batches.

        Args:
            theta: Shape ``(*batch, theta_dim)``.
            x: Shape ``(*batch, *x_shape)``; at least one batch dimension.

        Returns:
            Log ratios of shape ``(*batch,)`` (up to a constant that does not depend on
            ``theta`` or ``x``, for a critic trained with symmetric InfoNCE).
        """
        prefix_theta = self._check_theta(theta)
        prefix_x = self._check_x(x)
        if prefix_theta != prefix_x:
            try:
                torch.broadcast_shapes(prefix_theta, prefix_x)
            except RuntimeError as err:
                raise ValueError(
                    f"`theta` and `x` must have equal or broadcastable batch shapes; got "
                    f"{prefix_theta} and {prefix_x}."
                ) from err
        return (self.encode(x) * self.emulate(theta)).sum(-1) / self.temperature

    def logits(self, theta: Tensor, x: Tensor) -> Tensor:
        """The ``B x B`` matrix ``L[i, j] = log r(theta_j, x_i)`` of a batch, by one product.

        Args:
            theta: Shape ``(B, theta_dim)``.
            x: Shape ``(B, *x_shape)``.

        Returns:
            Tensor of shape ``(B, B)``.
        """
        return self.encode(x) @ self.emulate(theta).T / self.temperature

    def loss(
        self,
        input: Tensor,
        condition: Tensor,
        *,
        global_batch: bool = False,
        negatives: Tensor | None = None,
        local: LocalCandidates | None = None,
        row_weight: float = 0.5,
        **kwargs: object,
    ) -> Tensor:
        """Per-pair symmetric InfoNCE over all ``B x B`` pairs of the batch (+ the local term).

        Args:
            input: Parameters ``theta``, shape ``(B, theta_dim)``.
            condition: Data ``x``, shape ``(B, *x_shape)``, row ``i`` simulated from
                ``theta_i``.
            global_batch: Under ``torch.distributed``, use the pairs of all ranks as candidates
                and return this rank's losses (see
                :func:`~sbi_symmetry.losses.infonce.symmetric_infonce`); no effect in one process.
            negatives: Extra prior draws ``(K, theta_dim)``, candidates of every
                ``x -> theta`` softmax (they cost no simulation); ``None`` for none.
            local: Neighbours of each true parameter (:mod:`sbi_symmetry.losses.local`); their
                local contrastive loss is added to each pair's; ``None`` for none.
            row_weight: Weight of the ``x -> theta`` term (1/2: the symmetric loss).
            **kwargs: Ignored (``sbi`` passes loss arguments by keyword).

        Returns:
            Losses of shape ``(B,)``.
        """
        self._check_theta(input, "input")
        self._check_x(condition, "condition")
        if (
            input.ndim != 2
            or condition.ndim != 1 + len(self.x_shape)
            or (input.shape[0] != condition.shape[0])
        ):
            raise ValueError(
                "`input` must be (B, theta_dim) and `condition` (B, *x_shape) with the same B; "
                f"got {tuple(input.shape)} and {tuple(condition.shape)}."
            )
        f_x = self.encode(condition)
        losses = symmetric_infonce(
            f_x,
            self.emulate(input),
            self.temperature,
            global_batch=global_batch,
            negatives=None if negatives is None else self.emulate(negatives),
            row_weight=row_weight,
        )
        if local is None:
            return losses
        logits = (f_x[:, None, :] * self.emulate(local.candidates)).sum(-1) / self.temperature
        return losses + local_contrastive(logits, *local)
