"""Training the run's methods side by side (``RunConfig.workers``) against one after another.

Two measurements in the same process, on the fast preset's damped oscillator:

1. **Threads**: a few epochs of symmetry NPE's network (fine-tuned through the embedding) with 1
   and with 2 torch threads, alone, then twice at once in two one-thread processes: do the
   preset's small networks use a second core, or is it better spent on a second method?
2. **The run's training stage**: :func:`sbi_symmetry.workflow.stages.train_methods` for the NPE
   methods (symmetry NPE, NPE on raw data, the end-to-end baseline) on one training set, with
   ``workers=1`` (in turn, in this process, with every thread) and ``workers=0`` (the default:
   one process per thread). Prints wall times, the speed-up, and each method's epochs and best
   validation loss in both runs (the same up to floating-point summation order: the streams
   are the same, the thread counts are not).

    .venv/bin/python benchmarks/parallel_training.py
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time

import torch

from sbi_symmetry.tasks import DampedOscillator
from sbi_symmetry.workflow import stages
from sbi_symmetry.workflow.config import RunConfig
from sbi_symmetry.workflow.parallel import resolve_workers

_EPOCHS = """
import sys, time, torch, warnings
warnings.filterwarnings("ignore")
from sbi.inference import NPE
from sbi_symmetry._sbi_compat import NullTracker
from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
from sbi_symmetry.tasks import DampedOscillator
from sbi_symmetry.workflow.config import RunConfig
torch.set_num_threads(int(sys.argv[1])); torch.manual_seed(0)
cfg = RunConfig.from_preset("damped-oscillator", "fast")
task = DampedOscillator()
theta, x = task.sample_joint(int(sys.argv[2]))
emb = SymmetryEmbedding(ConvEncoder1D.for_task(task, **cfg.encoder), freeze="none")
npe = NPE(task.prior, density_estimator=emb.posterior_nn("maf", **cfg.flow),
          tracker=NullTracker(), show_progress_bars=False).append_simulations(theta, x)
npe.train(max_num_epochs=1, stop_after_epochs=100, training_batch_size=200)  # warm-up
start = time.perf_counter()
npe.train(max_num_epochs=6, stop_after_epochs=100, training_batch_size=200, resume_training=True)
print(f"{(time.perf_counter() - start) / 5:.3f}")
"""


def seconds_per_epoch(threads: int, simulations: int, copies: int = 1) -> list[float]:
    """Seconds per epoch of symmetry NPE's network, ``copies`` processes at once."""
    command = [sys.executable, "-c", _EPOCHS, str(threads), str(simulations)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    return [float(p.communicate()[0].split()[-1]) for p in procs]


def train_stage(cfg: RunConfig, simulations: int) -> tuple[float, dict[str, tuple[int, float]]]:
    """Wall time of the NPE training stage, and each method's epochs and best validation loss."""
    task = DampedOscillator()
    theta, x = task.sample_joint(simulations, generator=torch.Generator().manual_seed(0))
    sims = stages.Simulations(theta, x, *[torch.zeros(1)] * 5)
    torch.manual_seed(0)
    ctx = stages.training_context(task, sims, cfg, show_progress=False)
    start = time.perf_counter()
    trained = stages.train_methods(ctx, "npe")
    wall = time.perf_counter() - start
    return wall, {n: (m.epochs, min(m.history["validation"])) for n, m in trained.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=10_000)
    parser.add_argument("--skip-threads", action="store_true", help="only the training stage")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    print(
        f"{os.cpu_count()} cores, {threads} torch threads, load {os.getloadavg()[0]:.2f}, "
        f"{args.simulations} training simulations"
    )
    if not args.skip_threads:
        one, two = seconds_per_epoch(1, args.simulations), seconds_per_epoch(2, args.simulations)
        pair = seconds_per_epoch(1, args.simulations, copies=2)
        print("\n| symmetry NPE network | s/epoch |\n|---|---|")
        print(f"| 1 thread | {one[0]:.2f} |\n| 2 threads | {two[0]:.2f} |")
        print(f"| 1 thread, two processes at once | {pair[0]:.2f}, {pair[1]:.2f} |", flush=True)
    cfg = RunConfig.from_preset("damped-oscillator", "fast", num_simulations=args.simulations)
    cfg = dataclasses.replace(cfg, methods=("symmetry_npe", "raw_npe", "end_to_end_npe"))
    runs = {w: train_stage(dataclasses.replace(cfg, workers=w), args.simulations) for w in (1, 0)}
    print("\n| workers | NPE training stage s | epochs, best validation loss per method |")
    print("|---|---|---|")
    for workers, (wall, methods) in runs.items():
        used = resolve_workers(workers, len(cfg.methods), cfg.device)
        cells = "; ".join(f"{n} {e}, {v:.4f}" for n, (e, v) in methods.items())
        print(f"| {workers} ({used} at once) | {wall:.0f} | {cells} |")
    print(f"\nspeed-up of the default over training in turn: {runs[1][0] / runs[0][0]:.2f}x")


if __name__ == "__main__":
    main()
