"""Contract: name routing and the cron zone stored with the job, over both stores.

- A ``Scheduler`` without a catch-all ``handler`` claims only the names registered with
  ``@task`` (so a fleet can split names across processes); with a catch-all it claims every
  name; with neither it claims nothing.
- A cron schedule given without a time zone stores the producer's ``default_timezone``, so every
  worker computes the same slots whatever its own default.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mongo_job_scheduler import Job, JobStore, Scheduler
from mongo_job_scheduler.repeat import Repeat
from tests.conftest import wait_for

TOKYO = ZoneInfo("Asia/Tokyo")
CRON = "0 9 * * *"  # 09:00 in Tokyo is 00:00 UTC (no DST there); in New York 13:00/14:00 UTC


@contextlib.asynccontextmanager
async def running(*schedulers: Scheduler) -> AsyncIterator[None]:
    for scheduler in schedulers:
        await scheduler.start()
    try:
        yield
    finally:
        for scheduler in schedulers:
            await scheduler.stop(graceful=True, timeout=5)


async def _doc(store: JobStore, job_id: Any) -> dict[str, Any]:
    doc = await store.get(job_id)
    assert doc is not None
    return doc


def all_in(store: JobStore, jobs: list[Job], status: str) -> Any:
    async def check() -> bool:
        for job in jobs:
            if (await _doc(store, job.id))["status"] != status:
                return False
        return True

    return check


def assert_untouched(doc: dict[str, Any]) -> None:
    """Never claimed: pending, token 0, no attempt, no lock, no error."""
    assert doc["status"] == "pending", doc
    assert doc["lockVersion"] == 0, doc
    assert doc["attempts"] == 0, doc
    assert not {"lockedBy", "lockUntil", "lastRunAt", "lastError"} & set(doc), doc


# -- routing ----------------------------------------------------------------------------------


async def test_scheduler_claims_only_the_names_it_registered(store: JobStore) -> None:
    ran: dict[str, list[Any]] = {"a": [], "b": []}
    only_a = Scheduler(store, workers=2, poll_interval=0.02)
    only_b = Scheduler(store, workers=2, poll_interval=0.02)

    @only_a.task("a")
    async def run_a(job: Job) -> None:
        ran["a"].append(job.id)

    @only_b.task("b")
    async def run_b(job: Job) -> None:
        ran["b"].append(job.id)

    producer = Scheduler(store)
    now = await store.now()
    # The "b" (and unhandled "c") jobs come first in the global order: had the "a" scheduler
    # claimed them at all, it would have before reaching any "a" job.
    b_jobs = await producer.schedule_bulk(
        [{"name": "b", "priority": 1, "run_at": now - timedelta(seconds=10)} for _ in range(5)]
    )
    c_job = await producer.schedule("c", priority=1, run_at=now - timedelta(seconds=10))
    a_jobs = await producer.schedule_bulk([{"name": "a", "priority": 10} for _ in range(5)])

    async with running(only_a):
        await wait_for(all_in(store, a_jobs, "completed"), timeout=10)
    assert sorted(ran["a"]) == sorted(j.id for j in a_jobs)
    for job in [*b_jobs, c_job]:
        assert_untouched(await _doc(store, job.id))

    async with running(only_b):
        await wait_for(all_in(store, b_jobs, "completed"), timeout=10)
    assert sorted(ran["b"]) == sorted(j.id for j in b_jobs)
    for job in b_jobs:
        doc = await _doc(store, job.id)
        assert doc["lockVersion"] == 1 and doc["attempts"] == 0 and "lastError" not in doc

    # Side by side on a fresh mix: each job goes to the scheduler that can run it, no attempt
    # fails for want of a handler, and "c" is still untouched.
    ran["a"].clear()
    ran["b"].clear()
    mix = await producer.schedule_bulk([{"name": "ab"[i % 2]} for i in range(20)])
    async with running(only_a, only_b):
        await wait_for(all_in(store, mix, "completed"), timeout=10)
    assert sorted(ran["a"]) == sorted(j.id for j in mix if j.name == "a")
    assert sorted(ran["b"]) == sorted(j.id for j in mix if j.name == "b")
    for job in mix:
        doc = await _doc(store, job.id)
        assert doc["lockVersion"] == 1 and doc["attempts"] == 0 and "lastError" not in doc
    assert_untouched(await _doc(store, c_job.id))


async def test_catch_all_handler_claims_every_name(store: JobStore) -> None:
    by_task: list[Any] = []
    by_default: list[Any] = []

    async def default(job: Job) -> None:
        by_default.append(job.id)

    scheduler = Scheduler(store, default, workers=3, poll_interval=0.02)

    @scheduler.task("a")
    async def run_a(job: Job) -> None:
        by_task.append(job.id)

    jobs = await scheduler.schedule_bulk([{"name": name} for name in ("a", "b", "c") * 3])
    async with running(scheduler):
        await wait_for(all_in(store, jobs, "completed"), timeout=10)
    assert sorted(by_task) == sorted(j.id for j in jobs if j.name == "a")
    assert sorted(by_default) == sorted(j.id for j in jobs if j.name != "a")


async def test_scheduler_without_any_handler_claims_nothing(store: JobStore) -> None:
    claims: list[Any] = []
    original = store.claim

    async def counting(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        claims.append(result)
        return result

    store.claim = counting  # type: ignore[method-assign]  # observe the worker's claims
    idle = Scheduler(store, poll_interval=0.02)
    job = await idle.schedule("anything")
    async with running(idle):
        # At least the first claim and the one after the change stream opened (on MongoDB an
        # idle worker with a healthy stream claims rarely; the in-memory store polls).
        await wait_for(lambda: len(claims) >= 2, timeout=10)
    assert all(result.jobs == [] for result in claims)
    assert_untouched(await _doc(store, job.id))


async def test_task_registered_after_start_is_claimed(store: JobStore) -> None:
    ran = asyncio.Event()
    scheduler = Scheduler(store, poll_interval=0.02)

    @scheduler.task("early")
    async def early(job: Job) -> None:
        pass

    job = await scheduler.schedule("late")
    async with running(scheduler):
        first = await scheduler.schedule("early")
        await wait_for(all_in(store, [first], "completed"), timeout=10)
        assert_untouched(await _doc(store, job.id))

        @scheduler.task("late")
        async def late(job: Job) -> None:
            ran.set()

        await asyncio.wait_for(ran.wait(), timeout=10)
        await wait_for(all_in(store, [job], "completed"), timeout=10)


# -- cron zone stored at schedule time --------------------------------------------------------


async def test_cron_zone_is_stored_and_every_worker_computes_the_same_slots(
    store: JobStore,
) -> None:
    producer = Scheduler(store, default_timezone="Asia/Tokyo")
    now = await store.now()

    future = await producer.schedule("report", repeat={"cron": CRON})
    stored = await _doc(store, future.id)
    assert stored["repeat"] == {"cron": CRON, "timezone": "Asia/Tokyo"}
    first = stored["nextRunAt"]
    assert first > now and first.astimezone(TOKYO).hour == 9 and first.hour == 0

    # A due occurrence, run by a worker whose own default zone is New York: the next slot is
    # still 09:00 in Tokyo.
    due = await producer.schedule("report", repeat={"cron": CRON}, run_at=now)
    ran = asyncio.Event()

    async def report(job: Job) -> None:
        assert job.repeat is not None and job.repeat.timezone == "Asia/Tokyo"
        ran.set()

    worker = Scheduler(store, default_timezone="America/New_York", poll_interval=0.02)
    worker.task("report")(report)
    async with running(worker):
        await asyncio.wait_for(ran.wait(), timeout=10)

        async def rescheduled() -> dict[str, Any] | None:
            doc = await _doc(store, due.id)
            return doc if doc["status"] == "pending" and doc["lockVersion"] == 1 else None

        after = await wait_for(rescheduled, timeout=10)
    tokyo_rule = Repeat.parse({"cron": CRON, "timezone": "Asia/Tokyo"})
    expected = tokyo_rule.next_after(due.next_run_at or now)
    assert after["nextRunAt"] == expected
    assert after["lastScheduledAt"] == expected
    assert after["nextRunAt"].astimezone(TOKYO).hour == 9
    new_york_rule = Repeat.parse({"cron": CRON, "timezone": "America/New_York"})
    assert new_york_rule.next_after(due.next_run_at or now) != expected  # the zones differ
    # The future job still waits for its own Tokyo slot (the worker did not touch it).
    assert (await _doc(store, future.id))["nextRunAt"] == first


async def test_zone_is_stored_by_every_producer_path_and_only_for_cron(store: JobStore) -> None:
    producer = Scheduler(store, default_timezone="Asia/Tokyo")
    explicit = await producer.schedule("paris", repeat={"cron": CRON, "timezone": "Europe/Paris"})
    interval = await producer.schedule("tick", repeat={"every": timedelta(minutes=5)})
    [bulk] = await producer.schedule_bulk([{"name": "bulk", "repeat": {"cron": CRON}}])
    plain = await producer.schedule("plain")
    changed = await producer.update_job(plain.id, repeat={"cron": CRON})

    assert (await _doc(store, explicit.id))["repeat"]["timezone"] == "Europe/Paris"
    assert "timezone" not in (await _doc(store, interval.id))["repeat"]
    assert (await _doc(store, bulk.id))["repeat"] == {"cron": CRON, "timezone": "Asia/Tokyo"}
    doc = await _doc(store, changed.id)
    assert doc["repeat"] == {"cron": CRON, "timezone": "Asia/Tokyo"}
    assert isinstance(doc["nextRunAt"], datetime)
    assert doc["nextRunAt"].astimezone(TOKYO).hour == 9


@pytest.mark.mongo_only
def test_sync_facade_stores_the_zone_too(sync_db: Any) -> None:
    from mongo_job_scheduler import sync

    blocking = sync.Scheduler(sync.MongoJobStore(sync_db), default_timezone="Asia/Tokyo")
    job = blocking.schedule("report", repeat={"cron": CRON})
    doc = sync_db["scheduler_jobs"].find_one({"_id": job.id})
    assert doc["repeat"] == {"cron": CRON, "timezone": "Asia/Tokyo"}
