"""Griffe extension: read the package's Sphinx-flavoured Google docstrings as Markdown.

The docstrings are written for ``pydoc``, doctest and Sphinx habits; two of those habits render
badly through mkdocstrings, so this extension rewrites them when the docs are built (the source
is untouched):

* ``Example:`` (singular) is not a Google *section* for griffe but an admonition whose body is
  read as Markdown, which turns ``>>>`` lines into block quotes and doctest output such as
  ``[False, False]`` into broken link references. It is renamed ``Examples:``, griffe's section
  for doctest examples (rendered as code).
* Sphinx roles (``:class:`~pkg.Name```, ``:func:``, ``:meth:``, ``:mod:``, ``:attr:``,
  ``:data:``, ``:exc:``) become optional cross-references: a link when the target is documented
  on the site, plain code otherwise (no warning either way).
* A ``.. math::`` directive becomes a ``$$ ... $$`` block (MathJax, through
  ``pymdownx.arithmatex``), and a paragraph ending in ``::`` before an indented literal block
  ends in ``:`` (the indented block is a code block in Markdown too).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([\w.]+)(\(\))?`")
EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
MATH = re.compile(
    r"^([ \t]*)\.\. math::[ \t]*\n[ \t]*\n((?:\1[ \t]+\S.*\n|[ \t]*\n)+)", re.MULTILINE
)
LITERAL = re.compile(r"(\S)::[ \t]*\n(?=[ \t]*\n)")


def _math(match: re.Match[str]) -> str:
    indent, body = match.groups()
    lines = [line.strip() for line in body.rstrip().splitlines()]
    return f"{indent}$$\n" + "".join(f"{indent}{line}\n" for line in lines) + f"{indent}$$\n\n"


def _resolve(obj: griffe.Object, target: str) -> str:
    if target.startswith("sbi_symmetry."):
        return target
    head, _, rest = target.partition(".")
    scope = obj if obj.is_module or obj.is_class else obj.parent
    try:
        path = scope.resolve(head) if scope is not None else head
    except (griffe.NameResolutionError, AttributeError, KeyError):
        return target
    return f"{path}.{rest}" if rest else path


def _rewrite(obj: griffe.Object, text: str) -> str:
    def role(match: re.Match[str]) -> str:
        tilde, target, call = match.groups()
        shown = (target.rsplit(".", 1)[-1] if tilde else target) + (call or "")
        ident = _resolve(obj, target)
        return f'<autoref identifier="{ident}" optional><code>{shown}</code></autoref>'

    text = LITERAL.sub(r"\1:\n", MATH.sub(_math, text))
    return ROLE.sub(role, EXAMPLE.sub(r"\1Examples:", text))


def _walk(obj: griffe.Object, seen: set[str]) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    if obj.docstring is not None:
        obj.docstring.value = _rewrite(obj, obj.docstring.value)
    for member in obj.members.values():
        if not member.is_alias:
            _walk(member, seen)


class SphinxishDocstrings(griffe.Extension):
    """Rewrite ``Example:`` sections and Sphinx roles once the whole package is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite every docstring of the package (modules, classes, functions, attributes)."""
        _walk(pkg, set())
