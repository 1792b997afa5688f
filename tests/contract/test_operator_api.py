"""Operator API over both stores: ``retry_job``, ``purge`` and ``stats``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mongo_job_scheduler import (
    InvalidJobState,
    Job,
    JobNotFound,
    JobStatus,
    JobStore,
    Scheduler,
    ValidationError,
)
from tests.conftest import wait_for


async def _failed_job(scheduler: Scheduler, name: str = "boom", **kwargs: object) -> Job:
    job = await scheduler.schedule(name, **kwargs)  # type: ignore[arg-type]

    async def failed() -> bool:
        current = await scheduler.get_job(job.id)
        return current is not None and current.status is JobStatus.FAILED

    await wait_for(failed)
    return job


async def test_retry_job_runs_a_failed_job_again_with_fresh_attempts(store: JobStore) -> None:
    calls: list[int] = []
    scheduler = Scheduler(store, poll_interval=0.02)

    @scheduler.task("boom")
    async def boom(job: Job) -> None:
        calls.append(job.attempts)
        if len(calls) == 1:
            raise RuntimeError("first run fails")

    async with scheduler:
        job = await _failed_job(scheduler)
        retried = await scheduler.retry_job(str(job.id))
        assert retried.status is JobStatus.PENDING
        assert retried.attempts == 0

        async def completed() -> bool:
            current = await scheduler.get_job(job.id)
            return current is not None and current.status is JobStatus.COMPLETED

        await wait_for(completed)
    assert calls == [0, 0]


async def test_retry_job_revives_a_cancelled_job_but_refuses_other_states(store: JobStore) -> None:
    scheduler = Scheduler(store)
    pending = await scheduler.schedule("later", delay=3600)
    with pytest.raises(InvalidJobState):
        await scheduler.retry_job(pending.id)
    assert (await scheduler.get_job(pending.id)) == pending  # unchanged
    assert await scheduler.cancel(pending.id)
    revived = await scheduler.retry_job(pending.id)
    assert revived.status is JobStatus.PENDING
    assert revived.next_run_at is not None
    assert revived.next_run_at <= datetime.now(timezone.utc) + timedelta(seconds=5)
    with pytest.raises(JobNotFound):
        await scheduler.retry_job("0123456789ab0123456789ab")
    with pytest.raises(ValidationError):
        await scheduler.retry_job("not-an-id")


async def test_retry_job_refuses_when_another_active_job_holds_the_dedupe_key(
    store: JobStore,
) -> None:
    scheduler = Scheduler(store)
    first = await scheduler.schedule("mail", dedupe_key="k", delay=3600)
    assert await scheduler.cancel(first.id)
    second = await scheduler.schedule("mail", dedupe_key="k", delay=3600)
    assert second.id != first.id
    with pytest.raises(InvalidJobState):
        await scheduler.retry_job(first.id)
    current = await scheduler.get_job(first.id)
    assert current is not None and current.status is JobStatus.CANCELLED


async def test_purge_deletes_only_old_finished_jobs(store: JobStore) -> None:
    scheduler = Scheduler(store, poll_interval=0.02)

    @scheduler.task("ok")
    async def ok(job: Job) -> None:
        return None

    async with scheduler:
        done = [await scheduler.schedule("ok") for _ in range(3)]

        async def all_done() -> bool:
            jobs = await scheduler.get_jobs(status="completed")
            return len(jobs) == 3

        await wait_for(all_done)
    waiting = await scheduler.schedule("ok", delay=3600)
    cancelled = await scheduler.schedule("ok", delay=3600)
    await scheduler.cancel(cancelled.id)

    # Nothing is older than an hour: nothing goes.
    assert await scheduler.purge(timedelta(hours=1)) == 0
    # Only cancelled ones, with a cutoff after every job's last update.
    cutoff = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert await scheduler.purge(cutoff, statuses=["cancelled"]) == 1
    # Every finished job.
    assert await scheduler.purge(cutoff) == 3
    left = await scheduler.get_jobs()
    assert [job.id for job in left] == [waiting.id]
    for job in done:
        assert await scheduler.get_job(job.id) is None


async def test_purge_refuses_active_statuses_and_bad_input(store: JobStore) -> None:
    scheduler = Scheduler(store)
    job = await scheduler.schedule("x", delay=3600)
    with pytest.raises(ValidationError) as info:
        await scheduler.purge(timedelta(0), statuses=["pending"])
    assert info.value.field == "statuses"
    with pytest.raises(ValidationError):
        await scheduler.purge(datetime(2020, 1, 1))  # naive
    with pytest.raises(ValidationError):
        await scheduler.purge(-5)
    assert await scheduler.get_job(job.id) == job


async def test_stats_counts_by_status_and_name_with_due_lag_and_recent_failures(
    store: JobStore,
) -> None:
    scheduler = Scheduler(store)
    now = datetime.now(timezone.utc)
    await scheduler.schedule("a", run_at=now - timedelta(minutes=5))
    await scheduler.schedule("a", run_at=now - timedelta(minutes=1))
    await scheduler.schedule("b", delay=3600)
    cancelled = await scheduler.schedule("b", delay=3600)
    await scheduler.cancel(cancelled.id)

    stats = await scheduler.stats()
    assert stats.by_name == {"a": {"pending": 2}, "b": {"pending": 1, "cancelled": 1}}
    assert stats.by_status == {
        "pending": 3,
        "running": 0,
        "waiting": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 1,
    }
    assert stats.total == 4
    assert stats.due == 2
    assert stats.oldest_due_at is not None
    assert abs((stats.oldest_due_at - (now - timedelta(minutes=5))).total_seconds()) < 1
    assert stats.lag is not None and stats.lag >= timedelta(minutes=4, seconds=59)
    assert stats.failed_last_hour == 0

    worker = Scheduler(store, poll_interval=0.02)

    @worker.task("a")
    async def fail(job: Job) -> None:
        raise RuntimeError("nope")

    async with worker:

        async def both_failed() -> bool:
            return (await worker.stats()).failed_last_hour == 2

        await wait_for(both_failed)
    after = await scheduler.stats()
    assert after.due == 0 and after.lag is None
    assert after.by_name["a"] == {"failed": 2}
