"""Transactional enqueue: jobs scheduled inside the caller's MongoDB
transaction exist only if it commits."""

from __future__ import annotations

from typing import Any

import pytest

from mongo_job_scheduler import InMemoryJobStore, Job, JobStatus, MongoJobStore, Scheduler


async def _count(store: MongoJobStore) -> int:
    return await store.jobs.count_documents({})


async def test_jobs_scheduled_in_an_aborted_transaction_never_exist_or_run(mongo_db: Any) -> None:
    store = MongoJobStore(mongo_db)
    ran: list[str] = []
    worker = Scheduler(store, poll_interval=0.02)

    @worker.task("mail")
    async def mail(job: Job) -> None:
        ran.append(job.data)

    async with worker:
        orders = mongo_db["orders"]
        await orders.insert_one({"_id": "warm-up"})  # create the collection outside the txn
        async with mongo_db.client.start_session() as session:
            await session.start_transaction()
            await orders.insert_one({"_id": "o-1"}, session=session)
            single = await worker.schedule("mail", "one", session=session)
            bulk = await worker.schedule_bulk(
                [
                    {"name": "mail", "data": "two"},
                    {"name": "mail", "data": "three", "dedupe_key": "k"},
                ],
                session=session,
            )
            # Not visible outside the transaction, so no worker can take them.
            assert await worker.get_job(single.id) is None
            await session.abort_transaction()
        assert await worker.get_job(single.id) is None
        assert all([await worker.get_job(job.id) is None for job in bulk])
        assert await _count(store) == 0
        assert await orders.find_one({"_id": "o-1"}) is None
        # The dedupe key registered inside the aborted transaction is free.
        fresh = await worker.schedule("mail", "four", dedupe_key="k")
        done = await worker.wait(fresh.id, timeout=10)
        assert done.status is JobStatus.COMPLETED
    # "four" was scheduled after the aborted ones, which would come first in the claim order.
    assert ran == ["four"]


async def test_jobs_scheduled_in_a_committed_transaction_run(mongo_db: Any) -> None:
    store = MongoJobStore(mongo_db)
    worker = Scheduler(store, poll_interval=0.02)

    @worker.task("mail")
    async def mail(job: Job) -> str:
        return f"sent {job.data}"

    async with worker:
        async with mongo_db.client.start_session() as session:
            await session.start_transaction()
            job = await worker.schedule("mail", "one", session=session, dedupe_key="once")
            await session.commit_transaction()
        done = await worker.wait(job.id, timeout=10)
    assert done.result == "sent one"


async def test_the_memory_store_refuses_sessions() -> None:
    scheduler = Scheduler(InMemoryJobStore())
    with pytest.raises(TypeError):
        await scheduler.schedule("x", session=object())
    assert await scheduler.get_jobs() == []
