"""Two gloo processes on 127.0.0.1 against one: the losses and collectives, VICReg pretraining,
and pretraining under torchrun.

The two-process tests start their workers with ``torch.multiprocessing`` (spawn) on a free port
of the loopback interface, with a collective timeout and a wall-clock limit, and collect what the
workers return through files in ``tmp_path`` (``_helpers_distributed.run_ranks``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from _helpers_distributed import WORKER_TIMEOUT_S, _free_port, run_ranks
from _helpers_nets import assert_close, assert_same, grads, weights
from sbi.utils import BoxUniform
from torch import Tensor, nn

from sbi_symmetry import distributed
from sbi_symmetry.losses import symmetric_infonce, vicreg_loss
from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.symmetry.pretrain import pretrain_vicreg

LENGTH = 24


# ======================================================================= two processes
# ------------------------------------------------------------------------ loss equivalence
B = 12  # global batch; 6 rows per rank


def _loss_data() -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(3)
    return {
        "view_a": torch.randn(B, 6, generator=g),
        "view_b": torch.randn(B, 6, generator=g),
        "x": torch.randn(B, 5, generator=g),
        "theta": torch.randn(B, 2, generator=g),
        "negatives": torch.randn(7, 2, generator=g),
    }


def _vicreg_net() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))


class _Towers(nn.Module):
    """Encoder and emulator whose forward is the per-pair global-batch InfoNCE."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.f = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
        self.g = nn.Linear(2, 3)
        self.log_t = nn.Parameter(torch.tensor(-0.5))

    def forward(self, theta: Tensor, x: Tensor) -> Tensor:
        return symmetric_infonce(self.f(x), self.g(theta), self.log_t.exp(), global_batch=True)


def _losses_worker(rank: int) -> dict[str, Any]:
    data = _loss_data()
    rows = distributed.rank_rows(B // 2)
    out: dict[str, Any] = {}
    # VICReg: explicit gradient averaging, as pretrain_vicreg does.
    net = _vicreg_net()
    terms = vicreg_loss(net(data["view_a"][rows]), net(data["view_b"][rows]), global_batch=True)
    terms.total.backward()
    distributed.average_gradients(net.parameters())
    out["vicreg"] = ({k: float(v) for k, v in terms.as_floats().items()}, grads(net))
    # InfoNCE: DDP averages the gradients, as EmbedEmulate does.
    towers = _Towers()
    model = distributed.data_parallel(towers)
    losses = model(data["theta"][rows], data["x"][rows])
    losses.mean().backward()
    out["infonce"] = (losses.detach(), grads(towers))
    # InfoNCE with explicit averaging gives the same.
    towers = _Towers()
    towers(data["theta"][rows], data["x"][rows]).mean().backward()
    distributed.average_gradients(towers.parameters())
    out["infonce_explicit"] = grads(towers)
    # InfoNCE with extra candidates (the same on every rank here): rows get them, columns not.
    towers = _Towers()
    f, g = towers.f(data["x"][rows]), towers.g(data["theta"][rows])
    extra = towers.g(data["negatives"])
    losses = symmetric_infonce(f, g, 0.4, global_batch=True, negatives=extra)
    out["infonce_negatives"] = losses.detach()

    # The other collectives.
    out["gather_rows"] = distributed.gather_rows(torch.full((rank + 1, 2), float(rank)))
    out["mean"] = distributed.all_reduce_mean(float(rank))
    out["seed"] = distributed.gather_rows(torch.tensor([distributed.rank_seed(0, "views", 1)]))
    out["object"] = distributed.broadcast_object({"rank": rank})
    out["share"] = distributed.rank_share(torch.arange(8)).tolist()
    errors = []
    for call in (
        lambda: distributed.on_main_process(lambda: open("/nonexistent/dir/file", "w")),
        lambda: distributed.check_same_on_all_ranks([float(rank)], "test data"),
        lambda: distributed.local_batch_size(5),
        lambda: distributed.gather_with_grad(torch.zeros(rank + 1, 2)),
        lambda: vicreg_loss(torch.zeros(1, 2), torch.zeros(1, 2), global_batch=True),
        lambda: symmetric_infonce(
            torch.full((1, 2), float("nan") if rank else 0.0), torch.ones(1, 2), global_batch=True
        ),
    ):
        try:
            call()
            errors.append(None)
        except Exception as error:
            errors.append((type(error).__name__, str(error)))
    out["errors"] = errors
    out["main_result"] = distributed.on_main_process(lambda: rank + 10, share_result=True)
    return out


def test_two_processes_with_half_batches_match_one_process_for_both_losses(two_ranks):
    ranks = [r["losses"] for r in two_ranks["ranks"]]
    data = _loss_data()

    net = _vicreg_net()
    terms = vicreg_loss(net(data["view_a"]), net(data["view_b"]))
    terms.total.backward()
    for r in ranks:  # every rank holds the loss of the global batch and its gradient
        for key, value in terms.as_floats().items():
            assert r["vicreg"][0][key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
        # the last bias's gradient is zero up to rounding (VICReg ignores a shift of every
        # embedding): its float32 noise, about 3e-7, needs an absolute tolerance above it
        assert_close(r["vicreg"][1], grads(net), rtol=1e-5, atol=1e-6)

    towers = _Towers()
    losses = towers(data["theta"], data["x"])
    losses.mean().backward()
    expected = grads(towers)
    gathered = torch.cat([r["infonce"][0] for r in ranks])
    torch.testing.assert_close(gathered, losses.detach(), rtol=1e-6, atol=1e-6)
    for r in ranks:
        assert_close(r["infonce"][1], expected, rtol=1e-5, atol=1e-7)
        assert_close(r["infonce_explicit"], expected, rtol=1e-5, atol=1e-7)
    extra = towers.g(data["negatives"])
    one = symmetric_infonce(towers.f(data["x"]), towers.g(data["theta"]), 0.4, negatives=extra)
    gathered = torch.cat([r["infonce_negatives"] for r in ranks])
    torch.testing.assert_close(gathered, one.detach(), rtol=1e-6, atol=1e-6)
    # A local batch on its own would have given another loss: the test can fail.
    local = towers(data["theta"][:6], data["x"][:6])
    assert not torch.allclose(local, losses[:6].detach(), atol=1e-3)

    for r in ranks:
        assert r["gather_rows"].tolist() == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]
        assert r["mean"] == 0.5
        assert r["object"] == {"rank": 0}
        assert r["main_result"] == 10
        seeds = r["seed"].tolist()
        assert seeds[0] != seeds[1]
    assert [r["share"] for r in ranks] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    # Errors: the same on both ranks, none left waiting.
    for r in ranks:
        kinds = [e and e[0] for e in r["errors"]]
        assert kinds == [
            "FileNotFoundError",
            "ValueError",
            "ValueError",
            "ValueError",
            "ValueError",
            "ValueError",
        ], r["errors"]
        assert "different test data" in r["errors"][1][1]
        assert "multiple" in r["errors"][2][1]
        assert "same shape on every rank" in r["errors"][3][1]
        assert "at least 3" in r["errors"][4][1]
        assert "NaN" in r["errors"][5][1]


# ---------------------------------------------------------------------------- pretraining
class ToyViews:
    """theta (n, 2) -> two noisy shifted bumps of length LENGTH (torch's global RNG)."""

    input_kind = "theta"

    def _one(self, theta: Tensor) -> Tensor:
        t = torch.arange(LENGTH, dtype=torch.float32)
        shift = torch.randint(-3, 4, (theta.shape[0], 1)).float()
        centre = 8 + 8 * theta[:, :1] + shift
        bump = theta[:, 1:2] * torch.exp(-0.5 * (t - centre) ** 2)
        return 2.0 + 3.0 * (bump + 0.1 * torch.randn(theta.shape[0], LENGTH))

    def __call__(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        return self._one(theta), self._one(theta)


def _prior() -> BoxUniform:
    return BoxUniform(torch.zeros(2), torch.ones(2))


def _encoder(seed: int = 0) -> ConvEncoder1D:
    torch.manual_seed(seed)
    return ConvEncoder1D(LENGTH, 3, channels=4, num_blocks=1, kernel_size=5, hidden_dim=16)


PRETRAIN = dict(
    num_simulations=240,
    batch_size=32,
    max_epochs=3,
    warmup_epochs=1,
    learning_rate=3e-3,
    show_progress_bar=False,
)


def _expander() -> nn.Module:
    """A projector without a last bias: VICReg is blind to a constant shift of its output, and
    Adam would turn float noise along such a flat direction into steps of the learning rate."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 8, bias=False))


def _interrupt_after_two(epoch: int, history: dict) -> None:
    if epoch == 2:
        raise KeyboardInterrupt


def _pretrain_worker(rank: int, checkpoint: str) -> dict[str, Any]:
    # A fixed bank of views, checkpointed by rank 0 and interrupted after epoch 2 on all ranks.
    try:
        pretrain_vicreg(
            _encoder(rank),  # different initial weights per rank: rank 0's must win
            ToyViews(),
            _prior(),
            expander=_expander(),
            fresh_views=False,
            checkpoint_path=checkpoint,
            callback=_interrupt_after_two,
            **PRETRAIN,
        )
    except KeyboardInterrupt:
        pass
    exists = Path(checkpoint).exists()
    # Fresh views, drawn per rank: a full run.
    emb = pretrain_vicreg(_encoder(rank), ToyViews(), _prior(), **PRETRAIN)
    # The hybrid loss: its read-out is rank 0's too, its per-rank term averaged in the history.
    hybrid = pretrain_vicreg(
        _encoder(rank), ToyViews(), _prior(), supervised_weight=1.0, **PRETRAIN
    )
    return {
        "weights": weights(emb),
        "history": emb.history,
        "exists": exists,
        "hybrid": (weights(hybrid), hybrid.history),
    }


def test_two_process_pretraining_agrees_across_ranks_and_resumes_in_one_process(two_ranks):
    path = two_ranks["checkpoint"]
    ranks = [r["pretrain"] for r in two_ranks["ranks"]]

    # Fresh views: identical weights and history on both ranks, and it trained.
    assert_same(ranks[0]["weights"], ranks[1]["weights"])
    for key, values in ranks[0]["history"].items():
        if key != "epoch_time_s":
            assert values == ranks[1]["history"][key], key
    assert ranks[0]["history"]["val_total"][-1] < ranks[0]["history"]["val_total"][0]
    (hybrid_0, history_0), (hybrid_1, history_1) = ranks[0]["hybrid"], ranks[1]["hybrid"]
    assert_same(hybrid_0, hybrid_1)
    for key in ("train_supervised", "val_supervised", "train_total"):
        assert history_0[key] == history_1[key], key
    assert min(history_0["train_supervised"]) > 0

    # Fixed bank: rank 0 wrote one checkpoint after epoch 2; resume it in a single process.
    assert all(r["exists"] for r in ranks)
    saved = torch.load(path, weights_only=True)
    assert saved["epochs_done"] == 2 and len(saved["history"]["val_total"]) == 2
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []
    one = pretrain_vicreg(
        _encoder(), ToyViews(), _prior(), expander=_expander(), fresh_views=False, **PRETRAIN
    )
    resumed = pretrain_vicreg(
        _encoder(seed=9),
        ToyViews(),
        _prior(),
        expander=_expander(),
        fresh_views=False,
        checkpoint_path=path,
        resume=True,
        **PRETRAIN,
    )
    # Two epochs on 2 x 16 rows and one on 1 x 32 equal three on 1 x 32 (float tolerance: the
    # all-reduce sums in another order; on an AMD EPYC host, 2026-12-08, the third epoch differed
    # by 1.8e-5 relative in the loss and 2.4e-4 in the effective rank, an entropy of singular
    # values that amplifies float noise).
    assert resumed.history["epoch"] == [1, 2, 3]
    for key in ("train_total", "val_total", "val_invariance", "lr", "effective_rank"):
        assert resumed.history[key] == pytest.approx(one.history[key], rel=1e-3, abs=1e-7), key
    # The summaries agree up to a constant shift, which VICReg cannot see (the encoder's last
    # bias drifts with float noise there).
    x = ToyViews()(_prior().sample((300,)))[0]
    with torch.no_grad():
        a, b = one(x), resumed(x)
    torch.testing.assert_close(a - a.mean(0), b - b.mean(0), rtol=0, atol=1e-3 * float(a.std()))
    assert not torch.allclose(a - a.mean(0), b.flip(0) - b.mean(0), atol=1e-3 * float(a.std()))


def _default_suite_worker(rank: int, checkpoint: str) -> dict[str, Any]:
    return {"losses": _losses_worker(rank), "pretrain": _pretrain_worker(rank, checkpoint)}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One pair of processes for the default suite's two-process checks (start-up dominates)."""
    folder = tmp_path_factory.mktemp("two-ranks")
    checkpoint = folder / "run.pt"
    return {
        "ranks": run_ranks(_default_suite_worker, folder, str(checkpoint)),
        "checkpoint": checkpoint,
    }


# ------------------------------------------------------------------------------- torchrun
TORCHRUN_SCRIPT = """
from pathlib import Path

import torch
from sbi_symmetry import distributed
from sbi_symmetry.symmetry.pretrain import pretrain_vicreg
from test_distributed_gloo import PRETRAIN, ToyViews, _encoder, _prior

assert distributed.init_distributed()
torch.set_num_threads(1)
emb = pretrain_vicreg(_encoder(distributed.get_rank()), ToyViews(), _prior(), **PRETRAIN)
total = sum(float(v.double().sum()) for v in emb.state_dict().values())
Path(f"rank{distributed.get_rank()}.txt").write_text(f"{distributed.get_world_size()} {total!r}")
"""


@pytest.mark.slow
def test_pretraining_runs_unchanged_under_torchrun(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(TORCHRUN_SCRIPT))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    worlds_and_sums = [(tmp_path / f"rank{r}.txt").read_text().split() for r in range(2)]
    assert worlds_and_sums[0] == worlds_and_sums[1]  # identical weights on both ranks
    assert worlds_and_sums[0][0] == "2"
