"""Retention of finished jobs: ``expireAt`` set when a job finishes, a TTL
index on MongoDB, repeating jobs never removed this way."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mongo_job_scheduler import ConfigurationError, Job, JobStatus, JobStore, Scheduler
from tests.conftest import wait_for


async def test_finished_jobs_get_an_expiry_by_status(store: JobStore) -> None:
    scheduler = Scheduler(
        store,
        poll_interval=0.02,
        retention={"completed": timedelta(days=7), "failed": timedelta(days=30), "cancelled": 60},
    )

    @scheduler.task("ok")
    async def ok(job: Job) -> None:
        return None

    @scheduler.task("bad")
    async def bad(job: Job) -> None:
        raise RuntimeError("no")

    async with scheduler:
        done = await scheduler.wait((await scheduler.schedule("ok")).id, timeout=10)
        failed = await scheduler.wait((await scheduler.schedule("bad")).id, timeout=10)
        pending = await scheduler.schedule("ok", delay=3600)
        await scheduler.cancel(pending.id)
        ticking = await scheduler.schedule("ok", repeat={"every": 0.2})

        async def ran_twice() -> bool:
            current = await scheduler.get_job(ticking.id)
            return (
                current is not None
                and current.last_run_at is not None
                and (current.next_run_at is not None and current.next_run_at > ticking.next_run_at)
            )

        await wait_for(ran_twice)
        await scheduler.cancel(ticking.id)

    def kept_for(job: Job) -> timedelta:
        assert job.updated_at is not None
        return job.document["expireAt"] - job.updated_at

    assert abs(kept_for(done) - timedelta(days=7)) < timedelta(minutes=1)
    assert abs(kept_for(failed) - timedelta(days=30)) < timedelta(minutes=1)
    cancelled = await scheduler.get_job(pending.id)
    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
    assert abs(kept_for(cancelled) - timedelta(seconds=60)) < timedelta(seconds=10)
    repeating = await scheduler.get_job(ticking.id)
    assert repeating is not None and "expireAt" not in repeating.document


async def test_without_retention_nothing_expires(store: JobStore) -> None:
    scheduler = Scheduler(store, poll_interval=0.02)

    @scheduler.task("ok")
    async def ok(job: Job) -> None:
        return None

    async with scheduler:
        done = await scheduler.wait((await scheduler.schedule("ok")).id, timeout=10)
    assert "expireAt" not in done.document


async def test_expired_jobs_disappear_and_revived_jobs_lose_their_expiry(store: JobStore) -> None:
    scheduler = Scheduler(store, poll_interval=0.02, retention={"failed": 0.2, "completed": 3600})

    @scheduler.task("bad")
    async def bad(job: Job) -> None:
        raise RuntimeError("no")

    async with scheduler:
        gone = await scheduler.wait((await scheduler.schedule("bad")).id, timeout=10)
        kept = await scheduler.wait((await scheduler.schedule("bad")).id, timeout=10)
        revived = await scheduler.retry_job(kept.id)
        assert "expireAt" not in revived.document
    from mongo_job_scheduler import MongoJobStore

    if isinstance(store, MongoJobStore):  # the TTL monitor runs every 60 s: check the index
        indexes = {i["name"]: i async for i in await store.jobs.list_indexes()}
        assert indexes["retention"]["expireAfterSeconds"] == 0
        assert indexes["retention"]["key"] == {"expireAt": 1}
    else:

        async def deleted() -> bool:
            return await scheduler.get_job(gone.id) is None

        await wait_for(deleted, timeout=5)


@pytest.mark.parametrize(
    "retention",
    [{"done": 5}, {"completed": -1}, {"failed": float("nan")}, ["completed"], {"completed": "7d"}],
)
def test_bad_retention_is_refused(retention: object) -> None:
    with pytest.raises(ConfigurationError):
        Scheduler(retention=retention)  # type: ignore[arg-type]
