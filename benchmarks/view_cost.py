"""Views that cost no simulations: VICReg pretraining on re-simulated vs noise-filled shift views.

On the damped oscillator, the workflow's ``fast`` preset encoder, expander and pretraining
settings (``RunConfig.from_preset("damped-oscillator", "fast")``), pretrained for the same number
of epochs on the same number of rows, from the same initial weights, three ways:

* ``resimulated``: ``task.views`` (``ResimulatedViews``): two simulator calls per pair, fresh
  views every epoch, from ``--simulations`` parameter draws;
* ``noise-filled shift``: ``shift_views(task)`` (``NoisyTimeShift``: integer shifts of up to
  half the shift prior's width, entering samples drawn from N(0, noise_std^2)) applied to a
  stored training set of ``--simulations`` simulations, fresh shifts every epoch;
* ``zero-filled shift``: ``AugmentedViews(TimeShift(max_shift))`` on the same stored set, the
  same shift range, zeros shifted in (what the noise fill replaces).

The task's ``simulate`` is wrapped in a counter, so every simulator call of a run is counted
(one per simulated row; the stored set's calls are listed apart: a training set is simulated
for the posterior anyway). Reported per run: calls, wall time, the run's own final and best
validation VICReg loss (each on its own kind of validation views), and, on one common held-out
bank of *re-simulated* view pairs (``--eval`` parameter draws, the symmetry the encoder should
learn), the VICReg loss with the run's expander, the invariance error
(``sbi_symmetry.symmetry.diagnostics.summary_invariance``: 0 perfect, about 2 none) and the
effective rank of the summaries; and the invariance error on two banks that separate the two
things the views differ in: two shifts with one shared noise draw, one shift with two noise
draws.

    nice -n 10 .venv/bin/python benchmarks/view_cost.py --epochs 40 120 --seeds 0 1  # ~7 min
    .venv/bin/python benchmarks/view_cost.py --quick --out /tmp/view_cost.md  # smoke run
"""

from __future__ import annotations

import argparse
import copy
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however loaded

from _common import command_line, platform_stamp, table, write_text
from plans import preset

from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.nets.heads import Expander
from sbi_symmetry.symmetry.diagnostics import collapse_statistics, summary_invariance
from sbi_symmetry.symmetry.pretrain import PretrainConfig, pretrain_vicreg
from sbi_symmetry.tasks import DampedOscillator
from sbi_symmetry.views import AugmentedViews, TimeShift, default_max_shift, shift_views

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "view_cost.md"
TASK = "damped-oscillator"
#: The views compared: re-simulated, noise-filled shifts, and zero-filled shifts (``TimeShift``,
#: the same range) as a check on what the noise fill changes.
KINDS = ("resimulated", "noise-filled shift", "zero-filled shift")


class CountingSimulator:
    """``task.simulate`` that counts simulated rows (one simulator call each)."""

    def __init__(self, simulate: Callable[..., Tensor]) -> None:
        self.simulate = simulate
        self.calls = 0

    def __call__(self, theta: Tensor, nuisance: Tensor | None = None, generator: Any = None):
        self.calls += theta.shape[0]
        return self.simulate(theta, nuisance, generator=generator)


Banks = dict[str, tuple[Tensor, Tensor]]


def common_banks(task: DampedOscillator, num: int) -> Banks:
    """Held-out view pairs shared by every run's evaluation (not counted).

    ``full``: two re-simulations (independent shift and noise, what ``ResimulatedViews``
    makes); ``shift``: two shifts, one shared noise draw; ``noise``: one shift, two noise draws.
    """
    g = torch.Generator().manual_seed(7_000)  # the same banks for every seed
    theta = task.sample_prior(num, generator=g)
    shifts = [task.sample_nuisance(num, generator=g) for _ in range(2)]
    noise = [task.noise_std * torch.randn(num, task.num_samples, generator=g) for _ in range(2)]
    signal = [task.signal(theta, s) for s in shifts]
    full = task.simulate(theta, generator=g), task.simulate(theta, generator=g)
    return {
        "full": full,
        "shift": (signal[0] + noise[0], signal[1] + noise[0]),
        "noise": (signal[0] + noise[0], signal[0] + noise[1]),
    }


def evaluate(
    embedding: nn.Module, expander: nn.Module, banks: Banks, cfg: PretrainConfig
) -> dict[str, float]:
    """VICReg loss (the run's expander), invariance errors and effective rank on ``banks``."""
    embedding.eval()
    expander.eval()
    out = {}
    with torch.no_grad():
        for name, (view_a, view_b) in banks.items():
            z_a, z_b = embedding(view_a), embedding(view_b)
            out[f"{name}_invariance_error"] = summary_invariance(z_a, z_b)
            if name == "full":
                terms = cfg.vicreg_loss()(expander(z_a), expander(z_b))
                out["common_vicreg"] = float(terms.total)
                out["common_effective_rank"] = collapse_statistics(z_a)["effective_rank"]
    return out


def run(
    kind: str,
    epochs: int,
    seed: int,
    task: DampedOscillator,
    settings: dict[str, Any],
    banks: Banks,
) -> dict[str, Any]:
    """One pretraining run; its simulator calls, wall time, losses and diagnostics."""
    counter = CountingSimulator(DampedOscillator.simulate.__get__(task))
    task.simulate = counter  # type: ignore[method-assign]  # task.views reads it
    num = settings["simulations"]
    stored_calls, inputs = 0, {}
    if kind != "resimulated":
        g = torch.Generator().manual_seed(seed + 1)
        inputs = {"x": task.simulate(task.sample_prior(num, generator=g), generator=g)}
        stored_calls, counter.calls = counter.calls, 0
        shift = TimeShift(default_max_shift(task))  # the same range, zeros shifted in
        views: Any = shift_views(task) if kind == "noise-filled shift" else AugmentedViews(shift)
    else:
        views = task.views
        inputs = {"prior": task.prior, "num_simulations": num}
    plan = preset(TASK)
    torch.manual_seed(seed)  # the same initial weights for every kind of views
    encoder = ConvEncoder1D.for_task(task, **plan.encoder)
    expander = Expander(encoder.output_dim, **plan.expander)
    pretrain = {**plan.pretrain, "max_epochs": epochs, "stop_after_epochs": epochs}
    pretrain["supervised_weight"] = 0.0  # VICReg alone: what the views' cost is compared on
    # fresh views every epoch for every kind (as recorded; re-simulated views default to a bank)
    cfg = PretrainConfig(**pretrain, seed=seed, fresh_views=True, show_progress_bar=False)
    start = time.perf_counter()
    embedding = pretrain_vicreg(encoder, views, expander=expander, config=cfg, **inputs)
    seconds = time.perf_counter() - start
    calls = counter.calls
    task.simulate = counter.simulate  # type: ignore[method-assign]
    h = embedding.history
    return {
        "views": kind,
        "seed": seed,
        "pretraining_calls": calls,
        "stored_calls": stored_calls,
        "seconds": seconds,
        "epochs": len(h["epoch"]),
        "final_val_vicreg": h["val_total"][-1],
        "best_val_vicreg": min(h["val_total"]),
        "final_val_invariance_error": h["val_invariance_error"][-1],
        **evaluate(copy.deepcopy(embedding), expander, banks, cfg),
    }


def results_table(rows: list[dict[str, Any]]) -> list[str]:
    """The markdown table of the runs."""
    header = [
        "views",
        "seed",
        "simulator calls in pretraining",
        "stored set (calls)",
        "wall time (s)",
        "epochs",
        "own val VICReg: final (best)",
        "common bank: VICReg",
        "invariance error: re-simulated pairs",
        "shift only (same noise)",
        "noise only (same shift)",
        "effective rank",
    ]
    body = [
        [
            r["views"],
            str(r["seed"]),
            f"{r['pretraining_calls']:,}",
            f"{r['stored_calls']:,}" if r["stored_calls"] else "-",
            f"{r['seconds']:.0f}",
            str(r["epochs"]),
            f"{r['final_val_vicreg']:.2f} ({r['best_val_vicreg']:.2f})",
            f"{r['common_vicreg']:.2f}",
            f"{r['full_invariance_error']:.3f}",
            f"{r['shift_invariance_error']:.3f}",
            f"{r['noise_invariance_error']:.3f}",
            f"{r['common_effective_rank']:.2f}",
        ]
        for r in rows
    ]
    return table(header, body)


def write_results(out: Path, command: str, settings: dict[str, Any], rows: list[dict]) -> None:
    """The results file: command, machine, settings, table, notes."""
    task = DampedOscillator()
    plan = preset(TASK)
    text = [
        "# Views that cost no simulations: re-simulated vs noise-filled shift views",
        "",
        f"Script: `benchmarks/view_cost.py` ({time.strftime('%Y-%m-%d')}). Machine: "
        f"{platform_stamp()}, {settings['threads']} torch thread(s), shared 2-core machine.",
        "",
        f"    nice -n 10 {command}",
        "",
        f"- Task: damped oscillator (L = {task.num_samples}, dt = {task.dt:.4f}, noise_std = "
        f"{task.noise_std}, shift ~ U{task.nuisance_low[0], task.nuisance_high[0]}).",
        f"- Encoder `ConvEncoder1D.for_task(task, **{plan.encoder})`, expander "
        f"`Expander(8, **{plan.expander})`, pretraining `{plan.pretrain}` with max_epochs = "
        f"stop_after_epochs = epochs (column); per seed the same "
        "initial weights for every kind of views.",
        f"- Rows: {settings['simulations']:,} in every run (parameter draws for re-simulation, "
        f"stored simulations for the shifts; 10% held out for validation). Shift views: "
        f"`shift_views(task)`, max_shift = {default_max_shift(task)} samples (half the shift "
        "prior's width); zero-filled shifts: `AugmentedViews(TimeShift(max_shift))`, the same "
        "range.",
        f"- Common banks: {settings['eval']:,} held-out parameter draws (not counted): two "
        "re-simulated views each (VICReg with the run's own trained expander, invariance error, "
        "effective rank); the same draws with two shifts and one shared noise draw (shift "
        "only), and with one shift and two noise draws (noise only).",
        "",
        *results_table(rows),
        "",
        "Simulator calls are simulated rows, counted by wrapping `task.simulate`. The stored set "
        "is the training set a posterior needs anyway; noise-filled views add no call to it.",
        "Each run's own validation loss is measured on its own kind of views (a fixed bank made "
        "before training), so the two are not directly comparable; the common-bank columns are.",
        "",
    ]
    write_text(out, "\n".join(text))


def parse(argv: list[str] | None) -> tuple[dict[str, Any], Path]:
    """Settings and results path from the flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--simulations", type=int, default=10_000)
    p.add_argument("--epochs", type=int, nargs="+", default=[preset(TASK).pretrain["max_epochs"]])
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--eval", type=int, default=2_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)
    settings = vars(a)
    if a.quick:
        settings.update(simulations=600, epochs=[2], eval=200)
    return settings, settings.pop("out")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run both pretraining runs, print the table, write the results file."""
    settings, out = parse(argv)
    torch.set_num_threads(settings["threads"])
    command = command_line("view_cost.py", argv if argv is not None else sys.argv[1:])
    task = DampedOscillator()
    banks = common_banks(task, settings["eval"])
    rows = []
    for seed, epochs in itertools.product(settings["seeds"], settings["epochs"]):
        for kind in settings["kinds"]:
            rows.append(run(kind, epochs, seed, task, settings, banks))
            print(f"{kind}: {rows[-1]}", flush=True)
    print("\n".join(results_table(rows)))
    write_results(out, command, settings, rows)
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
