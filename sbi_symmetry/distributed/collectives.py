"""Collectives: gathers that keep gradients, sums, broadcasts, gradient averaging, rank 0 only.

Each is the identity (or does nothing) in one process.

Example:
    >>> import torch
    >>> z = torch.randn(4, 3, requires_grad=True)
    >>> gather_with_grad(z) is z
    True
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from sbi_symmetry._validation import check_tensor
from sbi_symmetry.distributed.process import (
    _comm_device,
    get_world_size,
    is_distributed,
    is_main_process,
    rank_rows,
)

T = TypeVar("T")


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; the backward sums the incoming gradients over ranks."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        device = _comm_device()
        local = tensor.detach().to(device).contiguous()
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local)
        ctx.rows, ctx.device = tensor.shape[0], tensor.device
        return torch.cat(parts).to(tensor.device)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        total = grad.to(_comm_device()).contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[rank_rows(ctx.rows)].to(ctx.device)


def _check_equal_shapes(tensor: Tensor, name: str) -> None:
    """Raise the same ``ValueError`` on every rank if the ranks' shapes differ."""
    if tensor.ndim > 8:
        raise ValueError(f"`{name}` may have at most 8 dimensions; got {tensor.ndim}.")
    padded = [tensor.ndim, *tensor.shape, *[0] * (8 - tensor.ndim)]
    shape = torch.tensor(padded, dtype=torch.long, device=_comm_device())
    shapes = [torch.empty_like(shape) for _ in range(dist.get_world_size())]
    dist.all_gather(shapes, shape)
    seen = {tuple(s[1 : 1 + int(s[0])].tolist()) for s in shapes}
    if len(seen) > 1:
        raise ValueError(
            f"`{name}` must have the same shape on every rank (equal local batches); got "
            f"{sorted(seen)}."
        )


def gather_with_grad(tensor: Tensor) -> Tensor:
    """Concatenate every rank's ``tensor`` along dim 0 (rank order), keeping autograd.

    Gradients flow back to the rank that produced each row: the backward all-reduces the
    gradient of the gathered tensor and returns this rank's rows (see the module docstring for
    the resulting scale). The shapes must agree on all ranks (checked; a mismatch raises the
    same error everywhere). Without a process group (or with one process) ``tensor`` itself is
    returned.

    Args:
        tensor: This rank's rows, ``(b, ...)``.

    Returns:
        ``(W b, ...)``, rank ``r``'s rows at :func:`rank_rows` ``(b)``.

    Example:
        >>> z = torch.ones(2, 3, requires_grad=True)
        >>> gather_with_grad(z) is z  # one process
        True
    """
    check_tensor(tensor, "tensor")
    if not is_distributed():
        return tensor
    if tensor.ndim == 0:
        raise ValueError("`tensor` must have a batch dimension to gather along; got a scalar.")
    _check_equal_shapes(tensor, "tensor")
    return _GatherWithGrad.apply(tensor)


def gather_rows(tensor: Tensor) -> Tensor:
    """Concatenate every rank's rows along dim 0 without gradients; row counts may differ.

    Args:
        tensor: This rank's rows ``(n_r, ...)``; the trailing shape must agree on all ranks.

    Returns:
        ``(sum_r n_r, ...)`` in rank order (``tensor`` itself in one process).

    Example:
        >>> gather_rows(torch.arange(3)).tolist()
        [0, 1, 2]
    """
    check_tensor(tensor, "tensor")
    if not is_distributed():
        return tensor
    device = _comm_device()
    local = tensor.detach().to(device).contiguous()
    counts = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(get_world_size())]
    dist.all_gather(counts, torch.tensor([local.shape[0]], device=device))
    sizes = [int(c) for c in counts]
    padded = local.new_zeros((max(sizes), *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)]).to(tensor.device)


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum of ``tensor`` over ranks, as a new tensor on its device (a copy in one process).

    Example:
        >>> all_reduce_sum(torch.tensor([1.0, 2.0]))
        tensor([1., 2.])
    """
    check_tensor(tensor, "tensor")
    total = tensor.detach().to(_comm_device() if is_distributed() else tensor.device).clone()
    if is_distributed():
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.to(tensor.device)


def all_reduce_mean(value: float) -> float:
    """Mean of a Python number over ranks (``value`` in one process); identical on all ranks.

    Example:
        >>> all_reduce_mean(0.25)
        0.25
    """
    if not is_distributed():
        return value
    total = all_reduce_sum(torch.tensor([float(value)], dtype=torch.float64))
    return float(total) / get_world_size()


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Replace every gradient by its mean over ranks (one all-reduce per dtype and device).

    A parameter whose gradient is ``None`` on every rank keeps ``None``; if only some ranks
    have one, the others take part with zeros. Nothing happens in one process.

    Args:
        parameters: The parameters whose ``.grad`` to average, in the same order on all ranks.

    Example:
        >>> layer = nn.Linear(2, 1)
        >>> layer(torch.ones(1, 2)).sum().backward()
        >>> before = layer.weight.grad.clone()
        >>> average_gradients(layer.parameters())  # one process: unchanged
        >>> torch.equal(layer.weight.grad, before)
        True
    """
    params = [p for p in parameters if p.requires_grad]
    if not is_distributed() or not params:
        return
    device, world = _comm_device(), get_world_size()
    have = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=device)
    dist.all_reduce(have, op=dist.ReduceOp.SUM)
    active = [p for p, n in zip(params, have.tolist(), strict=True) if n > 0]
    for p in active:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    groups: dict[tuple[torch.dtype, torch.device], list[nn.Parameter]] = {}
    for p in active:
        groups.setdefault((p.grad.dtype, p.grad.device), []).append(p)  # type: ignore[union-attr]
    for members in groups.values():
        flat = torch.cat([p.grad.reshape(-1) for p in members]).to(device)  # type: ignore[union-attr]
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world
        offset = 0
        for p in members:
            grad = p.grad
            assert grad is not None
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into ``module`` on every rank (in place).

    Optimisers built on the module's parameters keep working (the tensors stay the same).
    Nothing happens in one process.

    Args:
        module: The module, built the same way on every rank.
        src: The rank whose values win.

    Example:
        >>> layer = nn.Linear(2, 1)
        >>> before = layer.weight.detach().clone()
        >>> broadcast_module(layer)  # one process: nothing to copy
        >>> torch.equal(layer.weight, before)
        True
    """
    if not is_distributed():
        return
    device = _comm_device()
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            buffer = tensor.detach().to(device).contiguous().clone()
            dist.broadcast(buffer, src=src)
            tensor.copy_(buffer.to(tensor.device))


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s picklable ``obj`` on every rank (``obj`` itself in one process).

    Example:
        >>> broadcast_object({"epoch": 3})
        {'epoch': 3}
    """
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def on_main_process(fn: Callable[[], T], *, share_result: bool = False) -> T | None:
    """Run ``fn`` on rank 0 only; if it raises, every rank raises the same exception.

    Use it for whatever only rank 0 may do (create or write a checkpoint, write logs). The
    outcome is broadcast, so an error on rank 0 does not leave the others waiting in the next
    collective.

    Args:
        fn: A function of no arguments.
        share_result: Broadcast ``fn``'s (picklable) result to every rank; otherwise the other
            ranks get ``None``.

    Returns:
        ``fn()`` on rank 0; on the others its result or ``None`` (see ``share_result``).

    Example:
        >>> on_main_process(lambda: 1 + 1)
        2
    """
    if not is_distributed():
        return fn()
    result: Any = None
    error: Exception | None = None
    message: Any = None
    if is_main_process():
        try:
            result = fn()
        except Exception as caught:
            error = caught
        message = (error, result if share_result else None)
        try:
            pickle.dumps(message)
        except Exception as failure:  # never leave the other ranks waiting for the broadcast
            what = f"failed with {error!r}" if error is not None else "returned an object"
            message = (RuntimeError(f"Rank 0 {what} that cannot be sent: {failure}"), None)
    error_back, shared = broadcast_object(message)
    if error is not None:
        raise error
    if error_back is not None:
        raise error_back
    return result if is_main_process() else shared


def check_same_on_all_ranks(values: Sequence[float], what: str) -> None:
    """Raise the same ``ValueError`` on every rank unless all ranks hold the same ``values``.

    Args:
        values: Fingerprint of data that must be identical on every rank (e.g. sums).
        what: What the values describe, for the message.

    Example:
        >>> check_same_on_all_ranks([100.0, 3.5], "the training data")
    """
    if not is_distributed():
        return
    mine = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
    every = [torch.empty_like(mine) for _ in range(get_world_size())]
    dist.all_gather(every, mine)
    if any(not torch.equal(other, every[0]) for other in every):
        raise ValueError(
            f"The ranks hold different {what} (fingerprints {[e.tolist() for e in every]}); "
            "every process must load or simulate the same data with the same seed."
        )


def tensor_fingerprint(*tensors: Tensor) -> list[float]:
    """Cheap order-sensitive checksums of tensors for :func:`check_same_on_all_ranks`.

    Example:
        >>> a = torch.arange(4.0)
        >>> tensor_fingerprint(a) == tensor_fingerprint(a.clone()) != tensor_fingerprint(a.flip(0))
        True
    """
    values: list[float] = []
    for tensor in tensors:
        flat = tensor.detach().reshape(-1).double()
        weights = torch.arange(flat.numel(), device=flat.device, dtype=torch.float64) % 97 + 1
        values += [float(flat.numel()), float(flat.sum()), float((flat * weights).sum())]
    return values
