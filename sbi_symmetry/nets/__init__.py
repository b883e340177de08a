"""Networks: convolutional encoders, projector heads and emulators, and where a head begins.

Example:
    >>> from sbi_symmetry.nets import ConvEncoder1D
    >>> ConvEncoder1D(input_length=200, output_dim=3).output_dim
    3
"""

from __future__ import annotations

from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.nets.fourier import FourierFeatures
from sbi_symmetry.nets.heads import Expander
from sbi_symmetry.nets.mlp import ResidualMLP
from sbi_symmetry.nets.split import HeadSplit, split_head, tail_reproduces

__all__ = [
    "ConvEncoder1D",
    "Expander",
    "FourierFeatures",
    "HeadSplit",
    "ResidualMLP",
    "split_head",
    "tail_reproduces",
]
