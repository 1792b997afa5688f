"""``mongo_job_scheduler.testing``: ``drain`` and the pytest plugin users put in their suites.

``drain`` is tested in-process over both stores; the fixtures in-process (through the entry
point, with ``mjs_mongodb_uri`` pointed at this suite's server) and in user-style test files run
by ``pytester`` in a subprocess: with ``MONGODB_URI`` set, once starting a mongod of its own, and
once without pytest-asyncio.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import ServerSelectionTimeoutError
from tests.conftest import wait_for

from mongo_job_scheduler import Job, JobStatus, JobStore, MongoJobStore, Scheduler
from mongo_job_scheduler.testing import drain

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def mjs_mongodb_uri(mongodb_uri: str) -> str:
    """The plugin's fixtures use this suite's server (overriding the plugin's own fixture)."""
    return mongodb_uri


@pytest.fixture
async def scheduler(store: JobStore) -> AsyncIterator[Scheduler]:
    sched = Scheduler(store=store, poll_interval=0.02)
    try:
        yield sched
    finally:
        await sched.stop(graceful=False)


def _later(hours: float = 1) -> datetime:
    return datetime.now(timezone.utc) + timedelta(hours=hours)


# -- drain ----------------------------------------------------------------------------------


async def test_drain_runs_retries_to_completion(scheduler: Scheduler) -> None:
    calls: dict[str, int] = {}

    @scheduler.task("flaky")
    async def flaky(job: Job) -> None:
        calls[job.data["key"]] = calls.get(job.data["key"], 0) + 1
        if calls[job.data["key"]] < job.data["succeed_on"]:
            raise RuntimeError("not yet")

    jobs = [
        await scheduler.schedule("flaky", {"key": f"k{i}", "succeed_on": i}, retry=3)
        for i in (1, 2, 3)
    ]
    finished = await drain(scheduler, timeout=20)

    assert sorted(str(j.id) for j in finished) == sorted(str(j.id) for j in jobs)
    assert all(j.status is JobStatus.COMPLETED for j in finished)
    assert calls == {"k1": 1, "k2": 2, "k3": 3}
    for job in jobs:
        stored = await scheduler.get_job(job.id)
        assert stored is not None and stored.status is JobStatus.COMPLETED
    assert not scheduler.is_running  # drain started it, drain stopped it


async def test_drain_returns_failed_job(scheduler: Scheduler) -> None:
    @scheduler.task("boom")
    def boom(job: Job) -> None:  # a sync handler, run in the thread pool
        raise ValueError(f"bad input {job.data}")

    @scheduler.task("fine")
    async def fine(job: Job) -> str:
        return "ok"

    failing = await scheduler.schedule("boom", 7, retry={"maxAttempts": 2, "delay": 0})
    ok = await scheduler.schedule("fine")
    finished = {str(j.id): j for j in await drain(scheduler, timeout=20)}

    assert set(finished) == {str(failing.id), str(ok.id)}
    assert finished[str(failing.id)].status is JobStatus.FAILED
    assert finished[str(failing.id)].attempts == 2
    assert "bad input 7" in (finished[str(failing.id)].last_error or "")
    assert finished[str(ok.id)].status is JobStatus.COMPLETED


async def test_drain_runs_jobs_scheduled_by_handlers(scheduler: Scheduler) -> None:
    @scheduler.task("parent")
    async def parent(job: Job) -> None:
        for i in range(3):
            await scheduler.schedule("child", {"i": i})

    seen: list[int] = []

    @scheduler.task("child")
    async def child(job: Job) -> None:
        seen.append(job.data["i"])

    await scheduler.schedule("parent")
    finished = await drain(scheduler, timeout=20)

    assert sorted(seen) == [0, 1, 2]
    assert sorted(j.name for j in finished) == ["child", "child", "child", "parent"]


async def test_drain_times_out_naming_the_stuck_job(scheduler: Scheduler) -> None:
    started = asyncio.Event()

    @scheduler.task("forever")
    async def forever(job: Job) -> None:
        started.set()
        await asyncio.Event().wait()

    job = await scheduler.schedule("forever")
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(TimeoutError) as info:
        await drain(scheduler, timeout=1)

    assert started.is_set()
    message = str(info.value)
    assert str(job.id) in message and "'forever'" in message and "running" in message
    assert loop.time() - began < 15  # wide margin: stops hard instead of waiting it out
    assert not scheduler.is_running
    stored = await scheduler.get_job(job.id)
    assert stored is not None and stored.status is JobStatus.PENDING  # lease given back


async def test_drain_timeout_names_due_job_without_handler(scheduler: Scheduler) -> None:
    @scheduler.task("known")
    async def known(job: Job) -> None:
        return None

    orphan = await scheduler.schedule("nobody-handles-this")
    with pytest.raises(TimeoutError) as info:
        await drain(scheduler, timeout=0.5)
    message = str(info.value)
    assert str(orphan.id) in message and "pending" in message and "no handler" in message


async def test_drain_leaves_future_jobs_unless_asked(scheduler: Scheduler) -> None:
    @scheduler.task("report")
    async def report(job: Job) -> None:
        return None

    later = _later()
    due = await scheduler.schedule("report", {"when": "now"})
    future = await scheduler.schedule("report", {"when": "later"}, run_at=later)
    cron = await scheduler.schedule("report", {"when": "cron"}, repeat={"cron": "0 0 1 1 *"})

    finished = await drain(scheduler, timeout=20)
    assert [str(j.id) for j in finished] == [str(due.id)]
    stored_future = await scheduler.get_job(future.id)
    assert stored_future is not None
    assert stored_future.status is JobStatus.PENDING
    assert stored_future.next_run_at == future.next_run_at
    assert stored_future.attempts == 0

    finished = await drain(scheduler, timeout=20, include_future=True)
    assert [str(j.id) for j in finished] == [str(future.id)]
    assert finished[0].status is JobStatus.COMPLETED
    stored_cron = await scheduler.get_job(cron.id)
    assert stored_cron is not None
    assert stored_cron.status is JobStatus.PENDING  # repeating jobs keep their schedule
    assert stored_cron.next_run_at == cron.next_run_at


async def test_drain_include_future_brings_retry_backoff_forward(scheduler: Scheduler) -> None:
    attempts: list[int] = []

    @scheduler.task("slow-retry")
    async def slow_retry(job: Job) -> None:
        attempts.append(job.attempts)
        if len(attempts) < 3:
            raise RuntimeError("try again in an hour")

    job = await scheduler.schedule("slow-retry", retry={"maxAttempts": 3, "delay": 3600})
    finished = await drain(scheduler, timeout=20, include_future=True)

    assert [str(j.id) for j in finished] == [str(job.id)]
    assert finished[0].status is JobStatus.COMPLETED
    assert attempts == [0, 1, 2]


async def test_drain_keeps_a_running_scheduler_running(scheduler: Scheduler) -> None:
    # The running scheduler starts the jobs at once; they finish only once the gate opens,
    # after drain has begun, so drain sees both finish (not a race with its listeners).
    gate = asyncio.Event()

    @scheduler.task("tick")
    async def tick(job: Job) -> None:
        await gate.wait()

    await scheduler.start()
    await scheduler.schedule("tick")
    await scheduler.schedule("tick")
    asyncio.get_running_loop().call_later(0.3, gate.set)
    finished = await drain(scheduler, timeout=20)
    assert [j.status for j in finished] == [JobStatus.COMPLETED, JobStatus.COMPLETED]
    assert scheduler.is_running
    assert await drain(scheduler, timeout=5) == []  # nothing due: returns at once


async def test_drain_waits_for_the_events_of_outcomes_already_stored(
    scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The outcome is stored a while before its job:complete is emitted (a slow reply): drain
    # must not take the stored outcome for the end and return without the job.
    store = scheduler.store
    assert store is not None
    finish_many = store.finish_many

    async def slow_reply(items: Any) -> list[bool]:
        applied = await finish_many(items)
        await asyncio.sleep(0.5)
        return applied

    monkeypatch.setattr(store, "finish_many", slow_reply)

    @scheduler.task("tick")
    async def tick(job: Job) -> None:
        return None

    await scheduler.start()
    jobs = [await scheduler.schedule("tick"), await scheduler.schedule("tick")]
    finished = await drain(scheduler, timeout=20)
    assert sorted(str(j.id) for j in finished) == sorted(str(j.id) for j in jobs)
    assert scheduler.in_progress == 0


async def test_in_progress_counts_a_job_until_its_events_are_emitted(
    scheduler: Scheduler,
) -> None:
    gate = asyncio.Event()
    seen: dict[str, int] = {}

    @scheduler.task("tick")
    async def tick(job: Job) -> None:
        seen["running"] = scheduler.in_progress
        await gate.wait()

    scheduler.on("job:complete", lambda job: seen.setdefault("announced", scheduler.in_progress))
    assert scheduler.in_progress == 0
    await scheduler.start()
    job = await scheduler.schedule("tick")
    await wait_for(lambda: "running" in seen, timeout=10)
    gate.set()
    assert (await scheduler.wait(job.id, timeout=10)).status is JobStatus.COMPLETED
    await wait_for(lambda: scheduler.in_progress == 0, timeout=10)
    assert seen == {"running": 1, "announced": 1}
    await scheduler.stop()
    assert scheduler.in_progress == 0


async def test_drain_rejects_bad_timeout(scheduler: Scheduler) -> None:
    with pytest.raises(ValueError, match="timeout"):
        await drain(scheduler, timeout=0)
    assert not scheduler.is_running


# -- the fixtures, in-process (loaded through the pytest11 entry point) ----------------------


async def test_fixtures_in_process(
    mjs_mongodb_uri: str, mjs_database: Any, mjs_store: MongoJobStore, mjs_scheduler: Scheduler
) -> None:
    assert mjs_store.database is mjs_database
    assert mjs_scheduler.store is mjs_store
    assert not mjs_scheduler.is_running
    assert await mjs_database.list_collection_names() == []

    @mjs_scheduler.task("double")
    async def double(job: Job) -> int:
        return int(job.data) * 2

    await mjs_scheduler.schedule("double", 21)
    [job] = await drain(mjs_scheduler)
    assert job.status is JobStatus.COMPLETED
    assert await mjs_database.scheduler_jobs.count_documents({"status": "completed"}) == 1


# -- the plugin in a user's suite (subprocess) -----------------------------------------------

USER_TESTS = """
import pytest
from mongo_job_scheduler import Job, JobStatus
from mongo_job_scheduler.testing import drain


@pytest.mark.asyncio
async def test_welcome_email(mjs_scheduler, mjs_database, mjs_mongodb_uri):
    with open("uri.txt", "w") as f:
        f.write(mjs_mongodb_uri)
    with open("databases.txt", "a") as f:
        f.write(mjs_database.name + "\\n")
    sent = []

    @mjs_scheduler.task("welcome-email")
    async def welcome(job: Job) -> None:
        if job.attempts == 0:
            raise ConnectionError("smtp down")
        sent.append(job.data["to"])

    await mjs_scheduler.schedule("welcome-email", {"to": "a@example.com"}, retry=2)
    [job] = await drain(mjs_scheduler)
    assert job.status is JobStatus.COMPLETED
    assert sent == ["a@example.com"]


@pytest.mark.asyncio
async def test_each_test_gets_a_fresh_database(mjs_store, mjs_database):
    with open("databases.txt", "a") as f:
        f.write(mjs_database.name + "\\n")
    assert await mjs_database.scheduler_jobs.count_documents({}) == 0
"""


def _databases(pytester: pytest.Pytester) -> list[str]:
    return Path(pytester.path, "databases.txt").read_text().split()


def test_plugin_in_user_suite_with_mongodb_uri(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mongodb_uri: str
) -> None:
    monkeypatch.setenv("MONGODB_URI", mongodb_uri)
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert Path(pytester.path, "uri.txt").read_text() == mongodb_uri
    names = _databases(pytester)
    assert len(set(names)) == 2
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    try:
        assert not set(names) & set(client.list_database_names())  # dropped after each test
    finally:
        client.close()


def test_plugin_starts_its_own_mongod(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MONGODB_URI", raising=False)
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    uri = Path(pytester.path, "uri.txt").read_text()
    assert uri.startswith("mongodb://127.0.0.1:") and "replicaSet=" in uri
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=500)
    try:
        with pytest.raises(ServerSelectionTimeoutError):  # stopped at the end of the session
            client.admin.command("ping")
    finally:
        client.close()


def test_plugin_without_pytest_asyncio(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without pytest-asyncio the plugin still loads, ``drain`` imports, and the async fixtures
    fail with a message saying what to install (no server is started)."""
    monkeypatch.delenv("MONGODB_URI", raising=False)
    # Load plugins explicitly and hide pytest_asyncio behind a module that fails to import.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(pytest_asyncio='raise ImportError("simulated: not installed")')
    pytester.makepyfile(
        test_user="""
        from mongo_job_scheduler.testing import drain

        def test_plain():
            assert callable(drain)

        def test_needs_async(mjs_scheduler):
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "mongo_job_scheduler.testing", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*mjs_scheduler fixture*needs pytest-asyncio*"])
