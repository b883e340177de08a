"""Execute a tutorial (a jupytext "percent" script) and write a Markdown rendering with outputs.

The tutorials are plain Python files in the jupytext percent format: ``# %%`` starts a code cell
and ``# %% [markdown]`` a Markdown cell (its lines are comments). They open in Jupyter through
jupytext and run as scripts with ``python tutorials/01_....py``. This renderer runs the cells in
order in one namespace, captures what each prints, saves every matplotlib figure a cell creates
as a PNG next to the Markdown, and writes ``rendered/<name>.md``.

Usage::

    python tutorials/render.py tutorials/01_symmetry_embedding.py            # full size
    SBI_SYMMETRY_FAST=1 python tutorials/render.py tutorials/01_*.py --out /tmp/r

Nothing is written outside ``--out`` (default ``tutorials/rendered``); an existing rendering of the
same tutorial is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import time
from pathlib import Path

from matplotlib.figure import Figure

_CELL = re.compile(r"^# %%(.*)$")
_SBI_CONVERGED = re.compile(r"\r ?(Neural network successfully converged after \d+ epochs\.)")


def split_cells(source: str) -> list[tuple[str, str]]:
    """Split a percent-format script into ``(kind, text)`` cells, kind ``"code"``/``"markdown"``.

    Args:
        source: The script's text.

    Returns:
        The cells in order; text before the first marker is a code cell.
    """
    cells: list[tuple[str, list[str]]] = [("code", [])]
    for line in source.splitlines():
        match = _CELL.match(line)
        if match:
            kind = "markdown" if "[markdown]" in match.group(1) else "code"
            cells.append((kind, []))
        else:
            cells[-1][1].append(line)
    out = []
    for kind, lines in cells:
        text = "\n".join(lines).strip("\n")
        if kind == "markdown":
            text = "\n".join(re.sub(r"^# ?", "", line) for line in text.splitlines())
        if text.strip():
            out.append((kind, text))
    return out


def render(script: Path, out_dir: Path, overwrite: bool = False) -> Path:
    """Run ``script`` cell by cell and write its Markdown rendering into ``out_dir``.

    Args:
        script: Path of the tutorial.
        out_dir: Folder for ``<name>.md`` and ``<name>_figN.png``.
        overwrite: Replace an existing rendering of this tutorial.

    Returns:
        Path of the Markdown file.
    """
    name = script.stem
    target = out_dir / f"{name}.md"
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it.")
    out_dir.mkdir(parents=True, exist_ok=True)
    namespace: dict[str, object] = {"__name__": "__main__", "__file__": str(script)}
    seen: set[int] = set()
    parts: list[str] = []
    figures = 0
    start = time.perf_counter()
    for kind, text in split_cells(script.read_text()):
        if kind == "markdown":
            parts.append(text)
            continue
        parts.append(f"```python\n{text}\n```")
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(text, str(script), "exec"), namespace)  # runs our own tutorial
        # sbi ends training with "\r Neural network successfully converged ..." and no newline;
        # give that message a line of its own so the next print does not run into it.
        printed = _SBI_CONVERGED.sub(r"\1\n", buffer.getvalue()).rstrip()
        if printed:
            parts.append(f"```text\n{printed}\n```")
        for value in list(namespace.values()):
            if isinstance(value, Figure) and id(value) not in seen:
                seen.add(id(value))
                figures += 1
                png = out_dir / f"{name}_fig{figures}.png"
                value.savefig(png, dpi=90, bbox_inches="tight")
                parts.append(f"![figure {figures}]({png.name})")
    took = time.perf_counter() - start
    mode = "fast mode (SBI_SYMMETRY_FAST=1)" if os.environ.get("SBI_SYMMETRY_FAST") else "full"
    command = f"python tutorials/render.py {script.as_posix()}"
    footer = f"*Rendered by `{command}` in {mode}: {took:.0f} s.*"
    target.write_text("\n\n".join([*parts, footer]) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scripts", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "rendered")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    for script in args.scripts:
        print(render(script, args.out, overwrite=args.overwrite))
    return 0


if __name__ == "__main__":
    sys.exit(main())
