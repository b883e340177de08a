r"""A supervised read-out term added to VICReg: both views regress the shared parameters.

Simulation-based inference always knows the parameters ``theta`` of every simulated data set, and
the two views of a pair share them. The hybrid pretraining loss adds to VICReg a linear read-out
``W y + c`` of the summary ``y = f(view)`` that predicts the standardised parameters
``t = (theta - m) / s`` (``m``, ``s``: mean and std of the training parameters):

    R(Y, Y', T) = 1/2 * [ 1/(B P) sum_ik (W y_i + c - t_i)_k^2
                        + 1/(B P) sum_ik (W y'_i + c - t_i)_k^2 ]

for a batch of ``B`` pairs and ``P`` parameters, and the pretraining minimises

    L_hybrid = L_VICReg(h(Y), h(Y')) + w * R(Y, Y', T)

with the weight ``w`` (``PretrainConfig.supervised_weight``; ``w = 0`` is plain VICReg).

Why it helps and does not fight the invariance: the mean squared error is minimised by the
posterior mean ``E[t | view]``, in which the nuisance is marginalised, so the minimiser is the
same for both views of a pair, and the term asks the summary to keep, linearly, the directions
that carry the parameters. VICReg alone only asks the summary to be invariant and spread out; a
summary can satisfy it while spending its dimensions on invariant features that say little about
``theta`` (such as the noise level of a window), which the flow can then not recover. The read-out
is a single linear layer so that the term constrains the summary rather than a deep head of its
own; it is discarded after pretraining, like the expander.

Example:
    >>> import torch
    >>> t = torch.tensor([[1.0, -1.0], [0.0, 2.0]])
    >>> float(supervised_term(t, t, t))
    0.0
    >>> float(supervised_term(t + 1, t, t))  # one view off by 1 everywhere: (1 + 0) / 2
    0.5
"""

from __future__ import annotations

from torch import Tensor

from sbi_symmetry._validation import check_tensor


def supervised_term(pred_a: Tensor, pred_b: Tensor, target: Tensor) -> Tensor:
    """``R``: the mean squared error of both views' read-outs against the shared target.

    Args:
        pred_a: Read-out of the first views, ``(B, P)``.
        pred_b: Read-out of the second views, ``(B, P)``.
        target: Standardised parameters of the pairs, ``(B, P)``.

    Returns:
        A scalar tensor, differentiable in both predictions.

    Example:
        >>> import torch
        >>> supervised_term(torch.zeros(3, 2), torch.zeros(3, 2), torch.ones(3, 2)).item()
        1.0
    """
    for name, value in (("pred_a", pred_a), ("pred_b", pred_b)):
        check_tensor(value, name)
        if value.shape != target.shape:
            raise ValueError(
                f"`{name}` has shape {tuple(value.shape)}; expected the target's "
                f"{tuple(target.shape)} (one prediction per parameter)."
            )
    return 0.5 * (((pred_a - target) ** 2).mean() + ((pred_b - target) ** 2).mean())
