"""Execute a tutorial (a jupytext "percent" script) and write its Markdown and notebook renderings.

The tutorials are plain Python files in the jupytext percent format: ``# %%`` starts a code cell
and ``# %% [markdown]`` a Markdown cell (its lines are comments). They open in Jupyter through
jupytext and run as scripts with ``python tutorials/01_....py``. This renderer runs the cells in
order in one namespace, captures what each prints and every matplotlib figure it creates, and
writes from that one execution

* ``rendered/<name>.md``, with the figures as ``<name>_figN.png`` next to it;
* ``rendered/<name>.ipynb``, an executed Jupyter notebook (nbformat 4): the script's cells with
  their printed output as ``stream`` outputs and their figures as ``image/png`` outputs.

The script stays the single source: the notebook is generated from it, so they cannot drift.

Usage::

    python tutorials/render.py tutorials/01_symmetry_embedding_npe.py        # full size
    SBI_SYMMETRY_FAST=1 python tutorials/render.py tutorials/01_*.py --out /tmp/r

Nothing is written outside ``--out`` (default ``tutorials/rendered``); an existing rendering of the
same tutorial is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from matplotlib.figure import Figure

_CELL = re.compile(r"^# %%(.*)$")
_SBI_CONVERGED = re.compile(r"\r ?(Neural network successfully converged after \d+ epochs\.)")
_DPI = 90

#: Notebook metadata: a plain Python 3 kernel.
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


class Cell(NamedTuple):
    """One executed cell of a tutorial (a named tuple: it loads by path, as the tests load it).

    Attributes:
        kind: ``"code"`` or ``"markdown"``.
        source: The cell's text (comment prefixes stripped for Markdown).
        stdout: What the cell printed (code cells only).
        figures: ``(PNG bytes, text description)`` of each figure the cell created, in order.
    """

    kind: str
    source: str
    stdout: str = ""
    figures: tuple[tuple[bytes, str], ...] = ()


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


def _png(figure: Figure) -> tuple[bytes, str]:
    """The figure as PNG bytes and its plain-text description (``<Figure size WxH ...>``)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue(), repr(figure)


def _new_figures(namespace: dict[str, Any], seen: set[int]) -> tuple[tuple[bytes, str], ...]:
    """PNGs of the figures in ``namespace`` not seen before (``seen`` is updated).

    Args:
        namespace: The tutorial's global names.
        seen: ``id`` of every figure already rendered.

    Returns:
        ``(png, text)`` of each new figure, in the namespace's order.
    """
    new = []
    for value in list(namespace.values()):
        if isinstance(value, Figure) and id(value) not in seen:
            seen.add(id(value))
            new.append(_png(value))
    return tuple(new)


def execute(script: Path) -> tuple[list[Cell], float]:
    """Run ``script`` cell by cell in one namespace, capturing prints and figures.

    Args:
        script: Path of the tutorial.

    Returns:
        The executed cells and the wall time in seconds.
    """
    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": str(script)}
    seen: set[int] = set()
    cells: list[Cell] = []
    source, position = script.read_text(), 0
    start = time.perf_counter()
    for kind, text in split_cells(source):
        if kind == "markdown":
            cells.append(Cell(kind, text))
            continue
        # Pad with the lines above the cell so tracebacks and warnings name the script's lines.
        position = source.index(text, position)
        code = "\n" * source.count("\n", 0, position) + text
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(code, str(script), "exec"), namespace)  # runs our own tutorial
        # sbi ends training with "\r Neural network successfully converged ..." and no newline;
        # give that message a line of its own so the next print does not run into it.
        printed = _SBI_CONVERGED.sub(r"\1\n", buffer.getvalue()).rstrip()
        cells.append(Cell(kind, text, printed, _new_figures(namespace, seen)))
    return cells, time.perf_counter() - start


def to_markdown(cells: list[Cell], name: str, footer: str) -> tuple[str, dict[str, bytes]]:
    """The Markdown rendering and its figure files.

    Args:
        cells: Executed cells.
        name: The tutorial's name; figures are ``<name>_figN.png``.
        footer: Last paragraph (how and how fast it was rendered).

    Returns:
        The Markdown text and ``{file name: PNG bytes}``.
    """
    parts: list[str] = []
    files: dict[str, bytes] = {}
    for cell in cells:
        if cell.kind == "markdown":
            parts.append(cell.source)
            continue
        parts.append(f"```python\n{cell.source}\n```")
        if cell.stdout:
            parts.append(f"```text\n{cell.stdout}\n```")
        for png, _ in cell.figures:
            files[f"{name}_fig{len(files) + 1}.png"] = png
            parts.append(f"![figure {len(files)}]({name}_fig{len(files)}.png)")
    return "\n\n".join([*parts, footer]) + "\n", files


def _lines(text: str) -> list[str]:
    """Text as a notebook's list of lines, each but the last ending in a newline."""
    return text.splitlines(keepends=True)


def _outputs(cell: Cell) -> list[dict[str, Any]]:
    """A code cell's notebook outputs: its stdout, then one ``display_data`` per figure."""
    outputs: list[dict[str, Any]] = []
    if cell.stdout:
        text = _lines(cell.stdout + "\n")
        outputs.append({"output_type": "stream", "name": "stdout", "text": text})
    for png, description in cell.figures:
        data = {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": [description]}
        outputs.append({"output_type": "display_data", "data": data, "metadata": {}})
    return outputs


def notebook_cell(cell: Cell, index: int, execution_count: int) -> dict[str, Any]:
    """One nbformat-4 cell.

    Args:
        cell: An executed cell.
        index: Its position in the notebook (for a stable cell id).
        execution_count: Its ``execution_count`` (code cells only).

    Returns:
        The cell as a JSON-able dictionary.
    """
    out: dict[str, Any] = {
        "cell_type": cell.kind,
        "id": f"cell-{index}",
        "metadata": {},
        "source": _lines(cell.source),
    }
    if cell.kind == "code":
        out["execution_count"] = execution_count
        out["outputs"] = _outputs(cell)
    return out


def to_notebook(cells: list[Cell], about: dict[str, Any]) -> dict[str, Any]:
    """The executed notebook (nbformat 4.5) of a tutorial.

    Args:
        cells: Executed cells.
        about: Facts stored in the notebook's metadata under ``"sbi_symmetry"`` (how it was
            rendered).

    Returns:
        The notebook as a JSON-able dictionary.
    """
    nb_cells: list[dict[str, Any]] = []
    count = 0
    for index, cell in enumerate(cells):
        count += cell.kind == "code"
        nb_cells.append(notebook_cell(cell, index, count))
    language_info = {
        "name": "python",
        "version": platform.python_version(),
        "mimetype": "text/x-python",
        "file_extension": ".py",
        "pygments_lexer": "ipython3",
        "codemirror_mode": {"name": "ipython", "version": 3},
        "nbconvert_exporter": "python",
    }
    metadata = {"kernelspec": KERNELSPEC, "language_info": language_info, "sbi_symmetry": about}
    return {"cells": nb_cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}


def render(script: Path, out_dir: Path, overwrite: bool = False) -> Path:
    """Run ``script`` once and write its Markdown and notebook renderings into ``out_dir``.

    Args:
        script: Path of the tutorial.
        out_dir: Folder for ``<name>.md``, ``<name>_figN.png`` and ``<name>.ipynb``.
        overwrite: Replace an existing rendering of this tutorial.

    Returns:
        Path of the Markdown file (the notebook is the same path with ``.ipynb``).
    """
    name = script.stem
    target, notebook = out_dir / f"{name}.md", out_dir / f"{name}.ipynb"
    for existing in (target, notebook):
        if existing.exists() and not overwrite:
            raise FileExistsError(f"{existing} exists; pass --overwrite to replace it.")
    cells, took = execute(script)
    mode = "fast mode (SBI_SYMMETRY_FAST=1)" if os.environ.get("SBI_SYMMETRY_FAST") else "full"
    command = f"python tutorials/render.py {script.as_posix()}"
    footer = (
        f"*Rendered by `{command}` in {mode}: {took:.0f} s. The same run as a Jupyter notebook, "
        f"with its outputs: [{name}.ipynb]({name}.ipynb).*"
    )
    text, figures = to_markdown(cells, name, footer)
    about = {"rendered_by": command, "mode": mode, "seconds": round(took, 1)}
    out_dir.mkdir(parents=True, exist_ok=True)
    for file_name, png in figures.items():
        (out_dir / file_name).write_bytes(png)
    target.write_text(text)
    payload = json.dumps(to_notebook(cells, about), indent=1, sort_keys=True, ensure_ascii=False)
    notebook.write_text(payload + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: Arguments (``sys.argv[1:]`` when omitted).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scripts", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "rendered")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    for script in args.scripts:
        target = render(script, args.out, overwrite=args.overwrite)
        print(target, target.with_suffix(".ipynb"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
