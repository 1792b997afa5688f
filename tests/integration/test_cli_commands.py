"""The operator commands of the CLI (``worker``, ``jobs list|show|cancel|retry|purge``,
``stats``), run as real subprocesses against the test server, one fresh database per test.

Jobs are seeded with the blocking facade (``mongo_job_scheduler.sync``); failed jobs are made
by a real asyncio worker whose handler raises. Independent read-only CLI runs of a test start
together so the file stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.parse
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from bson import Decimal128, ObjectId
from pymongo import AsyncMongoClient, MongoClient
from tests.conftest import wait_for
from tests.helpers import wait_until_serving, with_path

from mongo_job_scheduler import Job, MongoJobStore, Scheduler, __version__
from mongo_job_scheduler import sync as mjs_sync

RUN_TIMEOUT = 60
BAD_URI = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300"
UNREADABLE_KEY_URI = (
    "mongodb://127.0.0.1:1/?tls=true&tlsCertificateKeyFile=/nonexistent/client.pem"
    "&tlsCertificateKeyFilePassword=k3ypw"
)

WORKER_MODULE = """
import asyncio
import os
from pathlib import Path

from pymongo import AsyncMongoClient

from mongo_job_scheduler import MongoJobStore, Scheduler

RUNS = Path(os.environ["MJS_RUNS"])

scheduler = Scheduler(
    MongoJobStore(AsyncMongoClient(os.environ["MONGODB_URI"])[os.environ["MJS_DB"]]),
    poll_interval=0.05,
)


def _record(job, what):
    with RUNS.open("a", encoding="utf-8") as runs:
        runs.write(f"{what} {job.name} {job.id}\\n")


@scheduler.task("record")
async def record(job):
    _record(job, "ran")


@scheduler.task("flaky")
async def flaky(job):
    _record(job, "ran")


@scheduler.task("slow")
async def slow(job):
    _record(job, "started")
    await asyncio.Event().wait()


async def make():
    return scheduler


def broken():
    raise RuntimeError("no scheduler today")


bare = Scheduler(poll_interval=0.05)  # no store: the command gives it one


@bare.task("record")
async def bare_record(job):
    _record(job, "ran")


async def _anything(job):
    _record(job, "ran")


anything = Scheduler(
    MongoJobStore(AsyncMongoClient(os.environ["MONGODB_URI"])[os.environ["MJS_DB"]]),
    _anything,
    poll_interval=0.05,
)
"""

BROKEN_MODULES = {
    "raises": 'import json\n\nVALUE = 1\nraise RuntimeError("boom at import")\n',
    "syntax": "x = 1\ndef f(:\n    pass\n",
    "needs": '"""Needs a module that is not installed."""\nimport os\nimport not_installed_mod\n',
    "deep": 'import json\n\njson.loads("{nope")\n',
}
"""Modules of a package ``brokenapp`` whose import fails, each on its line 2, 3 or 4."""


# -- running the CLI ------------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def _env(mongodb_uri: str | None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("MONGODB_URI", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    env.update(NO_COLOR="1", COLUMNS="200", PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
    if mongodb_uri is not None:
        env["MONGODB_URI"] = mongodb_uri
    env.update(extra)
    return env


def _argv(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "mongo_job_scheduler", *args]


def run_cli(args: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> Result:
    done = subprocess.run(
        _argv(args),
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=RUN_TIMEOUT,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def run_many(
    runs: Sequence[Sequence[str]], env: dict[str, str], cwd: Path | None = None
) -> list[Result]:
    """Run independent CLI invocations at once; results in the order given."""
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        return list(pool.map(lambda args: run_cli(args, env, cwd), runs))


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.code == 1, result
    assert "Traceback" not in result.err + result.out, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("Error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def assert_usage_error(result: Result, *fragments: str) -> None:
    """Exit 2 with click's usage error: the usage line, a help hint, one ``Error:`` line."""
    assert result.code == 2, result
    assert "Traceback" not in result.err + result.out, result
    assert result.out == "", result
    lines = result.err.strip().splitlines()
    assert lines[0].startswith("Usage: mongo-job-scheduler "), lines
    assert lines[1].startswith("Try 'mongo-job-scheduler "), lines
    assert lines[-1].startswith("Error: ") and len(lines) == 4, lines
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])


@dataclass
class Ctx:
    """One test's database, how to reach it from the CLI, and a blocking scheduler on it."""

    uri: str
    db_name: str
    db: Any
    scheduler: mjs_sync.Scheduler

    @property
    def env(self) -> dict[str, str]:
        return _env(self.uri)

    def cli(self, *args: str) -> Result:
        return run_cli(["--database", self.db_name, *args], self.env)

    def many(self, *runs: Sequence[str]) -> list[Result]:
        return run_many([["--database", self.db_name, *args] for args in runs], self.env)

    def doc(self, job_id: Any) -> dict[str, Any]:
        found = self.db["scheduler_jobs"].find_one({"_id": ObjectId(str(job_id))})
        assert found is not None
        return dict(found)


@pytest.fixture
def ctx(mongodb_uri: str, db_name: str, sync_db: Any) -> Iterator[Ctx]:
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri, tz_aware=True)
    try:
        scheduler = mjs_sync.Scheduler(mjs_sync.MongoJobStore(client[db_name]))
        yield Ctx(mongodb_uri, db_name, client[db_name], scheduler)
    finally:
        client.close()


async def _make_failed(uri: str, db_name: str, count: int = 1) -> list[Job]:
    """``count`` jobs named ``flaky`` that really failed (a handler raised, no retries left)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    try:
        scheduler = Scheduler(MongoJobStore(client[db_name]), poll_interval=0.02)

        @scheduler.task("flaky")
        async def flaky(job: Job) -> None:
            raise ValueError(f"boom <{job.data['n']}>")

        jobs = [await scheduler.schedule("flaky", {"n": n}) for n in range(count)]
        async with scheduler:

            async def all_failed() -> bool:
                found = [await scheduler.get_job(job.id) for job in jobs]
                return all(j is not None and j.status.value == "failed" for j in found)

            await wait_for(all_failed, timeout=15)
        return [j for j in [await scheduler.get_job(job.id) for job in jobs] if j is not None]
    finally:
        await client.close()


def make_failed(ctx: Ctx, count: int = 1) -> list[Job]:
    return asyncio.run(_make_failed(ctx.uri, ctx.db_name, count))


# -- jobs list ------------------------------------------------------------------------------------


def test_list_filters_sort_pagination_and_json(ctx: Ctx) -> None:
    s = ctx.scheduler
    gold = s.schedule("email", {"user": 1, "tier": "gold", "profile": {"lang": "fr"}}, priority=1)
    silver = s.schedule("email", {"user": 2, "tier": "silver"}, priority=3)
    text_user = s.schedule("email", {"user": "1", "tier": "gold"}, priority=7)
    report = s.schedule("report", {"user": 1}, priority=9, delay=3600)
    cancelled = s.schedule("report", {"user": 3}, priority=5)
    assert s.cancel(cancelled.id)
    ids = {
        "gold": str(gold.id),
        "silver": str(silver.id),
        "text_user": str(text_user.id),
        "report": str(report.id),
        "cancelled": str(cancelled.id),
    }

    (
        everything,
        by_name,
        by_status,
        by_statuses,
        by_int,
        by_text,
        by_string,
        by_nested,
        combined,
        sorted_desc,
        page,
        table,
        nothing,
    ) = ctx.many(
        ["jobs", "list", "--json"],
        ["jobs", "list", "--json", "--name", "report"],
        ["jobs", "list", "--json", "--status", "cancelled"],
        ["jobs", "list", "--json", "--status", "cancelled", "--status", "pending"],
        ["jobs", "list", "--json", "--data", "user=1"],
        ["jobs", "list", "--json", "--data", 'user="1"'],
        ["jobs", "list", "--json", "--data", "tier=gold"],
        ["jobs", "list", "--json", "--data", "profile.lang=fr"],
        ["jobs", "list", "--json", "--name", "email", "--data", "user=1", "--status", "pending"],
        ["jobs", "list", "--json", "--sort", "priority:desc"],
        ["jobs", "list", "--json", "--sort", "priority:asc", "--limit", "2", "--skip", "1"],
        ["jobs", "list", "--sort", "priority", "--limit", "5"],
        ["jobs", "list", "--name", "nobody"],
    )
    for result in (everything, by_name, by_status, by_statuses, by_int, by_text, by_nested):
        assert result.code == 0, result

    def got(result: Result) -> set[str]:
        return {doc["_id"] for doc in result.json_lines}

    assert got(everything) == set(ids.values())
    assert got(by_name) == {ids["report"], ids["cancelled"]}
    assert got(by_status) == {ids["cancelled"]}
    assert got(by_statuses) == set(ids.values())
    assert got(by_int) == {ids["gold"], ids["report"]}  # JSON 1 is the number, not "1"
    assert got(by_text) == {ids["text_user"]}
    assert got(by_string) == {ids["gold"], ids["text_user"]}
    assert got(by_nested) == {ids["gold"]}
    assert got(combined) == {ids["gold"]}
    assert [doc["priority"] for doc in sorted_desc.json_lines] == [9, 7, 5, 3, 1]
    assert [doc["_id"] for doc in page.json_lines] == [ids["silver"], ids["cancelled"]]

    # JSON lines are the stored documents: ObjectIds as strings, datetimes as ISO 8601 UTC.
    doc = next(d for d in everything.json_lines if d["_id"] == ids["gold"])
    assert doc["name"] == "email"
    assert doc["data"] == {"user": 1, "tier": "gold", "profile": {"lang": "fr"}}
    assert doc["status"] == "pending"
    created = datetime.fromisoformat(doc["createdAt"].replace("Z", "+00:00"))
    assert created.tzinfo is not None
    assert abs(created - datetime.now(timezone.utc)) < timedelta(minutes=5)

    assert table.code == 0, table
    lines = table.out.splitlines()
    for header in ("id", "name", "status", "attempts", "priority", "next run", "updated"):
        assert header in lines[0]
    rows = [line for line in lines if line[:24] in ids.values()]
    assert [row[:24] for row in rows] == [
        ids["gold"],
        ids["silver"],
        ids["cancelled"],
        ids["text_user"],
        ids["report"],
    ]
    assert "cancelled" in rows[2] and "report" in rows[2]
    assert "--skip 5" in table.err  # a full page: how to see the next one

    assert nothing.code == 0 and nothing.out == ""
    assert "No jobs match" in nothing.err


def test_list_collection_option(ctx: Ctx, mongodb_uri: str) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    try:
        other = mjs_sync.Scheduler(mjs_sync.MongoJobStore(client[ctx.db_name], "other_jobs"))
        job = other.schedule("elsewhere", {"n": 1})
    finally:
        client.close()
    default, custom = ctx.many(
        ["jobs", "list", "--json"], ["--collection", "other_jobs", "jobs", "list", "--json"]
    )
    assert default.code == 0 and default.json_lines == []
    assert [doc["_id"] for doc in custom.json_lines] == [str(job.id)]


def test_malformed_values_are_usage_errors_before_connecting(tmp_path: Path) -> None:
    """Every malformed argument or option value exits 2 in click's usage format, checked
    before connecting: the server here does not answer, which would exit 1."""
    (tmp_path / "tmpmod.py").write_text(textwrap.dedent(WORKER_MODULE), encoding="utf-8")
    env = _env(BAD_URI, PYTHONPATH=str(tmp_path), MJS_DB="unused", MJS_RUNS=str(tmp_path / "r"))
    cases: list[tuple[list[str], tuple[str, ...]]] = [
        (["jobs", "list", "--data", "$where=1"], ("'--data'", "$where")),
        (["jobs", "list", "--data", 'user={"$gt": 0}'], ("'--data'", "operators")),
        (["jobs", "list", "--data", "novalue"], ("'--data'", "KEY=VALUE", "novalue")),
        (["jobs", "list", "--data", 'k=[{"$regex": "^a"}]'], ("'--data'", "$regex")),
        (["jobs", "list", "--data", "k=" + "[" * 1500 + "]" * 1500], ("'--data'", "nested")),
        (["jobs", "list", "--data", "a." * 2000 + "a=1"], ("'--data'", "parts")),
        (["jobs", "list", "--name", "a\x1b[2J"], ("'--name'", "control characters", "\\x1b")),
        (["jobs", "list", "--status", "bogus"], ("'--status'", "bogus")),
        (["jobs", "list", "--sort", "nope:asc"], ("'--sort'", "nope")),
        (["jobs", "list", "--sort", "priority:sideways"], ("'--sort'", "sideways")),
        (["jobs", "list", "--limit", "0"], ("'--limit'",)),
        (["jobs", "list", "--skip", "-1"], ("'--skip'",)),
        (["jobs", "list", "--name", ""], ("'--name'", "empty")),
        (["jobs", "show", "not-an-id"], ("'ID'", "not-an-id")),
        (["jobs", "cancel", "123"], ("'ID'", "123")),
        (["jobs", "retry", "z" * 24], ("'ID'", "z" * 24)),
        (["jobs", "purge", "--older-than", "soon", "--yes"], ("'--older-than'", "soon")),
        (["jobs", "purge", "--older-than", "9999999999w", "--yes"], ("'--older-than'", "far")),
        (["jobs", "purge", "--older-than", "1d", "--status", "pending"], ("'--status'", "pending")),
        (["pause", ""], ("'NAME'", "empty")),
        (["pause", "a\x1b]0;x\x07"], ("'NAME'", "control characters")),
        (["resume", " "], ("'NAME'", "empty")),
        (["--database", "bad/name", "stats"], ("'--database'", "/")),
        (["--collection", "bad$name", "workers"], ("'--collection'", "bad$name")),
        (["--mongodb-uri", "mongodb://[::1", "stats"], ("'--mongodb-uri'", "[::1")),
        (["--mongodb-uri", "http://example.com", "workers"], ("'--mongodb-uri'", "scheme")),
        (["--mongodb-uri", UNREADABLE_KEY_URI, "stats"], ("'--mongodb-uri'", "not readable")),
        (["worker", "tmpmod"], ("'MODULE:ATTR'", "tmpmod")),
        (["worker", "tmpmod:"], ("'MODULE:ATTR'",)),
        (["worker", "tmpmod:bare", "--workers", "0"], ("'--workers'",)),
        (["workers", "--limit", "3"], ("--limit",)),
        (["dashboard", "--port", "70000"], ("'--port'",)),
        (["dashboard", "--token", "a"], ("'--token'", "at least 16 characters", "for example")),
        (["dashboard", "--cors-origin", "*"], ("'--cors-origin'", "'*' is not accepted")),
        (["dashboard", "--cors-origin", "https://a.example/x"], ("'--cors-origin'",)),
    ]
    results = run_many([args for args, _ in cases], env)
    for (_, fragments), result in zip(cases, results, strict=True):
        assert_usage_error(result, *fragments)
        assert "k3ypw" not in result.err  # the key file's password is not printed


def test_runtime_errors_are_one_line_and_exit_1(ctx: Ctx) -> None:
    job = ctx.scheduler.schedule("email", {"user": 1})
    missing = str(ObjectId())
    results = ctx.many(
        ["jobs", "show", missing],
        ["jobs", "cancel", missing],
        ["jobs", "retry", str(job.id)],
    )
    where = f"in database {ctx.db_name!r}, collection 'scheduler_jobs'"
    expected = [
        ("not found", missing, where),
        ("not found", where),
        ("pending", "only failed or cancelled"),
    ]
    for result, fragments in zip(results, expected, strict=True):
        assert_one_line_error(result, *fragments)
    assert ctx.doc(job.id)["status"] == "pending"  # the refused retry changed nothing


def test_unreachable_server_and_missing_uri(tmp_path: Path) -> None:
    unreachable, with_password, missing = run_many(
        [
            ["--mongodb-uri", BAD_URI, "jobs", "list"],
            [
                "--mongodb-uri",
                "mongodb://ops:s3cret@127.0.0.1:1/?serverSelectionTimeoutMS=300",
                "stats",
            ],
            ["jobs", "show", str(ObjectId())],
        ],
        _env(None),
    )
    assert_one_line_error(unreachable, "cannot connect to MongoDB", "127.0.0.1:1")
    assert_one_line_error(with_password, "cannot connect to MongoDB", "mongodb://***@")
    assert "s3cret" not in with_password.err and "ops" not in with_password.err
    assert_usage_error(missing, "--mongodb-uri", "MONGODB_URI")


# -- show, cancel, retry --------------------------------------------------------------------------


def test_show_every_field_of_a_failed_job(ctx: Ctx) -> None:
    [failed] = make_failed(ctx)
    odd = ctx.scheduler.schedule("odd", {"n": 1})
    odd_data = {"nan": float("nan"), "price": Decimal128("1.50"), "raw": b"\x01\xff"}
    ctx.db["scheduler_jobs"].update_one({"_id": odd.id}, {"$set": {"data": odd_data}})
    human, as_json, odd_json = ctx.many(
        ["jobs", "show", str(failed.id)],
        ["jobs", "show", str(failed.id), "--json"],
        ["jobs", "show", str(odd.id), "--json"],
    )
    assert human.code == 0 and as_json.code == 0, (human, as_json)
    # Any BSON value comes out as strict JSON (no NaN literal, no crash on Decimal128/bytes).
    assert odd_json.code == 0, odd_json
    strict = json.loads(odd_json.out, parse_constant=lambda name: pytest.fail(name))
    assert strict["data"] == {"nan": "nan", "price": "1.50", "raw": "01ff"}

    doc = json.loads(as_json.out)
    stored = ctx.doc(failed.id)
    assert set(doc) == set(stored)  # every field of the stored document
    assert doc["_id"] == str(failed.id)
    assert doc["status"] == "failed"
    assert doc["data"] == {"n": 0}
    assert doc["lastError"] == stored["lastError"] and "boom <0>" in doc["lastError"]
    assert doc["lastErrorTrace"] == stored["lastErrorTrace"]
    assert "ValueError" in doc["lastErrorTrace"]
    for key in ("createdAt", "updatedAt", "lastRunAt"):
        parsed = datetime.fromisoformat(doc[key].replace("Z", "+00:00"))
        assert abs(parsed - stored[key]) < timedelta(milliseconds=1)

    assert str(failed.id) in human.out and "failed" in human.out
    assert '"lastError"' in human.out and "boom <0>" in human.out
    assert "lastErrorTrace:" in human.out
    trace_lines = stored["lastErrorTrace"].rstrip("\n").splitlines()
    assert all(line in human.out for line in trace_lines)  # the trace as readable lines


def test_cancel_then_retry_then_refusals(ctx: Ctx) -> None:
    job = ctx.scheduler.schedule("email", {"user": 1}, delay=3600)

    cancelled = ctx.cli("jobs", "cancel", str(job.id))
    assert cancelled.code == 0, cancelled
    assert "Cancelled" in cancelled.out
    assert ctx.doc(job.id)["status"] == "cancelled"

    again = ctx.cli("jobs", "cancel", str(job.id))
    assert_one_line_error(again, "already cancelled")

    before = datetime.now(timezone.utc)
    retried = ctx.cli("jobs", "retry", str(job.id))
    assert retried.code == 0, retried
    assert "pending" in retried.out
    doc = ctx.doc(job.id)
    assert doc["status"] == "pending"
    assert doc["nextRunAt"] < before + timedelta(seconds=30)  # due now, not in an hour

    pending_retry = ctx.cli("jobs", "retry", str(job.id))
    assert_one_line_error(pending_retry, "pending")


# -- purge ----------------------------------------------------------------------------------------


def _age(ctx: Ctx, job_id: Any, days: float) -> None:
    old = datetime.now(timezone.utc) - timedelta(days=days)
    ctx.db["scheduler_jobs"].update_one(
        {"_id": ObjectId(str(job_id))}, {"$set": {"updatedAt": old}}
    )


def test_purge_with_yes_and_refusal_without(ctx: Ctx) -> None:
    s = ctx.scheduler
    old_cancelled = [s.schedule("email", {"n": n}) for n in range(2)]
    recent_cancelled = s.schedule("email", {"n": 9})
    old_pending = s.schedule("email", {"n": 10}, delay=3600)
    for job in [*old_cancelled, recent_cancelled]:
        assert s.cancel(job.id)
    [old_failed] = make_failed(ctx)
    for job in [*old_cancelled, old_pending]:
        _age(ctx, job.id, 10)
    _age(ctx, old_failed.id, 10)

    def remaining() -> set[str]:
        return {str(doc["_id"]) for doc in ctx.db["scheduler_jobs"].find({}, {"_id": 1})}

    everything = remaining()
    refused, nothing_old, bad_status = ctx.many(
        ["jobs", "purge", "--older-than", "7d"],
        ["jobs", "purge", "--older-than", "2000-01-01T00:00:00Z"],
        ["jobs", "purge", "--older-than", "7d", "--status", "bogus", "--yes"],
    )
    assert_one_line_error(refused, "refusing", "3", "--yes")
    assert nothing_old.code == 0 and "No " in nothing_old.out, nothing_old
    assert_usage_error(bad_status, "'--status'", "bogus")
    assert remaining() == everything

    only_failed = ctx.cli("jobs", "purge", "--older-than", "168h", "--status", "failed", "--yes")
    assert only_failed.code == 0, only_failed
    assert "Deleted 1 job" in only_failed.out
    assert remaining() == everything - {str(old_failed.id)}

    purged = ctx.cli("jobs", "purge", "--older-than", "7d", "--yes")
    assert purged.code == 0, purged
    assert "Deleted 2 jobs" in purged.out
    # Recent finished jobs and pending jobs (however old) stay.
    assert remaining() == {str(recent_cancelled.id), str(old_pending.id)}


def test_purge_asks_on_a_terminal(ctx: Ctx) -> None:
    old = ctx.scheduler.schedule("email", {"n": 1})
    assert ctx.scheduler.cancel(old.id)
    _age(ctx, old.id, 3)
    for answer, deleted in (("n", False), ("y", True)):
        main_fd, tty_fd = pty.openpty()
        try:
            os.write(main_fd, f"{answer}\n".encode())
            done = subprocess.run(
                _argv(["--database", ctx.db_name, "jobs", "purge", "--older-than", "2d"]),
                env=ctx.env,
                stdin=tty_fd,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
            )
        finally:
            os.close(tty_fd)
            os.close(main_fd)
        assert "Delete 1 completed/failed/cancelled job last updated before" in done.stderr
        found = ctx.db["scheduler_jobs"].find_one({"_id": old.id})
        if deleted:
            assert done.returncode == 0 and "Deleted 1 job" in done.stdout, done
            assert found is None
        else:
            assert done.returncode == 1 and "aborted" in done.stderr, done
            assert "Traceback" not in done.stderr
            assert found is not None


# -- stats ----------------------------------------------------------------------------------------


def test_stats_numbers(ctx: Ctx) -> None:
    s = ctx.scheduler
    due = [s.schedule("email", {"n": n}) for n in range(3)]
    s.schedule("report", {"n": 1}, delay=3600)
    cancelled = s.schedule("report", {"n": 2})
    assert s.cancel(cancelled.id)
    make_failed(ctx, count=2)
    # The oldest due job has waited a known while (backdated by the test, not by sleeping).
    long_ago = datetime.now(timezone.utc) - timedelta(minutes=10)
    ctx.db["scheduler_jobs"].update_one({"_id": due[0].id}, {"$set": {"nextRunAt": long_ago}})

    as_json, table = ctx.many(["stats", "--json"], ["stats"])  # no worker is live
    assert as_json.code == 0 and table.code == 0, (as_json, table)
    stats = json.loads(as_json.out)
    assert stats["by_status"] == {
        "pending": 4,
        "running": 0,
        "waiting": 0,
        "completed": 0,
        "failed": 2,
        "cancelled": 1,
    }
    assert stats["total"] == 7
    assert stats["by_name"] == {
        "email": {"pending": 3},
        "report": {"pending": 1, "cancelled": 1},
        "flaky": {"failed": 2},
    }
    assert stats["due"] == 3
    assert stats["unhandled"] == {"email": 3}
    assert stats["failed_last_hour"] == 2
    assert 590 <= stats["lag_seconds"] <= 900
    oldest = datetime.fromisoformat(stats["oldest_due_at"].replace("Z", "+00:00"))
    assert abs(oldest - long_ago) < timedelta(milliseconds=2)

    out = table.out
    first = out.splitlines()[0]
    assert first.startswith(f"Jobs in database {ctx.db_name!r}, collection 'scheduler_jobs'")
    assert "Due, not started: 3" in out
    assert "Failed in the last hour: 2" in out
    assert "Lag of the oldest due job: 10m" in out
    status_rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    assert status_rows["pending"] == ["4"]
    assert status_rows["failed"] == ["2"]
    assert status_rows["total"] == ["7"]
    # name, pending, running, waiting, completed, failed, cancelled, total
    assert status_rows["report"] == ["1", "0", "0", "0", "0", "1", "2"]
    assert status_rows["flaky"] == ["0", "0", "0", "0", "2", "0", "2"]
    unhandled = out[out.index("Due but no live worker handles them") :].splitlines()
    assert unhandled[1].split() == ["name", "due"]
    assert [line.split() for line in unhandled[3:]] == [["email", "3"]]


# -- worker ---------------------------------------------------------------------------------------


@dataclass
class WorkerRun:
    process: subprocess.Popen[bytes]
    err_path: Path
    runs_path: Path

    @property
    def err(self) -> str:
        return self.err_path.read_text(encoding="utf-8")

    def runs(self) -> list[str]:
        if not self.runs_path.exists():
            return []
        return self.runs_path.read_text(encoding="utf-8").splitlines()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@pytest.fixture
def start_worker(ctx: Ctx, tmp_path: Path) -> Iterator[Any]:
    (tmp_path / "tmpmod.py").write_text(textwrap.dedent(WORKER_MODULE), encoding="utf-8")
    started: list[WorkerRun] = []

    def start(*args: str, uri: str | None = None) -> WorkerRun:
        n = len(started)
        err_path = tmp_path / f"worker-{n}.err"
        runs_path = tmp_path / f"worker-{n}.runs"
        env = _env(
            uri or ctx.uri, PYTHONPATH=str(tmp_path), MJS_DB=ctx.db_name, MJS_RUNS=str(runs_path)
        )
        with err_path.open("wb") as err:
            process = subprocess.Popen(
                _argv(["worker", *args]),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=tmp_path,
            )
        run = WorkerRun(process, err_path, runs_path)
        started.append(run)
        return run

    try:
        yield start
    finally:
        for run in started:
            run.stop()


async def test_worker_runs_jobs_and_stops_gracefully_on_sigterm(
    ctx: Ctx, start_worker: Any
) -> None:
    records = [ctx.scheduler.schedule("record", {"n": n}) for n in range(3)]
    [failed] = await asyncio.to_thread(make_failed, ctx)
    retried = await asyncio.to_thread(ctx.cli, "jobs", "retry", str(failed.id))
    assert retried.code == 0, retried
    assert ctx.doc(failed.id)["status"] == "pending"

    worker = start_worker("tmpmod:scheduler", "--workers", "2")
    ids = [job.id for job in [*records, failed]]

    def all_completed() -> bool:
        return all(ctx.doc(job_id)["status"] == "completed" for job_id in ids)

    await wait_for(all_completed, timeout=20)
    await wait_for(lambda: "worker started" in worker.err, timeout=5)
    assert worker.process.poll() is None  # it keeps running until told to stop

    worker.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(worker.process.wait, 20)
    err = worker.err
    assert code == 0, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines[0].startswith("worker started: id=scheduler-")
    assert "workers=2" in lines[0] and "record" in lines[0] and "slow" in lines[0]
    # The module's own store: its client's server, database and collection.
    assert re.search(r" server=mongodb://[^ ]+:\d+ ", lines[0]), lines[0]
    assert f" database={ctx.db_name} collection=scheduler_jobs " in lines[0]
    assert any("stopping gracefully" in line for line in lines)
    assert lines[-1] == "stopped"
    # Each seeded job ran exactly once, the retried failed one included.
    assert sorted(line.split()[-1] for line in worker.runs()) == sorted(str(i) for i in ids)
    assert ctx.db["scheduler_jobs"].count_documents({"status": "running"}) == 0


async def test_second_signal_stops_now_and_hands_the_job_back(ctx: Ctx, start_worker: Any) -> None:
    job = ctx.scheduler.schedule("slow", {"n": 1})
    worker = start_worker("tmpmod:make")  # an async factory returning the Scheduler

    await wait_for(lambda: ctx.doc(job.id)["status"] == "running", timeout=20)
    await wait_for(lambda: any(line.startswith("started") for line in worker.runs()), timeout=10)
    worker.process.send_signal(signal.SIGTERM)
    await wait_for(lambda: "stopping gracefully" in worker.err, timeout=10)
    # The graceful stop waits (up to --stop-timeout, 30 s) for the job that never ends.
    assert worker.process.poll() is None
    assert ctx.doc(job.id)["status"] == "running"

    worker.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(worker.process.wait, 15)  # promptly, well before 30 s
    err = worker.err
    assert code == 0, err
    assert "Traceback" not in err
    assert "stopping now" in err
    assert err.splitlines()[-1] == "stopped"
    doc = ctx.doc(job.id)
    assert doc["status"] == "pending"
    assert "lockedBy" not in doc and "lockUntil" not in doc
    assert doc["attempts"] == 0


async def test_worker_serves_prometheus_metrics(ctx: Ctx, start_worker: Any) -> None:
    """`worker --metrics-port 0` serves the scheduler's metrics."""
    import urllib.request

    pytest.importorskip("prometheus_client")
    job = ctx.scheduler.schedule("record", {"n": 1})
    worker = start_worker("tmpmod:scheduler", "--metrics-port", "0")
    await wait_for(lambda: ctx.doc(job.id)["status"] == "completed", timeout=20)
    await wait_for(lambda: "metrics on http://127.0.0.1:" in worker.err, timeout=10)
    port = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", worker.err)
    assert port is not None, worker.err

    def scrape() -> str:
        url = f"http://127.0.0.1:{port.group(1)}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return str(reply.read().decode())

    # The job's outcome is stored before its event reaches the metrics: scrape until it shows.
    success = 'mongo_job_scheduler_jobs_total{name="record",outcome="success"} 1.0'
    scraped: list[str] = []

    async def counted() -> bool:
        scraped.append(await asyncio.to_thread(scrape))
        return success in scraped[-1]

    await wait_for(counted, timeout=10)
    body = scraped[-1]
    assert "mongo_job_scheduler_job_run_seconds_bucket" in body
    worker.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.process.wait, 20) == 0


def test_worker_bad_targets(ctx: Ctx, tmp_path: Path) -> None:
    (tmp_path / "tmpmod.py").write_text(textwrap.dedent(WORKER_MODULE), encoding="utf-8")
    env = _env(ctx.uri, PYTHONPATH=str(tmp_path), MJS_DB=ctx.db_name, MJS_RUNS=str(tmp_path / "r"))
    results = run_many(
        [
            ["worker", "nonexistent:thing"],
            ["worker", "tmpmod:missing"],
            ["worker", "tmpmod:RUNS"],
            ["worker", "tmpmod:broken"],
            ["worker", "os:getcwd"],
        ],
        env,
        cwd=tmp_path,
    )
    module_lines = textwrap.dedent(WORKER_MODULE).splitlines()
    raise_line = module_lines.index('    raise RuntimeError("no scheduler today")') + 1
    expected = [
        ("nonexistent",),
        ("missing",),
        ("not a Scheduler",),
        (f"calling tmpmod:broken failed at tmpmod.py:{raise_line}: RuntimeError: no scheduler",),
        ("not a Scheduler",),
    ]
    for result, fragments in zip(results, expected, strict=True):
        assert_one_line_error(result, *fragments)
    usage = run_cli(["worker"], env)
    assert usage.code == 2
    assert "Traceback" not in usage.err
    help_text = run_cli(["worker", "--help"], env)
    assert help_text.code == 0
    assert "Exit codes" in help_text.out


def test_a_failed_import_names_its_file_and_line(ctx: Ctx, tmp_path: Path) -> None:
    """An exception, a syntax error, a missing module, an error deep in the standard library:
    the one-line error names the line of the application's file; at --log-level debug the
    whole traceback comes first."""
    package = tmp_path / "brokenapp"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    for name, source in BROKEN_MODULES.items():
        (package / f"{name}.py").write_text(source, encoding="utf-8")
    env = _env(ctx.uri)
    raises, syntax, needs, deep, debug = run_many(
        [
            ["worker", "brokenapp.raises:scheduler"],
            ["worker", "brokenapp.syntax:scheduler"],
            ["worker", "brokenapp.needs:scheduler"],
            ["worker", "brokenapp.deep:scheduler"],
            ["--log-level", "debug", "worker", "brokenapp.raises:scheduler"],
        ],
        env,
        cwd=tmp_path,
    )
    hint = "(--log-level debug shows the traceback)"
    at = "importing 'brokenapp.{}' failed at brokenapp/{}.py:{}: "
    assert_one_line_error(raises, at.format("raises", "raises", 4), "boom at import", hint)
    assert_one_line_error(syntax, at.format("syntax", "syntax", 2), "SyntaxError: invalid syntax")
    assert_one_line_error(
        needs, at.format("needs", "needs", 3), "No module named 'not_installed_mod'", hint
    )
    assert_one_line_error(deep, at.format("deep", "deep", 3), "JSONDecodeError")

    assert debug.code == 1, debug
    assert "Traceback (most recent call last):" in debug.err
    assert 'raise RuntimeError("boom at import")' in debug.err
    last = debug.err.strip().splitlines()[-1]
    assert last.startswith("Error: " + at.format("raises", "raises", 4)), last
    assert hint not in last


def test_a_taken_metrics_port_is_one_line_and_exit_1(ctx: Ctx, tmp_path: Path) -> None:
    """The port error comes before any worker starts; before it, a warning that --database
    names another database than the scheduler's own store."""
    pytest.importorskip("prometheus_client")
    (tmp_path / "tmpmod.py").write_text(textwrap.dedent(WORKER_MODULE), encoding="utf-8")
    env = _env(ctx.uri, PYTHONPATH=str(tmp_path), MJS_DB=ctx.db_name, MJS_RUNS=str(tmp_path / "r"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = ["worker", "tmpmod:scheduler", "--metrics-port", str(port)]
        plain, own_store = run_many([run, ["--database", "elsewhere", *run]], env)
    assert_one_line_error(plain, f"cannot serve metrics on 127.0.0.1:{port}")
    assert own_store.code == 1, own_store
    warning, error = own_store.err.strip().splitlines()
    assert warning.startswith("Warning: --database / --collection are not used: tmpmod:scheduler")
    assert f"database={ctx.db_name} collection=scheduler_jobs" in warning
    assert error.startswith(f"Error: cannot serve metrics on 127.0.0.1:{port}")
    assert "worker started" not in own_store.err


# -- which database -------------------------------------------------------------------------------


async def test_the_database_named_in_the_uri_is_used(ctx: Ctx, start_worker: Any) -> None:
    """Without --database the commands and the worker use the URI's database; --database
    wins. The worker's first line names the server (password hidden), database and
    collection."""
    user, password = f"mjs_{uuid.uuid4().hex[:8]}", f"pw/{uuid.uuid4().hex[:12]}@{uuid.uuid4().hex}"
    ctx.db.command(
        "createUser", user, pwd=password, roles=[{"role": "readWrite", "db": ctx.db_name}]
    )
    try:
        userinfo = f"{user}:{urllib.parse.quote_plus(password)}"
        uri = with_path(ctx.uri, ctx.db_name, userinfo)
        waiting = ctx.scheduler.schedule("email", {"n": 1}, delay=3600)
        other = f"{ctx.db_name}_other"
        listed, elsewhere, stats, as_option = await asyncio.to_thread(
            run_many,
            [
                ["jobs", "list", "--json"],
                ["--database", other, "jobs", "list"],
                ["stats"],
                ["--mongodb-uri", uri, "jobs", "show", str(waiting.id), "--json"],
            ],
            _env(uri),
        )
        assert [doc["_id"] for doc in listed.json_lines] == [str(waiting.id)], listed
        assert elsewhere.code == 0 and elsewhere.out == "", elsewhere
        assert f"No jobs match in database '{other}', collection 'scheduler_jobs'" in elsewhere.err
        assert stats.out.startswith(f"Jobs in database {ctx.db_name!r}"), stats
        assert json.loads(as_option.out)["_id"] == str(waiting.id)

        due = ctx.scheduler.schedule("record", {"n": 2})
        worker = start_worker("tmpmod:bare", uri=uri)  # no store: the command makes one
        await wait_for(lambda: ctx.doc(due.id)["status"] == "completed", timeout=20)
        await wait_for(lambda: "worker started" in worker.err, timeout=5)
        first = worker.err.splitlines()[0]
        assert "server=mongodb://***@" in first, first
        assert f"/{ctx.db_name}" in first
        assert f" database={ctx.db_name} collection=scheduler_jobs names=record" in first
        for piece in (user, *re.split(r"[/@]", password), userinfo):
            assert piece not in worker.err, (piece, worker.err)
    finally:
        ctx.db.command("dropUser", user)


# -- the fleet ------------------------------------------------------------------------------------


async def test_workers_lists_the_live_fleet_and_stats_the_unhandled(
    ctx: Ctx, start_worker: Any
) -> None:
    orphan = ctx.scheduler.schedule("orphan", {"n": 1})
    named = start_worker("tmpmod:scheduler", "--workers", "2")

    async def listed(count: int) -> list[dict[str, Any]] | None:
        result = await asyncio.to_thread(ctx.cli, "workers", "--json")
        assert result.code == 0, result
        return result.json_lines if len(result.json_lines) == count else None

    [info] = await wait_for(lambda: listed(1), timeout=20)
    await wait_for(lambda: "worker started" in named.err, timeout=5)
    assert f"id={info['id']} " in named.err.splitlines()[0]
    assert info["host"] == socket.gethostname()
    assert info["pid"] == named.process.pid
    assert sorted(info["names"]) == ["flaky", "record", "slow"]
    assert (info["workers"], info["running"]) == (2, 0)
    assert info["version"] == __version__
    assert info["id"].startswith(info["scheduler_id"])
    for key in ("started_at", "last_seen"):
        seen = datetime.fromisoformat(info[key].replace("Z", "+00:00"))
        assert abs(seen - datetime.now(timezone.utc)) < timedelta(minutes=1)

    table, stats_json, stats_text = await asyncio.to_thread(
        ctx.many, ["workers"], ["stats", "--json"], ["stats"]
    )
    assert table.code == 0, table
    header, row = table.out.splitlines()[0], table.out.splitlines()[2]
    for column in ("id", "host", "pid", "names", "running", "started", "last seen"):
        assert column in header
    assert row.startswith(info["id"]) and f" {info['pid']} " in row
    assert "flaky, record, slow" in row and " 0/2 " in row
    assert re.search(r" \d+ s ago +\d+ s ago$", row.rstrip()), row
    # The orphan job is due, but the only live worker has no task for it.
    assert json.loads(stats_json.out)["unhandled"] == {"orphan": 1}
    text = stats_text.out
    assert "Due but no live worker handles them" in text
    assert text.rstrip().splitlines()[-1].split() == ["orphan", "1"]

    catch_all = start_worker("tmpmod:anything")  # a handler for any name
    both = await wait_for(lambda: listed(2), timeout=20)
    [any_name] = [w for w in both if w["pid"] == catch_all.process.pid]
    assert any_name["names"] is None
    await wait_for(lambda: ctx.doc(orphan.id)["status"] == "completed", timeout=20)
    table = await asyncio.to_thread(ctx.cli, "workers")
    [row] = [line for line in table.out.splitlines() if line.startswith(any_name["id"])]
    assert " any " in row and " 0/1 " in row

    for run in (named, catch_all):
        run.process.send_signal(signal.SIGTERM)
    for run in (named, catch_all):
        assert await asyncio.to_thread(run.process.wait, 20) == 0, run.err

    async def gone() -> bool:
        return await listed(0) == []

    await wait_for(gone, timeout=10)  # each removed itself at stop
    nobody = await asyncio.to_thread(ctx.cli, "workers")
    assert nobody.code == 0 and nobody.out == "", nobody
    assert f"No live workers on database {ctx.db_name!r}" in nobody.err


def test_pause_and_resume_show_in_stats(mongodb_uri: str) -> None:
    """`pause NAME` / `resume NAME` and the paused names in `stats`."""
    import json as _json
    import subprocess
    import sys
    import uuid

    db = f"mjs_cli_pause_{uuid.uuid4().hex[:8]}"
    base = [
        sys.executable,
        "-m",
        "mongo_job_scheduler",
        "--mongodb-uri",
        mongodb_uri,
        "--database",
        db,
    ]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], capture_output=True, text=True, timeout=60)

    try:
        first = cli("pause", "reports")
        assert first.returncode == 0 and "Paused reports." in first.stdout
        assert "already paused" in cli("pause", "reports").stdout
        stats = _json.loads(cli("stats", "--json").stdout)
        assert stats["paused"] == ["reports"]
        assert "Resumed reports." in cli("resume", "reports").stdout
        assert "was not paused" in cli("resume", "reports").stdout
        assert _json.loads(cli("stats", "--json").stdout)["paused"] == []
        bad = cli("pause", "")
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
    finally:
        from pymongo import MongoClient

        with MongoClient(mongodb_uri) as client:
            client.drop_database(db)


DASHBOARD_TOKEN = "s3cret-dashboard-token-for-tests"


def test_dashboard_command_serves_the_dashboard(mongodb_uri: str) -> None:
    """`dashboard --port P --token T` serves pages that need the token."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request
    import uuid

    pytest.importorskip("uvicorn")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = f"mjs_cli_dash_{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mongo_job_scheduler",
            "--mongodb-uri",
            mongodb_uri,
            "--database",
            db,
            "dashboard",
            "--port",
            str(port),
            "--token",
            DASHBOARD_TOKEN,
            "--cors-origin",
            "https://app.example.com",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as reply:
                    assert reply.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "dashboard did not come up"
                time.sleep(0.1)
        # Without the token a browser is sent to the sign-in page.
        with urllib.request.urlopen(f"{base}/", timeout=5) as reply:
            assert "/login" in reply.geturl()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(
                urllib.request.Request(
                    f"{base}/partials/overview", headers={"Authorization": "Bearer wrong"}
                ),
                timeout=5,
            )
        assert refused.value.code == 401
        request = urllib.request.Request(
            f"{base}/", headers={"Authorization": f"Bearer {DASHBOARD_TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert reply.status == 200
            assert "pending" in reply.read().decode()
        metrics = urllib.request.Request(
            f"{base}/metrics", headers={"Authorization": f"Bearer {DASHBOARD_TOKEN}"}
        )
        with urllib.request.urlopen(metrics, timeout=5) as reply:
            assert "mongo_job_scheduler_queue_depth" in reply.read().decode()
        # The HTTP API at /api: the same token, CORS for the origin named, no server banner.
        with urllib.request.urlopen(f"{base}/api/health", timeout=5) as reply:
            assert json.loads(reply.read()) == {"status": "ok", "database": "ok"}
            assert reply.headers.get("server") is None
        listing = urllib.request.Request(
            f"{base}/api/jobs",
            headers={
                "Authorization": f"Bearer {DASHBOARD_TOKEN}",
                "Origin": "https://app.example.com",
            },
        )
        with urllib.request.urlopen(listing, timeout=5) as reply:
            assert json.loads(reply.read())["jobs"] == []
            assert reply.headers["access-control-allow-origin"] == "https://app.example.com"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        from pymongo import MongoClient

        with MongoClient(mongodb_uri) as client:
            client.drop_database(db)


def test_jobs_show_lists_what_a_job_waits_for_and_what_waits_for_it(ctx: Ctx) -> None:
    first = ctx.scheduler.schedule("extract", delay=3600)
    middle = ctx.scheduler.schedule("transform", depends_on=[first])
    last = ctx.scheduler.schedule("load", depends_on=[middle])
    shown = ctx.cli("jobs", "show", str(middle.id))
    assert shown.code == 0, shown
    lines = shown.out.splitlines()
    assert lines[0].startswith(f"job {middle.id}  transform  waiting")
    waits = lines.index("waits for:")
    assert lines[waits + 1] == f"  {first.id}  extract  pending"
    by = lines.index("waited for by:")
    assert lines[by + 1] == f"  {last.id}  load  waiting"
    first_shown = ctx.cli("jobs", "show", str(first.id))
    assert "waits for:" not in first_shown.out
    assert f"  {middle.id}  transform  waiting" in first_shown.out.splitlines()
    listed = ctx.cli("jobs", "list", "--status", "waiting", "--json")
    assert {json.loads(line)["_id"] for line in listed.out.splitlines()} == {
        str(middle.id),
        str(last.id),
    }


# -- hostile values from the database -------------------------------------------------------------

TERMINAL_ATTACK = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202e"
"""A window-title change, a screen clear, an 8-bit CSI and a bidi override."""
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e")


def _assert_inert(result: Result) -> None:
    for raw in RAW_CONTROLS:
        assert raw not in result.out + result.err, (raw, result)


def test_values_from_the_database_reach_the_terminal_inert(ctx: Ctx) -> None:
    """Names, errors, tracebacks, data, paused names and worker registrations written by
    something else (an older version, another library, a person with database access) are
    printed with their control characters escaped, never raw."""
    failed = ctx.scheduler.schedule("plain", {"note": "x"})
    due = ctx.scheduler.schedule("plain-due")
    now = datetime.now(timezone.utc)
    evil_name = "evil" + TERMINAL_ATTACK
    trace = "Traceback (most recent call last):\n  line 1\nValueError: " + TERMINAL_ATTACK + "\n"
    jobs = ctx.db["scheduler_jobs"]
    jobs.update_one(
        {"_id": failed.id},
        {
            "$set": {
                "name": evil_name,
                "status": "failed",
                "lastError": "handler said " + TERMINAL_ATTACK,
                "lastErrorTrace": trace,
                "data": {"note": TERMINAL_ATTACK},
            }
        },
    )
    jobs.update_one({"_id": due.id}, {"$set": {"name": evil_name}})
    ctx.db["scheduler_jobs_paused"].insert_one({"_id": "paused" + TERMINAL_ATTACK, "pausedAt": now})
    ctx.db["scheduler_jobs_workers"].insert_one(
        {
            "_id": "w" + TERMINAL_ATTACK,
            "schedulerId": "s",
            "host": "host" + TERMINAL_ATTACK,
            "pid": 1,
            "names": ["only" + TERMINAL_ATTACK],
            "workers": 1,
            "running": 0,
            "startedAt": now,
            "lastSeen": now + timedelta(minutes=5),
            "version": "x",
        }
    )
    job_id = str(failed.id)
    results = ctx.many(
        ["jobs", "list"],
        ["jobs", "list", "--json"],
        ["jobs", "show", job_id],
        ["jobs", "show", job_id, "--json"],
        ["stats"],
        ["stats", "--json"],
        ["workers"],
        ["workers", "--json"],
    )
    for result in results:
        assert result.code == 0, result
        _assert_inert(result)
    listed, listed_json, shown, shown_json, stats, stats_json, workers, workers_json = results
    # Visible, not hidden: the escape reads as text.
    assert "\\x1b]0;owned\\x07" in shown.out
    assert "\\x1b" in listed.out and "\\x1b" in stats.out and "\\x1b" in workers.out
    # The traceback keeps its lines.
    assert "\n  line 1\n" in shown.out
    # JSON stays exact: the escapes are JSON escapes that decode to the stored text.
    assert {j["name"] for j in listed_json.json_lines} == {evil_name}
    assert json.loads(shown_json.out)["lastErrorTrace"] == trace
    assert evil_name in json.loads(stats_json.out)["by_name"]
    assert workers_json.json_lines[0]["host"] == "host" + TERMINAL_ATTACK
    retried = ctx.cli("jobs", "retry", job_id)
    assert retried.code == 0, retried
    _assert_inert(retried)


# -- secrets of the connection string -------------------------------------------------------------

PASSWORD_PIECES = ("Zq9", "x7Kp", "Wm3")


def test_no_piece_of_a_password_or_secret_option_is_printed(mongodb_uri: str) -> None:
    """Malformed URIs (a password with a raw '/' or '@'), secret options, and a password the
    server refuses: the errors name the problem and the hosts, never the user information or
    an option's secret."""
    unreachable = "127.0.0.1:1/?serverSelectionTimeoutMS=300"
    hostile = [
        f"mongodb://ops:Zq9/x7Kp@{unreachable}",
        f"mongodb://ops:Zq9@Wm3@{unreachable}",
        f"mongodb://ops:Zq9?x7Kp@{unreachable}",
        f"mongodb://ops:Zq9%2Fx7Kp@{unreachable}"
        "&authMechanismProperties=AWS_SESSION_TOKEN:Tk9sess&proxyPassword=Px9pass"
        "&proxyUsername=Pu9user&tlsCertificateKeyFilePassword=Kf9pass",
        with_path(mongodb_uri, "app", "ops:Zq9%2Fx7Kp%40Wm3"),  # refused by the server
    ]
    results = run_many([["--mongodb-uri", uri, "stats"] for uri in hostile], _env(None))
    for uri, result in zip(hostile, results, strict=True):
        assert result.code in (1, 2), (uri, result)
        assert "Traceback" not in result.err, result
        for secret in (*PASSWORD_PIECES, "ops:", "Tk9sess", "Px9pass", "Pu9user", "Kf9pass"):
            assert secret not in result.out + result.err, (secret, uri, result.err)
        assert "***" in result.err, result.err
    assert_one_line_error(results[-1], "MongoDB refused the operation", "***@")


def test_the_dashboard_start_line_hides_the_user_information(ctx: Ctx) -> None:
    user, password = f"mjs_{uuid.uuid4().hex[:8]}", f"Zq9/{uuid.uuid4().hex}@Wm3"
    ctx.db.command("createUser", user, pwd=password, roles=[{"role": "read", "db": ctx.db_name}])
    try:
        uri = with_path(ctx.uri, ctx.db_name, f"{user}:{urllib.parse.quote_plus(password)}")
        with serving_dashboard(ctx, uri=uri) as (_base, lines):
            line = lines[-1]
        assert "at mongodb://***@" in line, line
        for piece in (user, *re.split(r"[/@]", password)):
            assert piece not in line, (piece, line)
    finally:
        ctx.db.command("dropUser", user)


# -- what the commands read -----------------------------------------------------------------------


def test_the_table_and_the_purge_count_read_only_the_fields_they_need(ctx: Ctx) -> None:
    blob = "x" * (5 * 1024 * 1024)
    jobs = [ctx.scheduler.schedule("big", {"blob": blob, "i": i}) for i in range(3)]
    ctx.db["scheduler_jobs"].update_many(
        {"_id": {"$in": [j.id for j in jobs]}},
        {"$set": {"status": "completed", "result": {"blob": blob}}},
    )
    ctx.db.command("profile", 2)
    try:
        listed = ctx.cli("jobs", "list")
        purge = ctx.cli("jobs", "purge", "--older-than", "2026-01-01T00:00:00Z", "--yes")
    finally:
        ctx.db.command("profile", 0)
    reads = list(
        ctx.db["system.profile"].find(
            {"ns": f"{ctx.db_name}.scheduler_jobs", "op": {"$in": ["query", "getmore"]}}
        )
    )
    ctx.db.drop_collection("system.profile")
    assert listed.code == 0 and "big" in listed.out, listed
    assert purge.code == 0, purge
    assert len(reads) >= 2
    for read in reads:
        assert read["responseLength"] < 256 * 1024, (read["responseLength"], read["command"])


def test_stats_shows_the_busiest_names_and_sums_the_rest(ctx: Ctx) -> None:
    items = [{"name": f"n{i:03}", "delay": 600} for i in range(130)]
    items += [{"name": f"n{i:03}", "delay": 600} for i in range(30, 130)]
    ctx.scheduler.schedule_bulk(items)
    shown, as_json = ctx.many(["stats"], ["stats", "--json"])
    assert shown.code == 0, shown
    named = re.findall(r"^\s*(n\d{3})\s", shown.out, re.M)
    assert named == [f"n{i:03}" for i in range(30, 130)]
    assert re.search(r"^\s*\(30 other names\)\s+30\s", shown.out, re.M), shown.out
    assert len(json.loads(as_json.out)["by_name"]) == 130  # --json has every name


# -- serving the dashboard ------------------------------------------------------------------------


@contextlib.contextmanager
def serving_dashboard(
    ctx: Ctx, *args: str, uri: str | None = None
) -> Iterator[tuple[str, list[str]]]:
    """``dashboard --port <free> --token DASHBOARD_TOKEN *args`` running (on ``uri``, default
    the test server): its base URL on 127.0.0.1 and the lines it wrote to stderr up to its
    start line."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = ("--token", DASHBOARD_TOKEN)
    process = subprocess.Popen(
        _argv(["--database", ctx.db_name, "dashboard", "--port", str(port), *token, *args]),
        env=ctx.env if uri is None else _env(uri),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("Dashboard on"):
            line = process.stderr.readline()
            assert line, (process.wait(timeout=30), lines)
            lines.append(line.rstrip("\n"))
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, process)
        yield base, lines
    finally:
        process.kill()
        process.wait(timeout=30)


def _ask(base: str, path: str, headers: dict[str, str], body: str | None = None) -> Any:
    import http.client

    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
    try:
        kind = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        connection.request("POST" if body else "GET", path, body, {**headers, **kind})
        response = connection.getresponse()
        response.read()
        return response
    finally:
        connection.close()


def test_the_dashboard_warns_when_it_listens_beyond_loopback(ctx: Ctx) -> None:
    with serving_dashboard(ctx, "--host", "0.0.0.0") as (_base, lines):
        warnings = [line for line in lines if line.startswith("Warning:")]
        assert len(warnings) == 1, lines
        assert "0.0.0.0" in warnings[0] and "TLS" in warnings[0], warnings
    with serving_dashboard(ctx) as (_base, lines):  # 127.0.0.1 by default
        assert not [line for line in lines if line.startswith("Warning:")], lines


def test_allowed_hosts_and_forwarded_headers_of_the_dashboard_command(ctx: Ctx) -> None:
    login = f"token={DASHBOARD_TOKEN}&next=/"
    forwarded = {"Host": "dash.example", "X-Forwarded-Proto": "https", "X-Forwarded-For": "1.2.3.4"}
    with serving_dashboard(ctx, "--allowed-host", "dash.example") as (base, _lines):
        assert _ask(base, "/healthz", {"Host": "dash.example"}).status == 200
        assert _ask(base, "/healthz", {"Host": "evil.example"}).status == 400
        # Forwarded headers are not trusted by default: the cookie is not marked Secure.
        signed_in = _ask(base, "/login", forwarded, login)
        assert signed_in.status == 303
        assert "secure" not in signed_in.getheader("set-cookie").lower()
    proxied = ("--allowed-host", "dash.example", "--forwarded-allow-ips", "127.0.0.1")
    with serving_dashboard(ctx, *proxied) as (base, _lines):
        signed_in = _ask(base, "/login", forwarded, login)
        assert signed_in.status == 303
        assert "secure" in signed_in.getheader("set-cookie").lower()
