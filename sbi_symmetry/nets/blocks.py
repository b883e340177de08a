"""Building blocks of the 1-D convolutional encoder: the residual block and global pooling.

Example:
    >>> import torch
    >>> ResidualBlock1D(4, kernel_size=3)(torch.randn(2, 4, 10)).shape
    torch.Size([2, 4, 10])
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

Pooling = Literal["flatten", "mean", "max", "meanstd"]
PaddingMode = Literal["zeros", "circular"]
Activation = Literal["relu", "gelu"]
Norm = Literal["none", "group"]

_POOLINGS = ("flatten", "mean", "max", "meanstd")
_PADDING_MODES = ("zeros", "circular")
_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}
_NORMS = ("none", "group")


class _GlobalPool(nn.Module):
    """Pooling over the last (time) axis: ``(B, C, L) -> (B, C)``, or ``(B, 2C)`` for meanstd.

    ``"mean"``, ``"max"``, or ``"meanstd"``: the mean and then the standard deviation,
    ``sqrt(var + 1e-6)`` so that constant channels keep finite gradients.
    """

    def __init__(self, mode: Literal["mean", "max", "meanstd"]) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, h: Tensor) -> Tensor:
        """Pool over time."""
        if self.mode == "max":
            return h.amax(dim=-1)
        mean = h.mean(dim=-1)
        if self.mode == "mean":
            return mean
        spread = (h.var(dim=-1, unbiased=False) + 1e-6).sqrt()
        return torch.cat([mean, spread], dim=-1)

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return f"mode={self.mode!r}"


class ResidualBlock1D(nn.Module):
    """``y = act(x + conv2(act(conv1(x))))`` with "same" padding, so ``(B, C, L)`` is kept.

    Args:
        channels: Number of channels ``C`` (input and output).
        kernel_size: Width of both convolutions.
        dilation: Dilation of both convolutions.
        padding_mode: ``"zeros"`` or ``"circular"``.
        activation: ``"relu"`` or ``"gelu"``.
        norm: ``"none"`` or ``"group"`` (``GroupNorm(1, C)`` after each convolution).

    Example:
        >>> import torch
        >>> block = ResidualBlock1D(4, kernel_size=3)
        >>> block(torch.randn(2, 4, 10)).shape
        torch.Size([2, 4, 10])
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        dilation: int = 1,
        padding_mode: PaddingMode = "zeros",
        activation: Activation = "relu",
        norm: Norm = "none",
    ) -> None:
        super().__init__()

        def conv() -> nn.Conv1d:
            return nn.Conv1d(
                channels,
                channels,
                kernel_size,
                padding="same",
                dilation=dilation,
                padding_mode=padding_mode,
            )

        def normalise() -> nn.Module:
            return nn.GroupNorm(1, channels) if norm == "group" else nn.Identity()

        self.conv1, self.norm1 = conv(), normalise()
        self.conv2, self.norm2 = conv(), normalise()
        self.act = _ACTIVATIONS[activation]()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block to ``x`` of shape ``(B, C, L)``."""
        h = self.act(self.norm1(self.conv1(x)))
        return self.act(x + self.norm2(self.conv2(h)))
