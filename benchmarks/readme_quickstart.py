"""The README's Python quick start, copied as written: how long it takes and how accurate it is.

Runs the code blocks of the README's "Quick start (Python)" section exactly as printed (first the
symmetry-NPE block, then the Embed-and-Emulate block, which reuses its ``task``, ``theta``, ``x``
and ``x_o``), timing each, then judges each posterior on ``--observations`` fresh observations
drawn from the prior and nuisance prior: sbi's C2ST against the exact shift-marginalised
reference and posterior std over the reference's. Prints a table and writes it, with the command,
to ``--out`` (default ``benchmarks/results/readme_quickstart.md``).
``--pretrain-kwargs`` adds keyword arguments to the symmetry-NPE block's ``pretrain_vicreg``
call (a variant of the block, named as such in the table), e.g.
``--pretrain-kwargs "theta=theta, supervised_weight=10"``.

    .venv/bin/python benchmarks/readme_quickstart.py --observations 10
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _common import c2st_scores, command_line, platform_stamp, reference_samples, table, write_text

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = ("symmetry NPE", "Embed and Emulate")


def quickstart_blocks(readme: Path = README) -> list[str]:
    """The Python code blocks of the README's "Quick start (Python)" section, in order."""
    text = readme.read_text()
    section = text.split("## Quick start (Python)", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def with_pretrain_kwargs(block: str, kwargs: str) -> str:
    """``block`` with ``kwargs`` (source text) added to its one ``pretrain_vicreg(...)`` call.

    Example:
        >>> with_pretrain_kwargs("e = pretrain_vicreg(enc, views, x=x)", "theta=theta")
        'e = pretrain_vicreg(enc, views, x=x, theta=theta)'
    """
    head, found, tail = block.partition("pretrain_vicreg(")
    if not found or "pretrain_vicreg(" in tail:
        raise ValueError("expected one `pretrain_vicreg(` call in the quick-start block")
    depth = 1
    for i, char in enumerate(tail):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return f"{head}{found}{tail[:i]}, {kwargs}{tail[i:]}"
    raise ValueError("unbalanced parentheses in the quick-start block's `pretrain_vicreg(` call")


def _judge(
    namespace: dict[str, Any], posterior: Any, observations: int, seed: int, cache: str
) -> dict[str, Any]:
    task = namespace["task"]
    generator = torch.Generator().manual_seed(10_000 + seed)
    _, x_obs = task.sample_joint(observations, generator=generator)
    seeds = list(range(observations))
    refs, _ = reference_samples(task, x_obs, 2_000, seeds, cache)
    samples = []
    for i in range(observations):
        torch.manual_seed(seed + i)
        samples.append(posterior.sample((2_000,), x=x_obs[i : i + 1], show_progress_bars=False))
    scores = c2st_scores(samples, refs, None, seeds)
    ratios = torch.stack([s.std(0) / r.std(0) for s, r in zip(samples, refs, strict=True)])
    return {"c2st": scores, "std_ratio": ratios}


def main(argv: list[str] | None = None) -> None:
    """Run the quick start, judge it, write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/readme_quickstart.md"))
    parser.add_argument(
        "--pretrain-kwargs", default="", help="source text added to the first block's call"
    )
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    blocks = quickstart_blocks()
    assert len(blocks) == len(BLOCKS), f"expected {len(BLOCKS)} quick-start blocks in README.md"
    if args.pretrain_kwargs:
        blocks[0] = with_pretrain_kwargs(blocks[0], args.pretrain_kwargs)
    # The blocks run as printed, so sbi writes its ./sbi-logs: run them in a scratch folder,
    # and come back before it is deleted (so a caller's folder is the same afterwards).
    home = Path.cwd()
    with tempfile.TemporaryDirectory() as cache:
        os.chdir(cache)
        try:
            rows = _run_blocks(blocks, args, cache)
        finally:
            os.chdir(home)
    text = [
        "# The README's quick start, copied as written",
        "",
        f"Script: `benchmarks/readme_quickstart.py`. Machine: {platform_stamp(sbi=True)}.",
        "",
        "    " + command_line("readme_quickstart.py", argv if argv is not None else sys.argv[1:]),
        "",
        f"Observations: {args.observations} drawn from the prior and the nuisance prior; C2ST "
        "(sbi's random forest, 2,000 samples each) against the exact reference; seconds: the "
        "quick-start block itself (simulation, pretraining, training, one sample set).",
        "",
        *table(HEADER, rows),
        "",
    ]
    write_text(args.out, "\n".join(text))


def _run_blocks(blocks: list[str], args: argparse.Namespace, cache: str) -> list[list[str]]:
    """Run each quick-start block as printed, judge its posterior; one table row per block."""
    namespace: dict[str, Any] = {}
    rows: list[list[str]] = []
    for name, code in zip(BLOCKS, blocks, strict=True):
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        exec(compile(code, f"README quick start ({name})", "exec"), namespace)
        seconds = time.perf_counter() - start
        posterior = (
            namespace["posterior"] if name == BLOCKS[1] else namespace["npe"].build_posterior()
        )
        result = _judge(namespace, posterior, args.observations, args.seed, cache)
        c2st = torch.tensor(result["c2st"])
        ratio = result["std_ratio"]
        variant = args.pretrain_kwargs if name == BLOCKS[0] else ""
        rows.append(
            [
                f"{name} ({variant})" if variant else name,
                f"{seconds:.0f}",
                f"{c2st.mean():.3f} ± {c2st.std() / len(c2st) ** 0.5:.3f}",
                ", ".join(f"{v:.2f}" for v in ratio.mean(0).tolist()),
                f"{ratio.max():.2f}",
            ]
        )
        print("\n".join(table(HEADER, rows)), flush=True)
    return rows


HEADER = ["block", "seconds", "C2ST (mean ± sem)", "std / reference (mean)", "largest"]

if __name__ == "__main__":
    main()
