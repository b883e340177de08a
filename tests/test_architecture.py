"""The package's shape stays readable: small files and functions, no import cycle, no self-import.

These are static checks over the source (``ast``), so they are fast and need no model runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sbi_symmetry"
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 100
# Old import paths kept for one release; they only re-export the new modules.
DEPRECATED_ALIASES = {"augment", "embedding", "diagnostics", "plots", "fisher", "pretrain"}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Package modules that ``name`` imports when it runs (lazy imports included)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    type_only = {  # `if TYPE_CHECKING:` imports never run
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES}
    return found


def _edges() -> dict[str, set[str]]:
    edges = {}
    for name, path in MODULES.items():
        if name.split(".")[-1] in DEPRECATED_ALIASES and name.count(".") == 1:
            continue
        edges[name] = _imports(name, path) - {name}
    return edges


@pytest.mark.parametrize("name", sorted(MODULES))
def test_files_stay_small(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_FILE_LINES, f"{MODULES[name]} has {lines} lines (> {MAX_FILE_LINES})"


@pytest.mark.parametrize("folder", ["tests", "benchmarks", "tutorials"])
def test_scripts_and_tests_stay_small_too(folder):
    root = PACKAGE.parent / folder
    long = {
        path.name: lines
        for path in sorted(root.glob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert not long, f"files over {MAX_FILE_LINES} lines in {folder}/: {long}"


def test_functions_fit_on_a_screen():
    long = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1 + len(node.decorator_list)
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length})")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_module_imports_the_package_itself():
    offenders = [
        name
        for name, targets in _edges().items()
        if name != "sbi_symmetry" and "sbi_symmetry" in targets
    ]
    assert not offenders, f"modules importing `sbi_symmetry` itself: {offenders}"


def test_no_import_cycle():
    # Edges are the modules each file names in its imports (lazy ones included); importing the
    # root package is caught by the test above, so it is left out here.
    edges = {k: {t for t in v if t != "sbi_symmetry"} for k, v in _edges().items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if state.get(nxt) is None and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if state.get(node) is None and (cycle := visit(node)):
            pytest.fail(f"import cycle: {' -> '.join(cycle)}")


def test_private_sbi_names_only_in_the_compat_module():
    offenders = []
    for name, path in MODULES.items():
        if name == "sbi_symmetry._sbi_compat" or name.startswith("sbi_symmetry._sbi_compat."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sbi."):
                private = [p for p in node.module.split(".") if p.startswith("_")]
                private += [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.module}")
    assert not offenders, f"private sbi imports outside _sbi_compat: {offenders}"


@pytest.mark.parametrize(
    ("old", "name"),
    [
        ("augment", "ResimulatedViews"),
        ("embedding", "SymmetryEmbedding"),
        ("diagnostics", "invariance_error"),
        ("plots", "plot_coverage"),
        ("fisher", "cramer_rao_bound"),
        ("pretrain", "pretrain_vicreg"),
    ],
)
def test_old_import_paths_warn_and_still_work(old, name):
    import importlib
    import sys

    assert old in DEPRECATED_ALIASES
    sys.modules.pop(f"sbi_symmetry.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"sbi_symmetry.{old} moved to"):
        module = importlib.import_module(f"sbi_symmetry.{old}")
    assert callable(getattr(module, name))
