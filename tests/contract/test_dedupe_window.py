"""Dedupe windows: the key stays taken for ``dedupe_window`` after the job
finished (throttling), beside the "active" and "forever" scopes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mongo_job_scheduler import Job, JobStatus, JobStore, Scheduler, ValidationError
from tests.conftest import wait_for


async def test_key_stays_taken_for_the_window_after_the_job_finished(store: JobStore) -> None:
    ran: list[int] = []
    scheduler = Scheduler(store, poll_interval=0.02)

    @scheduler.task("digest")
    async def digest(job: Job) -> None:
        ran.append(job.data)

    async with scheduler:
        first = await scheduler.schedule("digest", 1, dedupe_key="user:7", dedupe_window=0.8)
        await scheduler.wait(first.id, timeout=10)
        # Finished, but inside the window: the finished job comes back, nothing new runs.
        again = await scheduler.schedule("digest", 2, dedupe_key="user:7", dedupe_window=0.8)
        assert again.id == first.id and again.status is JobStatus.COMPLETED

        async def window_over() -> bool:
            job = await scheduler.schedule("digest", 3, dedupe_key="user:7", dedupe_window=0.8)
            return job.id != first.id

        await wait_for(window_over, timeout=10, interval=0.1)
        await wait_for(lambda: 3 in ran)
    assert ran == [1, 3]


async def test_window_applies_to_cancelled_jobs_and_bulk(store: JobStore) -> None:
    scheduler = Scheduler(store)
    first = await scheduler.schedule("x", dedupe_key="k", dedupe_window=3600, delay=60)
    await scheduler.cancel(first.id)
    [same] = await scheduler.schedule_bulk(
        [{"name": "x", "dedupe_key": "k", "dedupe_window": 3600}]
    )
    assert same.id == first.id and same.status is JobStatus.CANCELLED
    # Without a window on the new request, the stored job's window still holds the key.
    assert (await scheduler.schedule("x", dedupe_key="k")).id == first.id
    # A key without a window is free once its job is cancelled.
    plain = await scheduler.schedule("y", dedupe_key="p", delay=60)
    await scheduler.cancel(plain.id)
    assert (await scheduler.schedule("y", dedupe_key="p")).id != plain.id


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"dedupe_window": 5}, "dedupe_window"),
        ({"dedupe_key": "k", "dedupe_window": 0}, "dedupe_window"),
        ({"dedupe_key": "k", "dedupe_window": -1}, "dedupe_window"),
        (
            {"dedupe_key": "k", "dedupe_window": timedelta(hours=1), "dedupe": "forever"},
            "dedupe_window",
        ),
    ],
)
async def test_bad_windows_are_refused(store: JobStore, kwargs: dict, field: str) -> None:
    scheduler = Scheduler(store)
    with pytest.raises(ValidationError) as info:
        await scheduler.schedule("x", **kwargs)
    assert info.value.field == field
    assert await scheduler.get_jobs() == []
