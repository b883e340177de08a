r"""Multi-process training under ``torchrun``: ranks, a gradient-keeping all-gather, rank 0 only.

``pretrain_vicreg`` and ``EmbedEmulate`` call the helpers of this module at a few points; each
helper is the identity (or does nothing) unless ``torch.distributed`` is initialised with more
than one process, so a single process behaves exactly as if this module did not exist.

Conventions:

* ``batch_size`` (``training_batch_size``) is the **global** batch: every optimisation step uses
  ``B`` pairs in all, ``B / W`` on each of the ``W`` ranks, so the same settings mean the same
  optimisation whatever the number of processes. ``B`` must be divisible by ``W``.
* Every rank holds the same data (parameters, simulations, validation bank): the training order
  is one permutation shared by all ranks, and rank ``r`` takes rows ``[r b, (r + 1) b)`` of each
  global batch (``b = B / W``), so the gathered batch is the single-process batch, in order.
* Batch statistics are global. :func:`gather_with_grad` concatenates every rank's rows in rank
  order and lets gradients flow back to the rank that produced them.

Gradient scale. Let ``L(z_1, ..., z_W)`` be a loss of the gathered batch and ``theta`` the
weights. The backward of :func:`gather_with_grad` sums over ranks the gradients that arrive for
rank ``r``'s rows: ``g_r = sum_k dL_k / dz_r`` where ``L_k`` is the loss rank ``k``
differentiates. The weight gradient on rank ``r`` is ``g_r dz_r/dtheta``, and the gradients are
then *averaged* over ranks (:func:`average_gradients`, or DDP). Two cases, both exact:

* VICReg: every rank computes the full global loss, ``L_k = L``, so ``g_r = W dL/dz_r`` and the
  average is ``(1/W) sum_r W dL/dz_r dz_r/dtheta = dL/dtheta``.
* Symmetric InfoNCE: rank ``k`` computes the mean loss of its own ``b`` pairs against all ``B``
  candidates, ``L_k = (1/b) sum_{i in k} l_i``, so
  ``(1/W) sum_r sum_k dL_k/dz_r dz_r/dtheta = (1/(W b)) sum_i dl_i/dtheta``, the gradient of the
  global mean ``(1/B) sum_i l_i``.

So ``W`` processes with local batch ``B / W`` give the loss and gradients of one process with
batch ``B``, up to floating-point summation order (``tests/test_distributed.py``).

Only rank 0 writes checkpoints, logs and progress bars (:func:`on_main_process` runs a function
there and re-raises its error on every rank, so no rank is left waiting in a collective).

Example:
    >>> import torch
    >>> get_world_size(), get_rank(), is_main_process()  # no process group: one process
    (1, 0, True)
    >>> z = torch.randn(4, 3, requires_grad=True)
    >>> gather_with_grad(z) is z
    True
    >>> local_batch_size(256)
    256
"""

from __future__ import annotations

import atexit
import hashlib
import inspect
import os
import pickle
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Sampler

from sbi_symmetry._validation import check_tensor

T = TypeVar("T")

__all__ = [
    "ShardedSampler",
    "all_reduce_mean",
    "all_reduce_sum",
    "average_gradients",
    "broadcast_module",
    "broadcast_object",
    "check_same_on_all_ranks",
    "data_parallel",
    "gather_rows",
    "gather_with_grad",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "local_batch_size",
    "local_device",
    "on_main_process",
    "rank_rows",
    "rank_seed",
    "rank_share",
    "shard_items",
    "tensor_fingerprint",
]


# ------------------------------------------------------------------------------ process group
def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> bool:
    """Join the process group that ``torchrun`` describes in the environment (idempotent).

    Does nothing (and returns ``False``) outside ``torchrun``, i.e. when ``WORLD_SIZE`` is unset,
    or when a process group already exists. On CUDA machines it also selects the GPU
    ``LOCAL_RANK`` for this process. A group created here is destroyed when the script ends
    normally (after a barrier), so training scripts need no teardown of their own.

    Args:
        backend: ``"nccl"`` or ``"gloo"``; default ``"nccl"`` if CUDA is available, else
            ``"gloo"``.
        timeout_s: How long a collective waits for the other ranks before failing.

    Returns:
        Whether this call initialised the process group.

    Example:
        >>> init_distributed()  # not started by torchrun: nothing to join
        False
    """
    if not dist.is_available() or dist.is_initialized() or "WORLD_SIZE" not in os.environ:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"`backend` must be 'nccl' or 'gloo'; got {backend!r}.")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    _shutdown_at_exit()
    return True


_EXIT = {"uncaught_exception": False}


def _shutdown_at_exit() -> None:
    """Destroy the process group this module created when the interpreter exits normally.

    A process that exits without ``destroy_process_group`` leaves gloo's worker threads to be
    torn down during interpreter finalisation, which can abort it ("terminate called without an
    active exception", SIGABRT) after all its work is done. So, on a normal exit, every rank waits
    for the others (a barrier: no rank closes its connections while a peer still reads) and then
    destroys the group. After an uncaught exception nothing is done: the peers may be blocked in a
    collective, and ``torchrun`` tears the job down.
    """
    previous = sys.excepthook

    def excepthook(*args: Any) -> None:
        _EXIT["uncaught_exception"] = True
        previous(*args)

    def shutdown() -> None:
        if _EXIT["uncaught_exception"] or not (dist.is_available() and dist.is_initialized()):
            return
        dist.barrier()
        dist.destroy_process_group()

    sys.excepthook = excepthook
    atexit.register(shutdown)


def is_distributed() -> bool:
    """Whether ``torch.distributed`` is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_rank() -> int:
    """Rank of this process (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    """Whether this is rank 0, the process that writes checkpoints, logs and progress bars."""
    return get_rank() == 0


def local_device() -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``: where this rank should train.

    Example:
        >>> local_device().type in ("cpu", "cuda")
        True
    """
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _comm_device() -> torch.device:
    """The device a collective's tensors must live on (CUDA for NCCL, CPU otherwise)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ----------------------------------------------------------------------------- batch sharding
def local_batch_size(global_batch_size: int, name: str = "batch_size") -> int:
    """Rows per rank of a global batch; ``global_batch_size`` must be divisible by the ranks.

    Args:
        global_batch_size: Rows per optimisation step over all ranks.
        name: Argument name used in the error message.

    Returns:
        ``global_batch_size // world_size``.

    Example:
        >>> local_batch_size(200, "training_batch_size")
        200
    """
    world = get_world_size()
    if isinstance(global_batch_size, bool) or not isinstance(global_batch_size, int):
        raise TypeError(f"`{name}` must be an integer; got {global_batch_size!r}.")
    if global_batch_size < world or global_batch_size % world:
        raise ValueError(
            f"`{name}` ({global_batch_size}) is the global batch over all {world} processes and "
            f"must be a positive multiple of their number; use e.g. "
            f"{max(world, global_batch_size - global_batch_size % world)}."
        )
    return global_batch_size // world


def rank_rows(local_rows: int) -> slice:
    """Where this rank's ``local_rows`` rows sit in a gathered global batch.

    Example:
        >>> rank_rows(8)
        slice(0, 8, None)
    """
    start = get_rank() * local_rows
    return slice(start, start + local_rows)


def rank_share(global_batch: Tensor) -> Tensor:
    """This rank's contiguous share of the rows of a global batch (all of it in one process).

    Args:
        global_batch: A global batch (e.g. indices), its length divisible by the ranks.

    Returns:
        Rows ``[r b, (r + 1) b)`` with ``b = len / world_size``.

    Example:
        >>> rank_share(torch.arange(6)).tolist()
        [0, 1, 2, 3, 4, 5]
    """
    if not is_distributed():
        return global_batch
    return global_batch[rank_rows(local_batch_size(global_batch.shape[0], "global batch"))]


def shard_items(items: Sequence[T]) -> tuple[list[T], bool]:
    """Items ``r, r + W, r + 2W, ...`` for rank ``r``, if there is at least one per rank.

    Args:
        items: Work items (e.g. validation chunks) that every rank holds.

    Returns:
        ``(this rank's items, sharded)``; with fewer items than ranks (or one process) every
        rank gets all items and ``sharded`` is ``False`` (then no reduction is needed).

    Example:
        >>> shard_items(["a", "b", "c"])
        (['a', 'b', 'c'], False)
    """
    world = get_world_size()
    if world == 1 or len(items) < world:
        return list(items), False
    return list(items[get_rank() :: world]), True


def rank_seed(seed: int, *keys: object) -> int:
    """A seed for this rank derived from ``seed``, ``keys`` (e.g. the epoch) and the rank.

    Different ranks (and keys) get unrelated seeds, so their fresh views are independent; the
    same rank, seed and keys always get the same seed (resumable).

    Example:
        >>> rank_seed(0, "views", 3) == rank_seed(0, "views", 3) != rank_seed(0, "views", 4)
        True
    """
    text = repr((int(seed), *keys, get_rank())).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


class ShardedSampler(Sampler[int]):
    """Global batches from one permutation shared by all ranks; this rank's share of each.

    Every epoch (every ``iter``) permutes ``indices`` with a generator seeded by
    ``seed + epoch`` (the same on every rank), cuts the permutation into global batches of
    ``global_batch_size`` (a last partial batch is dropped, as ``sbi`` does) and yields rank
    ``r``'s contiguous share of each. Use it as ``DataLoader(..., sampler=sampler,
    batch_size=sampler.local_batch_size, drop_last=True)``.

    Args:
        indices: Row indices of the data set to draw from (e.g. the training split).
        global_batch_size: Rows per step over all ranks, divisible by ``world_size``.
        seed: Base seed of the permutations.
        shuffle: Permute every epoch; ``False`` keeps the order of ``indices``.
        rank: This rank (default: the process group's).
        world_size: Number of ranks (default: the process group's).

    Example:
        >>> s = ShardedSampler(range(10), 4, seed=0, rank=1, world_size=2)
        >>> len(s), s.local_batch_size, len(list(s))
        (4, 2, 4)
    """

    def __init__(
        self,
        indices: Iterable[int],
        global_batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.indices = torch.as_tensor(list(indices), dtype=torch.long)
        self.world_size = get_world_size() if world_size is None else int(world_size)
        self.rank = get_rank() if rank is None else int(rank)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"`rank` must be in [0, {self.world_size}); got {self.rank}.")
        if global_batch_size < self.world_size or global_batch_size % self.world_size:
            raise ValueError(
                f"`global_batch_size` ({global_batch_size}) must be a positive multiple of the "
                f"number of processes ({self.world_size})."
            )
        self.global_batch_size = int(global_batch_size)
        self.local_batch_size = self.global_batch_size // self.world_size
        self.num_batches = len(self.indices) // self.global_batch_size
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch`` next (as ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches * self.local_batch_size

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = self.indices[torch.randperm(len(self.indices), generator=generator)]
        else:
            order = self.indices
        self.epoch += 1
        b, start = self.local_batch_size, self.rank * self.local_batch_size
        batches = order[: self.num_batches * self.global_batch_size]
        mine = batches.reshape(self.num_batches, self.global_batch_size)[:, start : start + b]
        return iter(mine.reshape(-1).tolist())


# -------------------------------------------------------------------------------- collectives
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


def data_parallel(module: nn.Module) -> nn.Module:
    """``module`` wrapped in ``DistributedDataParallel`` for this rank's device.

    Gradients are averaged over ranks during the backward (overlapping the computation).
    Parameters are copied from rank 0 when the wrapper is built; buffers are not re-sent before
    every forward (use :func:`broadcast_module` once for them, as the trainers do).

    Args:
        module: A module on this rank's device whose forward computes the loss inputs.

    Returns:
        The DDP wrapper (call it instead of ``module``); ``module`` itself in one process.
    """
    if not is_distributed():
        return module
    params = [p for p in module.parameters() if p.requires_grad]
    device = params[0].device if params else torch.device("cpu")
    device_ids = [device.index] if device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel
    # No buffer broadcast before every forward (the switch was renamed in torch 2.13).
    no_forward_sync = (
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters
        else {"broadcast_buffers": False}
    )
    return ddp(module, device_ids=device_ids, **no_forward_sync)
