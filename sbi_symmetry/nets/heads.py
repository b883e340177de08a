"""Projector ("expander") heads used only while pretraining an encoder with VICReg.

VICReg does not regularise the summary ``y = f(x)`` itself but its image ``z = h(y)`` under a
small MLP ``h``, the expander, which is thrown away afterwards. The paper's expander for the toy
problems is ``3 -> 20 -> 20 -> 20 -> 12`` with ReLU.

Example:
    >>> import torch
    >>> h = Expander(3)
    >>> h(torch.randn(5, 3)).shape
    torch.Size([5, 12])
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from torch import Tensor, nn

from sbi_symmetry._validation import check_int, check_tensor, is_int


class Expander(nn.Module):
    """MLP ``input_dim -> hidden_dims... -> output_dim`` with ReLU between layers.

    Args:
        input_dim: Width of the encoder's summary.
        output_dim: Width of the expanded representation the VICReg loss sees.
        hidden_dims: Widths of the hidden layers (may be empty: one linear layer).
        batch_norm: Put ``BatchNorm1d`` after each hidden linear layer, as the VICReg reference
            projector does. Off by default: it needs batches of at least two in training mode and
            makes the output of one sample depend on the rest of its batch. The expander is only
            used in pretraining (large batches), never inside ``sbi``.

    Attributes:
        config: The constructor's keyword arguments (JSON-serialisable).
        output_dim: Width of the output.

    Example:
        >>> Expander(3, 12, hidden_dims=(20, 20, 20)).config["hidden_dims"]
        [20, 20, 20]
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int = 12,
        hidden_dims: Sequence[int] = (20, 20, 20),
        *,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        widths = [input_dim, *hidden_dims, output_dim]
        check_int(input_dim, "input_dim", 1)
        check_int(output_dim, "output_dim", 1)
        if any(not is_int(w) or w < 1 for w in hidden_dims):
            raise ValueError(
                f"`hidden_dims` must be a sequence of positive integers; got {hidden_dims!r}."
            )
        layers: list[nn.Module] = []
        for i, (w_in, w_out) in enumerate(pairwise(widths)):
            layers.append(nn.Linear(w_in, w_out))
            if i < len(widths) - 2:
                if batch_norm:
                    layers.append(nn.BatchNorm1d(w_out))
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.config: dict[str, Any] = {
            "input_dim": input_dim,
            "output_dim": output_dim,
            "hidden_dims": list(hidden_dims),
            "batch_norm": batch_norm,
        }

    def forward(self, y: Tensor) -> Tensor:
        """Expand summaries ``y`` of shape ``(B, input_dim)`` to ``(B, output_dim)``."""
        check_tensor(y, "y")
        if y.ndim != 2 or y.shape[-1] != self.input_dim:
            raise ValueError(
                f"Expander expects `y` of shape (B, {self.input_dim}); got {tuple(y.shape)}."
            )
        return self.net(y)


class ReadoutExpander(nn.Module):
    """An expander plus a linear read-out of the parameters, for hybrid pretraining.

    ``forward`` is the expander's (what VICReg sees); :meth:`readout` predicts the standardised
    parameters from the summary (:func:`~sbi_symmetry.losses.supervised.supervised_term`). Both
    are discarded after pretraining.

    Args:
        expander: The VICReg projector.
        input_dim: Width of the encoder's summary.
        theta_dim: Number of parameters the read-out predicts.

    Example:
        >>> import torch
        >>> head = ReadoutExpander(Expander(3), 3, 2)
        >>> y = torch.randn(5, 3)
        >>> head(y).shape, head.readout(y).shape
        (torch.Size([5, 12]), torch.Size([5, 2]))
    """

    def __init__(self, expander: nn.Module, input_dim: int, theta_dim: int) -> None:
        super().__init__()
        check_int(input_dim, "input_dim", 1)
        check_int(theta_dim, "theta_dim", 1)
        self.expander = expander
        self.linear = nn.Linear(input_dim, theta_dim)

    def forward(self, y: Tensor) -> Tensor:
        """The expander's output for summaries ``y``."""
        return self.expander(y)

    def readout(self, y: Tensor) -> Tensor:
        """Predicted standardised parameters ``(B, theta_dim)`` for summaries ``y``."""
        return self.linear(y)
