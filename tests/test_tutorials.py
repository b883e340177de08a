"""The tutorials run end to end in fast mode, so they cannot rot (CI runs the slow marker)."""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("[0-9][0-9]_*.py"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# A tiny tutorial: a Markdown cell, a code cell that prints, a code cell that makes a figure.
TINY = """# %% [markdown]
# # A tiny tutorial
#
# It prints, then plots.

# %%
x = 6 * 7
print("answer", x)

# %%
from matplotlib.figure import Figure

fig = Figure(figsize=(2, 2))
fig.subplots().plot([0, 1], [0, x])
"""


def _renderer():
    path = Path(__file__).parents[1] / "tutorials" / "render.py"
    spec = importlib.util.spec_from_file_location("tutorial_render", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _notebook(path: Path) -> dict:
    return json.loads(path.read_text())


def _text(source: str | list[str]) -> str:
    return source if isinstance(source, str) else "".join(source)


@pytest.fixture
def tiny(tmp_path):
    """A 3-cell tutorial in ``tmp_path/src`` and its rendering in ``tmp_path/out``."""
    script = tmp_path / "src" / "00_tiny.py"
    script.parent.mkdir()
    script.write_text(TINY)
    target = _renderer().render(script, tmp_path / "out")
    return script, target, _notebook(target.with_suffix(".ipynb"))


def test_there_are_four_tutorials():
    assert len(TUTORIALS) == 4


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_the_committed_renderings_show_the_current_scripts(script):
    """The docs' pages and notebooks were rendered from the scripts as they are now."""
    rendered = script.parent / "rendered" / script.stem
    cells = _renderer().split_cells(script.read_text())
    notebook = _notebook(rendered.with_suffix(".ipynb"))
    assert [(c["cell_type"], _text(c["source"])) for c in notebook["cells"]] == cells
    page = rendered.with_suffix(".md").read_text()
    for kind, source in cells:
        assert (source if kind == "markdown" else f"```python\n{source}\n```") in page
    assert "in full:" in page  # rendered at full size, not in fast mode


def test_cells_are_split_by_percent_markers():
    cells = _renderer().split_cells("# %% [markdown]\n# # Title\n# text\n\n# %%\nx = 1\nprint(x)\n")
    assert cells == [("markdown", "# Title\ntext"), ("code", "x = 1\nprint(x)")]


def test_notebook_is_nbformat_4_with_a_python3_kernel(tiny):
    _, target, nb = tiny
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 4
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert nb["metadata"]["language_info"]["name"] == "python"
    assert [c["cell_type"] for c in nb["cells"]] == ["markdown", "code", "code"]
    assert len({c["id"] for c in nb["cells"]}) == 3
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "00_tiny.ipynb",
        "00_tiny.md",
        "00_tiny_fig1.png",
    ]


def test_notebook_cells_are_the_scripts_cells(tiny):
    script, _, nb = tiny
    cells = _renderer().split_cells(script.read_text())
    assert [(c["cell_type"], _text(c["source"])) for c in nb["cells"]] == cells
    assert [c["execution_count"] for c in nb["cells"] if c["cell_type"] == "code"] == [1, 2]


def test_notebook_has_stdout_and_figure_outputs(tiny):
    _, target, nb = tiny
    printed, plotted = nb["cells"][1]["outputs"], nb["cells"][2]["outputs"]
    assert printed == [{"output_type": "stream", "name": "stdout", "text": ["answer 42\n"]}]
    assert [o["output_type"] for o in plotted] == ["display_data"]
    png = base64.b64decode(plotted[0]["data"]["image/png"])
    assert png.startswith(PNG_MAGIC)
    assert png == (target.parent / "00_tiny_fig1.png").read_bytes()  # the Markdown's figure
    assert "answer 42" in target.read_text()


def test_a_rendering_is_replaced_only_with_overwrite(tiny):
    script, target, _ = tiny
    render = _renderer().render
    target.unlink()  # the notebook alone still blocks a new rendering
    with pytest.raises(FileExistsError, match="ipynb"):
        render(script, target.parent)
    assert render(script, target.parent, overwrite=True) == target
    assert _notebook(target.with_suffix(".ipynb"))["nbformat"] == 4


def test_a_failing_cell_names_its_script_line_and_writes_nothing(tmp_path):
    script = tmp_path / "00_broken.py"
    script.write_text("# %% [markdown]\n# Fails.\n\n# %%\nx = 1\n\n# %%\ny = 1 / 0\n")
    with pytest.raises(ZeroDivisionError) as error:
        _renderer().render(script, tmp_path / "out")
    assert error.traceback[-1].lineno + 1 == 8  # pytest counts lines from 0
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_in_fast_mode(script, tmp_path, monkeypatch):
    monkeypatch.setenv("SBI_SYMMETRY_FAST", "1")
    target = _renderer().render(script, tmp_path)
    text = target.read_text()
    assert "```python" in text and "Traceback" not in text
    nb = _notebook(target.with_suffix(".ipynb"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["execution_count"] for c in code)
    assert text.count("```python") == len(code)
    assert not (tmp_path.parent / "sbi-logs").exists()
