"""Mixed fleets: the Node library ``mongo-job-scheduler`` 1.2.4,
installed from npm, and this project share one ``scheduler_jobs`` collection.

Every test uses a fresh database on the test server. Node runs the scripts of
``tests/interop/node``; both fleets' handlers record each execution in an ``executions``
collection, so "exactly once" is counted across processes and languages. docs/interop.md
describes the field-by-field contract these tests check.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId

from mongo_job_scheduler import (
    AttemptOutcome,
    InvalidJobState,
    Job,
    JobStatus,
    MongoJobStore,
    Repeat,
    Retry,
    Scheduler,
)
from mongo_job_scheduler.sync import MongoJobStore as SyncMongoJobStore
from mongo_job_scheduler.sync import Scheduler as SyncScheduler
from tests.conftest import wait_for
from tests.interop.conftest import TZ_AWARE

UTC = timezone.utc
PAST = {"$nowPlusMs": -1000}
"""A due time one second before the Node script's clock reading (due at once)."""

DATA: dict[str, Any] = {
    "text": "héllo ✓",
    "int": 42,
    "float": 1.5,
    "big": 2**40,
    "flag": True,
    "none": None,
    "list": [1, "two", {"three": 3}],
    "nested": {"a": {"b": "c"}},
    "when": datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC),
}
"""A payload with every JSON-ish type and a date, which both sides must carry unchanged."""


def recording_handler(executions: Any) -> Callable[[Job], Awaitable[None]]:
    """The Python twin of ``worker.js``'s handler: record the execution, sleep
    ``data.sleepMs``, fail while ``attempts < data.failTimes``."""

    async def handle(job: Job) -> None:
        data = job.data if isinstance(job.data, Mapping) else {}
        await executions.insert_one(
            {
                "jobId": job.id,
                "name": job.name,
                "by": "python",
                "owner": job.locked_by,
                "data": job.data,
                "attempts": job.attempts,
                "priority": job.priority,
                "nextRunAt": job.next_run_at,
                "lastScheduledAt": job.last_scheduled_at,
                "at": datetime.now(UTC),
                "mono": time.monotonic(),
            }
        )
        if data.get("sleepMs"):
            await asyncio.sleep(data["sleepMs"] / 1000)
        if int(data.get("failTimes") or 0) > job.attempts:
            raise RuntimeError(f"planned failure {job.attempts + 1}")

    return handle


async def execution_counts(executions: Any) -> Counter[ObjectId]:
    rows = await (
        await executions.aggregate([{"$group": {"_id": "$jobId", "n": {"$sum": 1}}}])
    ).to_list()
    return Counter({row["_id"]: row["n"] for row in rows})


def reached(executions: Any, expected: Mapping[ObjectId, int]) -> Callable[[], Awaitable[bool]]:
    """A ``wait_for`` predicate: every job in ``expected`` has at least that many executions."""

    async def check() -> bool:
        counts = await execution_counts(executions)
        return all(counts[job_id] >= n for job_id, n in expected.items())

    return check


async def runs_of(executions: Any, job_id: ObjectId) -> list[dict[str, Any]]:
    """The recorded executions of one job, oldest first."""
    return await executions.find({"jobId": job_id}).sort([("at", 1), ("_id", 1)]).to_list()


def gaps(times: list[datetime]) -> list[timedelta]:
    """The differences between successive times."""
    return [b - a for a, b in itertools.pairwise(times)]


def iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def oid(node_job: Mapping[str, Any]) -> ObjectId:
    return ObjectId(node_job["_id"])


async def test_jobs_scheduled_by_node_run_once_on_python_workers(
    node: Any, mongo_db: Any, executions: Any
) -> None:
    priorities = [7, 2, 9, None, 1]
    results = await node.schedule(
        *[
            {
                "schedule": {
                    "name": "interop.prio",
                    "data": {"p": p},
                    "runAt": PAST,
                    **({} if p is None else {"priority": p}),
                }
            }
            for p in priorities
        ],
        {"schedule": {"name": "interop.data", "data": DATA, "priority": 4, "runAt": PAST}},
        {
            "schedule": {
                "name": "interop.retry",
                "data": {"failTimes": 1},
                "retry": {"maxAttempts": 3, "delay": 100},
                "runAt": PAST,
            }
        },
        {
            "schedule": {
                "name": "interop.retry",
                "data": {"failTimes": 9},
                "retry": 2,
                "runAt": PAST,
            }
        },
        # With lastScheduledAt, Node computes nextRunAt as the first slot after it (and after
        # now) instead of running the repeating job at once.
        {
            "schedule": {
                "name": "interop.cron",
                "repeat": {"cron": "*/1 * * * * *"},
                "lastScheduledAt": {"$nowPlusMs": 1000},
            }
        },
        {
            "schedule": {
                "name": "interop.dedupe",
                "data": {"v": 1},
                "dedupeKey": "interop:dedupe",
                "runAt": PAST,
            }
        },
        {
            "schedule": {
                "name": "interop.dedupe",
                "data": {"v": 2},
                "dedupeKey": "interop:dedupe",
                "runAt": PAST,
            }
        },
        {"scheduleBulk": [{"name": "interop.bulk", "data": {"i": i}} for i in range(2)]},
    )
    prio_ids = [oid(job) for job in results[:5]]
    data_id, retry_ok, retry_fail, cron = (oid(job) for job in results[5:9])
    dedupe_first, dedupe_again = results[9:11]
    bulk_ids = [oid(job) for job in results[11]]
    assert dedupe_first["_id"] == dedupe_again["_id"]  # Node deduped its own second call
    cron_first_slot = iso(results[8]["nextRunAt"])
    assert cron_first_slot.microsecond == 0

    expected = {job_id: 1 for job_id in [*prio_ids, data_id, oid(dedupe_first), *bulk_ids]}
    expected |= {retry_ok: 2, retry_fail: 2, cron: 3}
    scheduler = Scheduler(
        MongoJobStore(mongo_db),
        handler=recording_handler(executions),
        workers=1,  # one job at a time: the execution order is the claim order
        poll_interval=0.02,
    )
    async with scheduler:
        await wait_for(reached(executions, expected), timeout=20)

    counts = await execution_counts(executions)
    for job_id, n in expected.items():
        if job_id != cron:
            assert counts[job_id] == n, (job_id, counts[job_id], n)
    assert set(counts) == set(expected)

    # Priority: 1 runs first, 10 last (a missing priority is Node's default, 5).
    prio_runs = await executions.find({"name": "interop.prio"}).sort("mono", 1).to_list()
    assert [run["priority"] for run in prio_runs] == [1, 2, 5, 7, 9]
    assert [run["data"]["p"] for run in prio_runs] == [1, 2, None, 7, 9]

    # Data written by Node reaches the Python handler unchanged (JS numbers above 2**31 are
    # stored as doubles: equal in value).
    [data_run] = await runs_of(executions, data_id)
    assert data_run["data"] == DATA
    assert data_run["priority"] == 4

    # retry {maxAttempts: 3, delay: 100}: fails once, runs again after >= 100 ms, succeeds.
    first, second = await runs_of(executions, retry_ok)
    assert (first["attempts"], second["attempts"]) == (0, 1)
    assert second["mono"] - first["mono"] >= 0.09
    job = await scheduler.get_job(retry_ok)
    assert job is not None
    assert (job.status, job.attempts, job.last_error) == (
        JobStatus.COMPLETED,
        1,
        "planned failure 1",
    )
    assert job.retry == Retry(max_attempts=3, delay=timedelta(milliseconds=100))
    assert (job.locked_by, job.lock_until) == (None, None)

    # retry: 2 (Node's plain-number form) means two executions in total, then failed.
    assert [run["attempts"] for run in await runs_of(executions, retry_fail)] == [0, 1]
    job = await scheduler.get_job(retry_fail)
    assert job is not None
    assert (job.status, job.attempts, job.last_error) == (JobStatus.FAILED, 2, "planned failure 2")
    assert job.last_error_type == "RuntimeError"

    # The cron job runs on consecutive one-second slots, starting at the slot Node computed.
    slots = [run["nextRunAt"] for run in await runs_of(executions, cron)]
    assert slots[0] == cron_first_slot
    assert gaps(slots) == [timedelta(seconds=1)] * (len(slots) - 1)
    job = await scheduler.get_job(cron)
    assert job is not None
    assert job.status is JobStatus.PENDING and job.attempts == 0
    assert job.next_run_at == job.last_scheduled_at == slots[-1] + timedelta(seconds=1)
    assert job.repeat == Repeat(cron="*/1 * * * * *")

    [dedupe_run] = await runs_of(executions, oid(dedupe_first))
    assert dedupe_run["data"] == {"v": 1}
    for job_id in [*prio_ids, data_id, oid(dedupe_first), *bulk_ids]:
        job = await scheduler.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED, job_id
        assert job.attempts == 0 and job.locked_by is None

    # Both sides' indexes live side by side on the collection (here Node's came first).
    names = {index["name"] async for index in await mongo_db.scheduler_jobs.list_indexes()}
    assert {"dedupeKey_1", "lockUntil_1", "claim_order", "lease_expiry"} <= names


async def test_jobs_scheduled_by_python_run_once_on_node_workers(
    node: Any, mongo_db: Any, executions: Any
) -> None:
    producer = Scheduler(MongoJobStore(mongo_db))
    data_job = await producer.schedule("py.data", DATA, priority=3)
    retry_ok = await producer.schedule(
        "py.retry", {"failTimes": 1}, retry={"maxAttempts": 3, "delayMs": 100}
    )
    retry_fail = await producer.schedule("py.retry", {"failTimes": 9}, retry=2)
    every = await producer.schedule("py.every", repeat={"everyMs": 500})
    dedupe = await producer.schedule("py.dedupe", {"v": 1}, dedupe_key="py:dedupe")
    assert (await producer.schedule("py.dedupe", {"v": 2}, dedupe_key="py:dedupe")).id == dedupe.id
    bulk = await producer.schedule_bulk(
        [
            {"name": "py.bulk", "data": {"i": 0}, "priority": 2},
            {"name": "py.bulk", "data": {"i": 1}, "retry": 2},
            {"name": "py.dedupe", "data": {"v": 3}, "dedupe_key": "py:dedupe"},
        ]
    )
    assert bulk[2].id == dedupe.id
    assert every.next_run_at is not None

    expected = {data_job.id: 1, retry_ok.id: 2, retry_fail.id: 2, every.id: 3, dedupe.id: 1}
    expected |= {bulk[0].id: 1, bulk[1].id: 1}
    worker = await node.start(
        "worker.js",
        {
            "workers": 2,
            "pollIntervalMs": 50,
            "until": {str(k): v for k, v in expected.items()},
            "deadlineMs": 20000,
        },
    )
    summary = (await worker.finish(timeout=40))[-1]
    assert summary["done"] is True and summary["errors"] == [], summary

    counts = await execution_counts(executions)
    assert set(counts) == set(expected)
    for job_id, n in expected.items():
        if job_id != every.id:
            assert counts[job_id] == n, (job_id, counts[job_id], n)
    assert {run["by"] async for run in executions.find()} == {"node"}

    [data_run] = await runs_of(executions, data_job.id)
    assert data_run["data"] == DATA and data_run["priority"] == 3
    [bulk_run] = await runs_of(executions, bulk[0].id)
    assert bulk_run["priority"] == 2 and bulk_run["data"] == {"i": 0}

    first, second = await runs_of(executions, retry_ok.id)
    assert (first["attempts"], second["attempts"]) == (0, 1)
    assert second["at"] - first["at"] >= timedelta(milliseconds=90)

    # The documents Node left are read correctly on the Python side.
    job = await producer.get_job(data_job.id)
    assert job is not None
    assert (job.status, job.attempts, job.data) == (JobStatus.COMPLETED, 0, DATA)
    assert (job.locked_by, job.lock_until, job.last_error) == (None, None, None)
    assert job.last_run_at is not None and job.lock_version == 1
    job = await producer.get_job(retry_ok.id)
    assert job is not None
    assert (job.status, job.attempts, job.last_error) == (
        JobStatus.COMPLETED,
        1,
        "planned failure 1",
    )
    job = await producer.get_job(retry_fail.id)
    assert job is not None
    assert (job.status, job.attempts, job.last_error) == (JobStatus.FAILED, 2, "planned failure 2")
    assert job.retry == Retry(2) and job.locked_by is None
    for done in (dedupe.id, bulk[0].id, bulk[1].id):
        job = await producer.get_job(done)
        assert job is not None and job.status is JobStatus.COMPLETED

    # Node's indexes were created beside ours (here ours came first).
    names = {index["name"] async for index in await mongo_db.scheduler_jobs.list_indexes()}
    assert {"dedupeKey_1", "lockUntil_1", "claim_order", "lease_expiry"} <= names

    # The interval job ran on Node on consecutive slots of the grid Python started it on.
    step = timedelta(milliseconds=500)
    node_slots = [run["lastScheduledAt"] for run in await runs_of(executions, every.id)]
    assert node_slots[0] == every.next_run_at
    assert gaps(node_slots) == [step] * (len(node_slots) - 1)
    job = await producer.get_job(every.id)
    assert job is not None
    assert (job.status, job.attempts, job.locked_by) == (JobStatus.PENDING, 0, None)
    assert job.next_run_at == job.last_scheduled_at == node_slots[-1] + step
    assert job.repeat == Repeat(every=step)

    # Hand-over: Python workers take the interval job where Node left it, on the same grid.
    scheduler = Scheduler(
        MongoJobStore(mongo_db), handler=recording_handler(executions), poll_interval=0.02
    )
    async with scheduler:

        async def python_runs() -> int:
            return await executions.count_documents({"jobId": every.id, "by": "python"})

        await wait_for(lambda: _at_least(python_runs, 2), timeout=10)
    py_slots = [
        run["nextRunAt"] for run in await runs_of(executions, every.id) if run["by"] == "python"
    ]
    assert py_slots[0] > node_slots[-1]
    assert (py_slots[0] - every.next_run_at) % step == timedelta(0)
    assert gaps(py_slots) == [step] * (len(py_slots) - 1)


async def _at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n


async def test_both_fleets_on_the_same_jobs_run_each_once(
    node: Any, mongo_db: Any, executions: Any
) -> None:
    """Node and Python workers serve one collection at once, with the same lease (1.5 s).
    Long jobs outlive the lease and are kept by heartbeats: Node's long jobs while Python polls,
    Python's long jobs while Node's workers come free and poll. Short jobs spread over both
    fleets. Neither fleet takes a job the other holds; each job runs exactly once in total."""
    lease_ms = 1500
    worker = await node.start(
        "worker.js",
        {"workers": 2, "pollIntervalMs": 50, "lockTimeoutMs": lease_ms, "deadlineMs": 30000},
    )
    assert await worker.next_line(timeout=15) == {"ready": True}
    store = MongoJobStore(mongo_db)
    # 1. Only Node runs: it takes both its long jobs, which occupy its two workers for 2.5 s.
    node_long = await Scheduler(store).schedule_bulk(
        [{"name": "node.long", "data": {"sleepMs": 2500}} for _ in range(2)]
    )
    await wait_for(reached(executions, {job.id: 1 for job in node_long}), timeout=15)

    scheduler = Scheduler(
        store,
        handler=recording_handler(executions),
        workers=3,
        poll_interval=0.05,
        lock_timeout=lease_ms / 1000,
    )
    async with scheduler:
        # 2. Python takes its long jobs (Node is busy); they run on while Node comes free.
        py_long = await scheduler.schedule_bulk(
            [{"name": "py.long", "data": {"sleepMs": 4000}} for _ in range(2)]
        )
        await wait_for(reached(executions, {job.id: 1 for job in py_long}), timeout=15)
        # 3. Short jobs from both sides: Python's third worker starts on them at once, Node's
        # workers join when its long jobs end.
        py_short = await scheduler.schedule_bulk(
            [{"name": "short", "data": {"i": i, "sleepMs": 100}} for i in range(30)]
        )
        [node_short] = await node.schedule(
            {
                "scheduleBulk": [
                    {"name": "short", "data": {"i": 100 + i, "sleepMs": 100}} for i in range(30)
                ]
            }
        )
        short_ids = [job.id for job in py_short] + [oid(job) for job in node_short]
        all_ids = short_ids + [job.id for job in node_long + py_long]
        await wait_for(reached(executions, dict.fromkeys(all_ids, 1)), timeout=30)
        await wait_for(lambda: _none_active(scheduler), timeout=15)
    worker.process.terminate()  # SIGTERM: the Node worker stops gracefully
    summary = (await worker.finish(timeout=20))[-1]
    assert summary["errors"] == [], summary

    counts = await execution_counts(executions)
    assert counts == Counter(dict.fromkeys(all_ids, 1)), {k: v for k, v in counts.items() if v != 1}
    runs = await executions.find().to_list()
    by_job = {run["jobId"]: run["by"] for run in runs}
    assert {by_job[job.id] for job in node_long} == {"node"}
    assert {by_job[job.id] for job in py_long} == {"python"}
    assert Counter(by_job[job_id] for job_id in short_ids).keys() == {"node", "python"}
    for job in node_long + py_long:
        after = await scheduler.get_job(job.id)
        assert after is not None
        assert after.status is JobStatus.COMPLETED and after.lease_expiries == 0, after
    assert await mongo_db.scheduler_jobs.count_documents({"status": {"$ne": "completed"}}) == 0


async def _none_active(scheduler: Scheduler) -> bool:
    return not await scheduler.get_jobs(status=["pending", "running"], limit=1)


async def test_dedupe_keys_are_shared_with_node_and_its_unique_index(
    node: Any, mongo_db: Any, sync_db: Any
) -> None:
    """Node's MongoJobStore creates a unique sparse index on ``dedupeKey``. With it, a key is
    deduped across both sides whoever scheduled first; but it also keeps a finished job's key
    taken, so this project's default "active" scope cannot reuse the key while that job
    exists: ``schedule`` raises ``InvalidJobState`` (documented limitation), and works again
    once the finished job is purged."""
    scheduler = Scheduler(MongoJobStore(mongo_db), poll_interval=0.02)
    [node_job] = await node.schedule(
        {"schedule": {"name": "dd", "data": {"by": "node"}, "dedupeKey": "k:node"}}
    )
    # Python scheduling a key Node holds returns Node's job, and leaves no registration behind.
    job = await scheduler.schedule("dd", {"by": "python"}, dedupe_key="k:node")
    assert job.id == oid(node_job) and job.data == {"by": "node"}
    assert await mongo_db.scheduler_jobs_dedupe.count_documents({}) == 0
    [bulk_hit] = await scheduler.schedule_bulk(
        [{"name": "dd", "data": {"by": "bulk"}, "dedupe_key": "k:node"}]
    )
    assert bulk_hit.id == oid(node_job)

    blocking = SyncScheduler(SyncMongoJobStore(sync_db))
    sync_hit = await asyncio.to_thread(blocking.schedule, "dd", {"by": "sync"}, dedupe_key="k:node")
    assert sync_hit.id == oid(node_job)
    assert await mongo_db.scheduler_jobs_dedupe.count_documents({}) == 0

    # Node scheduling a key Python holds returns Python's job.
    py_job = await scheduler.schedule("dd", {"by": "python"}, dedupe_key="k:py")
    [node_hit] = await node.schedule(
        {"schedule": {"name": "dd", "data": {"by": "node"}, "dedupeKey": "k:py"}}
    )
    assert oid(node_hit) == py_job.id and node_hit["data"] == {"by": "python"}
    assert await mongo_db.scheduler_jobs.count_documents({}) == 2

    done = asyncio.Event()
    finished: set[Any] = set()

    async def handle(job: Job) -> None:
        finished.add(job.id)
        if len(finished) == 2:
            done.set()

    scheduler.handler = handle
    async with scheduler:
        await asyncio.wait_for(done.wait(), 10)
        await wait_for(lambda: _none_active(scheduler), timeout=10)

    # Both keys are now held by completed jobs in Node's unique index.
    for key, holder in (("k:node", oid(node_job)), ("k:py", py_job.id)):
        with pytest.raises(InvalidJobState, match="unique index on dedupeKey"):
            await scheduler.schedule("dd", dedupe_key=key)
        assert await mongo_db.scheduler_jobs_dedupe.count_documents({"_id": key}) == 0
        forever = await scheduler.schedule("dd", dedupe_key=key, dedupe="forever")
        assert forever.id == holder and forever.status is JobStatus.COMPLETED
    assert await mongo_db.scheduler_jobs.count_documents({}) == 2

    with pytest.raises(InvalidJobState, match="unique index on dedupeKey"):
        await asyncio.to_thread(blocking.schedule, "dd", dedupe_key="k:node")

    # Purging the finished holders frees their keys in the index too.
    assert await scheduler.purge(datetime.now(UTC) + timedelta(minutes=1)) == 2
    again = await scheduler.schedule("dd", {"by": "python"}, dedupe_key="k:node")
    assert again.status is JobStatus.PENDING and again.id != oid(node_job)


async def test_node_workers_never_run_a_waiting_job(
    node: Any, mongo_db: Any, executions: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that waits for another (``depends_on``) has the status ``waiting``, which the
    Node library never claims. Node runs the dependency as any job; the dependant is released
    by a Python worker (the sweep settles dependencies that something else completed)."""
    from mongo_job_scheduler.worker import _acks, _registration

    producer = Scheduler(MongoJobStore(mongo_db))
    first = await producer.schedule("py.data", DATA)
    waiting = await producer.schedule("py.data", {"after": "first"}, depends_on=[first])
    later = await producer.schedule("py.data", {"later": True}, delay=1.5)  # keeps Node polling
    worker = await node.start(
        "worker.js",
        {
            "workers": 2,
            "pollIntervalMs": 50,
            "until": {str(first.id): 1, str(later.id): 1},
            "deadlineMs": 20000,
        },
    )
    summary = (await worker.finish(timeout=40))[-1]
    assert summary["done"] is True and summary["errors"] == [], summary
    assert await execution_counts(executions) == Counter({first.id: 1, later.id: 1})
    still = await producer.get_job(waiting.id)
    assert still is not None and still.status is JobStatus.WAITING

    monkeypatch.setattr(_registration, "REGISTER_EVERY", 0.1)
    monkeypatch.setattr(_acks, "SETTLE_GRACE", timedelta(milliseconds=100))
    scheduler = Scheduler(
        MongoJobStore(mongo_db), handler=recording_handler(executions), poll_interval=0.02
    )
    async with scheduler:
        done = await scheduler.wait(waiting.id, timeout=20)
    assert done.status is JobStatus.COMPLETED
    [run] = await runs_of(executions, waiting.id)
    assert run["by"] == "python"


async def test_node_workers_run_jobs_that_carry_a_history_and_leave_it_alone(
    node: Any, mongo_db: Any, executions: Any
) -> None:
    """``history`` is Python's field: a Node worker runs and completes a job that carries one
    (a retry after a Python attempt failed; an interval job Python ran before) and leaves it as
    it was; a job Node wrote, without the field, reads as an empty history and gets one when
    Python runs it."""
    producer = Scheduler(MongoJobStore(mongo_db))
    retried = await producer.schedule(
        "mixed.retry", {"failTimes": 1}, retry={"maxAttempts": 3, "delayMs": 3000}
    )  # the retry is due once the Python workers below have stopped
    every = await producer.schedule("mixed.every", repeat={"everyMs": 500})

    jobs = mongo_db.get_collection("scheduler_jobs", codec_options=TZ_AWARE)

    async def with_history(job_id: ObjectId, n: int) -> dict[str, Any] | None:
        doc = await jobs.find_one({"_id": job_id, "status": "pending"})
        return doc if doc is not None and len(doc.get("history", [])) >= n else None

    python = Scheduler(
        MongoJobStore(mongo_db), handler=recording_handler(executions), poll_interval=0.02
    )
    async with python:
        await wait_for(reached(executions, {retried.id: 1, every.id: 2}), timeout=15)
        await wait_for(lambda: with_history(retried.id, 1), timeout=10)
        await wait_for(lambda: with_history(every.id, 2), timeout=10)
    before = {
        job_id: (await jobs.find_one({"_id": job_id}))["history"]
        for job_id in (retried.id, every.id)
    }
    ran_on_python = await execution_counts(executions)

    worker = await node.start(
        "worker.js",
        {
            "workers": 2,
            "pollIntervalMs": 50,
            "until": {str(retried.id): 2, str(every.id): ran_on_python[every.id] + 2},
            "deadlineMs": 20000,
        },
    )
    summary = (await worker.finish(timeout=40))[-1]
    assert summary["done"] is True and summary["errors"] == [], summary

    done = await producer.get_job(retried.id)
    assert done is not None
    assert (done.status, done.attempts, done.locked_by) == (JobStatus.COMPLETED, 1, None)
    assert done.document["history"] == before[retried.id]  # Node left it as it was
    [failed] = done.history
    assert (failed.outcome, failed.error, failed.token) == (
        AttemptOutcome.RETRIED,
        "planned failure 1",
        1,
    )
    assert failed.retry_delay == timedelta(seconds=3)
    assert [run["by"] for run in await runs_of(executions, retried.id)] == ["python", "node"]
    repeating = await producer.get_job(every.id)
    assert repeating is not None and repeating.status is JobStatus.PENDING
    assert repeating.document["history"] == before[every.id]
    node_runs = [run for run in await runs_of(executions, every.id) if run["by"] == "node"]
    assert len(node_runs) >= 2

    # A job Node wrote has no history: it reads as empty, and Python's run starts one.
    [written] = await node.schedule({"schedule": {"name": "mixed.node", "runAt": PAST}})
    fresh = await producer.get_job(oid(written))
    assert fresh is not None and "history" not in fresh.document
    assert fresh.history == ()
    async with python:
        ran = await python.wait(oid(written), timeout=15)
    [record] = ran.history
    assert (record.outcome, record.token) == (AttemptOutcome.COMPLETED, 1)
    assert record.worker is not None and record.worker.startswith(python.id)
