"""Concurrency limits per job name: global across schedulers, never exceeded, a
dead worker's slot comes back when its lease expires (B6), names are limited independently,
and saturated names never starve others (B8). Runs over both stores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest

from mongo_job_scheduler import Job, JobStore, Scheduler
from tests.conftest import wait_for
from tests.contract.helpers import wait_doc


@contextlib.asynccontextmanager
async def running(*schedulers: Scheduler) -> AsyncIterator[None]:
    started: list[Scheduler] = []
    try:
        for scheduler in schedulers:
            await scheduler.start()
            started.append(scheduler)
        yield
    finally:
        for scheduler in started:
            await scheduler.stop(graceful=False)


def make(store: JobStore, handler: Any = None, **options: Any) -> Scheduler:
    options.setdefault("poll_interval", 0.02)
    return Scheduler(store, handler, **options)


async def statuses(store: JobStore, jobs: list[Job]) -> list[str]:
    out = []
    for job in jobs:
        doc = await store.get(job.id)
        assert doc is not None
        out.append(doc["status"])
    return out


def all_status(store: JobStore, jobs: list[Job], status: str) -> Callable[[], Any]:
    async def check() -> bool:
        return all(s == status for s in await statuses(store, jobs))

    return check


class Gauge:
    """Counts how many runs of each name are in flight, and the most ever seen."""

    def __init__(self) -> None:
        self.active: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.total = 0
        self.most_total = 0
        self.ran: list[Any] = []

    def enter(self, job: Job) -> None:
        self.active[job.name] = self.active.get(job.name, 0) + 1
        self.most[job.name] = max(self.most.get(job.name, 0), self.active[job.name])
        self.total += 1
        self.most_total = max(self.most_total, self.total)
        self.ran.append(job.id)

    def exit(self, job: Job) -> None:
        self.active[job.name] -= 1
        self.total -= 1


# -- the limit holds across schedulers ---------------------------------------------------------


async def test_limit_holds_across_schedulers_and_is_used(store: JobStore) -> None:
    gauge = Gauge()
    two_at_once = asyncio.Event()

    async def handler(job: Job) -> None:
        gauge.enter(job)
        try:
            if gauge.active[job.name] >= 2:
                two_at_once.set()
            # Give a second run the chance to start (the limit allows it), then hold a bit
            # so that an over-limit third run would overlap too.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(two_at_once.wait(), 2)
            await asyncio.sleep(0.15)
        finally:
            gauge.exit(job)

    schedulers = [make(store, handler, workers=2, poll_interval=0.01) for _ in range(3)]
    producer = schedulers[0]
    jobs = [await producer.schedule("limited", {"i": i}, concurrency=2) for i in range(8)]
    async with running(*schedulers):
        await wait_for(all_status(store, jobs, "completed"), timeout=20)
    assert gauge.most["limited"] == 2
    assert sorted(map(str, gauge.ran)) == sorted(str(job.id) for job in jobs)


async def test_limit_of_one_serialises_a_name(store: JobStore) -> None:
    gauge = Gauge()

    async def handler(job: Job) -> None:
        gauge.enter(job)
        try:
            await asyncio.sleep(0.05)
        finally:
            gauge.exit(job)

    schedulers = [make(store, handler, workers=3, poll_interval=0.01) for _ in range(2)]
    jobs = [await schedulers[0].schedule("serial", concurrency=1) for _ in range(6)]
    async with running(*schedulers):
        await wait_for(all_status(store, jobs, "completed"), timeout=20)
    assert gauge.most["serial"] == 1
    assert len(gauge.ran) == 6


async def test_sync_handlers_respect_the_limit(store: JobStore) -> None:
    import threading
    import time

    lock = threading.Lock()
    active = 0
    most = 0

    def handler(job: Job) -> None:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        time.sleep(0.1)
        with lock:
            active -= 1

    scheduler = make(store, handler, workers=5)
    jobs = [await scheduler.schedule("sync-limited", concurrency=2) for _ in range(6)]
    async with running(scheduler):
        await wait_for(all_status(store, jobs, "completed"), timeout=20)
    assert 1 <= most <= 2


# -- a dead worker's slot comes back (B6) ------------------------------------------------------


async def test_slot_of_a_dead_worker_comes_back_when_its_lease_expires(store: JobStore) -> None:
    ran: list[Any] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    producer = make(store)
    first = await producer.schedule("limited-crash", {"i": 1}, concurrency=1)
    second = await producer.schedule("limited-crash", {"i": 2}, concurrency=1)
    # A worker claims the first job, then dies without finishing or renewing it.
    claimed = (await store.claim("dead-worker", 1, timedelta(seconds=1), 3)).jobs
    assert [c.document["_id"] for c in claimed] == [first.id]
    dead_until = claimed[0].document["lockUntil"]
    assert dead_until - claimed[0].document["lockedAt"] == timedelta(seconds=1)
    async with running(make(store, handler, workers=2)):
        first_doc = await wait_doc(store, first.id, lambda d: d["status"] == "completed")
        second_doc = await wait_doc(store, second.id, lambda d: d["status"] == "completed")
    assert sorted(map(str, ran)) == sorted([str(first.id), str(second.id)])
    # The dead worker's slot was respected while its lease lasted (give or take the few ms
    # between taking the slot and claiming the job).
    assert second_doc["lastRunAt"] >= dead_until - timedelta(milliseconds=300)
    assert first_doc["lastRunAt"] >= dead_until
    assert first_doc.get("leaseExpiries", 0) in (0, 1)


async def test_dead_worker_slots_do_not_leak_into_other_names(store: JobStore) -> None:
    ran: list[str] = []

    async def handler(job: Job) -> None:
        ran.append(job.name)

    producer = make(store)
    stuck = await producer.schedule("crashy", concurrency=1)
    other = await producer.schedule("healthy", concurrency=1)
    claimed = (await store.claim("dead-worker", 2, timedelta(seconds=60), 3)).jobs
    assert {c.document["name"] for c in claimed} == {"crashy", "healthy"}
    # Release the healthy one the normal way: its slot is freed; the crashy one keeps its own.
    from mongo_job_scheduler.stores.base import Fence

    healthy = next(c for c in claimed if c.document["name"] == "healthy")
    assert await store.release(Fence(other.id, "dead-worker", healthy.token, "healthy"))
    async with running(make(store, handler, workers=2)) as _:
        await wait_doc(store, other.id, lambda d: d["status"] == "completed")
        # The job held by the dead worker stays untouched until its lease expires.
        doc = await store.get(stuck.id)
        assert doc is not None and doc["status"] == "running" and doc["lockedBy"] == "dead-worker"
    assert ran == ["healthy"]


# -- names are limited independently -----------------------------------------------------------


async def test_names_are_limited_independently(store: JobStore) -> None:
    gauge = Gauge()
    release_a = asyncio.Event()

    async def handler(job: Job) -> None:
        gauge.enter(job)
        try:
            if job.name == "a":
                await release_a.wait()
            else:
                await asyncio.sleep(0.02)
        finally:
            gauge.exit(job)

    scheduler = make(store, handler, workers=4)
    a_jobs = [await scheduler.schedule("a", concurrency=1, priority=1) for _ in range(2)]
    b_jobs = [await scheduler.schedule("b", concurrency=1, priority=2) for _ in range(3)]
    free = [await scheduler.schedule("free", priority=3) for _ in range(3)]
    async with running(scheduler):
        # While one "a" job is stuck, "b" and unlimited jobs all get through.
        await wait_for(all_status(store, b_jobs + free, "completed"), timeout=15)
        assert sorted(await statuses(store, a_jobs)) == ["pending", "running"]
        release_a.set()
        await wait_for(all_status(store, a_jobs, "completed"))
    assert gauge.most == {"a": 1, "b": 1, "free": gauge.most["free"]}
    assert gauge.most_total >= 2


# -- saturated names never starve others (B8) --------------------------------------------------


@pytest.mark.parametrize("saturated_names", [20, 40])
async def test_many_saturated_names_do_not_starve_other_names(
    store: JobStore, saturated_names: int
) -> None:
    release = asyncio.Event()
    holding = 0

    async def handler(job: Job) -> None:
        nonlocal holding
        if job.name.startswith("busy-"):
            holding += 1
            await release.wait()

    holder = make(store, handler, workers=saturated_names)
    other = make(store, handler, workers=5)
    busy = [f"busy-{i:02d}" for i in range(saturated_names)]
    async with running(holder):
        held = [await holder.schedule(name, concurrency=1, priority=1) for name in busy]
        await wait_for(lambda: holding == saturated_names, timeout=15)
        # Every busy name now holds its only slot. More of their jobs wait first in the global
        # order (priority 1), ahead of five jobs of other limited names.
        waiting = [await holder.schedule(name, concurrency=1, priority=1) for name in busy]
        starved = [await holder.schedule(f"quiet-{i}", concurrency=1, priority=5) for i in range(5)]
        async with running(other):
            await wait_for(all_status(store, starved, "completed"), timeout=15)
            assert set(await statuses(store, waiting)) == {"pending"}
            assert set(await statuses(store, held)) == {"running"}
            release.set()
            await wait_for(all_status(store, held + waiting, "completed"), timeout=15)
