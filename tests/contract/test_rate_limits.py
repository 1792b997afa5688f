"""Rate limits per job name: at most ``limit`` starts per ``period`` across
all workers, race-free; jobs over the budget wait for the window."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from mongo_job_scheduler import Job, JobStore, RateLimit, Scheduler, ValidationError
from tests.conftest import wait_for


def _max_in_window(starts: list[float], period: float) -> int:
    starts = sorted(starts)
    best = 0
    for i, first in enumerate(starts):
        best = max(best, sum(1 for t in starts[i:] if t < first + period))
    return best


async def test_job_rate_limit_holds_across_schedulers(store: JobStore) -> None:
    starts: list[float] = []
    schedulers = [Scheduler(store, workers=4, poll_interval=0.02) for _ in range(3)]
    for scheduler in schedulers:

        @scheduler.task("call-api")
        async def call_api(job: Job) -> None:
            starts.append(time.monotonic())

    producer = schedulers[0]
    await producer.schedule_bulk(
        [
            {"name": "call-api", "data": i, "rate_limit": {"limit": 3, "period": 0.5}}
            for i in range(9)
        ]
    )
    for scheduler in schedulers:
        await scheduler.start()
    try:
        await wait_for(lambda: len(starts) == 9, timeout=20)
    finally:
        for scheduler in schedulers:
            await scheduler.stop()
    # Starts are counted when jobs are claimed: judge by the claim times the store wrote
    # (handlers start a little later, by varying amounts). 9 starts at 3 per 0.5 s take at
    # least a full second; never more than 3 in any window (slack for the gap between
    # recording a start and writing the claim).
    claimed = [
        job.last_run_at.timestamp()
        for job in await producer.get_jobs(name="call-api")
        if job.last_run_at is not None
    ]
    assert len(claimed) == 9
    assert _max_in_window(claimed, 0.45) <= 3
    assert max(claimed) - min(claimed) >= 0.9


async def test_task_rate_limit_overrides_the_jobs_own(store: JobStore) -> None:
    starts: list[float] = []
    scheduler = Scheduler(store, workers=8, poll_interval=0.02)

    @scheduler.task("mail", rate_limit=RateLimit(limit=2, period=timedelta(milliseconds=400)))
    async def mail(job: Job) -> None:
        starts.append(time.monotonic())

    async with scheduler:
        await scheduler.schedule_bulk(
            [{"name": "mail", "rate_limit": {"limit": 100, "period": 1}} for _ in range(6)]
        )
        await wait_for(lambda: len(starts) == 6, timeout=20)
    claimed = [
        job.last_run_at.timestamp()
        for job in await scheduler.get_jobs(name="mail")
        if job.last_run_at is not None
    ]
    assert _max_in_window(claimed, 0.35) <= 2
    assert max(claimed) - min(claimed) >= 0.7


async def test_other_names_are_not_held_back(store: JobStore) -> None:
    ran: list[str] = []
    scheduler = Scheduler(store, workers=2, poll_interval=0.02)

    @scheduler.task("slow-lane", rate_limit={"limit": 1, "period": 3600})
    async def slow(job: Job) -> None:
        ran.append("slow")

    @scheduler.task("fast-lane")
    async def fast(job: Job) -> None:
        ran.append("fast")

    async with scheduler:
        await scheduler.schedule_bulk([{"name": "slow-lane"} for _ in range(3)])
        await scheduler.schedule_bulk([{"name": "fast-lane"} for _ in range(5)])
        await wait_for(lambda: ran.count("fast") == 5)
        await asyncio.sleep(0)  # let any wrongly claimed slow job record itself
    assert ran.count("slow") == 1
    waiting = await scheduler.get_jobs(name="slow-lane", status="pending")
    assert len(waiting) == 2 and all(job.lock_version == 0 for job in waiting)


@pytest.mark.parametrize(
    "rate_limit, field",
    [
        ({"limit": 0, "period": 1}, "rate_limit.limit"),
        ({"limit": 1.5, "period": 1}, "rate_limit.limit"),
        ({"limit": 1, "period": 0}, "rate_limit.period"),
        ({"limit": 1, "period": float("inf")}, "rate_limit.period"),
        ({"limit": 1}, "rate_limit.period"),
        ({"limit": 1, "period": 1, "burst": 3}, "rate_limit"),
        ([1, 1], "rate_limit"),
    ],
)
async def test_bad_rate_limits_are_refused(store: JobStore, rate_limit: object, field: str) -> None:
    scheduler = Scheduler(store)
    with pytest.raises(ValidationError) as info:
        await scheduler.schedule("x", rate_limit=rate_limit)  # type: ignore[arg-type]
    assert info.value.field == field
    assert await scheduler.get_jobs() == []
    with pytest.raises(ValidationError):
        scheduler.task("y", rate_limit=rate_limit)  # type: ignore[arg-type]
