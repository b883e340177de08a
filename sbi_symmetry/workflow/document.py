"""A tiny document model rendered to both Markdown and self-contained HTML.

The run's report is a list of blocks (headings, paragraphs, tables, figures, code); one list gives
``report.md`` and ``report.html`` so the two never disagree.

Example:
    >>> doc = Document()
    >>> doc.heading("Results")
    >>> doc.table(["method", "C2ST"], [["symmetry NPE", "0.55"]])
    >>> print(doc.markdown().splitlines()[2])
    | method | C2ST |
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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

    def html(self, title: str) -> str:
        """Render as one self-contained HTML page (images are linked, not embedded).

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
            elif kind == "table":
                header, rows = value
                head = "".join(f"<th>{_inline(h)}</th>" for h in header)
                cells = "".join(
                    "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
            elif kind == "figure":
                src, cap = html.escape(value[0]), html.escape(value[1])
                body.append(
                    f'<figure><img src="{src}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'
                )
            elif kind == "code":
                body.append(f"<pre>{html.escape(value)}</pre>")
        return (
            f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}'
            f"</title><style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
        )


def _inline(text: str) -> str:
    """Escape HTML and turn `code` spans into <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
