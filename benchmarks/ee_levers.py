"""What limits Embed and Emulate's sharpness at 10^4 simulations: an ablation on the fast preset.

Each variant is one ``sbi-symmetry run`` of the fast preset with only Embed and Emulate and the
named changes (see ``_levers.py``): 10 observations drawn from the prior, exact quadrature
references, sbi's C2ST, the same seed (training set, observations, initial towers) for every
variant. The levers: the temperature (fixed at 0.15, which caps every log-ratio at +-1/0.15 with
cosine similarity, or learned), the similarity (cosine or an unbounded dot product), the latent
width, the encoder's width, the number of negatives (the batch size, or extra prior draws),
the emulator's size and the training length.
Prints a Markdown table and writes it with the command to ``--out`` (default
``benchmarks/results/ee_levers_<task>.md``).

    .venv/bin/python benchmarks/ee_levers.py --task damped-oscillator
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _levers import Variants, main
from plans import LARGE_EMULATOR

_EE = ("embed_emulate",)
_FIXED = {"learn_temperature": False}
_LEARNED = {"learn_temperature": True}
_CAP = {"max_num_epochs": 150}  # the fast preset's cap before these measurements
_LONG = {"max_num_epochs": 600}  # early stopping (20 epochs without improvement) ends it

#: Every variant names its temperature mode and epoch cap, so the table does not depend on the
#: preset's current defaults (learned temperature and 600 epochs since these measurements).
VARIANTS: Variants = {
    "cosine, fixed T = 0.15": (_EE, {"ee": _FIXED, "ee_train": _CAP}),
    "cosine, learned T": (_EE, {"ee": _LEARNED, "ee_train": _CAP}),
    "dot product, fixed T = 0.15": (_EE, {"ee": {**_FIXED, "similarity": "dot"}, "ee_train": _CAP}),
    "cosine, learned T, 64-d latent": (
        _EE,
        {"ee": _LEARNED, "ee_encoder": {"output_dim": 64}, "ee_train": _CAP},
    ),
    "cosine, learned T, batch 500": (
        _EE,
        {"ee": _LEARNED, "ee_train": {**_CAP, "training_batch_size": 500}},
    ),
    "cosine, learned T, up to 600 epochs": (_EE, {"ee": _LEARNED, "ee_train": _LONG}),
    "cosine, learned T, 64-d latent, up to 600 epochs": (
        _EE,
        {"ee": _LEARNED, "ee_encoder": {"output_dim": 64}, "ee_train": _LONG},
    ),
    # extra prior draws as candidates of every x -> theta softmax (no simulator call)
    **{
        f"cosine, learned T, up to 600 epochs, {k} prior negatives": (
            _EE,
            {"ee": {**_LEARNED, "prior_negatives": k}, "ee_train": _LONG},
        )
        for k in (1024, 4096)
    },
    "cosine, learned T, wider encoder (16 channels, 2 blocks), up to 600 epochs": (
        _EE,
        {"ee": _LEARNED, "ee_encoder": {"channels": 16, "num_blocks": 2}, "ee_train": _LONG},
    ),
    # a larger emulator g(theta) (the other variants keep EmbedEmulate's default, 64 wide with
    # 2 blocks, plans.RECORDED_EE; this size is the fast preset's since)
    "cosine, learned T, up to 600 epochs, emulator 128 wide, 3 blocks": (
        _EE,
        {"ee": {**_LEARNED, "emulator_kwargs": LARGE_EMULATOR}, "ee_train": _LONG},
    ),
    "cosine, learned T, wider encoder (16 channels, 2 blocks), up to 600 epochs, emulator 128 "
    "wide, 3 blocks": (
        _EE,
        {
            "ee": {**_LEARNED, "emulator_kwargs": LARGE_EMULATOR},
            "ee_encoder": {"channels": 16, "num_blocks": 2},
            "ee_train": _LONG,
        },
    ),
}

if __name__ == "__main__":
    main("ee_levers.py", "Embed and Emulate levers", VARIANTS)
