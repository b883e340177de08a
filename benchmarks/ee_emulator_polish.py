"""Retrain only Embed and Emulate's emulator, on its frozen data summary: which loss sharpens it?

For a finished ``sbi-symmetry run`` folder with a trained Embed and Emulate, encode the run's
training set once with the trained data tower (``f(x)``, cached), then train the emulator and
the temperature further on the cached summaries, with early stopping on a 10% validation split
(patience 30 epochs, batch 200, Adam). The loss is one of

* ``symmetric``: the training loss (symmetric InfoNCE, :mod:`sbi_symmetry.losses.infonce`);
* ``row``: its ``x -> theta`` half only (NRE-B's classification with the batch as candidates);
* either, plus ``--local K`` neighbours of each true parameter (:mod:`sbi_symmetry.losses.local`).

Both posteriors (before and after) are sampled with the run's ``TwoTowerPosterior`` and scored
against the run's exact references, and checked for calibration (SBC KS p-values and the largest
coverage error on the run's first 100 calibration pairs, 200 posterior samples each, as the run
itself checks Embed and Emulate). No simulation; the encoder never runs again after the cache,
so a polish takes seconds.

    .venv/bin/python benchmarks/ee_emulator_polish.py RUN_FOLDER --loss row
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ee_summary_check import score

from sbi_symmetry.evaluation import calibrate
from sbi_symmetry.losses.infonce import symmetric_infonce
from sbi_symmetry.losses.local import local_candidates, local_contrastive, prior_log_prob
from sbi_symmetry.tasks import get_task
from sbi_symmetry.workflow.checkpoints import STAGES_DIR
from sbi_symmetry.workflow.saved import load_posterior
from sbi_symmetry.workflow.stages import reference_samples


def polish(run: Path, loss: str, local: int, learning_rate: float) -> None:
    """Print the scores before and after retraining the emulator of ``run``."""
    torch.manual_seed(0)
    stages = run / STAGES_DIR
    sims = torch.load(stages / "simulate.pt", weights_only=False)["value"]
    refs = [
        reference_samples(r)
        for r in torch.load(stages / "references.pt", weights_only=False)["value"]
    ]
    prior = get_task(json.loads((run / "config.json").read_text())["task"]).prior
    post = load_posterior(run / "posteriors" / "embed_emulate.pt")
    est = post.estimator.eval()

    def scored() -> str:
        est.clear_cache()
        with torch.random.fork_rng():
            torch.manual_seed(1)
            got = [post.sample((2000,), x=x[None], show_progress_bars=False) for x in sims.x_o]
        s = score(got, refs)
        widths = ", ".join(f"{v:.2f}" for v in s["std_mean"])
        cal = calibrate(
            post, prior, sims.theta_cal[:100], sims.x_cal[:100], num_posterior_samples=200
        )
        ks = ", ".join(f"{p:.3f}" for p in cal.ks_pvals)
        return (
            f"C2ST {s['c2st']:.3f}, std / reference {widths} (largest {s['std_largest']:.2f}), "
            f"SBC KS p {ks}, coverage error {cal.max_coverage_error():.2f}"
        )

    print(f"{run}: before: {scored()}, T {float(est.temperature.detach()):.4f}")
    with torch.no_grad():
        f_x = torch.cat([est.encode(chunk) for chunk in sims.x.split(1000)])
    theta, order = sims.theta, torch.randperm(len(f_x))
    val, train = order[: len(f_x) // 10], order[len(f_x) // 10 :]

    def batch_loss(idx: Tensor) -> Tensor:
        g = est.emulate(theta[idx])
        if loss == "row":
            logits = f_x[idx] @ g.T / est.temperature
            out = torch.logsumexp(logits, 1) - logits.diagonal()
        else:
            out = symmetric_infonce(f_x[idx], g, est.temperature)
        if local:
            c, width = local_candidates(theta[idx], local, (0.02, 0.5), est.theta_scale)
            logits = (f_x[idx][:, None] * est.emulate(c)).sum(-1) / est.temperature
            out = out + local_contrastive(logits, c, prior_log_prob(prior, c), width)
        return out.mean()

    tower = est.embedding_net_theta
    opt = torch.optim.Adam([*tower.parameters(), est.log_temperature], lr=learning_rate)
    best, state, waited, start, epoch = float("inf"), None, 0, time.time(), 0
    while waited < 30:
        tower.train()
        for idx in train[torch.randperm(len(train))].split(200):
            if len(idx) > 1:
                opt.zero_grad()
                batch_loss(idx).backward()
                opt.step()
        tower.eval()
        with torch.no_grad():
            value = sum(float(batch_loss(i)) * len(i) for i in val.split(200)) / len(val)
        best, waited = (value, 0) if value < best - 1e-4 else (best, waited + 1)
        if waited == 0:
            state = copy.deepcopy((tower.state_dict(), est.log_temperature.detach().clone()))
        epoch += 1
    assert state is not None
    tower.load_state_dict(state[0])
    with torch.no_grad():
        est.log_temperature.copy_(state[1])
    seconds = time.time() - start
    print(
        f"{run}: after {epoch} epochs ({seconds:.0f} s, loss {loss}, local {local}): "
        f"{scored()}, T {float(est.temperature.detach()):.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--loss", choices=("symmetric", "row"), default="row")
    parser.add_argument("--local", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    args = parser.parse_args()
    for run in args.runs:
        polish(run, args.loss, args.local, args.learning_rate)


if __name__ == "__main__":
    main()
