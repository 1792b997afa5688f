"""``jobs add``, ``jobs delete`` and ``jobs cancel`` / ``jobs retry`` by filter, run as real
subprocesses against the test server (one fresh database per test)."""

# ruff: noqa: F811  (``ctx`` is the fixture of test_cli_commands, imported to be used here)

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient
from tests.integration.test_cli_commands import (  # noqa: F401
    BAD_URI,
    RUN_TIMEOUT,
    Ctx,
    _argv,
    _env,
    assert_one_line_error,
    assert_usage_error,
    ctx,
    make_failed,
    run_many,
)

from mongo_job_scheduler import MongoJobStore

JOBS = "scheduler_jobs"


def _claim(ctx: Ctx) -> list[Any]:
    """Claim every due job as a worker would: they are running."""

    async def claim() -> list[Any]:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(ctx.uri)
        try:
            store = MongoJobStore(client[ctx.db_name])
            result = await store.claim("cli-test-worker", 100, timedelta(minutes=5), 3)
            return [claimed.job_id for claimed in result.jobs]
        finally:
            await client.close()

    return asyncio.run(claim())


def _statuses(ctx: Ctx) -> dict[str, str]:
    return {str(doc["_id"]): doc["status"] for doc in ctx.db[JOBS].find({}, {"status": 1})}


# -- jobs add -------------------------------------------------------------------------------------


def test_add_schedules_a_job_in_the_units_given(ctx: Ctx) -> None:
    before = datetime.now(timezone.utc)
    added = ctx.cli(
        "jobs",
        "add",
        "send-report",
        "--data",
        '{"org": "o1", "pages": [1, 2]}',
        "--delay",
        "10m",
        "--every",
        "1h30m",
        "--retry",
        "3",
        "--priority",
        "2",
        "--dedupe-key",
        "report:o1",
    )
    assert added.code == 0, added
    match = re.fullmatch(
        r"Created job ([0-9a-f]{24}) \(send-report\), due \S+ \S+ UTC\.\n", added.out
    )
    assert match, added.out
    doc = ctx.doc(match.group(1))
    assert doc["data"] == {"org": "o1", "pages": [1, 2]}
    assert doc["repeat"] == {"every": 5_400_000}
    assert doc["retry"] == {"maxAttempts": 3, "delay": 0}
    assert (doc["priority"], doc["dedupeKey"]) == (2, "report:o1")
    assert before + timedelta(minutes=9) < doc["nextRunAt"] < before + timedelta(minutes=11)

    again, as_json = ctx.many(
        ["jobs", "add", "send-report", "--dedupe-key", "report:o1"],
        ["jobs", "add", "send-report", "--dedupe-key", "report:o1", "--json"],
    )
    assert again.code == 0, again
    assert again.out == (
        f"Job {match.group(1)} (send-report, pending) holds dedupe key 'report:o1': "
        "nothing created.\n"
    )
    answer = json.loads(as_json.out)
    assert answer["created"] is False and answer["job"]["_id"] == match.group(1)
    assert answer["job"]["repeat"] == {"every": 5_400_000}  # milliseconds, as stored
    assert ctx.db[JOBS].count_documents({}) == 1


def test_add_at_a_time_in_a_zone_on_a_cron_schedule(ctx: Ctx) -> None:
    local, offset, now = ctx.many(
        [
            "jobs",
            "add",
            "morning",
            "--run-at",
            "2031-06-02T09:00",
            "--timezone",
            "Europe/Paris",
            "--cron",
            "30 9 * * 1-5",
            "--json",
        ],
        ["jobs", "add", "evening", "--run-at", "2031-06-02T21:00:00-04:00", "--json"],
        ["jobs", "add", "now", "--json"],
    )
    morning = json.loads(local.out)["job"]
    assert morning["nextRunAt"] == "2031-06-02T07:00:00.000Z"
    assert morning["repeat"] == {"cron": "30 9 * * 1-5", "timezone": "Europe/Paris"}
    assert json.loads(offset.out)["job"]["nextRunAt"] == "2031-06-03T01:00:00.000Z"
    created = json.loads(now.out)
    assert created["created"] is True and created["job"]["data"] is None


def test_add_refuses_malformed_and_invalid_values_before_connecting(tmp_path: Any) -> None:
    add = ["--mongodb-uri", BAD_URI, "jobs", "add"]
    cases = [
        ([*add, "x", "--data", "{bad"], ("'--data'", "not valid JSON")),
        ([*add, "x", "--data", "NaN"], ("'--data'", "NaN")),
        ([*add, "x", "--delay", "60"], ("'--delay'", "give a unit: 60s, 60m or 60ms")),
        ([*add, "x", "--every", "often"], ("'--every'", "expected a duration")),
        ([*add, "x", "--every", "50ms"], ("'--every'", "must be at least 100 ms")),
        ([*add, "x", "--timezone", "Mars/Olympus"], ("'--timezone'", "unknown time zone")),
        ([*add, "x", "--run-at", "soon"], ("'--run-at'", "ISO 8601")),
        ([*add, "x", "--run-at", "2031-01-01T00:00Z", "--delay", "1m"], ("--run-at or --delay",)),
        ([*add, "x", "--cron", "0 9 * * *", "--every", "1h"], ("--cron or --every",)),
        ([*add, "x", "--cron", "61 * * * *"], ("'--cron'",)),
        ([*add, "x", "--priority", "11"], ("'--priority'", "from 1 to 10")),
        ([*add, "x", "--dedupe-key", ""], ("'--dedupe-key'", "non-empty")),
        ([*add, ""], ("'NAME'", "empty")),
        (["--mongodb-uri", BAD_URI, "jobs", "delete", "nope"], ("'ID'", "nope")),
    ]
    results = run_many([args for args, _ in cases], _env(None))
    for (_, fragments), result in zip(cases, results, strict=True):
        assert_usage_error(result, *fragments)


# -- jobs delete ----------------------------------------------------------------------------------


def test_delete_deletes_what_is_not_running(ctx: Ctx) -> None:
    pending = ctx.scheduler.schedule("doomed", delay=3600, dedupe_key="doomed")
    busy = ctx.scheduler.schedule("busy")
    assert _claim(ctx) == [busy.id]
    deleted, refused = ctx.many(
        ["jobs", "delete", str(pending.id)], ["jobs", "delete", str(busy.id)]
    )
    assert deleted.code == 0 and deleted.out == f"Deleted job {pending.id}.\n", deleted
    assert_one_line_error(refused, "running", "cancel it first")
    assert _statuses(ctx) == {str(busy.id): "running"}
    gone = ctx.cli("jobs", "delete", str(pending.id))
    assert_one_line_error(gone, "not found", f"database {ctx.db_name!r}")
    assert ctx.scheduler.schedule("doomed", dedupe_key="doomed").id != pending.id  # key freed


# -- cancel and retry by filter -------------------------------------------------------------------


def test_cancel_by_filter_counts_then_needs_yes_without_a_terminal(ctx: Ctx) -> None:
    s = ctx.scheduler
    mine = [s.schedule("email", {"user": 1, "n": n}, delay=3600) for n in range(3)]
    other_user = s.schedule("email", {"user": 2}, delay=3600)
    other_name = s.schedule("report", {"user": 1}, delay=3600)
    before = _statuses(ctx)
    refused = ctx.cli("jobs", "cancel", "--name", "email", "--data", "user=1")
    assert refused.code == 1 and refused.out == "", refused
    assert refused.err.splitlines() == [
        "3 jobs match (name 'email', status pending|running|waiting, data.user = 1).",
        "Error: refusing to cancel 3 jobs without confirmation: pass --yes (no terminal to ask on)",
    ]
    assert _statuses(ctx) == before

    done = ctx.cli("jobs", "cancel", "--name", "email", "--data", "user=1", "--yes")
    assert done.code == 0, done
    assert done.out == "Cancelled 3 jobs.\n"
    assert (
        done.err == "3 jobs match (name 'email', status pending|running|waiting, data.user = 1).\n"
    )
    after = _statuses(ctx)
    assert {after[str(job.id)] for job in mine} == {"cancelled"}
    assert after[str(other_user.id)] == after[str(other_name.id)] == "pending"

    nothing = ctx.cli("jobs", "cancel", "--name", "email", "--data", "user=1", "--yes")
    assert nothing.code == 0 and nothing.out == ""
    assert nothing.err.startswith("0 jobs match")


def test_retry_by_filter_reports_what_it_could_not_retry(ctx: Ctx) -> None:
    failed = make_failed(ctx, count=3)
    s = ctx.scheduler
    held = s.schedule("mail", dedupe_key="mail:1", delay=3600)
    assert s.cancel(held.id)
    s.schedule("mail", dedupe_key="mail:1", delay=3600)  # holds the key now
    results = ctx.many(
        ["jobs", "retry", "--status", "failed", "--yes"],
        ["jobs", "retry", "--name", "mail", "--yes"],
    )
    by_status, by_name = results
    assert by_status.code == 0 and by_status.out == "Retried 3 jobs.\n", by_status
    assert by_status.err == "3 jobs match (status failed).\n"
    assert {_statuses(ctx)[str(job.id)] for job in failed} == {"pending"}
    assert by_name.code == 0, by_name
    assert by_name.out == "Retried 0 jobs; 1 refused.\n"
    assert "1 job matches (name 'mail', status failed|cancelled)." in by_name.err
    assert "dedupe key" in by_name.err and str(held.id) in by_name.err
    assert _statuses(ctx)[str(held.id)] == "cancelled"


def test_an_id_or_a_filter_but_not_both_nor_neither(ctx: Ctx) -> None:
    job_id = str(ObjectId())
    both, neither, wrong_status, bad_data = ctx.many(
        ["jobs", "cancel", job_id, "--name", "email"],
        ["jobs", "retry"],
        ["jobs", "cancel", "--status", "completed"],
        ["jobs", "retry", "--data", "$where=1"],
    )
    assert_usage_error(both, "not both")
    assert_usage_error(neither, "give a job ID, or --name/--status/--data")
    assert_usage_error(wrong_status, "'--status'", "completed")
    assert_usage_error(bad_data, "'--data'")


def _on_a_terminal(ctx: Ctx, args: list[str], answer: str) -> tuple[int, str, str]:
    """Run the CLI with stdin and stderr on a terminal (stdout piped), typing ``answer``;
    the exit code, stdout and what the terminal showed."""
    main_fd, tty_fd = pty.openpty()
    shown: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(main_fd, 4096)
            except OSError:  # the terminal closed
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        os.write(main_fd, f"{answer}\n".encode())
        done = subprocess.run(
            _argv(["--database", ctx.db_name, *args]),
            env=ctx.env,
            stdin=tty_fd,
            stdout=subprocess.PIPE,
            stderr=tty_fd,
            text=True,
            timeout=RUN_TIMEOUT,
        )
    finally:
        os.close(tty_fd)
        reader.join(10)
        os.close(main_fd)
    return done.returncode, done.stdout, b"".join(shown).decode("utf-8", "replace")


def test_on_a_terminal_it_asks_first_and_shows_progress(ctx: Ctx) -> None:
    jobs = [ctx.scheduler.schedule("email", {"n": n}, delay=3600) for n in range(40)]
    code, out, shown = _on_a_terminal(ctx, ["jobs", "cancel", "--name", "email"], "n")
    assert code == 1 and out == ""
    assert "40 jobs match" in shown and "Cancel these 40 jobs? [y/N]" in shown
    assert "cancel aborted; nothing was changed" in shown
    assert set(_statuses(ctx).values()) == {"pending"}

    code, out, shown = _on_a_terminal(ctx, ["jobs", "cancel", "--name", "email"], "y")
    assert code == 0 and out == "Cancelled 40 jobs.\n", (out, shown)
    assert "Cancelling" in shown and "40/40" in shown  # the progress bar, on the terminal
    assert {_statuses(ctx)[str(job.id)] for job in jobs} == {"cancelled"}
