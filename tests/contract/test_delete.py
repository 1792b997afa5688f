"""``Scheduler.delete_job`` over both stores: what it deletes, what it refuses, and what it
gives back (the dedupe key, the dependency edges, the jobs waiting for the deleted one)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from bson import ObjectId

from mongo_job_scheduler import (
    InvalidJobState,
    Job,
    JobStatus,
    JobStore,
    Scheduler,
    ValidationError,
)
from tests.contract.helpers import claim_jobs, status_of, stored


async def test_delete_removes_pending_waiting_and_finished_jobs(store: JobStore) -> None:
    scheduler = Scheduler(store)
    pending = await scheduler.schedule("later", {"n": 1}, delay=3600)
    cancelled = await scheduler.schedule("later", delay=3600)
    assert await scheduler.cancel(cancelled.id)
    waiting = await scheduler.schedule("join", depends_on=[pending])
    assert waiting.status is JobStatus.WAITING
    kept = await scheduler.schedule("kept", delay=3600)

    assert await scheduler.delete_job(str(waiting.id)) is True
    assert await scheduler.delete_job(cancelled.id) is True
    assert await scheduler.delete_job(pending.id) is True
    for gone in (pending, cancelled, waiting):
        assert await scheduler.get_job(gone.id) is None
    assert [job.id for job in await scheduler.get_jobs()] == [kept.id]
    assert await scheduler.delete_job(pending.id) is False  # already gone
    assert await scheduler.delete_job(ObjectId()) is False
    with pytest.raises(ValidationError) as info:
        await scheduler.delete_job("not-an-id")
    assert info.value.field == "job_id"


async def test_delete_refuses_a_running_job_until_it_is_cancelled(store: JobStore) -> None:
    scheduler = Scheduler(store)
    job = await scheduler.schedule("busy", dedupe_key="busy:1")
    [claimed] = await claim_jobs(store, "worker-1", 1, timedelta(seconds=60), 3)
    assert claimed.job_id == job.id
    with pytest.raises(InvalidJobState, match="cancel it first"):
        await scheduler.delete_job(job.id)
    assert await status_of(store, job.id) == "running"
    assert (await stored(store, job.id))["lockedBy"] == "worker-1"
    assert await scheduler.cancel(job.id)
    assert await scheduler.delete_job(job.id) is True
    assert await scheduler.get_job(job.id) is None


async def test_delete_gives_the_dedupe_key_back_as_a_cancel_does(store: JobStore) -> None:
    scheduler = Scheduler(store)
    first = await scheduler.schedule("mail", {"v": 1}, dedupe_key="mail:1", delay=3600)
    assert (await scheduler.schedule("mail", dedupe_key="mail:1")).id == first.id
    assert await scheduler.delete_job(first.id)
    second = await scheduler.schedule("mail", {"v": 2}, dedupe_key="mail:1", delay=3600)
    assert second.id != first.id and second.data == {"v": 2}


async def test_deleting_a_dependency_cancels_its_dependants_unless_they_run_on_failure(
    store: JobStore,
) -> None:
    scheduler = Scheduler(store)
    cancels: list[Job] = []
    scheduler.on("job:cancel", cancels.append)
    part = await scheduler.schedule("part", delay=3600)
    other = await scheduler.schedule("part", delay=3600)
    join = await scheduler.schedule("join", depends_on=[part])
    cleanup = await scheduler.schedule("cleanup", depends_on=[part], run_on_failure=True)
    both = await scheduler.schedule("both", depends_on=[part, other], run_on_failure=True)

    assert await scheduler.delete_job(part.id)
    cancelled = await stored(store, join.id)
    assert cancelled["status"] == "cancelled"
    assert cancelled["lastErrorType"] == "DependencyFailed"
    assert cancelled["lastError"] == (
        f"dependency {part.id} ('part') was deleted, so this job will not run"
    )
    assert await status_of(store, cleanup.id) == "pending"
    assert await status_of(store, both.id) == "waiting"  # still waits for the other one
    assert [job.id for job in cancels] == [join.id]


async def test_a_deleted_waiting_job_leaves_no_edge_behind(store: JobStore) -> None:
    scheduler = Scheduler(store)
    part = await scheduler.schedule("part", delay=3600)
    join = await scheduler.schedule("join", depends_on=[part])
    assert await store.has_open_dependencies(join.id)
    assert [job.id for job in await scheduler.dependants(part.id)] == [join.id]
    assert await scheduler.delete_job(join.id)
    assert not await store.has_open_dependencies(join.id)
    assert await store.dependants(part.id, 10) == []
    assert await scheduler.cancel(part.id)  # nothing left to settle
    assert await status_of(store, part.id) == "cancelled"
