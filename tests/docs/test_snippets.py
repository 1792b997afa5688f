"""Every Python block of the docs runs, is a test that passes, includes a tested file, or is a
fragment that compiles (``tests/docs/snippets.py`` says how a page marks which).

Programs run in a fresh interpreter against the real mongod, each in a database of its own
(``MONGODB_URI`` names it), dropped afterwards.
"""

from __future__ import annotations

import ast
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from pymongo import MongoClient

from tests.docs.run_snippets import SEPARATOR
from tests.docs.snippets import Block, Program, blocks, check_include, pages, programs

RUNNER = Path(__file__).with_name("run_snippets.py")
TIMEOUT = 120  # seconds per program: 2 cores shared with other test runs

PROGRAMS: list[Program] = []
TESTS: list[Block] = []
FRAGMENTS: list[Block] = []
INCLUDES: list[Block] = []
for _page in pages():
    _made, _tests, _fragments, _includes = programs(_page)
    PROGRAMS += _made
    TESTS += _tests
    FRAGMENTS += _fragments
    INCLUDES += _includes


def with_database(uri: str, name: str) -> str:
    """``uri`` with ``name`` as the database in its path (the one the snippets use)."""
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture
def snippet_env(mongodb_uri: str) -> Iterator[dict[str, str]]:
    """The environment of one program: a fresh database, and the tokens and ports the pages
    read from the environment."""
    name = f"mjs_docs_{uuid.uuid4().hex[:12]}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.update(
        MONGODB_URI=with_database(mongodb_uri, name),
        DASHBOARD_TOKEN=secrets.token_urlsafe(32),
        JOBS_API_TOKEN=secrets.token_urlsafe(32),
        METRICS_PORT="0",
        PYTHONUNBUFFERED="1",
        NO_COLOR="1",
    )
    yield env
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    try:
        client.drop_database(name)
    finally:
        client.close()


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
    )


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.where for p in PROGRAMS])
def test_the_program_runs(program: Program, snippet_env: dict[str, str], tmp_path: Path) -> None:
    files = []
    for index, block in enumerate(program.blocks):
        path = tmp_path / f"block{index}.py"
        path.write_text(block.code, encoding="utf-8")
        files.append(path.name)
    if program.needs_session:
        done = run([str(RUNNER), *files], tmp_path, snippet_env)
        printed = done.stdout.split(f"{SEPARATOR}\n")
    else:  # a complete script, run the way a reader runs it
        done = run(files, tmp_path, snippet_env)
        printed = [done.stdout]
    where = [block.where for block in program.blocks]
    assert done.returncode == 0, f"{where}\n{done.stdout}\n{done.stderr}"
    for index, expected in program.outputs.items():
        assert printed[index] == expected, (
            f"{program.blocks[index].where}: the output shown differs"
        )


@pytest.mark.parametrize("block", TESTS, ids=[b.where for b in TESTS])
def test_the_test_module_passes(block: Block, snippet_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "test_docs_example.py").write_text(block.code, encoding="utf-8")
    done = run(["-m", "pytest", "-q", "-p", "no:cacheprovider"], tmp_path, snippet_env)
    assert done.returncode == 0, f"{block.where}\n{done.stdout}\n{done.stderr}"
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout


@pytest.mark.parametrize("block", FRAGMENTS, ids=[b.where for b in FRAGMENTS])
def test_the_fragment_compiles(block: Block) -> None:
    compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.mark.parametrize("block", INCLUDES, ids=[b.where for b in INCLUDES])
def test_the_include_names_a_tested_file(block: Block) -> None:
    for line in block.code.splitlines():
        if line.strip():
            check_include(line)


def test_every_python_block_is_checked_one_way() -> None:
    python = [b for page in pages() for b in blocks(page) if b.lang in {"python", "py"}]
    checked = [b for p in PROGRAMS for b in p.blocks] + TESTS + FRAGMENTS + INCLUDES
    assert sorted(b.where for b in python) == sorted(b.where for b in checked)
