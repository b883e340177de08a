"""NPE training time per epoch with a frozen encoder: through the embedding vs cached features.

For the paper-size encoder (20 channels, 4 blocks, kernel 21) and the fast preset's encoder, on
the damped oscillator, trains sbi's NPE twice from the same seed and the same (untrained, frozen)
embedding: once through the embedding (the convolutions run on every training ``x`` every epoch)
and once with :func:`sbi_symmetry.symmetry.cached.cached_npe` (each ``x`` encoded once). Prints
the seconds per epoch (sbi's own epoch timer), the one-off encoding time, the validation losses
of both runs (they should agree to float tolerance: same maths), and the speed-up, in the same
process. The embedding is left at its initial weights: the cost does not depend on them.
``--freeze backbone`` leaves the encoder's head MLP trainable: it then trains with the flow in
both runs, on the pooled backbone features in the cached one.

    .venv/bin/python benchmarks/cached_features.py [--freeze backbone]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import torch
from sbi.inference import NPE

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however loaded

from plans import preset

from sbi_symmetry._sbi_compat import NullTracker, training_summary
from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.symmetry.cached import cached_npe
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
from sbi_symmetry.tasks import DampedOscillator

ENCODERS = {
    "paper (20 ch, 4 blocks, k21)": {"output_dim": 3},
    "fast preset": preset("damped-oscillator").encoder,  # as recorded: 6 channels, 1 block
}


def _through(prior, emb, theta, x, settings):
    emb = copy.deepcopy(emb)  # sbi trains a trainable head in place; the cached run needs it fresh
    torch.manual_seed(0)
    trainer = NPE(
        prior,
        density_estimator=emb.posterior_nn("maf"),
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    trainer.append_simulations(theta, x).train(**settings)
    return training_summary(trainer)


def _cached(prior, emb, theta, x, settings):
    torch.manual_seed(0)
    start = time.perf_counter()
    trainer, _ = cached_npe(prior, emb, theta, x, show_progress_bars=False, **settings)
    total = time.perf_counter() - start
    summary = training_summary(trainer)
    return summary, total - sum(summary["epoch_durations_sec"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=5_000)
    parser.add_argument("--epochs", type=int, default=3, help="sbi runs epochs + 1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--freeze",
        choices=("all", "backbone"),
        default="all",
        help="what is frozen: the whole embedding, or the backbone (the head trains)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, {args.threads} threads, "
        f"{args.simulations} simulations, max_num_epochs={args.epochs}, freeze={args.freeze!r}"
    )
    task = DampedOscillator()
    theta, x = task.sample_joint(args.simulations, generator=torch.Generator().manual_seed(0))
    settings = {
        "max_num_epochs": args.epochs,
        "training_batch_size": 200,
        "stop_after_epochs": 10_000,
    }
    print(
        "| encoder | s/epoch through the embedding | s/epoch on cached features | "
        "speed-up | one-off encoding s | last validation loss (through, cached) |"
    )
    print("|---|---|---|---|---|---|")
    for name, kwargs in ENCODERS.items():
        torch.manual_seed(1)
        encoder = ConvEncoder1D.for_task(task, **kwargs)
        emb = SymmetryEmbedding(encoder, freeze=args.freeze)
        a = _through(task.prior, emb, theta, x, settings)
        b, encode_s = _cached(task.prior, emb, theta, x, settings)
        per_a = sum(a["epoch_durations_sec"]) / len(a["epoch_durations_sec"])
        per_b = sum(b["epoch_durations_sec"]) / len(b["epoch_durations_sec"])
        print(
            f"| {name} | {per_a:.2f} | {per_b:.2f} | {per_a / per_b:.1f}x | {encode_s:.1f} | "
            f"{a['validation_loss'][-1]:.4f}, {b['validation_loss'][-1]:.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
