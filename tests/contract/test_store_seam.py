"""Contract: what the worker asks a store besides claiming and writing — who owns a claimed
job now (one call), a release that can be retried after a lost reply, the store's own
classification of its errors, and the claim's result value — over both stores."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pymongo.errors import AutoReconnect, DuplicateKeyError

from mongo_job_scheduler import JobStore, MongoJobStore, Scheduler
from mongo_job_scheduler.stores.base import ClaimResult, ClaimState, Fence, Ownership
from tests.conftest import wait_for
from tests.contract.helpers import sibling

LEASE = timedelta(seconds=60)
TINY_LEASE = timedelta(milliseconds=50)


async def _claimed_fence(store: JobStore, owner: str = "owner-a", lease: timedelta = LEASE) -> Any:
    job = await Scheduler(store).schedule("seam")
    result = await store.claim(owner, 1, lease, 5)
    assert isinstance(result, ClaimResult)
    [claimed] = result.jobs
    return job, Fence(job.id, owner, claimed.token)


async def test_ownership_follows_the_job(store: JobStore) -> None:
    job, fence = await _claimed_fence(store)
    assert await store.ownership(fence) is Ownership.OWNED
    assert await store.ownership(Fence(job.id, "someone-else", fence.token)) is Ownership.LOST
    assert await store.ownership(Fence(job.id, fence.owner, fence.token + 1)) is Ownership.LOST
    await Scheduler(store).cancel(job.id)
    assert await store.ownership(fence) is Ownership.CANCELLED


async def test_ownership_is_lost_once_another_worker_takes_the_job_over(store: JobStore) -> None:
    job, fence = await _claimed_fence(store, lease=TINY_LEASE)

    async def take_over() -> list[Any]:
        return (await sibling(store).claim("owner-b", 1, LEASE, 5)).jobs

    [taken] = await wait_for(take_over, timeout=10)
    assert taken.document["_id"] == job.id
    assert await store.ownership(fence) is Ownership.LOST
    assert await store.ownership(Fence(job.id, "owner-b", taken.token)) is Ownership.OWNED


async def test_a_release_tried_again_counts_as_applied(store: JobStore) -> None:
    """A worker retries a release whose reply was lost: the second try finds the job already
    released by the same fence and reports it released; another fence's release does not."""
    job, fence = await _claimed_fence(store)
    assert await store.release(fence) is True
    assert await store.release(fence) is True
    assert await store.release(Fence(job.id, "owner-b", fence.token + 1)) is False
    doc = await store.get(job.id)
    assert doc is not None and doc["status"] == "pending" and "lockedBy" not in doc


async def test_a_release_after_another_claim_is_refused(store: JobStore) -> None:
    job, fence = await _claimed_fence(store)
    assert await store.release(fence) is True
    [again] = (await store.claim("owner-b", 1, LEASE, 5)).jobs
    assert await store.release(fence) is False
    assert await store.ownership(Fence(job.id, "owner-b", again.token)) is Ownership.OWNED


async def test_claim_reports_no_lost_race_when_it_takes_what_it_chose(store: JobStore) -> None:
    scheduler = Scheduler(store)
    await scheduler.schedule_bulk([{"name": "seam"} for _ in range(3)])
    state = ClaimState()
    result = await store.claim("owner-a", 10, LEASE, 5, state=state)
    assert len(result.jobs) == 3
    assert result.lost_races is False
    assert state.lost_races is False


def test_stores_classify_their_own_errors(store: JobStore) -> None:
    assert store.is_transient(ValueError("bad input")) is False
    if isinstance(store, MongoJobStore):
        assert store.is_transient(AutoReconnect("primary stepped down")) is True
        assert store.is_transient(DuplicateKeyError("E11000")) is False


@pytest.mark.mongo_only
async def test_two_workers_on_one_store_keep_their_own_contention(store: JobStore) -> None:
    """Lane state lives with each worker's claim state: one worker's lost race does not move
    another worker that shares the store object."""
    scheduler = Scheduler(store)
    now = await store.now()
    ids = [
        job.id
        for job in await scheduler.schedule_bulk(
            [{"name": "seam", "run_at": now - timedelta(seconds=60 - i)} for i in range(60)]
        )
    ]
    contended, calm = ClaimState(lost_races=True), ClaimState()
    first = (await store.claim("owner-a", 4, LEASE, 5, state=contended)).jobs
    assert [c.document["_id"] for c in first] != ids[:4]  # it moved to another lane
    head = (await store.claim("owner-b", 4, LEASE, 5, state=calm)).jobs
    assert [c.document["_id"] for c in head] == ids[:4]  # the other worker claims the head
