"""Dedupe when the jobs collection has a unique index on ``dedupeKey`` (the Node library creates
one) and a job the dedupe registry does not know holds the key, through both MongoDB stores
(asyncio and blocking): the holder decides, a finished holder forbids the key, and inside a
transaction the index's refusal is the caller's error."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError

from mongo_job_scheduler import InvalidJobState, Job, JobStatus, MongoJobStore, Scheduler
from mongo_job_scheduler import sync as blocking

pytestmark = pytest.mark.mongo_only

Schedule = Callable[..., Awaitable[Job]]


@pytest.fixture(params=["asyncio", "blocking"])
def schedule(request: pytest.FixtureRequest, mongo_db: Any, sync_db: Any) -> Schedule:
    """``schedule("name", ...)`` through the asyncio or the blocking API."""
    if request.param == "asyncio":
        return Scheduler(MongoJobStore(mongo_db)).schedule
    scheduler = blocking.Scheduler(blocking.MongoJobStore(sync_db))
    return partial(asyncio.to_thread, scheduler.schedule)


async def unknown_holder(mongo_db: Any, status: str) -> Job:
    """A job holding dedupe key "k" in a unique ``dedupeKey`` index, unknown to the registry."""
    holder = await Scheduler(MongoJobStore(mongo_db)).schedule("held", dedupe_key="k")
    await mongo_db.scheduler_jobs.create_index("dedupeKey", unique=True, sparse=True)
    await mongo_db.scheduler_jobs_dedupe.delete_many({})
    await mongo_db.scheduler_jobs.update_one({"_id": holder.id}, {"$set": {"status": status}})
    return holder


async def test_an_active_index_holder_is_returned(schedule: Schedule, mongo_db: Any) -> None:
    holder = await unknown_holder(mongo_db, "pending")
    got = await schedule("again", dedupe_key="k")
    assert got.id == holder.id and got.name == "held"
    assert await mongo_db.scheduler_jobs.count_documents({}) == 1
    assert await mongo_db.scheduler_jobs_dedupe.count_documents({}) == 0  # no entry left behind


async def test_a_finished_index_holder_forbids_the_key_but_forever_returns_it(
    schedule: Schedule, mongo_db: Any
) -> None:
    holder = await unknown_holder(mongo_db, "completed")
    with pytest.raises(InvalidJobState, match="unique index on dedupeKey"):
        await schedule("again", dedupe_key="k")
    assert await mongo_db.scheduler_jobs_dedupe.count_documents({}) == 0
    forever = await schedule("again", dedupe_key="k", dedupe="forever")
    assert forever.id == holder.id and forever.status is JobStatus.COMPLETED
    assert await mongo_db.scheduler_jobs.count_documents({}) == 1


async def test_inside_an_asyncio_transaction_the_index_refusal_is_raised(mongo_db: Any) -> None:
    await unknown_holder(mongo_db, "pending")
    scheduler = Scheduler(MongoJobStore(mongo_db))
    async with mongo_db.client.start_session() as session:
        await session.start_transaction()
        with pytest.raises(DuplicateKeyError):
            await scheduler.schedule("again", dedupe_key="k", session=session)
        await session.abort_transaction()
    assert await mongo_db.scheduler_jobs.count_documents({}) == 1
    assert await mongo_db.scheduler_jobs_dedupe.count_documents({}) == 0


async def test_inside_a_blocking_transaction_the_index_refusal_is_raised(
    mongo_db: Any, sync_db: Any
) -> None:
    await unknown_holder(mongo_db, "pending")
    scheduler = blocking.Scheduler(blocking.MongoJobStore(sync_db))
    with sync_db.client.start_session() as session:
        session.start_transaction()
        with pytest.raises(DuplicateKeyError):
            scheduler.schedule("again", dedupe_key="k", session=session)
        session.abort_transaction()
    assert await mongo_db.scheduler_jobs.count_documents({}) == 1
    assert await mongo_db.scheduler_jobs_dedupe.count_documents({}) == 0
