"""The data of a pretraining run: inputs checked, parameters drawn, split, views, input scaling.

Everything here runs before the first optimisation step, so bad inputs fail early with the
argument named. :func:`prepare_data` is seeded by the config: the same ``seed`` gives the same
parameters, split, validation bank (and fixed training bank) and scaling.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

import sbi_symmetry.distributed as distributed
from sbi_symmetry._validation import check_finite, check_int, check_tensor
from sbi_symmetry.losses.vicreg import MIN_BATCH_SIZE
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding

if TYPE_CHECKING:
    from sbi_symmetry.symmetry.pretrain.config import PretrainConfig


@dataclass
class PretrainData:
    """What one pretraining run trains and validates on (all on the training device).

    Attributes:
        inputs: Every parameter draw (or stored ``x``) before the split.
        train_inputs: The training share, in the seeded split order.
        val_a: First validation views (one fixed bank).
        val_b: Second validation views.
        bank: Fixed training views ``(a, b)``, or ``None`` for fresh views every epoch.
        mean: Input scaling mean (scalar or per channel).
        std: Input scaling standard deviation.
        generator: The run's generator (epoch orders); its state is checkpointed.
        train_targets: Standardised parameters of the training rows (same order), for the
            hybrid loss's supervised term; ``None`` when ``supervised_weight == 0``.
        val_targets: Those of the validation rows.

    Example:
        >>> t = torch.zeros(4, 5)
        >>> data = PretrainData(t, t, t, t, None, torch.zeros(1), torch.ones(1), torch.Generator())
        >>> data.view_shape, data.fingerprint()
        ((5,), [4, 0.0, 0.0])
    """

    inputs: Tensor
    train_inputs: Tensor
    val_a: Tensor
    val_b: Tensor
    bank: tuple[Tensor, Tensor] | None
    mean: Tensor
    std: Tensor
    generator: torch.Generator
    train_targets: Tensor | None = None
    val_targets: Tensor | None = None

    @property
    def view_shape(self) -> tuple[int, ...]:
        """Shape of one view (without the batch dimension)."""
        return tuple(self.val_a.shape[1:])

    def fingerprint(self) -> list[float]:
        """Numbers that identify the data (checked on resume and across ranks)."""
        num = self.inputs.shape[0]
        found = [num, float(self.inputs.double().sum()), float(self.val_a.double().sum())]
        if self.train_targets is not None:  # standardised: a plain sum would always be 0
            rows = torch.arange(1, self.train_targets.shape[0] + 1, dtype=torch.float64)
            weighted = self.train_targets.double().cpu() * rows[:, None]
            found.append(float(weighted.sum()))
        return found


def split_sizes(num_simulations: int, cfg: PretrainConfig) -> tuple[int, int]:
    """Training and validation sizes; refuse splits too small for a batch.

    Args:
        num_simulations: Parameter draws (or stored rows).
        cfg: The settings (``validation_fraction``, ``batch_size``).

    Returns:
        ``(num_train, num_val)``.

    Example:
        >>> from sbi_symmetry.symmetry.pretrain.config import PretrainConfig
        >>> split_sizes(1000, PretrainConfig(batch_size=64))
        (900, 100)
    """
    num_val = round(num_simulations * cfg.validation_fraction)
    num_train = num_simulations - num_val
    if num_val < MIN_BATCH_SIZE or num_train < cfg.batch_size:
        raise ValueError(
            f"{num_simulations} simulations with validation_fraction="
            f"{cfg.validation_fraction} give {num_train} training and {num_val} validation "
            f"samples; need at least batch_size={cfg.batch_size} training and "
            f"{MIN_BATCH_SIZE} validation samples. Use more simulations or a smaller batch_size."
        )
    return num_train, num_val


def prepare_data(
    views: Any,
    prior: Distribution | None,
    inputs_given: Tensor,
    num_simulations: int,
    cfg: PretrainConfig,
    theta_given: Tensor | None = None,
) -> PretrainData:
    """Seed, draw (or take) the inputs, split them, make the view banks and the input scaling.

    Args:
        views: A checked ``Views`` object.
        prior: The prior (``input_kind == "theta"``).
        inputs_given: Stored ``x`` (``input_kind == "x"``), else ignored.
        num_simulations: Rows in all.
        cfg: The settings (``seed``, ``batch_size``, ``fresh_views``, ``input_scaling``,
            ``supervised_weight``); ``fresh_views="auto"`` resolved by
            :meth:`PretrainConfig.fresh_for`.
        theta_given: Parameters of the stored ``x`` (checked by :func:`_check_theta`), for the
            supervised term; drawn parameters serve with ``input_kind == "theta"``.

    Returns:
        The run's data.

    Example:
        >>> from sbi_symmetry.symmetry.pretrain.config import PretrainConfig
        >>> class NoisyCopies:
        ...     input_kind = "x"
        ...     def __call__(self, x):
        ...         return x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)
        >>> cfg = PretrainConfig(batch_size=16)
        >>> data = prepare_data(NoisyCopies(), None, torch.randn(100, 6), 100, cfg)
        >>> data.train_inputs.shape, data.val_a.shape
        (torch.Size([90, 6]), torch.Size([10, 6]))
    """
    device = torch.device(cfg.device)
    num_train, _ = split_sizes(num_simulations, cfg)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    kind = views.input_kind
    inputs = _draw_theta(prior, num_simulations, device) if kind == "theta" else inputs_given
    order = torch.randperm(num_simulations, generator=generator).to(device)
    train_inputs, val_inputs = inputs[order[:num_train]], inputs[order[num_train:]]
    chunk = max(cfg.batch_size, 1024)
    val_a, val_b = _views_in_chunks(views, val_inputs, chunk, device)
    view_shape = tuple(val_a.shape[1:])
    bank = None if cfg.fresh_for(kind) else _views_in_chunks(views, train_inputs, chunk, device)
    mean, std = _input_scaling(views, train_inputs, bank, cfg.input_scaling, chunk, view_shape)
    data = PretrainData(inputs, train_inputs, val_a, val_b, bank, mean, std, generator)
    if cfg.supervised_weight > 0:
        theta = inputs if kind == "theta" else theta_given
        assert theta is not None  # _check_theta refused the run before
        train_theta = theta[order[:num_train]]
        centre, scale = train_theta.mean(dim=0), train_theta.std(dim=0).clamp_min(1e-12)
        data.train_targets = (train_theta - centre) / scale
        data.val_targets = (theta[order[num_train:]] - centre) / scale
    return data


def _check_theta(
    kind: str, theta: Tensor | None, x: Tensor, weight: float, device: torch.device
) -> None:
    """The parameters of stored ``x``: required by the supervised term, refused elsewhere."""
    if theta is None:
        if kind == "x" and weight > 0:
            raise ValueError(
                f"supervised_weight={weight} needs the parameters of the stored data: pass "
                "`theta` (one row per row of `x`)."
            )
        return
    if kind == "theta":
        raise ValueError(
            "`theta` was given but `views` simulate from parameters (input_kind='theta'); the "
            "supervised term uses the parameters drawn from `prior`."
        )
    check_tensor(theta, "theta")
    if theta.ndim != 2 or theta.shape[0] != x.shape[0] or not torch.is_floating_point(theta):
        raise ValueError(
            f"`theta` must be a floating-point tensor of shape ({x.shape[0]}, theta_dim), one "
            f"row per row of `x`; got {tuple(theta.shape)} of dtype {theta.dtype}."
        )
    _check_device(theta, device, "theta")
    check_finite(theta, "theta")


def _check_views(views: Any) -> str:
    kind = getattr(views, "input_kind", None)
    if not callable(views) or kind not in ("theta", "x"):
        raise TypeError(
            "`views` must be a Views object: callable, with input_kind 'theta' (e.g. "
            "ResimulatedViews) or 'x' (e.g. AugmentedViews); got "
            f"{type(views).__name__} with input_kind={kind!r}."
        )
    return kind


def _check_inputs(
    kind: str,
    prior: Distribution | None,
    x: Tensor | None,
    num_simulations: int,
    device: torch.device,
) -> Tensor:
    if kind == "theta":
        if prior is None:
            raise ValueError(
                "`views` simulate from parameters (input_kind='theta'), so `prior` is required."
            )
        if x is not None:
            raise ValueError(
                "`x` was given but `views` simulate from parameters (input_kind='theta'); use "
                "views with input_kind='x' (e.g. AugmentedViews) to pretrain on stored data."
            )
        if not hasattr(prior, "sample"):
            raise TypeError(f"`prior` must be a distribution, got {type(prior).__name__}.")
        check_int(num_simulations, "num_simulations", 1)
        return torch.empty(0)
    if x is None:
        raise ValueError(
            "`views` augment stored data (input_kind='x'), so `x` is required (and `prior` "
            "is not used)."
        )
    check_tensor(x, "x")
    if x.ndim < 2 or not torch.is_floating_point(x):
        raise ValueError(
            f"`x` must be a floating-point tensor of shape (n, L) or (n, C, L); got "
            f"{tuple(x.shape)} of dtype {x.dtype}."
        )
    _check_device(x, device, "x")
    check_finite(x, "x")
    return x


def _check_device(value: Tensor, device: torch.device, name: str) -> None:
    if value.device != device and not (value.device.type == device.type and device.index is None):
        raise ValueError(
            f"{name} is on {value.device} but pretraining runs on device={str(device)!r}; move "
            "it there explicitly (pretraining never moves data between devices)."
        )


def _draw_theta(prior: Any, num: int, device: torch.device) -> Tensor:
    theta = prior.sample((num,))
    if theta.ndim == 1:
        theta = theta.unsqueeze(-1)
    if theta.ndim != 2 or theta.shape[0] != num:
        raise ValueError(
            f"`prior.sample((n,))` must return (n, theta_dim); got {tuple(theta.shape)}."
        )
    _check_device(theta, device, "The prior's samples")
    check_finite(theta, "prior samples")
    return theta


def _checked_views(views: Any, batch: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    pair = views(batch)
    if not (isinstance(pair, tuple | list) and len(pair) == 2):
        raise TypeError(f"`views` must return two tensors; got {type(pair).__name__}.")
    view_a, view_b = pair
    check_tensor(view_a, "first view")
    check_tensor(view_b, "second view")
    if view_a.shape != view_b.shape:
        raise ValueError(
            f"The two views must have the same shape; got {tuple(view_a.shape)} and "
            f"{tuple(view_b.shape)}."
        )
    if view_a.ndim < 2 or view_a.shape[0] != batch.shape[0]:
        raise ValueError(
            f"`views` must return one row per input ({batch.shape[0]}); got shape "
            f"{tuple(view_a.shape)}."
        )
    _check_device(view_a, device, "The output of `views`")
    return view_a, view_b


def _views_in_chunks(
    views: Any, inputs: Tensor, chunk: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    parts = [
        _checked_views(views, inputs[i : i + chunk], device)
        for i in range(0, inputs.shape[0], chunk)
    ]
    view_a = torch.cat([p[0] for p in parts])
    view_b = torch.cat([p[1] for p in parts])
    check_finite(view_a, "views (first view)")
    check_finite(view_b, "views (second view)")
    return view_a, view_b


def _input_scaling(
    views: Any,
    train_inputs: Tensor,
    bank: tuple[Tensor, Tensor] | None,
    mode: str,
    chunk: int,
    view_shape: tuple[int, ...],
) -> tuple[Tensor, Tensor]:
    """Mean and std of the training views, over everything or per channel (dim 1)."""
    if mode == "none":
        return torch.zeros(1), torch.ones(1)
    if mode == "channel" and len(view_shape) < 2:
        raise ValueError(
            "input_scaling='channel' needs views of shape (n, C, L); got views of shape "
            f"(n, {view_shape[0]}). Use input_scaling='scalar'."
        )

    def reduce(v: Tensor) -> tuple[Tensor, Tensor, int]:
        v = v.detach().double()
        if mode == "channel":
            v = v.transpose(0, 1).reshape(v.shape[1], -1)
        else:
            v = v.reshape(1, -1)
        return v.sum(dim=1).cpu(), (v**2).sum(dim=1).cpu(), v.shape[1]

    # Fresh views under several processes: each rank simulates its share of the chunks.
    starts, sharded = distributed.shard_items(range(0, train_inputs.shape[0], chunk))
    sharded = sharded and bank is None

    def batches() -> Iterator[Tensor]:
        if bank is not None:
            yield from bank
            return
        if sharded:  # independent random streams per rank
            torch.manual_seed(distributed.rank_seed(int(torch.randint(0, 2**62, ())), "scaling"))
        for i in starts:
            yield from _checked_views(views, train_inputs[i : i + chunk], train_inputs.device)

    total, total_sq, count = 0.0, 0.0, 0
    for v in batches():  # streamed: fresh views are not all kept in memory
        if tuple(v.shape[1:]) != view_shape:
            raise ValueError(
                f"`views` returned shape {tuple(v.shape[1:])} per row, then {view_shape}; views "
                "must always have the same shape."
            )
        check_finite(v, "training views")
        s, sq, n = reduce(v)
        total, total_sq, count = total + s, total_sq + sq, count + n
    if sharded:
        sums = distributed.all_reduce_sum(torch.stack([total, total_sq, total * 0 + count]))
        total, total_sq, count = sums[0], sums[1], int(sums[2][0])
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(0).sqrt()
    if bool((std == 0).any()):
        raise ValueError("The training views are constant (zero standard deviation).")
    return mean.float(), std.float()


def _probe_encoder(embedding: SymmetryEmbedding, sample: Tensor) -> int:
    encoder = embedding.encoder
    embedding.eval()
    try:
        with torch.no_grad():
            z = embedding(sample[: min(4, sample.shape[0])])
            z_one = embedding(sample[:1])
    except Exception as error:
        raise ValueError(
            f"The encoder failed on a probe batch of views of shape "
            f"{(min(4, sample.shape[0]), *sample.shape[1:])} (and of one view, as sbi probes): "
            f"{error}"
        ) from error
    finally:
        embedding.train()
    if z_one.shape != (1, z.shape[1]):
        raise ValueError(
            f"The encoder returned {tuple(z_one.shape)} for a batch of one; expected "
            f"(1, {z.shape[1]})."
        )
    check_finite(z, "encoder output on the probe batch")
    declared = getattr(encoder, "output_dim", None)
    if declared is not None and declared != z.shape[1]:
        raise ValueError(
            f"encoder.output_dim is {declared} but the encoder returned {z.shape[1]} columns."
        )
    return int(z.shape[1])


def _probe_expander(expander: nn.Module, embedding: SymmetryEmbedding, sample: Tensor) -> None:
    expander.eval()
    try:
        with torch.no_grad():
            out = expander(embedding(sample[: min(4, sample.shape[0])]))
    except Exception as error:
        raise ValueError(f"The expander failed on the encoder's summaries: {error}") from error
    finally:
        expander.train()
    if not isinstance(out, Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"The expander must return (B, K); got {shape}.")
