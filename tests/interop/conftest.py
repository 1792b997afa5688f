"""Fixtures for the mixed Node/Python fleet tests: the Node library installed from npm (cached
per machine), and helpers that run the small scripts in ``tests/interop/node``.

The install goes to ``$MJS_INTEROP_CACHE`` or ``~/.cache/mongo-job-scheduler-interop`` (never
inside the repository), once per machine: later runs reuse it. Set ``MJS_SKIP_INTEROP=1`` to
skip these tests (for example offline); without ``node`` and ``npm`` they skip by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from bson.codec_options import CodecOptions

NODE_PACKAGES = ("mongo-job-scheduler@1.2.4", "mongodb@6")
CACHE_KEY = "mongo-job-scheduler-1.2.4_mongodb-6"
SCRIPTS = Path(__file__).parent / "node"
COMPLETE_MARKER = ".install-complete"
TZ_AWARE: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=timezone.utc)


def _cache_root() -> Path:
    configured = os.environ.get("MJS_INTEROP_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mongo-job-scheduler-interop"


def _installed(prefix: Path) -> bool:
    """Whether ``prefix`` holds a finished install of :data:`NODE_PACKAGES`."""
    if not (prefix / COMPLETE_MARKER).is_file():
        return False
    try:
        mjs = json.loads((prefix / "node_modules/mongo-job-scheduler/package.json").read_text())
        driver = json.loads((prefix / "node_modules/mongodb/package.json").read_text())
    except (OSError, ValueError):
        return False
    return mjs.get("version") == "1.2.4" and str(driver.get("version", "")).startswith("6.")


def _npm_install(npm: str, prefix: Path) -> None:
    try:
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), *NODE_PACKAGES],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("npm install of the Node library took more than 300 s")
    if done.returncode != 0 or not (prefix / "node_modules/mongo-job-scheduler").is_dir():
        pytest.fail(
            f"npm install {' '.join(NODE_PACKAGES)} failed (exit {done.returncode}); set "
            f"MJS_SKIP_INTEROP=1 to skip the interop tests.\n{done.stdout[-2000:]}"
            f"\n{done.stderr[-4000:]}"
        )
    (prefix / COMPLETE_MARKER).write_text(" ".join(NODE_PACKAGES) + "\n")


@pytest.fixture(scope="session")
def node_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``node_modules`` folder of a finished ``npm install`` of the Node library and the
    MongoDB driver: from the per-machine cache, or installed now (staged in a temporary folder
    beside the cache, then renamed into place, so concurrent runs never see half an install)."""
    if os.environ.get("MJS_SKIP_INTEROP"):
        pytest.skip("MJS_SKIP_INTEROP is set")
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.skip("node and npm are needed to run the Node library (mixed-fleet tests)")
    target = _cache_root() / CACHE_KEY
    if _installed(target):
        return target / "node_modules"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    except OSError:  # no writable cache: install for this session only
        staging = tmp_path_factory.mktemp("node-interop")
        _npm_install(npm, staging)
        return staging / "node_modules"
    try:
        _npm_install(npm, staging)
        if target.exists() and not _installed(target):
            shutil.rmtree(target, ignore_errors=True)  # a broken leftover
        with contextlib.suppress(OSError):  # fails if another run renamed its install first
            os.rename(staging, target)
        return (target if _installed(target) else staging) / "node_modules"
    finally:
        if staging.exists() and _installed(target):
            shutil.rmtree(staging, ignore_errors=True)


def node_json(value: Any) -> Any:
    """Python values as the JSON the Node scripts read (datetimes become ``{"$date": iso}``)."""
    if isinstance(value, datetime):
        return {"$date": value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")}
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, dict):
        return {k: node_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [node_json(v) for v in value]
    return value


class NodeProcess:
    """One running Node script; its stdout is read as JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process, script: str) -> None:
        self.process = process
        self.script = script
        self.lines: list[Any] = []

    async def next_line(self, timeout: float) -> Any:
        """The next JSON line printed by the script (fails the test on exit or timeout)."""
        assert self.process.stdout is not None
        try:
            raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.script}: no output within {timeout}s") from None
        if not raw:
            await self.process.wait()
            raise AssertionError(
                f"{self.script} exited ({self.process.returncode}) early: {await self._stderr()}"
            )
        value = json.loads(raw)
        self.lines.append(value)
        return value

    async def finish(self, timeout: float) -> list[Any]:
        """Wait for the script to exit; return every JSON line it printed. Fails the test if
        it exits with an error or runs past ``timeout``."""
        assert self.process.stdout is not None
        try:
            out = await asyncio.wait_for(self.process.stdout.read(), timeout)
            await asyncio.wait_for(self.process.wait(), timeout)
        except asyncio.TimeoutError:
            self.kill()
            raise AssertionError(f"{self.script} still running after {timeout}s") from None
        self.lines += [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        if self.process.returncode != 0:
            raise AssertionError(
                f"{self.script} exited with {self.process.returncode}: {self.lines[-1:]}"
                f"\n{await self._stderr()}"
            )
        return self.lines

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        with contextlib.suppress(asyncio.TimeoutError):
            return (await asyncio.wait_for(self.process.stderr.read(), 5)).decode()[-4000:]
        return ""

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


class NodeRunner:
    """Starts the scripts of ``tests/interop/node`` against one database."""

    def __init__(self, node_modules: Path, uri: str, db_name: str) -> None:
        self.env = {**os.environ, "NODE_PATH": str(node_modules)}
        self.uri = uri
        self.db_name = db_name
        self.started: list[NodeProcess] = []

    async def start(self, script: str, spec: dict[str, Any]) -> NodeProcess:
        process = await asyncio.create_subprocess_exec(
            "node",
            str(SCRIPTS / script),
            self.uri,
            self.db_name,
            json.dumps(node_json(spec)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        running = NodeProcess(process, script)
        self.started.append(running)
        return running

    async def schedule(self, *ops: dict[str, Any]) -> list[Any]:
        """Run ``schedule.js`` with these ops; return each op's result (jobs as JSON)."""
        lines = await (await self.start("schedule.js", {"ops": list(ops)})).finish(timeout=30)
        assert lines[-1] == {"done": True}, lines
        return lines[:-1]

    async def close(self) -> None:
        for running in self.started:
            running.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(running.process.wait(), 5)


@pytest.fixture
async def node(node_modules: Path, mongodb_uri: str, db_name: str) -> AsyncIterator[NodeRunner]:
    """Runs the Node scripts against this test's fresh database (the ``mongo_db`` one)."""
    runner = NodeRunner(node_modules, mongodb_uri, db_name)
    try:
        yield runner
    finally:
        await runner.close()


@pytest.fixture
def executions(mongo_db: Any) -> Any:
    """The collection where both fleets' handlers record each execution (aware datetimes)."""
    return mongo_db.get_collection("executions", codec_options=TZ_AWARE)
