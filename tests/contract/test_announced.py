"""Contract: claiming an announced job. A change notification for a job created due with no
limits carries the job (``Announced``); an idle worker takes it by its id in one round trip
(``JobStore.claim_announced``) instead of reading the queue first. The store takes it exactly
as ``claim`` would, or writes nothing and returns ``None`` (then the worker claims as usual).
The in-memory store has no notifications and always returns ``None``."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from mongo_job_scheduler import InMemoryJobStore, Job, JobStore, MongoJobStore, Scheduler
from mongo_job_scheduler.rate_limit import RateLimit
from mongo_job_scheduler.stores import _mongo_common as q
from mongo_job_scheduler.stores._mongo_watch import REARM_DELAY
from mongo_job_scheduler.stores.base import Announced
from tests.conftest import wait_for
from tests.contract.test_idle_polling import Commands

LEASE = timedelta(seconds=60)


async def _claim(store: JobStore, job: Job, owner: str = "w1", **kwargs: Any) -> Any:
    return await store.claim_announced(owner, Announced(job.id, job.name), LEASE, 3, **kwargs)


async def _ready(store: MongoJobStore) -> None:
    """A worker claims before anything is announced: its paused names are known."""
    await store.claim("warm-up", 1, LEASE, 3)


async def test_in_memory_store_never_claims_an_announced_job() -> None:
    store = InMemoryJobStore()
    job = await Scheduler(store).schedule("email")
    assert await _claim(store, job) is None
    assert (await store.get(job.id) or {})["status"] == "pending"


@pytest.mark.mongo_only
async def test_an_announced_job_is_taken_as_a_claim_takes_it(store: JobStore) -> None:
    assert isinstance(store, MongoJobStore)
    await _ready(store)
    job = await Scheduler(store).schedule("email", {"to": "a@example.com"})
    claimed = await _claim(store, job)
    assert claimed is not None and claimed.job_id == job.id
    assert claimed.token == 1 and not claimed.poisoned
    stored = await store.get(job.id)
    assert stored is not None
    assert stored["status"] == "running" and stored["lockedBy"] == "w1"
    assert stored["lockVersion"] == 1 and stored["lockUntil"] > stored["lockedAt"]
    assert claimed.document["lockUntil"] == stored["lockUntil"]
    assert await _claim(store, job, owner="w2") is None  # taken: nothing written
    assert (await store.get(job.id) or {})["lockedBy"] == "w1"


@pytest.mark.mongo_only
async def test_an_announced_job_that_is_not_claimable_alone_is_left_alone(
    store: JobStore,
) -> None:
    """Paused, another worker's name, a concurrency limit, a rate limit of its own or of its
    name, not yet due: nothing written, and the usual claim decides."""
    assert isinstance(store, MongoJobStore)
    producer = Scheduler(store)
    await producer.pause("paused")
    await _ready(store)
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    cases = [
        (await producer.schedule("paused"), {}),
        (await producer.schedule("other"), {"names": ["email"]}),
        (await producer.schedule("limited", concurrency=2), {}),
        (await producer.schedule("own-rate", rate_limit={"limit": 5, "period": 60}), {}),
        (await producer.schedule("task-rate"), {"rate_limits": {"task-rate": RateLimit(5, 60)}}),
        (await producer.schedule("later", run_at=later), {}),
    ]
    undated = await producer.schedule("undated")  # as a foreign writer might leave it
    await store.database[store.collection_name].update_one(
        {"_id": undated.id}, {"$set": {"nextRunAt": None}}
    )
    cases.append((undated, {}))
    for job, kwargs in cases:
        before = await store.get(job.id)
        assert await _claim(store, job, **kwargs) is None, job.name
        assert await store.get(job.id) == before, job.name


@pytest.mark.mongo_only
async def test_an_announced_job_whose_name_was_paused_elsewhere_is_given_back(
    store: JobStore,
) -> None:
    """The worker's paused names are old (read over a second ago); a pause made since by
    another process is read beside the claim, and the job goes straight back to pending."""
    assert isinstance(store, MongoJobStore)
    await _ready(store)
    other = MongoJobStore(store.database, store.collection_name)
    job = await Scheduler(other).schedule("email")
    await Scheduler(other).pause("email")
    cache = store._paused_cache
    assert cache is not None and "email" not in cache[1]
    store._paused_cache = (time.monotonic() - 5.0, cache[1])  # as if read 5 s ago
    assert await _claim(store, job) is None
    stored = await store.get(job.id)
    assert stored is not None and stored["status"] == "pending" and "lockedBy" not in stored


@pytest.mark.mongo_only
async def test_the_announced_claim_reads_one_document_by_its_id(store: JobStore) -> None:
    assert isinstance(store, MongoJobStore)
    job = await Scheduler(store).schedule("email")
    plan = await store.database.command(
        "explain",
        {"find": store.collection_name, "filter": q.announced_filter(Announced(job.id, "email"))},
        verbosity="executionStats",
    )
    stats = plan["executionStats"]
    assert stats["totalDocsExamined"] <= 1 and stats["totalKeysExamined"] <= 1
    assert "COLLSCAN" not in repr(plan["queryPlanner"]["winningPlan"])


def test_which_changes_announce_a_job() -> None:
    job_id = object()

    def insert(**fields: Any) -> dict[str, Any]:
        due = datetime(2026, 1, 1, tzinfo=timezone.utc)
        full = {"name": "email", "status": "pending", "nextRunAt": due, **fields}
        return {"operationType": "insert", "documentKey": {"_id": job_id}, "fullDocument": full}

    assert q.announced_of_change(insert()) == Announced(job_id, "email")
    assert q.announced_of_change(insert(concurrency=None, rateLimit=None)) is not None
    assert q.announced_of_change(insert(concurrency=0)) is not None
    assert q.announced_of_change(insert(concurrency=1)) is None
    assert q.announced_of_change(insert(rateLimit={"limit": 1, "periodMs": 1000})) is None
    assert q.announced_of_change(insert(status="waiting")) is None
    assert q.announced_of_change(insert(name=7)) is None
    assert q.announced_of_change(insert(nextRunAt=None)) is None
    update = {"operationType": "update", "documentKey": {"_id": job_id}}
    assert q.announced_of_change(update) is None
    assert q.announced_of_change({"operationType": "insert", "fullDocument": {}}) is None


@pytest.mark.mongo_only
async def test_an_idle_worker_takes_a_new_job_by_its_id_and_waits_before_its_next_getmore(
    store: JobStore, mongodb_uri: str
) -> None:
    """A job created by another client: the idle worker's first command for it is the
    claim of that one job by its id (no read of the queue before it), and its change stream
    asks for more events only REARM_DELAY after handing this one out."""
    assert isinstance(store, MongoJobStore)
    commands = Commands()
    client: AsyncMongoClient[Any] = AsyncMongoClient(
        mongodb_uri, appname=f"announced-{uuid.uuid4().hex[:8]}", event_listeners=[commands]
    )
    ran: list[Any] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    worker = Scheduler(MongoJobStore(client[store.database.name]), handler)
    try:
        async with worker:
            await wait_for(lambda: commands.since(0, "getMore") >= 1, 10)
            await asyncio.sleep(0.5)  # the claims that follow the stream's opening are over
            since = time.monotonic()
            job = await Scheduler(store).schedule("email")
            await wait_for(lambda: ran, 10)
            await wait_for(lambda: commands.since(since, "getMore") >= 1, 10)
            sent = [(at, name, target) for at, name, target in commands.sent if at >= since]
            jobs = [
                name for _, name, target in sent if target == store.collection_name
            ]  # (the registration's sweep, every 10 s, is counted apart as "sweep")
            jobs = [name for name in jobs if name != "sweep"]
            assert jobs[0] == "findAndModify", jobs
            getmores = [at for at, name, _ in sent if name == "getMore"]
            assert getmores[0] - since >= REARM_DELAY
        assert ran == [job.id]
    finally:
        await client.close()
