"""Dedupe keys: one active job per key, reuse after it finished, the "forever"
scope, race safety under concurrent producers, bulk dedupe, and recovery of registrations left
by a crashed producer. Runs over both stores (crash cases: MongoDB only)."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient, MongoClient

from mongo_job_scheduler import InvalidJobState, Job, JobStore, MongoJobStore, Scheduler
from tests.contract.helpers import make, running, wait_doc


async def docs_with_key(store: JobStore, key: str) -> list[dict[str, Any]]:
    """Every stored job with this dedupe key, read straight from the store."""
    if isinstance(store, MongoJobStore):
        return await store.jobs.find({"dedupeKey": key}).to_list()
    jobs = await Scheduler(store).get_jobs(limit=10_000)
    return [dict(j.document) for j in jobs if j.dedupe_key == key]


async def ok(job: Job) -> None:
    return None


# -- one active job per key --------------------------------------------------------------------


async def test_same_key_while_pending_returns_the_existing_job(store: JobStore) -> None:
    scheduler = make(store)
    created: list[Job] = []
    scheduler.on("job:created", created.append)
    first = await scheduler.schedule("email", {"n": 1}, dedupe_key="email:user:1")
    second = await scheduler.schedule("email", {"n": 2}, dedupe_key="email:user:1", priority=1)
    assert second.id == first.id
    assert second.data == {"n": 1}  # the existing job, unchanged
    assert second.priority == 5
    assert second.dedupe_key == "email:user:1"
    assert len(await docs_with_key(store, "email:user:1")) == 1
    assert [job.id for job in created] == [first.id]  # no job:created on a dedupe hit (B16)


async def test_different_keys_do_not_dedupe(store: JobStore) -> None:
    scheduler = make(store)
    a = await scheduler.schedule("email", dedupe_key="k1")
    b = await scheduler.schedule("email", dedupe_key="k2")
    c = await scheduler.schedule("email")
    d = await scheduler.schedule("email")
    assert len({a.id, b.id, c.id, d.id}) == 4


async def test_same_key_while_running_returns_the_running_job(store: JobStore) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()
        await release.wait()

    async with running(make(store, handler)) as scheduler:
        first = await scheduler.schedule("report", dedupe_key="report:today")
        await asyncio.wait_for(started.wait(), 10)
        again = await scheduler.schedule("report", dedupe_key="report:today")
        assert again.id == first.id
        assert again.status.value == "running"
        release.set()
        await wait_doc(store, first.id, lambda d: d["status"] == "completed")
    assert len(await docs_with_key(store, "report:today")) == 1


@pytest.mark.parametrize("outcome", ["completed", "failed", "cancelled"])
async def test_key_is_free_again_once_the_job_finished(store: JobStore, outcome: str) -> None:
    async def handler(job: Job) -> None:
        if job.data == {"fail": True}:
            raise RuntimeError("nope")

    scheduler = make(store, handler)
    data = {"fail": outcome == "failed"}
    first = await scheduler.schedule("sync-user", data, dedupe_key="user:7")
    if outcome == "cancelled":
        assert await scheduler.cancel(first.id)
    else:
        async with running(scheduler):
            await wait_doc(store, first.id, lambda d: d["status"] == outcome)
    second = await scheduler.schedule("sync-user", {"fail": False}, dedupe_key="user:7")
    assert second.id != first.id
    assert second.status.value == "pending"
    # And the new job holds the key in turn.
    third = await scheduler.schedule("sync-user", dedupe_key="user:7")
    assert third.id == second.id
    docs = await docs_with_key(store, "user:7")
    assert sorted(d["status"] for d in docs) == sorted([outcome, "pending"])


async def test_forever_scope_returns_the_finished_job(store: JobStore) -> None:
    created: list[Job] = []
    async with running(make(store, ok)) as scheduler:
        scheduler.on("job:created", created.append)
        first = await scheduler.schedule("welcome", dedupe_key="welcome:42", dedupe="forever")
        await wait_doc(store, first.id, lambda d: d["status"] == "completed")
        again = await scheduler.schedule("welcome", dedupe_key="welcome:42", dedupe="forever")
        default_scope = await scheduler.schedule("welcome", dedupe_key="welcome:42")
    assert again.id == first.id
    assert again.status.value == "completed"
    # The key was taken "forever" by the first job: a default-scope call gets it too.
    assert default_scope.id == first.id
    assert len(await docs_with_key(store, "welcome:42")) == 1
    assert len(created) == 1


async def test_forever_scope_survives_cancellation(store: JobStore) -> None:
    scheduler = make(store)
    first = await scheduler.schedule("once-ever", dedupe_key="once", dedupe="forever")
    assert await scheduler.cancel(first.id)
    again = await scheduler.schedule("once-ever", dedupe_key="once", dedupe="forever")
    assert again.id == first.id
    assert again.status.value == "cancelled"


async def test_reviving_a_finished_job_needs_its_key(store: JobStore) -> None:
    async with running(make(store, ok)) as scheduler:
        first = await scheduler.schedule("nightly", dedupe_key="nightly")
        await wait_doc(store, first.id, lambda d: d["status"] == "completed")
    successor = await scheduler.schedule("nightly", dedupe_key="nightly")
    assert successor.id != first.id
    with pytest.raises(InvalidJobState):
        await scheduler.update_job(first.id, run_at=await store.now())
    doc = await store.get(first.id)
    assert doc is not None and doc["status"] == "completed"
    # Once the successor is gone, the old job may run again and takes the key back.
    assert await scheduler.cancel(successor.id)
    revived = await scheduler.update_job(first.id, run_at=await store.now())
    assert revived.status.value == "pending"
    third = await scheduler.schedule("nightly", dedupe_key="nightly")
    assert third.id == first.id


# -- races -------------------------------------------------------------------------------------


async def test_concurrent_schedules_with_one_key_make_one_job(store: JobStore) -> None:
    scheduler = make(store)
    created: list[Job] = []
    scheduler.on("job:created", created.append)
    jobs = await asyncio.gather(
        *(scheduler.schedule("race", {"i": i}, dedupe_key="race:1") for i in range(20))
    )
    assert len({job.id for job in jobs}) == 1
    assert len(await docs_with_key(store, "race:1")) == 1
    assert len(created) == 1
    assert created[0].id == jobs[0].id


async def test_concurrent_schedulers_with_one_key_make_one_job(store: JobStore) -> None:
    """Four schedulers (with MongoDB: four store instances, as four processes would have)."""
    if isinstance(store, MongoJobStore):
        stores: list[JobStore] = [store] + [
            MongoJobStore(store.database, store.collection_name) for _ in range(3)
        ]
    else:
        stores = [store] * 4
    schedulers = [make(s) for s in stores]
    jobs = await asyncio.gather(
        *(
            schedulers[i % len(schedulers)].schedule("race", {"i": i}, dedupe_key=f"race:{i % 3}")
            for i in range(30)
        )
    )
    by_key: dict[str, set[Any]] = {}
    for job in jobs:
        assert job.dedupe_key is not None
        by_key.setdefault(job.dedupe_key, set()).add(job.id)
    assert {k: len(v) for k, v in by_key.items()} == {"race:0": 1, "race:1": 1, "race:2": 1}
    for key in by_key:
        assert len(await docs_with_key(store, key)) == 1


@pytest.mark.mongo_only
async def test_producers_in_several_threads_and_clients_make_one_job(
    store: JobStore, mongodb_uri: str, db_name: str
) -> None:
    """Separate clients, event loops and threads (as separate processes would be), plus the
    blocking facade, all scheduling the same key at once."""
    assert isinstance(store, MongoJobStore)
    await store.setup()
    sync_module = pytest.importorskip("mongo_job_scheduler.sync")
    start = threading.Barrier(6)

    def async_producer() -> list[Any]:
        async def main() -> list[Any]:
            client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
            try:
                scheduler = Scheduler(MongoJobStore(client[db_name], store.collection_name))
                await scheduler.store.setup()  # type: ignore[union-attr]
                start.wait(10)
                jobs = await asyncio.gather(
                    *(scheduler.schedule("race", dedupe_key="threads") for _ in range(5))
                )
                return [job.id for job in jobs]
            finally:
                await client.close()

        return asyncio.run(main())

    def sync_producer() -> list[Any]:
        client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
        try:
            scheduler = sync_module.Scheduler(
                sync_module.MongoJobStore(client[db_name], store.collection_name)
            )
            start.wait(10)
            return [scheduler.schedule("race", dedupe_key="threads").id for _ in range(5)]
        finally:
            client.close()

    producers = [async_producer] * 4 + [sync_producer] * 2
    results = await asyncio.gather(*(asyncio.to_thread(p) for p in producers))
    ids = {job_id for ids in results for job_id in ids}
    assert len(ids) == 1
    assert len(await docs_with_key(store, "threads")) == 1


# -- schedule_bulk -----------------------------------------------------------------------------


async def test_schedule_bulk_dedupes_against_stored_jobs_and_within_the_call(
    store: JobStore,
) -> None:
    scheduler = make(store)
    created: list[Job] = []
    existing = await scheduler.schedule("bulk", {"v": 0}, dedupe_key="a")
    scheduler.on("job:created", created.append)
    jobs = await scheduler.schedule_bulk(
        [
            {"name": "bulk", "data": {"v": 1}, "dedupe_key": "a"},
            {"name": "bulk", "data": {"v": 2}, "dedupe_key": "b"},
            {"name": "bulk", "data": {"v": 3}, "dedupe_key": "b"},
            {"name": "bulk", "data": {"v": 4}},
        ]
    )
    assert len(jobs) == 4
    assert jobs[0].id == existing.id and jobs[0].data == {"v": 0}
    assert jobs[1].id == jobs[2].id and jobs[2].data == {"v": 2}
    assert len({jobs[0].id, jobs[1].id, jobs[3].id}) == 3
    assert len(await docs_with_key(store, "a")) == 1
    assert len(await docs_with_key(store, "b")) == 1
    assert len(await Scheduler(store).get_jobs()) == 3
    assert sorted(job.data["v"] for job in created) == [2, 4]


async def test_concurrent_bulk_and_single_schedules_share_keys(store: JobStore) -> None:
    scheduler = make(store)
    items = [{"name": "mix", "dedupe_key": f"k{i % 4}"} for i in range(12)]
    results = await asyncio.gather(
        scheduler.schedule_bulk(items),
        scheduler.schedule_bulk(items),
        *(scheduler.schedule("mix", dedupe_key=f"k{i}") for i in range(4)),
    )
    ids: dict[str, set[Any]] = {}
    for result in results:
        for job in result if isinstance(result, list) else [result]:
            ids.setdefault(job.dedupe_key, set()).add(job.id)
    assert all(len(v) == 1 for v in ids.values()), ids
    assert len(await Scheduler(store).get_jobs()) == 4


# -- registrations left by a crashed producer (MongoDB) ----------------------------------------


def registry(store: MongoJobStore) -> Any:
    return store.database[f"{store.collection_name}_dedupe"]


@pytest.mark.mongo_only
async def test_registration_of_a_job_never_inserted_is_taken_over(store: JobStore) -> None:
    assert isinstance(store, MongoJobStore)
    await store.setup()
    ghost = ObjectId()
    old = await store.now() - timedelta(hours=1)
    await registry(store).insert_one({"_id": "crashed", "jobId": ghost, "registeredAt": old})
    scheduler = make(store)
    created: list[Job] = []
    scheduler.on("job:created", created.append)
    job = await asyncio.wait_for(scheduler.schedule("after-crash", dedupe_key="crashed"), 10)
    assert job.id != ghost
    assert [c.id for c in created] == [job.id]
    assert await store.get(job.id) is not None
    entry = await registry(store).find_one({"_id": "crashed"})
    assert entry is not None and entry["jobId"] == job.id
    # The key now dedupes to the new job.
    assert (await scheduler.schedule("after-crash", dedupe_key="crashed")).id == job.id


@pytest.mark.mongo_only
async def test_fresh_registration_of_a_missing_job_is_waited_for_then_taken_over(
    store: JobStore,
) -> None:
    """A registration younger than the grace period may belong to a producer between its two
    writes: it is waited for, and taken over once the grace period has passed."""
    assert isinstance(store, MongoJobStore)
    await store.setup()
    from mongo_job_scheduler._dedupe import DEDUPE_GRACE

    almost_stale = await store.now() - DEDUPE_GRACE + timedelta(milliseconds=400)
    await registry(store).insert_one(
        {"_id": "in-flight", "jobId": ObjectId(), "registeredAt": almost_stale}
    )
    job = await asyncio.wait_for(make(store).schedule("late", dedupe_key="in-flight"), 10)
    assert await store.get(job.id) is not None
    assert (await store.now()) - almost_stale >= DEDUPE_GRACE - timedelta(milliseconds=50)


@pytest.mark.mongo_only
async def test_registration_of_a_finished_job_is_taken_over(store: JobStore) -> None:
    """A producer died between finishing a job and releasing its key."""
    assert isinstance(store, MongoJobStore)
    async with running(make(store, ok)) as scheduler:
        done = await scheduler.schedule("finished")
        await wait_doc(store, done.id, lambda d: d["status"] == "completed")
    await registry(store).insert_one(
        {"_id": "left-over", "jobId": done.id, "registeredAt": await store.now()}
    )
    job = await scheduler.schedule("finished", dedupe_key="left-over")
    assert job.id != done.id
    assert job.status.value == "pending"
