"""Does warming the flow on the frozen summary before fine-tuning help symmetry NPE? (It did not.)

Issue 11 lists "warm the flow on the frozen summary, then unfreeze at a lower learning rate" as a
lever. This script runs one ``sbi-symmetry run`` (symmetry NPE only, fast preset, 10
observations, exact references, SBC on 200 pairs) in which sbi's ``NPE.train`` is called twice on
one trainer: first with the pretrained embedding frozen (``freeze="all"``) until early stopping
or the epoch cap, then, resuming the same trainer (same train/validation split, same flow
optimiser state), with the embedding unfrozen and its learning rate multiplied by ``--factor``
(the flow keeps the preset's rate), for up to the cap again. It prints one JSON line: mean C2ST,
mean and largest posterior std over the reference's, calibration, epochs of both phases, wall
time. Compare with the single-phase rows of ``results/fast_encoder_seeds.md`` (same task, seed
and encoder). Touches sbi 0.27 trainer internals (``_neural_net``, ``optimizer``, early-stopping
counters), which is why it is a benchmark and not a package option.

    .venv/bin/python benchmarks/npe_warm_start.py --task sine-gaussian --seed 1 --encoder wide
    .venv/bin/python benchmarks/npe_warm_start.py --task damped-oscillator --seed 1 \\
        --encoder narrow --factor 1.0
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sbi.inference import NPE
from torch import Tensor
from torch.optim import Adam

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _levers import variant_config

import sbi_symmetry.workflow.methods as M
from sbi_symmetry._sbi_compat import NullTracker, restart_patience
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
from sbi_symmetry.workflow import pipeline

ENCODERS = {"narrow": {"channels": 6, "num_blocks": 1}, "wide": {"channels": 16, "num_blocks": 2}}
_single_phase = M._npe


def _unfreeze(
    trainer: Any, embedding: SymmetryEmbedding, mode: str, lr: float, factor: float
) -> None:
    """Unfreeze ``embedding`` and give it ``lr * factor``; the flow keeps ``lr`` and its state."""
    embedding.freeze = mode
    own = {id(p) for p in embedding.parameters()}
    flow = [p for p in trainer._neural_net.parameters() if id(p) not in own]
    mine = list(embedding.parameters())
    groups = [{"params": flow, "lr": lr}, {"params": mine, "lr": lr * factor}]
    optimizer = Adam(groups)
    for p in flow:
        if p in trainer.optimizer.state:
            optimizer.state[p] = trainer.optimizer.state[p]
    trainer.optimizer = optimizer
    restart_patience(trainer)  # the shim train_npe uses too
    trainer._val_loss = float("inf")


def two_phase_npe(factor: float, frozen_epochs: int | None = None) -> Any:
    """A drop-in for ``methods._npe`` that trains symmetry NPE in two phases.

    ``frozen_epochs`` caps the first phase (default: the preset's cap, i.e. early stopping);
    ``1`` gives the embedding its own rate almost from the start.
    """

    def _npe(
        name: str,
        task: Any,
        theta: Tensor,
        x: Tensor,
        builder: Any,
        show: bool,
        train_kwargs: dict[str, Any],
        frozen: Any = None,
        checkpoint: Any = None,  # progress saves: only inside a pipeline run, not here
        **finish: Any,
    ) -> M.TrainedMethod:
        if name != "symmetry_npe":
            args = (name, task, theta, x, builder, show, train_kwargs)
            return _single_phase(*args, checkpoint=checkpoint, **finish)
        if frozen is not None:
            raise ValueError("this script runs its own frozen phase: leave frozen_epochs at 0")
        embedding = finish["extra"]["embedding"]
        trainer = NPE(
            task.prior, density_estimator=builder, tracker=NullTracker(), show_progress_bars=show
        )
        kwargs = M._train_kwargs(train_kwargs)
        start = time.perf_counter()
        mode, embedding.freeze = embedding.freeze, "all"
        frozen = {"max_num_epochs": frozen_epochs} if frozen_epochs else {}
        trainer.append_simulations(theta, x).train(**{**kwargs, **frozen})
        first = trainer.epoch
        inside = [m for m in trainer._neural_net.modules() if isinstance(m, SymmetryEmbedding)]
        assert inside and inside[0] is embedding, "sbi trains a copy of the embedding"
        _unfreeze(trainer, embedding, mode, kwargs.get("learning_rate", 5e-4), factor)
        best_frozen = trainer._best_val_loss
        cap = first + kwargs["max_num_epochs"]
        estimator = trainer.train(**{**kwargs, "resume_training": True, "max_num_epochs": cap})
        print(
            f"\nfrozen phase: {first} epochs, best validation loss {best_frozen:.4f}; "
            f"after fine-tuning: {trainer.epoch} epochs, {trainer._best_val_loss:.4f}"
        )
        seconds = time.perf_counter() - start
        posterior = trainer.build_posterior(estimator)
        return M._finish(name, trainer, estimator, seconds, theta, x, posterior, **finish)

    return _npe


def main(argv: list[str] | None = None) -> None:
    """Run once with the two-phase training and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="damped-oscillator")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--encoder", choices=list(ENCODERS), default="narrow")
    parser.add_argument("--factor", type=float, default=0.1, help="embedding's LR multiplier")
    parser.add_argument("--frozen-epochs", type=int, default=None, help="first phase's cap")
    parser.add_argument("--flow-hidden", type=int, default=None, help="MAF hidden units")
    args = parser.parse_args(argv)
    M._npe = two_phase_npe(args.factor, args.frozen_epochs)
    changes = {
        "workers": 1,  # the patch above lives in this process, not in spawned workers
        "seed": args.seed,
        "encoder": ENCODERS[args.encoder],
        "npe_train": {"max_num_epochs": 150},
    }
    if args.flow_hidden:
        changes["flow"] = {"hidden_features": args.flow_hidden}
    cfg = variant_config(args.task, 10, ("symmetry_npe",), changes)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        metrics = pipeline.run(cfg, Path(folder) / "run", show_progress=False)
    entry = metrics["methods"]["symmetry_npe"]
    per_obs = entry["std_over_reference"]
    line = {
        **vars(args),
        "c2st": entry["c2st"]["mean"],
        "std_over_reference": [sum(c) / len(c) for c in zip(*per_obs, strict=True)],
        "largest": max(max(o) for o in per_obs),
        "calibration": entry.get("calibration"),
        "epochs": entry["costs"]["epochs"],
        "seconds": time.perf_counter() - start,
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
