"""A Griffe extension for the docs site (``mkdocs.yml`` loads it): the docstrings of this
package are written for ``help()`` and editors, with Sphinx-style roles (``:class:`Job```,
``:meth:`~Scheduler.schedule```) and reST code blocks (``.. code-block:: python``, a paragraph
ending in ``::``). Before mkdocstrings renders them as Markdown, this rewrites:

- each role into a cross-reference to the object it names, resolved in the scope of the
  docstring's object. The reference is *optional*: it links when the object is on a page of the
  API reference and stays plain code when it is not (a private module, say), so the strict
  build fails only on the references written in the pages themselves;
- each reST code block into a fenced ``python`` block;

and leaves private members and parameters (a leading underscore, such as a dataclass's internal
fields) out of the classes and signatures shown. The source is left alone.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|const|mod|exc|obj):`(~?)([^`]+)`")
CODE_BLOCK = re.compile(r"^(?P<indent>[ \t]*)\.\. code-block::[ \t]*(?P<lang>\w*)[ \t]*\n\n")


class DocstringsForMarkdown(griffe.Extension):
    """Rewrites every docstring of the loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = markdown_docstring(obj, obj.docstring.value)
            if obj.is_class:  # before Griffe makes the __init__ of dataclasses from their fields
                for name in [n for n in obj.members if n.startswith("_") and not n.endswith("__")]:
                    obj.del_member(name)
                init = obj.members.get("__init__")
                if isinstance(init, griffe.Function):
                    public = [p for p in init.parameters if not p.name.startswith("_")]
                    init.parameters = griffe.Parameters(*public)


def _objects(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found.extend(_objects(member))  # type: ignore[arg-type]
    return found


def markdown_docstring(obj: griffe.Object, text: str) -> str:
    text = ROLE.sub(lambda match: _reference(obj, match[1] == "~", match[2]), text)
    return _fenced(text)


def _reference(obj: griffe.Object, short: bool, target: str) -> str:
    target = target.strip()
    shown = target.lstrip(".")
    if short:
        shown = shown.rsplit(".", 1)[-1]
    path = _resolve(obj, target)
    code = f"<code>{html.escape(shown)}</code>"
    if path is None:
        return code
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'


def _resolve(obj: griffe.Object, target: str) -> str | None:
    if target.startswith("."):  # relative to the package: a private module, not in the site
        return None
    if target.startswith("mongo_job_scheduler"):
        return target
    first, _, rest = target.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        try:
            path = scope.resolve(first)
        except griffe.NameResolutionError:
            scope = scope.parent
            continue
        return f"{path}.{rest}" if rest else path
    return None


def _fenced(text: str) -> str:
    """reST code blocks (an indented block after ``.. code-block::`` or after a paragraph
    ending in ``::``) become fenced Markdown blocks."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = CODE_BLOCK.match(line + "\n\n")
        literal = line.rstrip().endswith("::") and i + 1 < len(lines) and not lines[i + 1].strip()
        if (directive or literal) and i + 2 < len(lines):
            indent = len(line) - len(line.lstrip())
            block, j = _indented_block(lines, i + 2, indent)
            if block:
                if directive:
                    language = directive["lang"] or "python"
                else:  # reST: "text::" shows "text:", "text ::" shows "text", "::" nothing
                    head = line.rstrip()[:-2]
                    head = head.rstrip() if head.endswith((" ", "\t")) else head + ":"
                    if head.strip(" \t:"):
                        out.extend([head, ""])
                    language = "python"
                out.append(" " * indent + f"```{language}")
                out.extend(" " * indent + code for code in block)
                out.append(" " * indent + "```")
                i = j
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _indented_block(lines: list[str], start: int, indent: int) -> tuple[list[str], int]:
    """The lines from ``start`` indented deeper than ``indent`` (blank lines inside kept),
    dedented, and the index after them."""
    block: list[str] = []
    j = start
    while j < len(lines) and (
        not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
    ):
        block.append(lines[j])
        j += 1
    while block and not block[-1].strip():
        block.pop()
        j -= 1
    if not block:
        return [], start
    depth = min(len(code) - len(code.lstrip()) for code in block if code.strip())
    return [code[depth:] for code in block], j
