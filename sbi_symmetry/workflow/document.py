"""A tiny document model rendered to both Markdown and self-contained HTML.

The run's report is a list of blocks (headings, paragraphs, bullet lists, tables, figures, code);
one list gives ``report.md`` and ``report.html`` so the two never disagree. The Markdown links its
figures (``![caption](file.png)``); the HTML embeds them as ``data:`` URIs when given the folder
they lie in, so ``report.html`` is one file that can be mailed.

Example:
    >>> doc = Document()
    >>> doc.heading("Results")
    >>> doc.table(["method", "C2ST"], [["symmetry NPE", "0.55"]])
    >>> print(doc.markdown().splitlines()[2])
    | method | C2ST |
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: MIME types of the figures ``html`` embeds, by file suffix.
_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".gif": "image/gif",
}

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.45}table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;"
    "padding:.25rem .6rem;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child"
    "{text-align:left}img{max-width:100%}pre{background:#f6f6f6;padding:.6rem;overflow-x:auto}"
)


@dataclass
class Document:
    """Ordered blocks of a report."""

    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        """Add a heading of ``level`` (1-4)."""
        self.blocks.append(("heading", (level, text)))

    def paragraph(self, text: str) -> None:
        """Add a paragraph (plain text; ``code`` in backticks is kept as code)."""
        self.blocks.append(("paragraph", text))

    def bullets(self, items: Sequence[str]) -> None:
        """Add a bullet list (each item plain text, ``code`` in backticks kept as code)."""
        self.blocks.append(("bullets", [str(item) for item in items]))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Add a table; cells are converted with ``str``."""
        self.blocks.append(
            ("table", ([str(h) for h in header], [[str(c) for c in r] for r in rows]))
        )

    def figure(self, path: str, caption: str) -> None:
        """Add an image (``path`` relative to the report) with a caption."""
        self.blocks.append(("figure", (path, caption)))

    def code(self, text: str) -> None:
        """Add a preformatted block."""
        self.blocks.append(("code", text))

    def markdown(self) -> str:
        """Render as GitHub-flavoured Markdown.

        Example:
            >>> doc = Document()
            >>> doc.figure("coverage.png", "Expected coverage")
            >>> print(doc.markdown().splitlines()[0])
            ![Expected coverage](coverage.png)
        """
        out: list[str] = []
        for kind, value in self.blocks:
            if kind == "heading":
                out.append("#" * value[0] + " " + value[1])
            elif kind == "paragraph":
                out.append(value)
            elif kind == "bullets":
                out.append("\n".join(f"- {item}" for item in value))
            elif kind == "table":
                header, rows = value
                lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                lines += ["| " + " | ".join(r) + " |" for r in rows]
                out.append("\n".join(lines))
            elif kind == "figure":
                out.append(f"![{value[1]}]({value[0]})\n\n*{value[1]}*")
            elif kind == "code":
                out.append(f"```text\n{value}\n```")
        return "\n\n".join(out) + "\n"

    def html(self, title: str, root: str | Path | None = None) -> str:
        """Render as one HTML page; with ``root``, every figure is embedded as a data URI.

        Args:
            title: The page title.
            root: The folder the figures' paths are relative to. Given, each figure file is read
                and embedded (base64), so the page needs no other file; ``FileNotFoundError`` if
                one is missing. ``None`` links the figures instead.

        Returns:
            The page.

        Example:
            >>> doc = Document()
            >>> doc.paragraph("re-run with `sbi-symmetry run --config`")
            >>> "<code>sbi-symmetry run --config</code>" in doc.html("report")
            True
        """
        body: list[str] = []
        for kind, value in self.blocks:
            if kind == "heading":
                body.append(f"<h{value[0]}>{_inline(value[1])}</h{value[0]}>")
            elif kind == "paragraph":
                body.append(f"<p>{_inline(value)}</p>")
            elif kind == "bullets":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in value) + "</ul>")
            elif kind == "table":
                header, rows = value
                head = "".join(f"<th>{_inline(h)}</th>" for h in header)
                cells = "".join(
                    "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
            elif kind == "figure":
                src, cap = _source(value[0], root), html.escape(value[1])
                body.append(
                    f'<figure><img src="{src}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'
                )
            elif kind == "code":
                body.append(f"<pre>{html.escape(value)}</pre>")
        return (
            f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}'
            f"</title><style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
        )


def _source(path: str, root: str | Path | None) -> str:
    """The ``src`` of a figure: its path, or (with ``root``) its bytes as a base64 data URI."""
    if root is None:
        return html.escape(path)
    mime = _MIME.get(Path(path).suffix.lower(), "application/octet-stream")
    data = base64.b64encode((Path(root) / path).read_bytes()).decode("ascii")
    return f"data:{mime};base64,{data}"


def _inline(text: str) -> str:
    """Escape HTML and turn `code` spans into <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
