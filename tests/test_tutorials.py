"""The tutorials run end to end in fast mode, so they cannot rot (CI runs the slow marker)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("[0-9][0-9]_*.py"))


def _renderer():
    path = Path(__file__).parents[1] / "tutorials" / "render.py"
    spec = importlib.util.spec_from_file_location("tutorial_render", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_four_tutorials():
    assert len(TUTORIALS) == 4


def test_cells_are_split_by_percent_markers():
    cells = _renderer().split_cells("# %% [markdown]\n# # Title\n# text\n\n# %%\nx = 1\nprint(x)\n")
    assert cells == [("markdown", "# Title\ntext"), ("code", "x = 1\nprint(x)")]


@pytest.mark.slow
@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_in_fast_mode(script, tmp_path, monkeypatch):
    monkeypatch.setenv("SBI_SYMMETRY_FAST", "1")
    target = _renderer().render(script, tmp_path)
    text = target.read_text()
    assert "```python" in text and "Traceback" not in text
    assert not (tmp_path.parent / "sbi-logs").exists()
