"""A residual multilayer perceptron: the default emulator ``g(theta)`` of Embed and Emulate.

``input -> Linear -> [h + W2 act(W1 act(h))] x num_blocks -> act -> Linear -> output``

Pre-activation residual blocks (He et al. 2016) keep an identity path from the input layer to
the output layer; the second linear map of each block starts at zero, so every block starts as
the identity and depth does not hurt the first steps of training. There is no batch
normalisation, so the network works at any batch size, including the batch of one that ``sbi``
probes with, and gives the same output for a row whatever the rest of the batch.

Example:
    >>> import torch
    >>> net = ResidualMLP(input_dim=2, output_dim=8)
    >>> net(torch.randn(5, 2)).shape
    torch.Size([5, 8])
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from sbi_symmetry._validation import check_int


class _PreActivationBlock(nn.Module):
    """``h + W2 act(W1 act(h))`` with ``W2`` initialised at zero."""

    def __init__(self, width: int, activation: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.act1 = activation()
        self.linear1 = nn.Linear(width, width)
        self.act2 = activation()
        self.linear2 = nn.Linear(width, width)
        nn.init.zeros_(self.linear2.weight)
        nn.init.zeros_(self.linear2.bias)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.linear2(self.act2(self.linear1(self.act1(h))))


class ResidualMLP(nn.Module):
    """Residual MLP mapping ``(..., input_dim)`` to ``(..., output_dim)``.

    Args:
        input_dim: Width of the input (e.g. the number of parameters).
        output_dim: Width of the output (e.g. the latent dimension).
        hidden_dim: Width of the residual stream.
        num_blocks: Number of pre-activation residual blocks (0 gives a one-hidden-layer MLP).
        activation: Factory of the activation module; a smooth one (the default SiLU) keeps
            gradient-based samplers (HMC, VI) happy.

    Example:
        >>> import torch
        >>> ResidualMLP(3, 4, hidden_dim=16, num_blocks=1)(torch.zeros(1, 3)).shape
        torch.Size([1, 4])
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        hidden_dim: int = 64,
        num_blocks: int = 2,
        activation: Callable[[], nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        check_int(input_dim, "input_dim", 1)
        check_int(output_dim, "output_dim", 1)
        check_int(hidden_dim, "hidden_dim", 1)
        check_int(num_blocks, "num_blocks", 0)
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.input_layer = nn.Linear(input_dim, hidden_dim)
        self.blocks = nn.Sequential(
            *(_PreActivationBlock(hidden_dim, activation) for _ in range(num_blocks))
        )
        self.final_activation = activation()
        self.output_layer = nn.Linear(hidden_dim, output_dim)

    def forward(self, inputs: Tensor) -> Tensor:
        """Map ``(..., input_dim)`` to ``(..., output_dim)``.

        Args:
            inputs: Tensor whose last dimension is ``input_dim``.

        Returns:
            Tensor of shape ``(..., output_dim)``.
        """
        if inputs.shape[-1] != self.input_dim:
            raise ValueError(
                f"`inputs` must have last dimension {self.input_dim}; got shape "
                f"{tuple(inputs.shape)}."
            )
        h = self.blocks(self.input_layer(inputs))
        return self.output_layer(self.final_activation(h))
