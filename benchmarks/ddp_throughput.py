"""Throughput of simulation and of one training epoch (VICReg pretraining, Embed and Emulate)
with 1 and 2 processes (``torch.distributed``, gloo on 127.0.0.1), from one script.

Every configuration starts its processes afresh (spawn), each with one intra-op thread
(``--with-two-threads`` adds one process with two), and every rank runs, in turn:

* simulation: the damped oscillator, ``--sims`` simulations shared out over the ranks (what each
  rank does when it draws fresh views), timed between two barriers;
* pretraining: ``pretrain_vicreg`` with fresh re-simulated views (``ResimulatedViews``) on
  ``--num`` parameter draws, global batch ``--batch-size``, two epochs; the time of the last
  epoch (training and validation) is reported, and the set-up before the first epoch (validation
  bank, input-scaling pass) separately;
* Embed and Emulate: ``EmbedEmulate.train`` on ``--num`` stored simulations, global batch
  ``--batch-size``, two epochs (``max_num_epochs=1``); the last epoch's time is reported, and the
  time to iterate the rank's training loader without any computation (data loading alone).

The configurations run in turn, round after round (``--rounds``), so drift in the load of a
shared machine hits them alike; speed-ups against the 1-process, 1-thread run are taken within
each round, then the median over rounds. Per-sample costs are ``time / samples`` of the whole
job (all ranks together), i.e. wall time per sample. Wall-clock speed-ups on a shared machine
depend on what else runs, so every rank also measures its CPU time (``time.process_time``, all
its threads, gloo's included): "CPU speed-up" is the speed-up with one free core per rank (1
process' CPU time over the busiest rank's), and "CPU s, all ranks / 1 process" is the total work
of all ranks relative to one process (1.00 = distribution costs no extra work). Prints a markdown
table.

    .venv/bin/python benchmarks/ddp_throughput.py --encoder paper --num 2048 --rounds 2

The same training code runs under ``torchrun``; this script spawns its processes itself only so
that one invocation measures several process counts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ENCODERS = {  # ConvEncoder1D sizes: the paper preset's and a cheaper full-resolution one
    "fast": {"channels": 8, "num_blocks": 2, "kernel_size": 9},
    "paper": {"channels": 20, "num_blocks": 4, "kernel_size": 21},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _timed(fn: Any) -> float:
    dist.barrier()
    start = time.perf_counter()
    fn()
    dist.barrier()
    return time.perf_counter() - start


def _per_rank(value: float) -> list[float]:
    """``value`` of every rank (e.g. CPU seconds), in rank order."""
    from sbi_symmetry import distributed

    return distributed.gather_rows(torch.tensor([float(value)], dtype=torch.float64)).tolist()


def _simulation(args: argparse.Namespace) -> dict[str, float]:
    from sbi_symmetry import distributed
    from sbi_symmetry.tasks import DampedOscillator

    task = DampedOscillator()
    share = args.sims // distributed.get_world_size()
    generator = torch.Generator().manual_seed(distributed.rank_seed(0, "simulation"))

    def run() -> None:
        for start in range(0, share, 5000):
            theta = task.sample_prior(min(5000, share - start), generator=generator)
            task.simulate(theta, generator=generator)

    cpu = time.process_time()
    seconds = _timed(run)
    cpu = time.process_time() - cpu
    return {
        "seconds": seconds,
        "samples": share * distributed.get_world_size(),
        "cpu": _per_rank(cpu),
    }


def _pretraining(args: argparse.Namespace) -> dict[str, float]:
    from sbi_symmetry.nets.conv import ConvEncoder1D
    from sbi_symmetry.symmetry.pretrain import pretrain_vicreg
    from sbi_symmetry.tasks import DampedOscillator
    from sbi_symmetry.views import ResimulatedViews

    task = DampedOscillator()
    torch.manual_seed(0)
    encoder = ConvEncoder1D.for_task(task, output_dim=3, **ENCODERS[args.encoder])
    views = ResimulatedViews(task.simulate, task.nuisance_prior)
    cpu_at_epoch_end: list[float] = []
    started = time.perf_counter()
    emb = pretrain_vicreg(
        encoder,
        views,
        task.prior,
        num_simulations=args.num,
        batch_size=args.batch_size,
        max_epochs=2,
        warmup_epochs=0,
        show_progress_bar=False,
        callback=lambda epoch, history: cpu_at_epoch_end.append(time.process_time()),
    )
    total = time.perf_counter() - started
    epochs = emb.history["epoch_time_s"]
    num_train = args.num - round(args.num * 0.1)
    return {
        "seconds": float(epochs[-1]),
        "samples": (num_train // args.batch_size) * args.batch_size,
        "cpu": _per_rank(cpu_at_epoch_end[-1] - cpu_at_epoch_end[-2]),
        "setup_seconds": total - sum(epochs),
    }


def _embed_emulate(args: argparse.Namespace) -> dict[str, float]:
    from sbi_symmetry.emulate import EmbedEmulate
    from sbi_symmetry.nets.conv import ConvEncoder1D
    from sbi_symmetry.tasks import DampedOscillator

    task = DampedOscillator()
    theta, x = task.sample_joint(args.num, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    trainer = EmbedEmulate(
        task.prior,
        encoder=ConvEncoder1D.for_task(task, output_dim=16, **ENCODERS[args.encoder]),
        show_progress_bars=False,
    )
    trainer.append_simulations(theta, x)
    cpu: list[float] = []  # CPU seconds of each epoch's training and validation passes

    def timed(method: Any) -> Any:
        def call(*a: Any, **k: Any) -> Any:
            start = time.process_time()
            result = method(*a, **k)
            cpu.append(time.process_time() - start)
            return result

        return call

    trainer._train_epoch = timed(trainer._train_epoch)  # type: ignore[method-assign]
    trainer._validate_epoch = timed(trainer._validate_epoch)  # type: ignore[method-assign]
    trainer.train(training_batch_size=args.batch_size, max_num_epochs=1)
    epoch = float(trainer.summary["epoch_durations_sec"][-1])
    loader, _ = trainer.get_dataloaders(0, args.batch_size, 0.1, resume_training=True)
    loading = _timed(lambda: [None for _ in loader])
    num_train = int(0.9 * args.num)
    return {
        "seconds": epoch,
        "samples": (num_train // args.batch_size) * args.batch_size,
        "cpu": _per_rank(cpu[-2] + cpu[-1]),
        "loading_seconds": loading,
    }


def _worker(rank: int, world: int, threads: int, port: int, out: str, args: Any) -> None:
    torch.set_num_threads(threads)
    os.chdir(out)
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])  # its first use imports for seconds
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(minutes=10),
    )
    try:
        result = {
            "simulation": _simulation(args),
            "pretraining epoch": _pretraining(args),
            "Embed & Emulate epoch": _embed_emulate(args),
        }
        if rank == 0:
            Path(out, "result.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def _run(world: int, threads: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(
            _worker,
            args=(world, threads, _free_port(), out, args),
            nprocs=world,
            join=True,
            start_method="spawn",
        )
        return json.loads(Path(out, "result.json").read_text())


def _per_sample(result: dict[str, Any], key: str) -> float:
    value = result[key] if key == "seconds" else max(result[key])
    return value / result["samples"]


def _speed_up(rounds: list[Any], base: Any, config: Any, workload: str, key: str) -> float:
    """Median over rounds of (per-sample time of ``base``) / (that of ``config``)."""
    return statistics.median(
        _per_sample(r[base][workload], key) / _per_sample(r[config][workload], key) for r in rounds
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", choices=sorted(ENCODERS), default="paper")
    parser.add_argument("--num", type=int, default=2048, help="simulations for training")
    parser.add_argument("--sims", type=int, default=200_000, help="simulations, throughput")
    parser.add_argument("--batch-size", type=int, default=256, help="global batch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results")
    parser.add_argument(
        "--with-two-threads",
        action="store_true",
        help="also run 1 process with 2 intra-op threads (intra-op parallelism for comparison)",
    )
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    configs = [(1, 1), (2, 1)]  # (processes, threads per process)
    if args.with_two_threads:
        configs.append((1, 2))
    rounds: list[dict[tuple[int, int], dict[str, Any]]] = []
    for r in range(args.rounds):
        results = {}
        for world, threads in configs:
            started = time.perf_counter()
            results[(world, threads)] = _run(world, threads, args)
            print(
                f"round {r + 1}: {world} process(es) x {threads} thread(s): "
                f"{time.perf_counter() - started:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        rounds.append(results)

    print(f"`{shlex.join([Path(sys.executable).name, *sys.argv])}`\n")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__}, gloo; encoder {args.encoder} {ENCODERS[args.encoder]}, "
        f"global batch {args.batch_size}, {args.num} simulations, median of {args.rounds} "
        f"rounds; 1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n"
    )
    print(
        "| workload | processes x threads | wall s | samples/s | wall us/sample | wall speed-up "
        "| CPU s, busiest rank | CPU speed-up | CPU s, all ranks / 1 process |"
    )
    print("|---|---|---|---|---|---|---|---|---|")

    for workload in rounds[0][configs[0]]:
        for config in configs:
            seconds = statistics.median(r[config][workload]["seconds"] for r in rounds)
            samples = rounds[0][config][workload]["samples"]
            busiest = statistics.median(max(r[config][workload]["cpu"]) for r in rounds)
            wall_ratio = _speed_up(rounds, configs[0], config, workload, "seconds")
            cpu_ratio = _speed_up(rounds, configs[0], config, workload, "cpu")
            overhead = statistics.median(
                sum(r[config][workload]["cpu"])
                / r[config][workload]["samples"]
                / (sum(r[configs[0]][workload]["cpu"]) / r[configs[0]][workload]["samples"])
                for r in rounds
            )
            print(
                f"| {workload} | {config[0]} x {config[1]} | {seconds:.2f} | "
                f"{samples / seconds:.0f} | {1e6 * seconds / samples:.1f} | "
                f"{wall_ratio:.2f} | {busiest:.2f} | {cpu_ratio:.2f} | {overhead:.2f} |"
            )
    print()
    for config in configs:
        setup = statistics.median(r[config]["pretraining epoch"]["setup_seconds"] for r in rounds)
        loading = statistics.median(
            r[config]["Embed & Emulate epoch"]["loading_seconds"] for r in rounds
        )
        samples = rounds[0][config]["Embed & Emulate epoch"]["samples"]
        print(
            f"- {config[0]} x {config[1]}: pretraining set-up {setup:.2f} s; E&E data loading "
            f"alone {loading:.3f} s per epoch ({1e6 * loading / samples:.1f} us/sample)"
        )
    if args.json is not None:
        raw = [{f"{w}x{t}": v for (w, t), v in r.items()} for r in rounds]
        args.json.write_text(json.dumps({"args": vars(args) | {"json": None}, "rounds": raw}))


if __name__ == "__main__":
    main()
