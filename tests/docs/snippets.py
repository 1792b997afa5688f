"""The Python code blocks of the docs (``docs/**/*.md``), read into what the tests do with them.

A block's kind is set by an HTML comment on the line before its fence (invisible on GitHub and
in the site); without one, a block is a program of its own:

- *(none)*: a complete program. It runs in a fresh interpreter against the test server, with
  ``MONGODB_URI`` naming a fresh database, and must exit with status 0.
- ``<!-- snippet: continue -->``: runs after the blocks before it on the page, in the same
  interpreter (names and the event loop carry over). Blocks of a program may ``await`` at the
  top level, as in ``python -m asyncio``.
- ``<!-- snippet: output -->`` (on a ``text`` block): what the block before it printed,
  exactly.
- ``<!-- snippet: pytest -->``: a test module, run with pytest (and the library's plugin).
- ``<!-- snippet: fragment: WHY -->``: deliberately partial (it uses names defined elsewhere,
  or is another library's code); it must compile. ``WHY`` is required.
- A block whose lines are all ``--8<-- "path:section"`` includes a tested file (see
  :func:`check_include`); the site shows the file's code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)[^\n`]*$")
MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(?P<kind>[\w-]+)(?::\s*(?P<why>.*?))?\s*-->\s*$")
INCLUDE = re.compile(r'^--8<--\s+"(?P<path>[^":]+)(?::(?P<section>[\w-]+))?"$')
PYTHON = {"python", "py", "python3"}
KINDS = {"continue", "output", "pytest", "fragment"}


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    kind: str | None  # None: a program's first block; else one of KINDS, or "include"
    why: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@dataclass
class Program:
    """A first block and the blocks that continue it; ``outputs[i]`` is what ``blocks[i]``
    prints, when the page shows it."""

    blocks: list[Block]
    outputs: dict[int, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return self.blocks[0].where

    @property
    def needs_session(self) -> bool:
        """Whether it runs in the snippet runner (several blocks, or a top-level ``await``)
        rather than as a plain script, as a reader would run it."""
        return len(self.blocks) > 1 or has_top_level_await(self.blocks[0].code)


def has_top_level_await(code: str) -> bool:
    try:
        compile(code, "<snippet>", "exec")
    except SyntaxError:
        return True  # compiled again with top-level await allowed, where errors are reported
    return False


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page`` (code of nested fences kept as it is), with its kind."""
    lines = page.read_text(encoding="utf-8").split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^\s*{re.escape(fence)}\s*$", lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        if j == len(lines):
            raise ValueError(f"{page}:{i + 1}: the code block is never closed")
        previous = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = MARKER.match(previous)
        kind = marker["kind"] if marker else None
        why = marker["why"] if marker else None
        code = "\n".join(body) + "\n"
        if opening["lang"] in PYTHON and all(
            INCLUDE.match(line.strip()) for line in body if line.strip()
        ):
            kind = "include"
        found.append(Block(page, i + 1, opening["lang"], code, kind, why))
        i = j + 1
    return found


def programs(page: Path) -> tuple[list[Program], list[Block], list[Block], list[Block]]:
    """The programs, pytest modules, fragments and includes of ``page``'s Python blocks."""
    made: list[Program] = []
    tests: list[Block] = []
    fragments: list[Block] = []
    includes: list[Block] = []
    last: Program | None = None
    for block in blocks(page):
        if block.kind is not None and block.kind not in KINDS | {"include"}:
            raise ValueError(f"{block.where}: unknown snippet kind {block.kind!r}")
        if block.kind == "output":
            if last is None:
                raise ValueError(f"{block.where}: an output block follows no program")
            last.outputs[len(last.blocks) - 1] = block.code
            continue
        if block.lang not in PYTHON:
            if block.kind is not None:
                raise ValueError(f"{block.where}: a snippet marker on a {block.lang!r} block")
            continue
        if block.kind is None:
            last = Program([block])
            made.append(last)
        elif block.kind == "continue":
            if last is None:
                raise ValueError(f"{block.where}: 'continue' with no program before it")
            last.blocks.append(block)
        elif block.kind == "pytest":
            tests.append(block)
        elif block.kind == "fragment":
            if not block.why:
                raise ValueError(f"{block.where}: say why it is a fragment (fragment: WHY)")
            fragments.append(block)
        else:
            includes.append(block)
    return made, tests, fragments, includes


def check_include(line: str) -> tuple[Path, str | None]:
    """The file and section an include line names, once checked: the file exists under
    ``examples/`` or ``tests/``, a test runs it (a test module itself, or one whose name a test
    module under ``tests/`` mentions), and the section, if any, is marked in it."""
    match = INCLUDE.match(line.strip())
    assert match, line
    path = ROOT / match["path"]
    assert path.is_file(), f"{match['path']} does not exist"
    relative = path.relative_to(ROOT)
    assert relative.parts[0] in {"examples", "tests"}, f"{relative}: not a tested file"
    if not (relative.parts[0] == "tests" and path.name.startswith("test_")):
        here = Path(__file__).resolve()
        # The file's name, or the folder under examples/ that holds it (a recipe's project,
        # run as a whole by its test), must appear in a test module.
        names = "|".join(re.escape(name) for name in (path.stem, *relative.parts[1:-1]))
        mentioned = [
            test
            for test in (ROOT / "tests").rglob("test_*.py")
            if test.resolve() != here.parent / "test_snippets.py"
            and re.search(rf"\b({names})\b", test.read_text(encoding="utf-8"))
        ]
        assert mentioned, f"{relative}: no test under tests/ runs it"
    section = match["section"]
    if section:
        text = path.read_text(encoding="utf-8")
        for end in ("start", "end"):
            assert f"--8<-- [{end}:{section}]" in text, f"{relative}: no [{end}:{section}] marker"
    return path, section
