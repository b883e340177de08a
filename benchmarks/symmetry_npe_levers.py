"""Which lever makes symmetry NPE accurate at an honest budget: an ablation on the fast preset.

Each variant is one ``sbi-symmetry run`` of the fast preset with named changes (see
``_levers.py``): 10 observations drawn from the prior, exact quadrature references, sbi's C2ST,
the same seed for every variant. Prints a Markdown table and writes it with the command to
``--out`` (default ``benchmarks/results/symmetry_npe_levers_<task>.md``).

    .venv/bin/python benchmarks/symmetry_npe_levers.py --task damped-oscillator
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _levers import Variants, main

VARIANTS: Variants = {
    "baselines (raw NPE, end-to-end NPE)": (("raw_npe", "end_to_end_npe"), {}),
    "resimulated views, frozen backbone": (
        ("symmetry_npe",),
        {
            "pretrain_views": "resimulated",
            "pretrain": {"freeze": "backbone", "fresh_views": True},  # as recorded
        },
    ),
    "shift views, frozen backbone": (
        ("symmetry_npe",),
        {"pretrain_views": "shift", "pretrain": {"freeze": "backbone"}},
    ),
    "shift views, fine-tuned": (
        ("symmetry_npe",),
        {"pretrain_views": "shift", "pretrain": {"freeze": "none"}},
    ),
    "resimulated views, fine-tuned": (
        ("symmetry_npe",),
        {
            "pretrain_views": "resimulated",
            "pretrain": {"freeze": "none", "fresh_views": True},  # as recorded
        },
    ),
    "wider encoder (16 channels, 2 blocks), trained to convergence": (
        ("symmetry_npe", "end_to_end_npe"),
        {
            "encoder": {"channels": 16, "num_blocks": 2},
            "npe_train": {"max_num_epochs": 400},
        },
    ),
}

if __name__ == "__main__":
    main("symmetry_npe_levers.py", "Symmetry NPE levers", VARIANTS)
