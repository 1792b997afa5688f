"""Contract: claiming and ownership — atomic claims, fencing, server-clock leases,
poison jobs and the one global order, over both stores."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mongo_job_scheduler import (
    Job,
    JobStatus,
    JobStore,
    MongoJobStore,
    Scheduler,
)
from mongo_job_scheduler.stores.base import Fence, Finish
from tests.conftest import wait_for
from tests.contract.helpers import make, running_all, sibling, stored

LONG_LEASE = timedelta(seconds=60)
TINY_LEASE = timedelta(milliseconds=50)


async def _claim_after_expiry(store: JobStore, owner: str, lease: timedelta) -> Any:
    """Claim the (single) job as ``owner`` once the previous lease has expired."""

    async def attempt() -> Any:
        return (await store.claim(owner, 1, lease, 3)).jobs

    claimed = await wait_for(attempt, timeout=10)
    assert len(claimed) == 1
    return claimed[0]


# -- 1. claim atomicity ---------------------------------------------------------------------


async def test_concurrent_direct_claims_take_each_job_exactly_once(store: JobStore) -> None:
    producer = Scheduler(store)
    jobs = await producer.schedule_bulk([{"name": "atom", "data": {"i": i}} for i in range(40)])
    ids = {job.id for job in jobs}
    claims: list[tuple[Any, str]] = []

    async def claimer(owner: str) -> None:
        view = sibling(store)
        while True:
            got = (await view.claim(owner, 3, LONG_LEASE, 3)).jobs
            if not got:
                return
            for item in got:
                assert item.document["lockedBy"] == owner
                claims.append((item.document["_id"], owner))
            await asyncio.sleep(0)

    await asyncio.gather(*(claimer(f"owner-{n}") for n in range(8)))

    counts = Counter(job_id for job_id, _ in claims)
    assert set(counts) == ids
    assert all(count == 1 for count in counts.values()), counts.most_common(3)
    for job_id, owner in claims:
        doc = await stored(store, job_id)
        assert doc["status"] == "running"
        assert doc["lockedBy"] == owner
        assert doc["lockVersion"] == 1
    # Nothing is left to claim: every job has a live lease.
    assert (await store.claim("late", 10, LONG_LEASE, 3)).jobs == []


async def test_many_schedulers_execute_each_job_exactly_once(store: JobStore) -> None:
    executions: list[tuple[Any, str]] = []

    def make_handler(label: str) -> Any:
        async def handler(job: Job) -> None:
            executions.append((job.id, label))
            await asyncio.sleep(0.005)

        return handler

    schedulers = [make(sibling(store), make_handler(f"s{n}"), workers=4) for n in range(4)]
    producer = Scheduler(store)
    jobs = await producer.schedule_bulk([{"name": "once", "data": {"i": i}} for i in range(40)])
    ids = {job.id for job in jobs}

    async with running_all(*schedulers):

        async def all_done() -> bool:
            done = await producer.get_jobs(name="once", status="completed", limit=100)
            return len(done) == len(ids)

        await wait_for(all_done, timeout=20)

    counts = Counter(job_id for job_id, _ in executions)
    assert set(counts) == ids
    assert all(count == 1 for count in counts.values()), counts.most_common(3)
    for job_id in ids:
        doc = await stored(store, job_id)
        assert doc["status"] == "completed"
        assert doc["lockVersion"] == 1
        assert "lockedBy" not in doc


# -- 2. fencing -----------------------------------------------------------------------------


async def test_writes_with_a_stale_fence_are_refused_and_change_nothing(store: JobStore) -> None:
    job = await Scheduler(store).schedule("fenced", {"x": 1})
    [claimed] = (await store.claim("owner-a", 1, LONG_LEASE, 3)).jobs
    token = claimed.token
    assert token == 1
    before = await stored(store, job.id)

    wrong = [
        Fence(job.id, "owner-b", token),  # another owner
        Fence(job.id, "owner-a", token - 1),  # an older claim's token
        Fence(job.id, "owner-a", token + 1),  # a token never issued
    ]
    for fence in wrong:
        assert await store.finish(fence, Finish(set={"status": "completed"})) is False
        assert await store.release(fence) is False
        assert await store.renew([fence], LONG_LEASE) == {job.id}
        assert await stored(store, job.id) == before

    # The real owner's fence still works, so the refusals above were about the fence.
    right = Fence(job.id, "owner-a", token)
    assert await store.renew([right], LONG_LEASE) == set()
    assert await store.finish(right, Finish(set={"status": "completed"})) is True
    after = await stored(store, job.id)
    assert after["status"] == "completed"
    assert "lockedBy" not in after and "lockUntil" not in after
    # Once finished, even the former owner's fence is stale.
    assert await store.finish(right, Finish(set={"status": "failed"})) is False
    assert (await stored(store, job.id))["status"] == "completed"


async def test_worker_that_lost_its_lease_cannot_complete(store: JobStore) -> None:
    job = await Scheduler(store).schedule("lease-lost")
    [first] = (await store.claim("owner-a", 1, TINY_LEASE, 3)).jobs
    assert first.token == 1
    second = await _claim_after_expiry(sibling(store), "owner-b", LONG_LEASE)
    assert second.token == 2
    assert second.document["leaseExpiries"] == 1

    stale = Fence(job.id, "owner-a", first.token)
    before = await stored(store, job.id)
    assert await store.finish(stale, Finish(set={"status": "completed"})) is False
    assert await store.release(stale) is False
    assert await store.renew([stale], LONG_LEASE) == {job.id}
    doc = await stored(store, job.id)
    assert doc == before
    assert doc["status"] == "running"
    assert doc["lockedBy"] == "owner-b"
    assert doc["lockVersion"] == 2

    # The next claim (after owner-b gives the job back) bumps the token again.
    assert await store.release(Fence(job.id, "owner-b", second.token)) is True
    [third] = (await store.claim("owner-c", 1, LONG_LEASE, 3)).jobs
    assert third.token == 3
    assert (await stored(store, job.id))["lockVersion"] == 3


# -- 4. server-clock leases -----------------------------------------------------------------


async def _server_time(store: MongoJobStore) -> datetime:
    hello = await store.database.client.admin.command("hello")
    local_time: datetime = hello["localTime"]
    if local_time.tzinfo is None:
        local_time = local_time.replace(tzinfo=timezone.utc)
    return local_time


def _skew_clock(store: MongoJobStore, offset: timedelta) -> None:
    """Pretend the measured offset to the server clock is ``offset`` (and fresh)."""
    store._clock.offset = offset
    store._clock.measured_at = time.monotonic()


@pytest.mark.mongo_only
async def test_claim_writes_lease_times_from_the_server_clock(store: JobStore) -> None:
    assert isinstance(store, MongoJobStore)
    await Scheduler(store).schedule("clocked")
    await store.setup()
    _skew_clock(store, timedelta(minutes=10))  # this worker's idea of "now" is 10 minutes ahead
    before = await _server_time(store)
    [claimed] = (await store.claim("owner-a", 1, timedelta(seconds=30), 3)).jobs
    after = await _server_time(store)
    doc = claimed.document
    margin = timedelta(seconds=2)
    assert before - margin <= doc["lockedAt"] <= after + margin
    assert doc["lockUntil"] - doc["lockedAt"] == timedelta(seconds=30)
    assert doc["lastRunAt"] == doc["lockedAt"]


@pytest.mark.mongo_only
async def test_skewed_worker_clock_neither_takes_future_jobs_nor_steals_live_leases(
    store: JobStore,
) -> None:
    assert isinstance(store, MongoJobStore)
    producer = Scheduler(store)
    server_now = await _server_time(store)
    future = await producer.schedule("future", run_at=server_now + timedelta(minutes=5))
    live = await producer.schedule("live", priority=1)
    await store.setup()
    [held] = (await store.claim("owner-a", 1, timedelta(minutes=5), 3)).jobs
    assert held.document["_id"] == live.id
    future_before = await stored(store, future.id)
    live_before = await stored(store, live.id)

    skewed = MongoJobStore(store.database, store.collection_name)
    await skewed.setup()
    _skew_clock(skewed, timedelta(minutes=10))
    assert await skewed.now() > server_now + timedelta(minutes=9)
    assert (await skewed.claim("owner-skewed", 10, LONG_LEASE, 3)).jobs == []
    assert await stored(store, future.id) == future_before
    assert await stored(store, live.id) == live_before

    # Control: the skewed worker still takes a job that really is due.
    due = await producer.schedule("due-now")
    claimed = (await skewed.claim("owner-skewed", 10, LONG_LEASE, 3)).jobs
    assert [c.document["_id"] for c in claimed] == [due.id]


# -- 5. poison jobs -------------------------------------------------------------------------


async def test_job_whose_lease_keeps_expiring_is_failed_as_poison(store: JobStore) -> None:
    job = await Scheduler(store).schedule("poison", retry=5)
    [first] = (await store.claim("crash-0", 1, TINY_LEASE, 3)).jobs
    assert first.poisoned is False
    for n in (1, 2):
        again = await _claim_after_expiry(store, f"crash-{n}", TINY_LEASE)
        assert again.document["leaseExpiries"] == n
        assert again.poisoned is False

    ran: list[Any] = []
    failures: list[tuple[Job, BaseException]] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    scheduler = make(store, handler, max_lease_expiries=3)
    scheduler.on("job:fail", lambda job, exc: failures.append((job, exc)))
    async with running_all(scheduler):
        await wait_for(lambda: failures, timeout=10)

    assert ran == []
    doc = await stored(store, job.id)
    assert doc["status"] == "failed"
    assert doc["lastErrorType"] == "PoisonJob"
    assert "lease expired 3 times" in doc["lastError"]
    assert doc["leaseExpiries"] == 3
    assert "lockedBy" not in doc
    [(failed_job, exc)] = failures
    assert failed_job.status is JobStatus.FAILED
    assert type(exc).__name__ == "PoisonJob"


async def test_job_under_the_lease_expiry_limit_still_runs(store: JobStore) -> None:
    job = await Scheduler(store).schedule("flaky-host")
    await store.claim("crash-0", 1, TINY_LEASE, 3)
    await _claim_after_expiry(store, "crash-1", TINY_LEASE)  # one expiry so far

    ran: list[Any] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    scheduler = make(store, handler, max_lease_expiries=3)
    async with running_all(scheduler):

        async def completed() -> bool:
            return (await stored(store, job.id))["status"] == "completed"

        await wait_for(completed, timeout=10)
    assert ran == [job.id]


# -- 6. one global order --------------------------------------------------------------------


async def _run_in_order(store: JobStore, specs: list[dict[str, Any]]) -> list[str]:
    """Schedule ``specs`` (each with a ``label`` in its data) and run them with one worker;
    return the labels in execution order."""
    producer = Scheduler(store)
    for spec in specs:
        await producer.schedule(**spec)
    order: list[str] = []

    async def handler(job: Job) -> None:
        order.append(job.data["label"])

    scheduler = make(store, handler, workers=1)
    async with running_all(scheduler):
        await wait_for(lambda: len(order) == len(specs), timeout=15)
    return order


async def test_one_worker_runs_due_jobs_in_the_global_order(store: JobStore) -> None:
    now = await store.now()
    ago = lambda s: now - timedelta(seconds=s)  # noqa: E731
    specs = [
        {"name": "plain", "data": {"label": "p10"}, "priority": 10, "run_at": ago(60)},
        {
            "name": "limited",
            "data": {"label": "p1-limited"},
            "priority": 1,
            "run_at": ago(1),
            "concurrency": 1,
        },
        {"name": "plain", "data": {"label": "p5-c"}, "priority": 5, "run_at": ago(5)},
        {"name": "plain", "data": {"label": "p5-d"}, "priority": 5, "run_at": ago(5)},
        {"name": "plain", "data": {"label": "p5-early"}, "priority": 5, "run_at": ago(8)},
        {"name": "plain", "data": {"label": "p1-early"}, "priority": 1, "run_at": ago(2)},
        {
            "name": "limited",
            "data": {"label": "p3-limited"},
            "priority": 3,
            "run_at": ago(30),
            "concurrency": 1,
        },
        {"name": "plain", "data": {"label": "p5-d2"}, "priority": 5, "run_at": ago(5)},
    ]
    order = await _run_in_order(store, specs)
    assert order == [
        "p1-early",
        "p1-limited",
        "p3-limited",
        "p5-early",
        "p5-c",
        "p5-d",
        "p5-d2",
        "p10",
    ]


async def test_limited_high_priority_job_beats_unlimited_low_priority_job(
    store: JobStore,
) -> None:
    """B7: concurrency-limited jobs take part in the same order as the others."""
    now = await store.now()
    specs = [
        {
            "name": "unlimited",
            "data": {"label": "unlimited-p10"},
            "priority": 10,
            "run_at": now - timedelta(minutes=10),
        },
        {
            "name": "capped",
            "data": {"label": "capped-p1"},
            "priority": 1,
            "run_at": now - timedelta(seconds=1),
            "concurrency": 2,
        },
    ]
    assert await _run_in_order(store, specs) == ["capped-p1", "unlimited-p10"]
