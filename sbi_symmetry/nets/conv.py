"""A 1-D convolutional residual encoder for time series, optionally shift-invariant by construction.

The network is ``head(backbone(x))``:

* ``backbone``: an optional cheap front end (``downsample``: average pooling of the input over
  non-overlapping windows; ``stride``: a strided input convolution), an input convolution from
  ``in_channels`` to ``channels``, then ``num_blocks`` residual blocks
  ``y = act(x + conv(act(conv(x))))`` with "same" padding, so every block keeps the length.
  Convolutions are translation-equivariant: shifting the input shifts the feature maps (exactly
  for cyclic shifts with ``padding_mode="circular"``; up to the edges of the window with
  ``padding_mode="zeros"``). With a front end that reduces the length by a factor ``r =
  downsample * stride`` this holds exactly for shifts by multiples of ``r`` (circular padding
  requires ``r`` to divide ``L``: a partial window breaks the circle) and approximately (up to
  the sub-window position) for other shifts.
* ``head``: a reduction over time followed by an MLP ``Linear -> act -> Linear`` to
  ``output_dim``. The reduction decides the symmetry of the summary:

  - ``"mean"`` / ``"max"``: a global pooling over time. Pooling an equivariant feature map gives
    an invariant vector, so the summary is shift-invariant *by construction* (exactly for cyclic
    shifts with circular padding, up to boundary effects with zero padding). The head then has
    ``channels * hidden_dim`` input weights, independent of ``L``.
  - ``"meanstd"``: the mean and the standard deviation over time of each channel (twice the
    features, still invariant): the second moment keeps how much a feature varies along the
    window, which the mean averages away.
  - ``"flatten"``: the symmetry-embedding paper's head, ``Linear(channels * L -> hidden_dim)``. It
    sees where in the window a feature sits, so it is *not* shift-invariant; any invariance must
    be learned from the views during pretraining. It also costs ``channels * L * hidden_dim``
    weights (400k for the paper's oscillator network) against ``channels * hidden_dim`` (2k).

Why ``"mean"`` is the default: the nuisance of the built-in problems is a time shift of up to
4 time units on a window of 11 (oscillator: up to 73 of 200 samples), so the signal moves over a
large part of the window. Pooling removes the shift from the summary before any training, leaving
pretraining to learn what matters (the intrinsic parameters) rather than spend capacity on
invariance. The mean uses every position, so its value and gradient see the whole signal and the
noise averages down; the max follows one position per channel. A quick check on the oscillator
(4 blocks, 10 channels, kernel 11, ``Expander(3)``, 1000 AdamW steps of batch 128 with freshly
re-simulated views, one seed; held-out invariance error = mean squared distance between the two
views' summaries over their total variance, and the R^2 of a 10-nearest-neighbour regression of
``(w0, beta)`` on the summary):

    pooling   parameters   invariance error   kNN R^2 (w0, beta)
    mean          10,403              0.092   0.92, 0.62
    max           10,403              0.103   0.89, 0.66
    flatten      209,403              0.232   0.70, 0.59

Mean and max are close (within what one seed can resolve); both beat the flatten head with a
twentieth of its parameters. Use ``padding_mode="circular"`` when the data are periodic (a cyclic
lattice such as Lorenz-96 sites); keep ``"zeros"`` for transients that start and end inside a
window.

The front end is what makes the encoder cheap. The cost of a convolution is
``channels_in * channels_out * kernel_size`` multiply-accumulates per output sample, so every
layer after a length reduction by ``r`` costs ``r`` times less. Signals sampled far above their
highest frequency lose almost nothing by averaging: the built-in oscillator has at least 57
samples per period and the sine-Gaussian at least 25, so averaging windows of 8 and 4 samples
keep 7 and 6 samples per period, attenuate the fastest oscillation by at most 3% and 4% (the
``sinc`` response of a moving average), and average the white noise down by ``sqrt(r)`` just as
a matched filter would. ``downsample`` has no parameters and, as is customary, its additions are
not counted as multiply-accumulates; ``stride`` is a learnt alternative whose cost is counted.

There is no BatchNorm: ``sbi`` probes embedding nets with a batch of one. ``norm="group"`` adds a
``GroupNorm(1, channels)`` (normalisation over channels and time of each sample), which works at
any batch size and keeps the pooled summary's shift invariance, but it divides out each sample's
overall feature scale: in the check above it halved the invariance error (0.046) and lost most of
the information on ``beta`` (R^2 0.16), so it is off by default.

Example:
    >>> import torch
    >>> enc = ConvEncoder1D(input_length=50, output_dim=3, channels=4, num_blocks=2,
    ...                     kernel_size=5)
    >>> enc(torch.randn(8, 50)).shape
    torch.Size([8, 3])
    >>> ConvEncoder1D(**enc.config).config == enc.config
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sbi_symmetry._validation import check_choice, check_int, check_tensor, is_int
from sbi_symmetry.nets.blocks import (
    _ACTIVATIONS,
    _NORMS,
    _PADDING_MODES,
    _POOLINGS,
    Activation,
    Norm,
    PaddingMode,
    Pooling,
    ResidualBlock1D,
    _GlobalPool,
)

# Convolution sizes of the symmetry-embedding paper (arXiv 2312.07615) per built-in task. The
# paper gives 4 blocks for the oscillator only; the sine-Gaussian network is assumed to match.
_PAPER_SIZES: dict[str, dict[str, int]] = {
    "damped-oscillator": {"channels": 20, "num_blocks": 4, "kernel_size": 21},
    "sine-gaussian": {"channels": 10, "num_blocks": 4, "kernel_size": 11},
}


def _check_settings(
    input_length: int,
    output_dim: int,
    in_channels: int,
    channels: int,
    num_blocks: int,
    kernel_size: int,
    dilation: int | Sequence[int],
    pooling: str,
    hidden_dim: int,
    padding_mode: str,
    activation: str,
    norm: str,
    downsample: int,
    stride: int,
) -> tuple[list[int], int, int]:
    """Check the constructor arguments; return the dilations, the padding and the feature length."""
    check_int(input_length, "input_length", 1)
    check_int(downsample, "downsample", 1)
    check_int(stride, "stride", 1)
    if downsample > input_length:
        raise ValueError(
            f"`downsample` ({downsample}) must not exceed `input_length` ({input_length})."
        )
    check_int(output_dim, "output_dim", 1)
    check_int(in_channels, "in_channels", 1)
    check_int(channels, "channels", 1)
    check_int(num_blocks, "num_blocks", 0)
    check_int(kernel_size, "kernel_size", 1)
    check_int(hidden_dim, "hidden_dim", 1)
    check_choice(pooling, "pooling", _POOLINGS)
    check_choice(padding_mode, "padding_mode", _PADDING_MODES)
    check_choice(activation, "activation", tuple(_ACTIVATIONS))
    check_choice(norm, "norm", _NORMS)
    dilations = ConvEncoder1D._dilations(dilation, num_blocks)
    pooled_length = -(-input_length // downsample)  # ceil
    pad = (kernel_size - 1) // 2
    feature_length = pooled_length  # stride 1 pads "same", even kernels too
    if stride > 1:
        feature_length = (pooled_length + 2 * pad - kernel_size) // stride + 1
    if feature_length < 1:
        raise ValueError(
            f"kernel_size={kernel_size} with stride={stride} leaves no output on inputs of "
            f"length {pooled_length} (input_length={input_length}, "
            f"downsample={downsample})."
        )
    if padding_mode == "circular" and input_length % (downsample * stride):
        raise ValueError(
            f"circular padding is equivariant to cyclic shifts only when downsample * stride "
            f"({downsample * stride}) divides input_length ({input_length}): a partial last "
            "window or stride breaks the circle. Choose sizes that divide it, or zero padding."
        )
    if padding_mode == "circular":
        lengths = [pooled_length] + [feature_length] * len(dilations)
        for d, length in zip((1, *dilations), lengths, strict=True):
            reach = d * (kernel_size - 1)
            if reach - reach // 2 > length:
                raise ValueError(
                    f"circular padding needs kernel_size and dilation with "
                    f"dilation * (kernel_size - 1) / 2 <= the length the convolution sees "
                    f"({length}, input_length={input_length}); got "
                    f"kernel_size={kernel_size}, dilation={d}."
                )

    return dilations, pad, feature_length


class ConvEncoder1D(nn.Module):
    """1-D convolutional residual encoder ``(B, L)`` or ``(B, C, L)`` -> ``(B, output_dim)``.

    See the module docstring for the architecture and the choice of ``pooling``.

    Args:
        input_length: Number of time samples ``L`` of one input.
        output_dim: Width ``D`` of the summary.
        in_channels: Number of input channels ``C``; a 2-D input ``(B, L)`` needs ``C = 1``.
        channels: Channels of every convolution in the backbone.
        num_blocks: Number of residual blocks.
        kernel_size: Width of every convolution (any size; odd sizes centre the kernel).
        dilation: One dilation for all blocks, or one per block.
        downsample: Average the input over non-overlapping windows of this many samples before
            the first convolution (``AvgPool1d``; a last partial window is averaged over what it
            holds). ``1`` (default) is off.
        stride: Stride of the input convolution (padding ``(kernel_size - 1) // 2`` on both
            sides). ``1`` (default) keeps the length.
        pooling: ``"mean"`` (default) or ``"max"`` global pooling over time (shift-invariant),
            ``"meanstd"`` (mean and standard deviation over time, ``2 * channels`` features,
            shift-invariant), or ``"flatten"`` (the paper's ``Linear(channels * L ->
            hidden_dim)``, not invariant).
        hidden_dim: Width of the head's hidden layer.
        padding_mode: ``"zeros"`` or ``"circular"`` (exact invariance to cyclic shifts with a
            pooling head).
        activation: ``"relu"`` (as in the paper) or ``"gelu"``.
        norm: ``"none"`` or ``"group"`` (``GroupNorm(1, channels)`` inside the blocks).

    Attributes:
        backbone: The front end and convolutions (input convolution and residual blocks),
            ``(B, C, L)`` -> ``(B, channels, feature_length)``; this is what
            ``freeze="backbone"`` freezes.
        feature_length: Length of the backbone's feature maps (``L`` without a front end).
        head: Pooling (or flattening) and the MLP to ``output_dim``.
        config: The constructor's keyword arguments (JSON-serialisable), so that
            ``ConvEncoder1D(**config)`` rebuilds the same architecture.
        output_dim: Width of the summary.

    Example:
        >>> import torch
        >>> enc = ConvEncoder1D(input_length=32, output_dim=2, channels=4, num_blocks=1,
        ...                     kernel_size=3, padding_mode="circular", pooling="max")
        >>> x = torch.randn(5, 1, 32)
        >>> torch.equal(enc(x), enc(torch.roll(x, 7, dims=-1)))
        True
    """

    def __init__(
        self,
        input_length: int,
        output_dim: int = 3,
        *,
        in_channels: int = 1,
        channels: int = 20,
        num_blocks: int = 4,
        kernel_size: int = 21,
        dilation: int | Sequence[int] = 1,
        pooling: Pooling = "mean",
        hidden_dim: int = 100,
        padding_mode: PaddingMode = "zeros",
        activation: Activation = "relu",
        norm: Norm = "none",
        downsample: int = 1,
        stride: int = 1,
    ) -> None:
        super().__init__()
        dilations, pad, feature_length = _check_settings(
            input_length,
            output_dim,
            in_channels,
            channels,
            num_blocks,
            kernel_size,
            dilation,
            pooling,
            hidden_dim,
            padding_mode,
            activation,
            norm,
            downsample,
            stride,
        )
        self.input_length = input_length
        self.feature_length = feature_length
        self.in_channels = in_channels
        self.output_dim = output_dim
        self.config: dict[str, Any] = {
            "input_length": input_length,
            "output_dim": output_dim,
            "in_channels": in_channels,
            "channels": channels,
            "num_blocks": num_blocks,
            "kernel_size": kernel_size,
            "dilation": dilation if is_int(dilation) else list(dilations),
            "pooling": pooling,
            "hidden_dim": hidden_dim,
            "padding_mode": padding_mode,
            "activation": activation,
            "norm": norm,
            "downsample": downsample,
            "stride": stride,
        }

        act = _ACTIVATIONS[activation]
        stem = nn.Conv1d(
            in_channels,
            channels,
            kernel_size,
            stride=stride,
            padding="same" if stride == 1 else pad,
            padding_mode=padding_mode,
        )
        blocks = [
            ResidualBlock1D(channels, kernel_size, d, padding_mode, activation, norm)
            for d in dilations
        ]
        # The pooling layer is only present when used, so the parameter names of encoders
        # without a front end (``backbone.0`` = the input convolution) are unchanged.
        front = [nn.AvgPool1d(downsample, ceil_mode=True)] if downsample > 1 else []
        self.backbone = nn.Sequential(*front, stem, act(), *blocks)

        if pooling == "flatten":
            reduce: nn.Module = nn.Flatten(start_dim=1)
            features = channels * feature_length
        else:
            reduce = _GlobalPool(pooling)
            features = 2 * channels if pooling == "meanstd" else channels
        self.head = nn.Sequential(
            reduce, nn.Linear(features, hidden_dim), act(), nn.Linear(hidden_dim, output_dim)
        )

    @staticmethod
    def _dilations(dilation: int | Sequence[int], num_blocks: int) -> list[int]:
        if is_int(dilation):
            values = [dilation] * num_blocks
        elif isinstance(dilation, Sequence) and not isinstance(dilation, str):
            values = list(dilation)
            if len(values) != num_blocks:
                raise ValueError(
                    f"`dilation` must be one integer or one per block ({num_blocks}); got "
                    f"{len(values)} values."
                )
        else:
            raise ValueError(f"`dilation` must be an integer or a sequence; got {dilation!r}.")
        for d in values:
            check_int(d, "dilation", 1)
        return values

    @classmethod
    def paper(cls, task: str | Any, output_dim: int = 3, **overrides: Any) -> ConvEncoder1D:
        """The convolution sizes of the symmetry-embedding paper for a built-in task.

        Oscillator: 4 blocks of 20 channels, kernel 21; sine-Gaussian: 10 channels, kernel 11
        (4 blocks assumed). The head is ``hidden_dim=100`` as in the paper; ``pooling`` keeps the
        class default (``"mean"``) unless overridden: pass ``pooling="flatten"`` for the paper's
        flatten head.

        Args:
            task: A task name (``"damped-oscillator"``, ``"sine-gaussian"``) or a task instance.
            output_dim: Width of the summary (the paper uses 3).
            **overrides: Any other constructor keyword argument.

        Returns:
            The encoder.

        Example:
            >>> ConvEncoder1D.paper("sine-gaussian").config["input_length"]
            500
        """
        name = task if isinstance(task, str) else getattr(task, "name", None)
        if name not in _PAPER_SIZES:
            raise ValueError(
                f"`task` must be one of {sorted(_PAPER_SIZES)} (or such a task); got {task!r}."
            )
        sizes: dict[str, Any] = {**_PAPER_SIZES[name], "hidden_dim": 100}
        return cls.for_task(task, output_dim=output_dim, **{**sizes, **overrides})

    @classmethod
    def for_task(cls, task: Any, **kwargs: Any) -> ConvEncoder1D:
        """An encoder for ``task``'s data: ``input_length`` and ``in_channels`` from its shape.

        Args:
            task: A task instance (anything with ``x_shape``, ``(L,)`` or ``(C, L)``) or the
                name of a built-in task.
            **kwargs: Every other constructor argument (``output_dim``, ``channels`` ...).

        Returns:
            The encoder.

        Example:
            >>> enc = ConvEncoder1D.for_task("lorenz96", output_dim=8, channels=4)
            >>> enc.config["in_channels"], enc.config["input_length"]
            (16, 36)
        """
        if isinstance(task, str):
            from sbi_symmetry.tasks import get_task

            task = get_task(task)
        shape = tuple(getattr(task, "x_shape", ()))
        if len(shape) not in (1, 2):
            raise ValueError(
                f"`task` must have data of shape (L,) or (C, L) (its `x_shape`); got {task!r}."
            )
        channels = {"in_channels": shape[0]} if len(shape) == 2 else {}
        return cls(input_length=shape[-1], **channels, **kwargs)

    def _check_input(self, x: Tensor) -> Tensor:
        check_tensor(x, "x")
        length, chans = self.input_length, self.in_channels
        want = f"(B, {chans}, {length})" + (f" or (B, {length})" if chans == 1 else "")
        ok_2d = x.ndim == 2 and chans == 1 and x.shape[-1] == length
        ok_3d = x.ndim == 3 and x.shape[1] == chans and x.shape[-1] == length
        if not (ok_2d or ok_3d):
            problem = (
                f"{x.ndim} dimension(s)"
                if x.ndim not in (2, 3)
                else f"length {x.shape[-1]}"
                if x.shape[-1] != length
                else f"{1 if x.ndim == 2 else x.shape[1]} channel(s)"
            )
            raise ValueError(
                f"ConvEncoder1D expects `x` of shape {want}; got {tuple(x.shape)} "
                f"({problem}). Build the encoder with the data's input_length/in_channels."
            )
        if not torch.is_floating_point(x):
            raise TypeError(f"`x` must be a floating-point tensor; got dtype {x.dtype}.")
        x = x.to(self.head[-1].weight.dtype)  # float64 from numpy: computed in the net's dtype
        return x.unsqueeze(1) if x.ndim == 2 else x

    def forward(self, x: Tensor) -> Tensor:
        """Summarise ``x`` of shape ``(B, L)`` or ``(B, C, L)`` into ``(B, output_dim)``.

        Floating-point ``x`` of another dtype (e.g. float64 from numpy) is cast to the net's.
        """
        return self.head(self.backbone(self._check_input(x)))
