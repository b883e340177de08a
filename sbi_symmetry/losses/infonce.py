r"""Symmetric (inter-domain) InfoNCE: the Embed-and-Emulate loss over all pairs of a batch.

Set-up. A batch holds ``B`` joint draws ``(theta_i, x_i) ~ p(theta, x)``. An encoder gives
``f(x_i)`` and an emulator ``g(theta_j)``, both in ``R^n``; the critic is

    h(theta_j, x_i) = <f(x_i), g(theta_j)> / tau = L_ij,

one ``B x B`` matrix of logits from a single matrix product. The loss of pair ``i`` is

    loss_i = 1/2 [ -log softmax_j(L_ij)|_{j=i}  -  log softmax_k(L_ki)|_{k=i} ]
           = 1/2 [ -L_ii + logsumexp_j L_ij  -  L_ii + logsumexp_k L_ki ].

The first term (rows, ``x -> theta``) asks: given ``x_i``, which of the ``B`` parameters generated
it? The second (columns, ``theta -> x``) asks: given ``theta_i``, which of the ``B`` data sets
did it generate? The other ``B - 1`` members of the batch are draws from the marginals, so each
term is a ``B``-way classification between one joint and ``B - 1`` product-of-marginals pairs.

What it estimates. For the row term the Bayes-optimal class probabilities are
``r(theta_i, x) / sum_j r(theta_j, x)`` with ``r = p(theta, x) / (p(theta) p(x))``, the
likelihood-to-evidence ratio; a critic reaches them exactly when
``h(theta, x) = log r(theta, x) + c(x)`` for an arbitrary function ``c`` of the data (it cancels
inside the softmax over ``j``). Likewise the column term is minimised exactly by
``h = log r(theta, x) + c'(theta)``. The sum is minimised by critics in both families at once,
and their intersection is ``log r(theta, x) + C`` with ``C`` a constant: ``c(x) = c'(theta)`` for
all ``(theta, x)`` forces both to be the same constant. So the symmetric loss pins the estimated
ratio down up to a constant that does not depend on ``x`` (nor on ``theta``), which is what makes
``exp(h(theta, x))`` a posterior-to-prior ratio comparable across observations, and the reason
Embed and Emulate uses the symmetric form.

Relation to NRE-B. ``sbi``'s ``NRE_B`` trains the row term only (``x -> theta``), with ``K - 1``
negatives drawn at random from the batch for each ``x``: its optimum is ``log r + c(x)``, with
``c(x)`` left free. Its classifier sees ``K`` concatenated ``(theta, x)`` pairs per data set, so
``sbi`` repeats each ``x`` ``K`` times (``B * K`` encoder passes per batch). A two-tower critic
needs ``B`` encoder and ``B`` emulator passes for all ``B^2`` pairs, both directions included.

A batch in which every embedding is the same has all logits equal and ``loss_i = log B``:
the loss of guessing.

Weighting the two terms. ``row_weight = w`` gives ``w * row + (1 - w) * column``; for any ``w``
strictly between 0 and 1 the argument above holds unchanged (the optimum is ``log r + C``).
``w = 1`` is the row term alone, NRE-B's classification with the batch as candidates, optimum
``log r + c(x)``: the posterior ``p(theta) exp(h(theta, x))`` is unchanged by ``c(x)``, so it
is still exact, only ratios of different observations stop being comparable. With a critic of
finite capacity the two terms pull differently: the column term also rewards telling data sets
apart, which costs sharpness in ``x -> theta`` (measured in ``benchmarks/results/ee_loss_side.md``
and used by :mod:`sbi_symmetry.emulate.refine`).

Extra candidates from the prior. The row term can only tell ``theta_i`` from the ``B - 1``
others, so it carries at most ``log B`` nats: once the true parameter beats the rest of the batch,
nothing asks the critic to resolve the posterior more finely than the spacing of ``B`` prior
draws, and a posterior much narrower than the prior's ``1/B``-th comes out too wide. A two-tower
critic can afford many more candidates, because a parameter costs no simulation: ``K`` further
draws ``theta'_1..theta'_K`` from the prior (the marginal the batch's own negatives come from)
enter only the row softmax,

    loss_i = 1/2 [ -L_ii + logsumexp( L_i1..L_iB, L'_i1..L'_iK )  -  L_ii + logsumexp_k L_ki ],
    L'_ik = <f(x_i), g(theta'_k)> / tau,

a ``(B + K)``-way classification whose optimum is still ``h = log r + c(x)`` (all candidates but
the true one are prior draws), so the argument above, and the constant ``C``, are unchanged. The
cost is ``K`` emulator passes and a ``B x K`` product per batch; the same ``K`` draws serve all
rows.

Several processes (``torchrun``). The negatives are the rest of the batch, so ``W`` ranks that
each used only their own ``B`` pairs would train a ``B``-way instead of a ``WB``-way
classification: a different, weaker loss. With ``global_batch=True`` every rank gathers all
``WB`` embeddings (gradients flowing back) and returns the losses of its own pairs against all
``WB`` candidates; the mean over a rank's pairs, with gradients averaged over ranks, has exactly
the gradient of the single-process mean over the ``WB`` pairs (see
:mod:`sbi_symmetry.distributed`).

Example:
    >>> import torch
    >>> f, g = torch.ones(4, 3), torch.ones(4, 3)
    >>> symmetric_infonce(f, g, temperature=0.5)  # all equal: log 4 each
    tensor([1.3863, 1.3863, 1.3863, 1.3863])
"""

from __future__ import annotations

import torch
from torch import Tensor

import sbi_symmetry.distributed as distributed
from sbi_symmetry._validation import OUTPUTS_FINITE, check_finite, check_row_weight, check_tensor


def _check_temperature(temperature: float | Tensor) -> None:
    if isinstance(temperature, Tensor):
        if temperature.numel() != 1:
            raise ValueError(
                f"`temperature` must be a scalar; got a tensor of shape {tuple(temperature.shape)}."
            )
        value = float(temperature.detach())
    elif isinstance(temperature, int | float) and not isinstance(temperature, bool):
        value = float(temperature)
    else:
        raise TypeError(
            f"`temperature` must be a float or a scalar tensor; got {type(temperature).__name__}."
        )
    if not (value > 0 and value != float("inf")):
        raise ValueError(f"`temperature` must be a finite number > 0; got {value!r}.")


def symmetric_infonce(
    f_x: Tensor,
    g_theta: Tensor,
    temperature: float | Tensor = 1.0,
    *,
    global_batch: bool = False,
    negatives: Tensor | None = None,
    row_weight: float = 0.5,
) -> Tensor:
    """Per-pair symmetric InfoNCE losses of a batch of ``B`` matched embeddings.

    Row ``i`` of ``f_x`` and row ``i`` of ``g_theta`` come from the same joint draw; every other
    pairing is a negative. See the module docstring for the maths.

    Args:
        f_x: Data embeddings ``f(x)``, shape ``(B, n)``.
        g_theta: Parameter embeddings ``g(theta)``, shape ``(B, n)``.
        temperature: Divides the inner products; a float or a scalar tensor (learnable), > 0.
        global_batch: Under ``torch.distributed`` with several processes, the candidates of
            every pair are the pairs of *all* ranks (gathered with gradients flowing), and the
            losses of this rank's pairs are returned. Must be called on every rank with the
            same batch size. No effect in one process.
        negatives: Emulated extra candidates ``g(theta')`` for prior draws ``theta'``, shape
            ``(K, n)``, added to every row (``x -> theta``) softmax; ``None`` for none.
        row_weight: Weight ``w`` in ``[0, 1]`` of the row term; the column term gets
            ``1 - w`` (the default 1/2 is the symmetric loss; 1 is the row term alone).

    Returns:
        Losses of shape ``(B,)``: the weighted mean of the row (``x -> theta``) and column
        (``theta -> x``) cross-entropies of each pair. Their mean is the training loss.
        With ``global_batch`` under ``W`` processes: this rank's ``B`` pairs, each against all
        ``W B`` candidates.

    Example:
        >>> import torch
        >>> f = torch.eye(3)
        >>> loss = symmetric_infonce(f, f, temperature=0.1)  # perfectly matched
        >>> bool((loss < 1e-3).all())
        True
    """
    check_tensor(f_x, "f_x")
    check_tensor(g_theta, "g_theta")
    if f_x.ndim != 2 or g_theta.ndim != 2:
        raise ValueError(
            "`f_x` and `g_theta` must be 2-D (batch, embedding_dim); got shapes "
            f"{tuple(f_x.shape)} and {tuple(g_theta.shape)}."
        )
    if f_x.shape != g_theta.shape:
        raise ValueError(
            "`f_x` and `g_theta` must have the same shape (one row per joint pair, the same "
            f"embedding width); got {tuple(f_x.shape)} and {tuple(g_theta.shape)}."
        )
    check_row_weight(row_weight)
    extra = _extra_logits(f_x, negatives, temperature)
    if global_batch and distributed.is_distributed():
        _check_temperature(temperature)
        rows, columns = _global_batch_infonce(f_x, g_theta, temperature, extra)
        return row_weight * rows + (1 - row_weight) * columns
    if f_x.shape[0] < 2:
        raise ValueError(
            f"symmetric InfoNCE needs a batch of at least 2 pairs (the others are the "
            f"negatives); got {f_x.shape[0]}."
        )
    _check_temperature(temperature)
    check_finite(f_x, "f_x", OUTPUTS_FINITE)
    check_finite(g_theta, "g_theta", OUTPUTS_FINITE)
    logits = (f_x @ g_theta.T) / temperature
    positive = torch.diagonal(logits)
    x_to_theta = torch.logsumexp(_with(logits, extra), dim=1) - positive
    theta_to_x = torch.logsumexp(logits, dim=0) - positive
    return row_weight * x_to_theta + (1 - row_weight) * theta_to_x


def _extra_logits(
    f_x: Tensor, negatives: Tensor | None, temperature: float | Tensor
) -> Tensor | None:
    """``(B, K)`` logits of every data embedding against the extra candidates, or ``None``."""
    if negatives is None:
        return None
    check_tensor(negatives, "negatives")
    if negatives.ndim != 2 or negatives.shape[1] != f_x.shape[1]:
        raise ValueError(
            f"`negatives` must be (K, {f_x.shape[1]}), emulated candidates of the embedding "
            f"width; got {tuple(negatives.shape)}."
        )
    check_finite(negatives, "negatives", OUTPUTS_FINITE)
    return (f_x @ negatives.T) / temperature


def _with(logits: Tensor, extra: Tensor | None) -> Tensor:
    """The row logits with the extra candidates' columns appended."""
    return logits if extra is None else torch.cat([logits, extra], dim=1)


def _global_batch_infonce(
    f_x: Tensor, g_theta: Tensor, temperature: float | Tensor, extra: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """This rank's row and column losses of the global ``WB x WB`` logit matrix, per pair.

    Rank ``r`` holds pairs ``off + i`` (``off = r B``) of the gathered batch. Its row terms need
    ``f(x_i)`` against every ``g(theta_j)``, its column terms ``g(theta_i)`` against every
    ``f(x_k)``: two ``B x WB`` products instead of the whole matrix. Errors about the gathered
    batch (size, NaN/inf) are raised after the gather, on every rank alike.
    """
    both = distributed.gather_with_grad(torch.cat([f_x, g_theta], dim=1))
    width = f_x.shape[1]
    f_all, g_all = both[:, :width], both[:, width:]
    if f_all.shape[0] < 2:
        raise ValueError(
            f"symmetric InfoNCE needs a global batch of at least 2 pairs; got {f_all.shape[0]}."
        )
    check_finite(f_all, "f_x (gathered over ranks)", OUTPUTS_FINITE)
    check_finite(g_all, "g_theta (gathered over ranks)", OUTPUTS_FINITE)
    rows = torch.arange(f_x.shape[0], device=f_x.device)
    columns = rows + distributed.rank_rows(f_x.shape[0]).start
    x_logits = (f_x @ g_all.T) / temperature  # x_i against every theta of the global batch
    theta_logits = (g_theta @ f_all.T) / temperature  # theta_i against every x
    x_to_theta = torch.logsumexp(_with(x_logits, extra), dim=1) - x_logits[rows, columns]
    theta_to_x = torch.logsumexp(theta_logits, dim=1) - theta_logits[rows, columns]
    return x_to_theta, theta_to_x
