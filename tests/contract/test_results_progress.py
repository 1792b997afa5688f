"""Job results, ``wait`` and progress reporting, over both stores."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

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


async def test_a_handler_result_is_stored_and_wait_returns_it(store: JobStore) -> None:
    scheduler = Scheduler(store, poll_interval=0.02)

    @scheduler.task("add")
    async def add(job: Job) -> dict[str, Any]:
        return {"sum": job.data["a"] + job.data["b"]}

    @scheduler.task("sync-add")
    def sync_add(job: Job) -> int:
        return int(job.data["a"] + job.data["b"])

    async with scheduler:
        first = await scheduler.schedule("add", {"a": 2, "b": 3})
        second = await scheduler.schedule("sync-add", {"a": 4, "b": 5})
        done = await scheduler.wait(first.id, timeout=10)
        assert done.status is JobStatus.COMPLETED
        assert done.result == {"sum": 5}
        assert (await scheduler.wait(str(second.id), timeout=10)).result == 9
    stored = await scheduler.get_job(first.id)
    assert stored is not None and stored.result == {"sum": 5}


async def test_wait_returns_failed_and_cancelled_jobs_and_times_out(store: JobStore) -> None:
    scheduler = Scheduler(store, poll_interval=0.02)

    @scheduler.task("bad")
    async def bad(job: Job) -> None:
        raise RuntimeError("broken")

    async with scheduler:
        failed = await scheduler.wait((await scheduler.schedule("bad")).id, timeout=10)
        assert failed.status is JobStatus.FAILED and failed.result is None
        later = await scheduler.schedule("bad", delay=3600)
        with pytest.raises(TimeoutError):
            await scheduler.wait(later.id, timeout=0.2)
        await scheduler.cancel(later.id)
        assert (await scheduler.wait(later.id, timeout=5)).status is JobStatus.CANCELLED
        with pytest.raises(JobNotFound):
            await scheduler.wait("0123456789ab0123456789ab", timeout=1)
        with pytest.raises(ValidationError):
            await scheduler.wait(later.id, timeout=-1)


async def test_a_result_that_cannot_be_stored_fails_the_attempt(store: JobStore) -> None:
    scheduler = Scheduler(store, poll_interval=0.02)

    @scheduler.task("weird")
    async def weird(job: Job) -> object:
        return {"a set": {1, 2}}

    async with scheduler:
        job = await scheduler.wait((await scheduler.schedule("weird")).id, timeout=10)
    assert job.status is JobStatus.FAILED
    assert job.last_error_type == "TypeError"
    assert job.last_error is not None and "cannot be stored" in job.last_error


async def test_progress_is_coalesced_and_visible_while_running(store: JobStore) -> None:
    release = asyncio.Event()
    writes: list[int] = []
    scheduler = Scheduler(store, poll_interval=0.02)

    @scheduler.task("crunch")
    async def crunch(job: Job) -> str:
        for step in range(1, 1001):  # a tight loop: must not cost a write per call
            await job.set_progress(step / 10, f"step {step}")
        await release.wait()
        return "done"

    real_record = store.record_progress

    async def counting(items: Any) -> None:
        writes.append(len(items))
        await real_record(items)

    store.record_progress = counting  # type: ignore[method-assign]
    async with scheduler:
        job = await scheduler.schedule("crunch")

        async def reported() -> bool:
            current = await scheduler.get_job(job.id)
            return current is not None and current.progress is not None

        await wait_for(reported)
        current = await scheduler.get_job(job.id)
        assert current is not None and current.progress is not None
        assert current.progress.percent == 100.0
        assert current.progress.message == "step 1000"
        assert current.status is JobStatus.RUNNING
        release.set()
        finished = await scheduler.wait(job.id, timeout=10)
    assert finished.result == "done"
    assert finished.progress is not None and finished.progress.percent == 100.0
    assert sum(writes) <= 3, writes


async def test_progress_from_a_sync_handler_thread_and_bad_values(store: JobStore) -> None:
    errors: list[BaseException] = []
    scheduler = Scheduler(store, poll_interval=0.02)

    @scheduler.task("threaded")
    def threaded(job: Job) -> None:
        assert threading.current_thread() is not threading.main_thread()
        for bad in (-1, 101, float("nan"), "50", True):
            try:
                job.report_progress(bad)  # type: ignore[arg-type]
            except ValidationError as exc:
                errors.append(exc)
        job.report_progress(42, "almost")

    async with scheduler:
        job = await scheduler.wait((await scheduler.schedule("threaded")).id, timeout=10)
    assert job.status is JobStatus.COMPLETED
    assert len(errors) == 5
    assert job.progress is not None
    assert (job.progress.percent, job.progress.message) == (42.0, "almost")


async def test_progress_outside_a_running_handler_is_refused(store: JobStore) -> None:
    job = await Scheduler(store).schedule("x", delay=60)
    with pytest.raises(InvalidJobState):
        await job.set_progress(10)


async def test_a_result_that_would_overflow_the_document_fails_the_attempt(
    store: JobStore,
) -> None:
    """The result alone fits in 16 MB, but not beside the job's data: the attempt fails with
    a clear error instead of an outcome write the server would refuse."""
    scheduler = Scheduler(store, poll_interval=0.02)
    big = "x" * (9 * 1024 * 1024)

    @scheduler.task("echo")
    async def echo(job: Job) -> str:
        return str(job.data)

    async with scheduler:
        job = await scheduler.wait((await scheduler.schedule("echo", big)).id, timeout=30)
    assert job.status is JobStatus.FAILED
    assert job.last_error is not None and "cannot be stored" in job.last_error
