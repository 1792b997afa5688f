"""Pause and resume by job name, over both stores."""

from __future__ import annotations

import asyncio

import pytest

from mongo_job_scheduler import Job, JobStatus, JobStore, Scheduler, ValidationError
from tests.conftest import wait_for


async def test_paused_name_is_not_claimed_until_resumed(store: JobStore) -> None:
    ran: list[str] = []
    admin = Scheduler(store)
    assert await admin.pause("report") is True
    assert await admin.pause("report") is False  # already paused
    assert await admin.paused_names() == ["report"]

    worker = Scheduler(store, poll_interval=0.02)

    @worker.task("report")
    async def report(job: Job) -> None:
        ran.append("report")

    @worker.task("mail")
    async def mail(job: Job) -> None:
        ran.append("mail")

    async with worker:
        paused = await admin.schedule("report")
        await admin.schedule("mail")
        await wait_for(lambda: "mail" in ran)
        # The mail job ran; the paused one is untouched (never claimed).
        current = await worker.get_job(paused.id)
        assert current is not None
        assert current.status is JobStatus.PENDING and current.lock_version == 0
        assert "report" not in ran
        stats = await worker.stats()
        assert stats.paused == ["report"]

        assert await worker.resume("report") is True
        assert await worker.resume("report") is False
        await wait_for(lambda: "report" in ran)
    assert await admin.paused_names() == []


async def test_pause_lets_running_jobs_finish(store: JobStore) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    worker = Scheduler(store, poll_interval=0.02)

    @worker.task("long")
    async def long(job: Job) -> None:
        started.set()
        await release.wait()

    async with worker:
        job = await worker.schedule("long")
        await asyncio.wait_for(started.wait(), 10)
        await worker.pause("long")
        second = await worker.schedule("long")
        release.set()

        async def finished() -> bool:
            current = await worker.get_job(job.id)
            return current is not None and current.status is JobStatus.COMPLETED

        await wait_for(finished)
        later = await worker.get_job(second.id)
        assert later is not None and later.status is JobStatus.PENDING


@pytest.mark.mongo_only
async def test_pause_survives_a_restart_and_reaches_other_processes(store: JobStore) -> None:
    from mongo_job_scheduler import MongoJobStore

    assert isinstance(store, MongoJobStore)
    await Scheduler(store).pause("nightly")
    other = MongoJobStore(store.database)  # a fresh store: another process, or a restart
    assert await Scheduler(other).paused_names() == ["nightly"]
    ran: list[str] = []
    worker = Scheduler(other, poll_interval=0.02)

    @worker.task("nightly")
    async def nightly(job: Job) -> None:
        ran.append("x")

    @worker.task("probe")
    async def probe(job: Job) -> None:
        ran.append("probe")

    async with worker:
        await worker.schedule("nightly")
        await worker.schedule("probe")
        await wait_for(lambda: "probe" in ran)
        assert ran == ["probe"]


async def test_pause_validates_the_name(store: JobStore) -> None:
    scheduler = Scheduler(store)
    for bad in ("", 5, None, "x" * 500):
        with pytest.raises(ValidationError):
            await scheduler.pause(bad)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            await scheduler.resume(bad)  # type: ignore[arg-type]
    assert await scheduler.paused_names() == []
