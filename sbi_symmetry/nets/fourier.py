"""Fourier features of the parameters, in front of an emulator ``g(theta)``.

``phi(theta) = [theta, sin(2 pi theta B), cos(2 pi theta B)]`` with ``B`` a
``(input_dim, num_frequencies)`` matrix drawn from ``N(0, scale^2)`` (Tancik et al. 2020,
"Fourier features let networks learn high frequency functions in low dimensional domains").

Why: an MLP with smooth activations learns low frequencies first (its spectral bias). Embed and
Emulate's log-ratio ``<f(x), g(theta)> / T`` can only be as peaked in ``theta`` as ``g`` turns
quickly; for the sharpest posteriors, about a hundredth of the prior's width in one parameter,
``g`` must turn through many radians over the prior. The features give the MLP those frequencies
as inputs. ``scale`` is in units of the emulator's input: with z-scored parameters (the
estimator's default) a scale of 1 gives periods of about one prior standard deviation, and the
MLP combines them into finer ones. With ``learnable=True`` ``B`` is trained with the rest
(initialised as above); otherwise it is a buffer, saved in the state dict.

Example:
    >>> import torch
    >>> phi = FourierFeatures(2, num_frequencies=8)
    >>> phi(torch.zeros(5, 2)).shape
    torch.Size([5, 18])
    >>> phi.output_dim
    18
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sbi_symmetry._validation import check_int, check_positive


class FourierFeatures(nn.Module):
    """Map ``(..., input_dim)`` to ``(..., input_dim + 2 * num_frequencies)``.

    Args:
        input_dim: Width of the input (the number of parameters).
        num_frequencies: Number of random frequency vectors (columns of ``B``).
        scale: Standard deviation of the frequencies, in cycles per unit of the input.
        learnable: Train the frequencies with the network instead of keeping them fixed.

    Example:
        >>> import torch
        >>> FourierFeatures(3, 4, scale=2.0)(torch.randn(7, 3)).shape
        torch.Size([7, 11])
    """

    def __init__(
        self,
        input_dim: int,
        num_frequencies: int,
        scale: float = 1.0,
        learnable: bool = False,
    ) -> None:
        super().__init__()
        check_int(input_dim, "input_dim", 1)
        check_int(num_frequencies, "num_frequencies", 1)
        check_positive(scale, "scale")
        self.input_dim = input_dim
        self.output_dim = input_dim + 2 * num_frequencies
        frequencies = scale * torch.randn(input_dim, num_frequencies)
        if learnable:
            self.frequencies = nn.Parameter(frequencies)
        else:
            self.register_buffer("frequencies", frequencies)

    def forward(self, inputs: Tensor) -> Tensor:
        """Concatenate the inputs with their sines and cosines.

        Args:
            inputs: Tensor whose last dimension is ``input_dim``.

        Returns:
            Tensor of shape ``(..., input_dim + 2 * num_frequencies)``.
        """
        if inputs.shape[-1] != self.input_dim:
            raise ValueError(
                f"`inputs` must have last dimension {self.input_dim}; got shape "
                f"{tuple(inputs.shape)}."
            )
        angles = 2 * math.pi * inputs @ self.frequencies
        return torch.cat([inputs, torch.sin(angles), torch.cos(angles)], dim=-1)
