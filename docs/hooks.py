"""MkDocs hook: serve committed Markdown from outside ``docs/`` without copying it into git twice.

* ``tutorials/rendered/`` (written by ``tutorials/render.py``: each tutorial's Markdown, figures
  and executed notebook) appears on the site as ``tutorials/<name>``;
* ``benchmarks/results/*.md`` and their plots (written by the benchmark scripts, with the
  command that made them) appear as ``benchmarks/<name>``, so the pages that quote a number can
  link to its file.

The files are added at build time, so the docs always show exactly the committed versions.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {
    "tutorials": (ROOT / "tutorials" / "rendered", {".md", ".png", ".svg", ".ipynb"}),
    "benchmarks": (ROOT / "benchmarks" / "results", {".md", ".png"}),
}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the rendered tutorials (pages and figures) and the benchmark result pages."""
    for prefix, (folder, suffixes) in SOURCES.items():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix in suffixes:
                uri = f"{prefix}/{path.name}"
                files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
