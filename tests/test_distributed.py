"""Multi-process training: the helpers in one process (two processes: test_distributed_gloo.py,
test_distributed_emulate.py)."""

from __future__ import annotations

import pytest
import torch
from _helpers_nets import assert_same, grads, weights
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from sbi_symmetry import distributed
from sbi_symmetry.losses import symmetric_infonce, vicreg_loss


# ============================================================================ one process
def test_helpers_are_the_identity_in_one_process():
    z = torch.randn(5, 3, requires_grad=True)
    assert distributed.gather_with_grad(z) is z
    assert distributed.gather_rows(z) is z
    assert not distributed.is_distributed()
    assert distributed.rank_share(torch.arange(7)).tolist() == list(range(7))
    assert distributed.all_reduce_mean(1.5) == 1.5
    assert torch.equal(distributed.all_reduce_sum(z), z.detach())
    assert distributed.shard_items([1, 2]) == ([1, 2], False)
    assert distributed.broadcast_object([1, "a"]) == [1, "a"]
    net = nn.Linear(3, 2)
    before = weights(net)
    distributed.broadcast_module(net)
    net(z).sum().backward()
    gradient = grads(net)
    distributed.average_gradients(net.parameters())
    assert_same(before, weights(net))
    assert_same(gradient, grads(net))
    assert distributed.data_parallel(net) is net
    assert distributed.local_batch_size(7) == 7
    distributed.check_same_on_all_ranks([1.0, 2.0], "data")
    assert not distributed.init_distributed()  # not started by torchrun


def test_main_process_helper_returns_and_raises_in_one_process():
    assert distributed.on_main_process(lambda: 41 + 1) == 42
    with pytest.raises(FileExistsError, match="taken"):
        distributed.on_main_process(lambda: (_ for _ in ()).throw(FileExistsError("taken")))


def test_global_batch_flag_changes_nothing_in_one_process():
    torch.manual_seed(1)
    z_a, z_b = torch.randn(16, 4), torch.randn(16, 4)
    plain, flagged = vicreg_loss(z_a, z_b), vicreg_loss(z_a, z_b, global_batch=True)
    assert plain.as_floats() == flagged.as_floats()
    f, g = torch.randn(8, 3), torch.randn(8, 3)
    assert torch.equal(
        symmetric_infonce(f, g, 0.3), symmetric_infonce(f, g, 0.3, global_batch=True)
    )


def test_local_batch_size_rejects_non_integers():
    with pytest.raises(TypeError, match="training_batch_size"):
        distributed.local_batch_size(2.0, "training_batch_size")  # type: ignore[arg-type]


def test_rank_seed_depends_on_every_key():
    seeds = {distributed.rank_seed(s, "views", e) for s in range(3) for e in range(3)}
    assert len(seeds) == 9
    assert all(0 <= s < 2**63 for s in seeds)


def test_fingerprint_sees_order_and_values():
    a = torch.arange(10.0).reshape(2, 5)
    assert distributed.tensor_fingerprint(a) == distributed.tensor_fingerprint(a.clone())
    assert distributed.tensor_fingerprint(a) != distributed.tensor_fingerprint(a.flip(0))
    b = a.clone()
    b[1, 1] += 1e-3
    assert distributed.tensor_fingerprint(a) != distributed.tensor_fingerprint(b)


@given(
    num=st.integers(0, 60),
    local=st.integers(1, 6),
    world=st.integers(1, 4),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_sharded_sampler_splits_each_global_batch_between_ranks(num, local, world, shuffle, seed):
    indices = list(range(100, 100 + num))
    batch, steps = local * world, num // (local * world)

    def sampler(rank: int) -> distributed.ShardedSampler:
        return distributed.ShardedSampler(
            indices, batch, seed=seed, shuffle=shuffle, rank=rank, world_size=world
        )

    samplers = [sampler(r) for r in range(world)]
    for _ in range(2):  # two epochs
        shares = [list(s) for s in samplers]
        assert all(len(share) == len(samplers[0]) == steps * local for share in shares)
        together = [
            i
            for step in range(steps)
            for share in shares
            for i in share[step * local : (step + 1) * local]
        ]
        assert len(set(together)) == len(together) == steps * batch  # disjoint shares
        assert set(together) <= set(indices)
        if not shuffle:  # rank order within each global batch: the single-process order
            assert together == indices[: len(together)]
    # The same seed and epoch give the same shares on every rank (and again after set_epoch).
    again = sampler(0)
    again.set_epoch(1)
    assert list(again) == shares[0]


def test_sharded_sampler_rejects_bad_sizes():
    with pytest.raises(ValueError, match="multiple"):
        distributed.ShardedSampler(range(10), 3, seed=0, rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        distributed.ShardedSampler(range(10), 4, seed=0, rank=2, world_size=2)
