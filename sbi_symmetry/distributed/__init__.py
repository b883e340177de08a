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

from sbi_symmetry.distributed.collectives import (
    all_reduce_mean,
    all_reduce_sum,
    average_gradients,
    broadcast_module,
    broadcast_object,
    check_same_on_all_ranks,
    gather_rows,
    gather_with_grad,
    on_main_process,
    tensor_fingerprint,
)
from sbi_symmetry.distributed.process import (
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    local_batch_size,
    local_device,
    rank_rows,
    rank_seed,
    rank_share,
    shard_items,
)
from sbi_symmetry.distributed.sampler import ShardedSampler, data_parallel

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
