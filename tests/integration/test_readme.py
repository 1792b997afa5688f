"""The README works as written.

- Every Python block type-checks with ``mypy --strict`` as a module, and every block not marked
  ``<!-- partial -->`` (on the line before it) runs as pasted against the real mongod, with
  ``MONGODB_URI`` naming a fresh database, and exits 0 within a deadline.
- The block that starts ``# tasks.py`` is served by the README's ``worker tasks:scheduler``
  command, which runs the job the blocking block schedules.
- Every ``mongo-job-scheduler`` command line names commands and options that exist, with values
  they accept, and those that do one thing and exit run; every ``pip install`` names extras
  that exist.
- Every link is absolute (the README is also the package's page on PyPI), and every link into
  the repository names a file, and a heading, that exist.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from pymongo import MongoClient
from tests.helpers import wait_for

from mongo_job_scheduler.cli import main as cli

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
REPOSITORY = PROJECT["urls"]["Homepage"]
PARTIAL = "<!-- partial -->"
DEADLINE = 60
ONE_SHOT = {"jobs", "stats", "workers", "pause", "resume"}
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Block:
    """A fenced code block of the README."""

    language: str
    line: int
    text: str
    partial: bool

    @property
    def module(self) -> str:
        """The file name its first line gives (``# tasks.py``), else one made from its line."""
        named = re.match(r"# (\w+)\.py\n", self.text)
        return named.group(1) if named else f"readme_line_{self.line}"


def blocks(language: str) -> list[Block]:
    found = []
    lines = README.splitlines()
    fence = re.compile(r"^```(\w*)$")
    index = 0
    while index < len(lines):
        opened = fence.match(lines[index])
        if not opened or not opened.group(1):
            index += 1
            continue
        end = lines.index("```", index + 1)
        before = [line for line in lines[:index] if line.strip()]
        if opened.group(1) == language:
            text = "\n".join(lines[index + 1 : end]) + "\n"
            partial = bool(before) and before[-1].strip() == PARTIAL
            found.append(Block(language, index + 2, text, partial))
        index = end + 1
    return found


PYTHON = blocks("python")
SHELL = blocks("bash")


def env_for(uri: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MONGODB")}
    return {**env, "MONGODB_URI": uri, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}


def run_block(block: Block, name: str, folder: Path, uri: str) -> subprocess.CompletedProcess[str]:
    """Run ``block`` saved as ``folder/name``, with ``MONGODB_URI`` set to ``uri``."""
    (folder / name).write_text(block.text, encoding="utf-8")
    return subprocess.run(
        [sys.executable, name],
        cwd=folder,
        env=env_for(uri),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )


def test_the_readme_has_blocks_to_check() -> None:
    assert len(PYTHON) >= 4 and len(SHELL) >= 3, (PYTHON, SHELL)
    assert len(README.encode()) < 12_000, "the README is meant to stay under 12 kB"


def test_every_python_block_passes_mypy_strict(tmp_path: Path) -> None:
    files = []
    for block in PYTHON:
        path = tmp_path / f"{block.module}.py"
        assert not path.exists(), f"two blocks are named {path.name}"
        path.write_text(block.text, encoding="utf-8")
        files.append(str(path))
    cache = ROOT / ".mypy_cache" / "readme"
    mypy = [sys.executable, "-m", "mypy", "--strict", "--python-version", "3.10"]
    checked = subprocess.run(
        [*mypy, "--cache-dir", str(cache), *files],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    "block", [block for block in PYTHON if not block.partial], ids=lambda block: block.module
)
def test_every_runnable_python_block_runs_as_pasted(
    block: Block, database_uri: str, tmp_path: Path
) -> None:
    ran = run_block(block, f"{block.module}.py", tmp_path, database_uri)
    assert ran.returncode == 0, f"README line {block.line}:\n{ran.stdout}{ran.stderr}"


def test_the_worker_command_runs_what_the_blocking_block_schedules(
    database_uri: str, tmp_path: Path
) -> None:
    """``tasks.py`` under ``mongo-job-scheduler worker tasks:scheduler`` runs the job that the
    blocking block schedules, declares its periodic job, and stops with exit 0 on SIGTERM."""
    (tasks,) = [block for block in PYTHON if block.module == "tasks"]
    (producer,) = [block for block in PYTHON if "mongo_job_scheduler.sync" in block.text]
    (command,) = [
        line for block in SHELL for line in block.text.splitlines() if "worker tasks:" in line
    ]
    (tmp_path / "tasks.py").write_text(tasks.text, encoding="utf-8")
    argv = shlex.split(command, comments=True)
    assert argv[0] == "mongo-job-scheduler", command
    client: MongoClient[dict[str, Any]] = MongoClient(database_uri)
    jobs = client.get_default_database()["scheduler_jobs"]
    worker = subprocess.Popen(
        [str(BIN / argv[0]), *argv[1:]],
        cwd=tmp_path,
        env=env_for(database_uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        produced = run_block(producer, "producer.py", tmp_path, database_uri)
        assert produced.returncode == 0, produced.stdout + produced.stderr
        assert produced.stdout.startswith("pending\n"), produced.stdout
        done = {"name": "send-email", "status": "completed"}
        asyncio.run(
            wait_for(lambda: worker.poll() is not None or jobs.find_one(done), timeout=DEADLINE)
        )
        assert worker.poll() is None, "the worker exited"
        report = jobs.find_one({"name": "daily-report"})
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=DEADLINE)
        client.close()
    assert worker.returncode == 0, out + err
    assert err.startswith("worker started:") and "names=daily-report, send-email" in err, err
    assert out == "emailing user 123\n", out
    assert report is not None and report["status"] == "pending", report
    assert report["repeat"] == {"cron": "0 9 * * *", "timezone": "Europe/Paris"}, report


def command_lines() -> list[tuple[int, list[str]]]:
    found = []
    for block in SHELL:
        for offset, line in enumerate(block.text.splitlines()):
            argv = shlex.split(line, comments=True)
            if argv and argv[0] == "mongo-job-scheduler":
                found.append((block.line + offset, argv[1:]))
    return found


def _rest(context: click.Context) -> list[str]:
    """The arguments a group left for its subcommand (click 8.2 keeps the first one apart)."""
    protected = context.__dict__.get("_protected_args")
    if protected is None:
        protected = context.protected_args
    return [*protected, *context.args]


@pytest.mark.parametrize(
    ("line", "args"), [pytest.param(*found, id=f"line-{found[0]}") for found in command_lines()]
)
def test_every_command_line_parses(
    line: int, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsed by the CLI's own click commands: a wrong command, option or value fails here."""
    monkeypatch.setenv("MONGODB_URI", "mongodb://127.0.0.1:27017/my-app")
    command: click.Command = cli
    context = command.make_context("mongo-job-scheduler", list(args))
    path = []
    while isinstance(command, click.Group):
        name, found, rest = command.resolve_command(context, _rest(context))
        assert found is not None and name is not None, (line, args)
        path.append(name)
        context = found.make_context(name, rest, parent=context)
        command = found
    assert path, f"README line {line}: no command in {args}"


def test_the_one_shot_command_lines_run_in_order(database_uri: str, tmp_path: Path) -> None:
    """The command lines that do one thing and exit (not ``worker``, ``dashboard``, ``demo``)
    succeed against the real mongod, in the README's order, on one database."""
    one_shot = [(line, args) for line, args in command_lines() if args[0] in ONE_SHOT]
    assert len(one_shot) >= 3, command_lines()
    for line, args in one_shot:
        ran = subprocess.run(
            [str(BIN / "mongo-job-scheduler"), *args],
            cwd=tmp_path,
            env=env_for(database_uri),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
        assert ran.returncode == 0, f"README line {line}:\n{ran.stdout}{ran.stderr}"


def test_every_pip_install_names_extras_that_exist() -> None:
    extras = set(PROJECT["optional-dependencies"])
    named = re.findall(r"pip install[^`\n]*?\[([\w,-]+)\]", README)
    assert named, "no pip install with extras found"
    for group in named:
        assert set(group.split(",")) <= extras, group


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_every_link_is_absolute_and_every_repository_link_resolves() -> None:
    inline = re.findall(r"\]\(([^)\s]+)\)", README)
    defined = dict(re.findall(r"^\[([\w-]+)\]: (\S+)$", README, re.M))
    used = set(re.findall(r"\]\[([\w-]+)\]", README))
    assert used == set(defined), (
        "used but not defined",
        used - set(defined),
        "unused",
        set(defined) - used,
    )
    urls = inline + list(defined.values())
    assert urls, "no links found"
    for url in urls:
        assert url.startswith("https://"), f"{url}: relative links do not resolve on PyPI"
    for url in re.findall(r"https://github\.com/[^\s)\"'>]+", README):
        assert url.startswith(REPOSITORY), f"{url} is not under {REPOSITORY}"
        rest = url.removeprefix(REPOSITORY)
        if not rest:
            continue
        match = re.fullmatch(r"/(?:blob|tree)/main/([^#]+)(?:#(.+))?", rest)
        assert match, url
        target = ROOT / match.group(1)
        assert target.exists(), f"{url}: {match.group(1)} is not in the repository"
        if match.group(2):
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.M)
            assert match.group(2) in {github_slug(h) for h in headings}, url
