"""Time shifts of stored simulations with the entering samples drawn from the noise model.

For data ``x_i = h(theta; t_i - s) + n_i`` with white Gaussian noise ``n_i ~ N(0, sigma^2)`` on a
regular grid of spacing ``dt``, shifting a stored simulation by ``k`` samples,

    out_i = x_{i - k}                       where 0 <= i - k < L (the samples kept),
    out_i ~ N(0, sigma^2), independently    where the sample entered the window,

gives a draw of the same simulator at the shift ``s + k dt``: the kept samples are exactly
``h(theta; t_i - (s + k dt)) + n_{i-k}`` with i.i.d. noise, and the entering ones are right
wherever the signal is negligible there (before a switch-on, after a decayed tail, far from a
pulse). What left the window is lost and never comes back, so the view equals a re-simulation
"up to what leaves the window". Unlike :class:`~sbi_symmetry.views.augment.TimeShift` (zeros
shifted in), no stretch of exact zeros tells the encoder where the shift went. Such views cost
no simulator call: :func:`shift_views` pretrains from the stored training set alone.

The default range of :func:`shift_views` is half the width of the shift prior in samples: two
views shifted independently by ``k_a, k_b ~ U{-W/2 .. W/2}`` then differ by a triangular amount
on ``[-W, W]``, the same law as the difference of two independent draws of a ``U(a, a + W)``
shift that :class:`~sbi_symmetry.views.resimulated.ResimulatedViews` compares. (Each view's own
shift, ``s + k dt``, then ranges over ``[a - W/2, a + 3W/2]``, wider than the prior.)

Example:
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> out = NoisyTimeShift(2, noise_std=0.0)(torch.ones(3, 8))
    >>> out.shape, bool((out.sum(-1) >= 6).all())
    (torch.Size([3, 8]), True)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from sbi_symmetry._validation import check_int, check_number, is_int
from sbi_symmetry.views.augment import (
    AugmentedViews,
    _check_kept_shape,
    _shifted_index,
    time_shift,
)
from sbi_symmetry.views.base import _check_series

#: What :func:`shift_views` reads from a task (a ``SignalInNoiseTask`` has all of it).
TASK_MEMBERS = ("noise_std", "dt", "num_samples", "nuisance_low", "nuisance_high")


# ------------------------------------------------------------------------------------ checks
def _as_noise_std(noise_std: object) -> Tensor:
    """``noise_std`` as a float tensor of shape ``()`` or ``(C,)``, finite and ``>= 0``."""
    if isinstance(noise_std, Tensor):
        if not noise_std.dtype.is_floating_point or noise_std.ndim > 1 or noise_std.numel() == 0:
            raise ValueError(
                "`noise_std` must be a number, or a floating-point tensor of shape () or (C,) "
                f"(one standard deviation per channel); got {tuple(noise_std.shape)} of dtype "
                f"{noise_std.dtype}."
            )
        if not bool(torch.isfinite(noise_std).all()) or bool((noise_std < 0).any()):
            raise ValueError(
                f"`noise_std` must be finite and >= 0; got {noise_std.detach().cpu().tolist()}."
            )
        return noise_std.detach().clone()
    check_number(noise_std, "noise_std")
    return torch.tensor(float(noise_std), dtype=torch.float64)  # type: ignore[arg-type]


def _std_for(noise_std: Tensor, x: Tensor, who: str) -> Tensor:
    """``noise_std`` on ``x``'s device and dtype, shaped to broadcast against ``x``."""
    std = noise_std.to(device=x.device, dtype=x.dtype)
    if std.ndim == 0 or std.numel() == 1:
        return std.reshape(())
    channels = x.shape[1] if x.ndim == 3 else None
    if channels != std.shape[0]:
        got = f"{channels} channel(s)" if channels is not None else "no channel axis"
        raise ValueError(
            f"{who} has a per-channel noise_std of {std.shape[0]} values but the data of shape "
            f"{tuple(x.shape)} has {got}; give a scalar noise_std, or data (B, C, L) with "
            f"C == {std.shape[0]}."
        )
    return std.reshape(1, -1, 1)


def _check_fillable(x: object, who: str) -> Tensor:
    """A floating-point batch ``(B, L)`` or ``(B, C, L)`` (noise cannot fill integer data)."""
    x = _check_series(x, who)
    if x.ndim > 3:
        raise ValueError(
            f"{who} expects a batch `x` of shape (B, L) or (B, C, L); got {tuple(x.shape)}."
        )
    if not x.dtype.is_floating_point:
        raise TypeError(f"{who} fills with Gaussian noise and needs floating data; got {x.dtype}.")
    return x


def _gaussian(shape: torch.Size, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal draws of ``x``'s dtype on ``x``'s device, from ``generator`` if given."""
    where = x.device if generator is None else generator.device
    draws = torch.randn(shape, generator=generator, device=where, dtype=x.dtype)
    return draws.to(x.device)


# ------------------------------------------------------------------------------------ function
def noise_filled_shift(
    x: Tensor,
    shifts: Tensor,
    noise_std: float | Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Shift each row of ``x`` by an integer; the samples that enter are ``N(0, noise_std^2)``.

    ``out[b, ..., t] = x[b, ..., t - shifts[b]]`` where ``0 <= t - shifts[b] < L``; elsewhere an
    independent Gaussian draw with standard deviation ``noise_std`` (of the row's channel).

    Args:
        x: Floating-point batch of shape ``(B, L)`` or ``(B, C, L)``.
        shifts: Integer tensor of shape ``(B,)``; positive moves the signal later.
        noise_std: A number, or a tensor of shape ``()`` or ``(C,)`` (one value per channel).
        generator: Optional generator for the noise (on any device; draws are moved to ``x``'s).

    Returns:
        Tensor of ``x``'s shape, dtype and device.

    Raises:
        ValueError: ``x`` without a time axis, or a per-channel ``noise_std`` whose length is
            not ``x``'s number of channels.
        TypeError: ``x`` not floating point (noise cannot fill integer data).

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 2, 3, 4]])
        >>> noise_filled_shift(x, torch.tensor([1]), noise_std=0.0)
        tensor([[0., 1., 2., 3.]])
        >>> out = noise_filled_shift(x, torch.tensor([-2]), noise_std=1.0)
        >>> out[:, :2], bool((out[:, 2:] != 0).all())
        (tensor([[3., 4.]]), True)
    """
    x = _check_fillable(x, "noise_filled_shift")
    std = _std_for(_as_noise_std(noise_std), x, "noise_filled_shift")
    return _fill(x, shifts, std, generator)


def _fill(x: Tensor, shifts: Tensor, std: Tensor, generator: torch.Generator | None) -> Tensor:
    """:func:`noise_filled_shift` with ``std`` already checked and shaped by :func:`_std_for`."""
    shifted = time_shift(x, shifts)
    index = _shifted_index(x, shifts)
    entering = (index < 0) | (index >= x.shape[-1])
    mask = entering.reshape((x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],))
    noise = _gaussian(x.shape, x, generator) * std
    return torch.where(mask, noise, shifted)


# ------------------------------------------------------------------------------------ module
class NoisyTimeShift(nn.Module):
    """Shift each row by a uniform random integer in ``[-max_shift, max_shift]``, noise shifted in.

    The samples that enter the window are drawn from the white-noise model ``N(0, noise_std^2)``
    instead of zeros (see the module docstring), so a shifted stored simulation is distributed
    as a re-simulation at the shifted nuisance wherever the signal is negligible in what entered.

    Args:
        max_shift: Largest shift in samples (``0`` leaves the data unchanged); must be smaller
            than the length of the data it is applied to.
        noise_std: Standard deviation of the white noise per sample: a number, or a tensor of
            shape ``(C,)`` for data ``(B, C, L)`` (one per channel). Stored as a buffer, so
            ``.to(device)`` moves it; it is moved to the data's device and dtype when applied.
        generator: Optional ``torch.Generator`` for the shifts and the noise. ``None`` (the
            default, and the right choice inside ``pretrain_vicreg``) uses torch's global RNG,
            which pretraining seeds, draws per rank and restores; a generator of your own is
            neither seeded nor checkpointed by it, and gives every rank the same draws.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> shift = NoisyTimeShift(3, noise_std=torch.tensor([0.5, 1.0]))
        >>> shift(torch.zeros(4, 2, 16)).shape
        torch.Size([4, 2, 16])
        >>> NoisyTimeShift(-1, noise_std=0.4)
        Traceback (most recent call last):
        ...
        ValueError: `max_shift` must be an integer >= 0; got -1.
    """

    noise_std: Tensor

    def __init__(
        self,
        max_shift: int,
        noise_std: float | Tensor,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_int(max_shift, "max_shift", 0)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"`generator` must be a torch.Generator or None; got {type(generator).__name__}."
            )
        self.max_shift = max_shift
        self.register_buffer("noise_std", _as_noise_std(noise_std))
        self.generator = generator

    @classmethod
    def for_task(cls, task: Any, max_shift: int | None = None, **kwargs: Any) -> NoisyTimeShift:
        """The augmentation for a signal-in-white-noise task: its ``noise_std``, a shift range.

        Args:
            task: A :class:`~sbi_symmetry.tasks.SignalInNoiseTask` (or any object with
                :data:`TASK_MEMBERS` and a single time-shift nuisance).
            max_shift: Largest shift in samples; ``None``: :func:`default_max_shift`.
            **kwargs: Passed on (``generator``).

        Returns:
            ``NoisyTimeShift(max_shift, task.noise_std, ...)``, checked against the grid.

        Example:
            >>> from sbi_symmetry.tasks import DampedOscillator
            >>> NoisyTimeShift.for_task(DampedOscillator())
            NoisyTimeShift(max_shift=72, noise_std=0.4)
        """
        length = _check_task(task)
        if max_shift is None:
            max_shift = default_max_shift(task)
        check_int(max_shift, "max_shift", 0)
        if max_shift >= length:
            raise ValueError(
                f"max_shift={max_shift} samples would shift {type(task).__name__}'s data of "
                f"length {length} out of the window; `max_shift` is in samples and must be < L."
            )
        return cls(max_shift, float(task.noise_std), **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        """Shift every row of ``x`` (``(B, L)`` or ``(B, C, L)``) by its own random amount."""
        x = _check_fillable(x, "NoisyTimeShift")
        if self.max_shift >= x.shape[-1]:
            raise ValueError(
                f"NoisyTimeShift(max_shift={self.max_shift}) would shift data of length "
                f"{x.shape[-1]} out of the window; `max_shift` is in samples and must be < L."
            )
        std = _std_for(self.noise_std, x, repr(self))  # checked before any draw
        where = x.device if self.generator is None else self.generator.device
        size = (x.shape[0],)
        low, high = -self.max_shift, self.max_shift + 1
        shifts = torch.randint(low, high, size, generator=self.generator, device=where)
        out = _fill(x, shifts.to(x.device), std, self.generator)
        _check_kept_shape(self, x, out)
        return out

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        values = self.noise_std.tolist()
        std = f"{values:.4g}" if isinstance(values, float) else values
        return f"max_shift={self.max_shift}, noise_std={std}"


# ------------------------------------------------------------------------------------ tasks
def _check_task(task: Any) -> int:
    """Raise unless ``task`` is a signal in white noise with one time shift; return ``L``."""
    missing = [m for m in TASK_MEMBERS if not hasattr(task, m)]
    problems = [f"it has no {', '.join(missing)}"] if missing else []
    if not missing:
        dims = (len(task.nuisance_low), len(task.nuisance_high))
        if dims != (1, 1):
            problems.append(f"its nuisance has {dims[0]} dimensions, not one time shift")
        if not is_int(task.num_samples) or task.num_samples < 2:
            problems.append(f"num_samples={task.num_samples!r} is no grid length")
        if not (isinstance(task.dt, int | float) and task.dt > 0):
            problems.append(f"its grid spacing dt={task.dt!r} is not a number > 0")
        if not (isinstance(task.noise_std, int | float) and task.noise_std >= 0):
            problems.append(f"noise_std={task.noise_std!r} is not a number >= 0")
    if problems:
        raise TypeError(
            "noise-filled shift views need a signal-in-white-noise task (a SignalInNoiseTask: "
            "x = h(theta; t - shift) + N(0, noise_std^2) on a regular time grid, with members "
            f"{', '.join(TASK_MEMBERS)} and a single time-shift nuisance); "
            f"{type(task).__name__} does not qualify: {'; '.join(problems)}. For other data use "
            "AugmentedViews with your own augmentation, or ResimulatedViews."
        )
    return int(task.num_samples)


def supports_shift_views(task: Any) -> bool:
    """Whether :func:`shift_views` accepts ``task`` (a signal in white noise, one time shift).

    ``pretrain_views="auto"`` of the end-to-end run uses it to choose noise-filled shift views
    (no simulator call) where they are valid, and re-simulated views elsewhere.

    Args:
        task: Any task object.

    Returns:
        ``True`` if ``shift_views(task)`` would succeed (with its default ``max_shift``).

    Example:
        >>> from sbi_symmetry.tasks import DampedOscillator, Lorenz96
        >>> supports_shift_views(DampedOscillator()), supports_shift_views(Lorenz96())
        (True, False)
    """
    try:
        return default_max_shift(task) >= 1  # a prior under one sample wide: identical views
    except TypeError:
        return False


def resolve_pretrain_views(task: Any, choice: str) -> str:
    """The views a ``pretrain_views`` setting means for ``task``: ``"shift"`` or ``"resimulated"``.

    Args:
        task: Any task object.
        choice: ``"shift"``, ``"resimulated"`` or ``"auto"`` (shift views where
            :func:`supports_shift_views` allows them, else re-simulated ones).

    Returns:
        ``choice`` itself unless it is ``"auto"``.

    Example:
        >>> from sbi_symmetry.tasks import DampedOscillator, Lorenz96
        >>> resolve_pretrain_views(DampedOscillator(), "auto")
        'shift'
        >>> resolve_pretrain_views(Lorenz96(), "auto")
        'resimulated'
    """
    if choice != "auto":
        return choice
    return "shift" if supports_shift_views(task) else "resimulated"


def default_max_shift(task: Any) -> int:
    """Half the width of the task's shift prior, in samples of its time grid (rounded).

    Two views shifted independently by up to this much differ by a triangular amount on the
    prior's whole width, as two independent draws from the (uniform) shift prior do.

    Args:
        task: A signal-in-white-noise task (see :meth:`NoisyTimeShift.for_task`).

    Returns:
        ``round((nuisance_high - nuisance_low) / (2 dt))``.

    Example:
        >>> from sbi_symmetry.tasks import DampedOscillator, SineGaussian
        >>> default_max_shift(DampedOscillator()), default_max_shift(SineGaussian())
        (72, 50)
    """
    _check_task(task)
    width = float(task.nuisance_high[0]) - float(task.nuisance_low[0])
    return round(width / (2.0 * float(task.dt)))


def shift_views(task: Any, max_shift: int | None = None, **kwargs: Any) -> AugmentedViews:
    """Views of stored simulations of ``task`` at zero simulator cost: two noise-filled shifts.

    Pass the result to ``pretrain_vicreg(encoder, views, x=x_stored, ...)``: it has
    ``input_kind == "x"``, so pretraining draws no parameters and calls no simulator.

    Args:
        task: A :class:`~sbi_symmetry.tasks.SignalInNoiseTask` (white Gaussian noise of
            ``task.noise_std``, one time-shift nuisance, grid spacing ``task.dt``).
        max_shift: Largest shift in samples; ``None``: :func:`default_max_shift` (half the shift
            prior's width: 72 of 200 samples for the damped oscillator, 50 of 500 for the
            sine-Gaussian).
        **kwargs: Passed to :class:`NoisyTimeShift` (``generator``).

    Returns:
        ``AugmentedViews(NoisyTimeShift.for_task(task, max_shift))``.

    Raises:
        TypeError: ``task`` is not a signal in white noise with one time shift (the message
            names what it lacks).
        ValueError: ``max_shift`` negative or not smaller than the data's length, or 0 (given,
            or the default for a shift prior narrower than one sample): identical views.

    Example:
        >>> import torch
        >>> from sbi_symmetry.tasks import DampedOscillator, Lorenz96
        >>> task = DampedOscillator()
        >>> x_a, x_b = shift_views(task)(task.simulate(task.sample_prior(4)))
        >>> x_a.shape == x_b.shape == (4, 200)
        True
        >>> shift_views(Lorenz96())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: noise-filled shift views need a signal-in-white-noise task ...
    """
    augment = NoisyTimeShift.for_task(task, max_shift, **kwargs)
    if augment.max_shift == 0:
        why = ""
        if max_shift is None:
            why = f" (the default: half the shift prior's width in samples; {type(task).__name__}'s"
            why += " is under one sample)"
        raise ValueError(
            f"`max_shift` is 0{why}: both views would be the same data, so pretraining would "
            "learn no invariance. Pass max_shift >= 1 or use task.views."
        )
    return AugmentedViews(augment)
