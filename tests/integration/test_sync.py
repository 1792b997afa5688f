"""The blocking facade ``mongo_job_scheduler.sync`` on a real mongod, beyond the contract it shares
with the asyncio API (``tests/contract/test_api_parity.py`` runs every producer and admin method
against both): construction, the stored document, validation that writes nothing, events,
transactions, threads, and interoperability with the asyncio API on the same database (dedupe
across both, jobs produced by one and run or administered through the other)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient
from tests.conftest import wait_for

from mongo_job_scheduler import (
    AttemptOutcome,
    ConfigurationError,
    Job,
    JobStatus,
    ValidationError,
)
from mongo_job_scheduler import MongoJobStore as AsyncMongoJobStore
from mongo_job_scheduler import Scheduler as AsyncScheduler
from mongo_job_scheduler.sync import MongoJobStore, Scheduler

COLLECTION = "scheduler_jobs"
DEDUPE = "scheduler_jobs_dedupe"
VOLATILE = {"_id", "createdAt", "updatedAt", "nextRunAt", "lastScheduledAt"}


@pytest.fixture
def scheduler(sync_db: Any) -> Scheduler:
    return Scheduler(MongoJobStore(sync_db))


def _count(sync_db: Any, collection: str = COLLECTION, **flt: Any) -> int:
    return int(sync_db[collection].count_documents(flt))


def _future(seconds: float = 3600) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


def _async_scheduler(mongo_db: Any, **kwargs: Any) -> AsyncScheduler:
    kwargs.setdefault("poll_interval", 0.02)
    return AsyncScheduler(AsyncMongoJobStore(mongo_db), **kwargs)


# -- construction --------------------------------------------------------------------------


def test_store_and_scheduler_reject_the_wrong_kind_of_object(sync_db: Any) -> None:
    with pytest.raises(ConfigurationError, match="pymongo Database"):
        MongoJobStore("not a database")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="collection"):
        MongoJobStore(sync_db, collection="bad$name")
    with pytest.raises(ConfigurationError, match="AsyncDatabase"):
        AsyncMongoJobStore(sync_db)
    with pytest.raises(ConfigurationError, match=r"sync\.MongoJobStore"):
        Scheduler(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="default_timezone"):
        Scheduler(MongoJobStore(sync_db), default_timezone="Mars/Olympus")
    assert sync_db.list_collection_names() == []


async def test_sync_store_rejects_an_async_database(mongo_db: Any) -> None:
    with pytest.raises(ConfigurationError, match="pymongo Database"):
        MongoJobStore(mongo_db)
    with pytest.raises(ConfigurationError, match=r"sync\.MongoJobStore"):
        Scheduler(AsyncMongoJobStore(mongo_db))  # type: ignore[arg-type]


def test_first_write_creates_the_same_indexes_as_the_async_store(scheduler: Scheduler) -> None:
    scheduler.schedule("a")
    uniques = [
        n for n, spec in scheduler.store.jobs.index_information().items() if spec.get("unique")
    ]
    assert uniques == []


# -- schedule -------------------------------------------------------------------------------


def test_schedule_stores_a_pending_job_due_now(scheduler: Scheduler, sync_db: Any) -> None:
    before = datetime.now(timezone.utc)
    job = scheduler.schedule("send-email", {"userId": 123})
    assert isinstance(job, Job)
    assert isinstance(job.id, ObjectId)
    assert job.status is JobStatus.PENDING
    assert job.name == "send-email" and job.data == {"userId": 123}
    assert job.priority == 5 and job.attempts == 0
    doc = sync_db[COLLECTION].find_one({"_id": job.id})
    assert doc is not None
    assert doc["status"] == "pending" and doc["data"] == {"userId": 123}
    assert doc["lockVersion"] == 0
    due = doc["nextRunAt"].replace(tzinfo=timezone.utc)
    assert abs((due - before).total_seconds()) < 60
    assert job.next_run_at is not None and job.next_run_at.tzinfo is not None


def test_schedule_with_run_at_delay_and_repeat(scheduler: Scheduler) -> None:
    at = datetime(2040, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert scheduler.schedule("at", run_at=at).next_run_at == at

    now = scheduler.store.now()
    delayed = scheduler.schedule("later", delay=timedelta(minutes=10))
    assert delayed.next_run_at is not None
    assert timedelta(minutes=9) < delayed.next_run_at - now < timedelta(minutes=11)

    daily = scheduler.schedule("daily", repeat={"cron": "0 9 * * *", "timezone": "Asia/Kolkata"})
    assert daily.repeat is not None and daily.next_run_at is not None
    assert daily.next_run_at > now
    assert daily.next_run_at.astimezone(daily.repeat.zone()).hour == 9
    assert daily.last_scheduled_at == daily.next_run_at

    every = scheduler.schedule("tick", repeat={"every": timedelta(minutes=5)})
    assert every.document["repeat"]["every"] == 300_000
    assert every.next_run_at is not None and every.next_run_at > now


async def test_schedule_writes_the_same_document_as_the_async_api(
    scheduler: Scheduler, sync_db: Any, mongo_db: Any
) -> None:
    options: dict[str, Any] = {
        "data": {"orgId": "org-1", "n": [1, 2.5, None]},
        "repeat": {"cron": "*/5 * * * *", "timezone": "Europe/Paris"},
        "retry": {"maxAttempts": 4, "delay": 1.5, "backoff": "exponential", "jitter": True},
        "dedupe_key": "report:org-1",
        "dedupe": "forever",
        "priority": 2,
        "concurrency": 3,
        "max_execution": 90,
        "timeout": timedelta(seconds=30),
    }
    sync_job = scheduler.schedule("report", **options)
    other = AsyncScheduler(AsyncMongoJobStore(mongo_db, collection="other_jobs"))
    async_job = await other.schedule("report", **options)

    sync_doc = sync_db[COLLECTION].find_one({"_id": sync_job.id})
    async_doc = sync_db["other_jobs"].find_one({"_id": async_job.id})
    assert sync_doc is not None and async_doc is not None
    assert set(sync_doc) == set(async_doc)
    for key in set(sync_doc) - VOLATILE:
        assert sync_doc[key] == async_doc[key], key
    assert sync_doc["maxExecutionMs"] == 90_000 and sync_doc["timeoutMs"] == 30_000
    assert sync_doc["retry"]["delay"] == 1500 and sync_doc["dedupeScope"] == "forever"
    assert sync_job.document == sync_doc | {
        k: v.replace(tzinfo=timezone.utc) for k, v in sync_doc.items() if isinstance(v, datetime)
    }


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (("",), {}, "name"),
        ((42,), {}, "name"),
        (("x", {"$set": 1}), {}, "data"),
        (("x", {"v": float("nan")}), {}, "data"),
        (("x", object()), {}, "data"),
        (("x",), {"priority": 0}, "priority"),
        (("x",), {"priority": 11}, "priority"),
        (("x",), {"priority": True}, "priority"),
        (("x",), {"repeat": {"cron": "not a cron"}}, "repeat"),
        (("x",), {"repeat": {"cron": "0 9 * * *", "timezone": "Nowhere/City"}}, "repeat"),
        (("x",), {"repeat": {"every": 0}}, "repeat"),
        (("x",), {"repeat": {"every": 0.05}}, "repeat"),
        (("x",), {"retry": -1}, "retry"),
        (("x",), {"retry": {"maxAttempts": 2, "backoff": "cubic"}}, "retry"),
        (("x",), {"run_at": datetime(2030, 1, 1)}, "run_at"),
        (("x",), {"run_at": _future(), "delay": 5}, "run_at"),
        (("x",), {"delay": -1}, "delay"),
        (("x",), {"dedupe_key": ""}, "dedupe_key"),
        (("x",), {"dedupe_key": "k", "dedupe": "sometimes"}, "dedupe"),
        (("x",), {"concurrency": 0}, "concurrency"),
        (("x",), {"timeout": -3}, "timeout"),
        (("x",), {"max_execution": float("inf")}, "max_execution"),
    ],
)
def test_invalid_schedule_raises_and_writes_nothing(
    scheduler: Scheduler, sync_db: Any, args: tuple[Any, ...], kwargs: dict[str, Any], field: str
) -> None:
    listener_calls: list[Job] = []
    scheduler.on("job:created", listener_calls.append)
    with pytest.raises(ValidationError) as info:
        scheduler.schedule(*args, **kwargs)
    assert info.value.field.startswith(field)
    assert _count(sync_db) == 0
    assert _count(sync_db, DEDUPE) == 0
    assert listener_calls == []


# -- schedule_bulk ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ("not a list", "items"),
        ({"name": "x"}, "items"),
        ([{"name": "ok"}, "nope"], "items[1]"),
        ([{"name": "ok"}, {"data": 1}], "items[1].name"),
        ([{"name": "ok"}, {"name": "x", "colour": "red"}], "items[1]"),
        ([{"name": "ok", "dedupe_key": "k"}, {"name": "x", "priority": 99}], "items[1].priority"),
    ],
)
def test_invalid_bulk_writes_nothing(
    scheduler: Scheduler, sync_db: Any, items: Any, field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        scheduler.schedule_bulk(items)
    assert info.value.field == field
    assert _count(sync_db) == 0 and _count(sync_db, DEDUPE) == 0


# -- reading --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"status": "done"},
        {"status": []},
        {"data": {"$where": "1"}},
        {"data": {"orgId": {"$ne": None}}},
        {"data": "orgId"},
        {"sort": ("data", "asc")},
        {"sort": ("priority", "up")},
        {"limit": 0},
        {"limit": 10_001},
        {"skip": -1},
        {"name": ""},
    ],
)
def test_invalid_get_jobs_raises(scheduler: Scheduler, kwargs: dict[str, Any]) -> None:
    scheduler.schedule("x")
    with pytest.raises(ValidationError):
        scheduler.get_jobs(**kwargs)


# -- events -----------------------------------------------------------------------------------


def test_on_validates_and_raising_listeners_break_nothing(scheduler: Scheduler) -> None:
    with pytest.raises(ValidationError):
        scheduler.on("job:success", print)
    with pytest.raises(ValidationError):
        scheduler.on("job:nope", print)
    with pytest.raises(ValidationError):
        scheduler.on("job:created", "not callable")  # type: ignore[arg-type]

    async def coroutine_listener(job: Job) -> None:
        return None

    with pytest.raises(ValidationError, match="plain function"):
        scheduler.on("job:created", coroutine_listener)

    seen: list[str] = []

    def boom(job: Job) -> None:
        raise RuntimeError("listener failed")

    scheduler.on("job:created", boom)
    scheduler.on("job:created", lambda job: seen.append(job.name))
    job = scheduler.schedule("still-stored")
    assert seen == ["still-stored"]
    assert scheduler.get_job(job.id) is not None

    scheduler.off("job:created", boom)
    scheduler.off("job:created", boom)  # removing twice is fine
    scheduler.schedule("again")
    assert seen == ["still-stored", "again"]
    scheduler.schedule("again", dedupe_key="d")
    scheduler.schedule("again", dedupe_key="d")
    assert seen == ["still-stored", "again", "again"]  # a deduped schedule creates nothing


# -- sessions ------------------------------------------------------------------------------------


def test_schedule_inside_a_transaction(scheduler: Scheduler, sync_db: Any) -> None:
    scheduler.schedule("warm-up")  # creates the collection and its indexes outside transactions
    client: MongoClient[dict[str, Any]] = sync_db.client
    with client.start_session() as session:
        session.start_transaction()
        scheduler.schedule("aborted", session=session)
        scheduler.schedule_bulk([{"name": "aborted"}], session=session)
        session.abort_transaction()
    assert _count(sync_db, name="aborted") == 0
    with client.start_session() as session, session.start_transaction():
        scheduler.schedule("committed", session=session)
    assert _count(sync_db, name="committed") == 1


# -- interoperability with the asyncio API --------------------------------------------------


async def test_dedupe_across_the_two_apis(sync_db: Any, mongo_db: Any) -> None:
    sync_scheduler = Scheduler(MongoJobStore(sync_db))
    async_scheduler = AsyncScheduler(AsyncMongoJobStore(mongo_db))

    from_sync = sync_scheduler.schedule("email", {"n": 1}, dedupe_key="email:1")
    from_async = await async_scheduler.schedule("email", {"n": 2}, dedupe_key="email:1")
    assert from_async.id == from_sync.id and from_async.data == {"n": 1}

    from_async2 = await async_scheduler.schedule("email", {"n": 3}, dedupe_key="email:2")
    from_sync2 = sync_scheduler.schedule("email", {"n": 4}, dedupe_key="email:2")
    assert from_sync2.id == from_async2.id and from_sync2.data == {"n": 3}

    bulk = sync_scheduler.schedule_bulk(
        [{"name": "email", "dedupe_key": k} for k in ("email:1", "email:2")]
    )
    assert [j.id for j in bulk] == [from_sync.id, from_async2.id]
    assert _count(sync_db) == 2 and _count(sync_db, DEDUPE) == 2

    # A key freed by a cancel through one API is reusable through the other.
    await async_scheduler.cancel(from_sync.id)
    fresh = sync_scheduler.schedule("email", {"n": 5}, dedupe_key="email:1")
    assert fresh.id != from_sync.id


async def test_a_job_scheduled_with_the_sync_api_is_run_by_an_async_worker(
    sync_db: Any, mongo_db: Any
) -> None:
    producer = Scheduler(MongoJobStore(sync_db))
    ran: list[Job] = []
    attempts: list[int] = []

    async with _async_scheduler(mongo_db) as worker:

        @worker.task("greet")
        async def greet(job: Job) -> None:
            ran.append(job)

        @worker.task("flaky")
        def flaky(job: Job) -> None:  # a sync handler, in the worker's thread pool
            attempts.append(job.attempts)
            if len(attempts) == 1:
                raise RuntimeError("first attempt fails")

        job = producer.schedule("greet", {"who": "sync"}, priority=1)
        retried = producer.schedule("flaky", retry={"maxAttempts": 3, "delay": 0.05})
        bulk = producer.schedule_bulk([{"name": "greet", "data": {"who": i}} for i in range(3)])

        def finished(job_id: Any) -> bool:
            found = producer.get_job(job_id)
            return found is not None and found.status is JobStatus.COMPLETED

        await wait_for(lambda: all(finished(j.id) for j in (job, retried, *bulk)))

    assert sorted(str(j.data["who"]) for j in ran) == ["0", "1", "2", "sync"]
    assert next(j for j in ran if j.data == {"who": "sync"}).id == job.id
    done = producer.get_job(retried.id)
    assert attempts == [0, 1]  # ``attempts`` counts failed executions (the Node meaning)
    assert done is not None and done.attempts == 1
    assert done.last_error is not None and "first attempt fails" in done.last_error
    assert done.last_run_at is not None and done.lock_until is None
    # The attempt history reads the same through the blocking API.
    retried_first, completed = done.history
    assert (retried_first.outcome, completed.outcome) == (
        AttemptOutcome.RETRIED,
        AttemptOutcome.COMPLETED,
    )
    assert retried_first.error == "first attempt fails"
    assert retried_first.retry_delay == timedelta(milliseconds=50)
    assert (retried_first.token, completed.token) == (1, 2)
    assert completed.started_at == done.last_run_at
    greeted = producer.get_job(job.id)
    assert greeted is not None
    assert [r.outcome for r in greeted.history] == [AttemptOutcome.COMPLETED]


async def test_a_cancel_from_the_sync_api_records_the_running_attempt(
    sync_db: Any, mongo_db: Any
) -> None:
    admin = Scheduler(MongoJobStore(sync_db))
    started = threading.Event()
    async with _async_scheduler(mongo_db) as worker:

        @worker.task("long")
        async def long(job: Job) -> None:
            started.set()
            await asyncio.Event().wait()

        job = admin.schedule("long")
        await wait_for(started.is_set)
        assert admin.cancel(job.id) is True
    cancelled = admin.get_job(job.id)
    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
    [record] = cancelled.history
    assert record.outcome is AttemptOutcome.CANCELLED
    assert record.token == 1 and record.worker is not None


async def test_an_async_job_is_visible_and_cancellable_from_the_sync_api(
    sync_db: Any, mongo_db: Any
) -> None:
    producer = AsyncScheduler(AsyncMongoJobStore(mongo_db))
    admin = Scheduler(MongoJobStore(sync_db))
    doomed = await producer.schedule("work", {"id": "doomed"}, priority=1, dedupe_key="doomed")
    seen = admin.get_job(str(doomed.id))
    assert seen is not None and seen == doomed
    assert [j.id for j in admin.get_jobs(name="work", data={"id": "doomed"})] == [doomed.id]

    updated = admin.update_job(doomed.id, data={"id": "doomed", "v": 2})
    assert (await producer.get_job(doomed.id)) == updated

    assert admin.cancel(doomed.id) is True
    after = await producer.get_job(doomed.id)
    assert after is not None and after.status is JobStatus.CANCELLED
    assert await producer.cancel(doomed.id) is False

    # A worker started now runs the lower-priority sentinel, which would come after the
    # cancelled job in the claim order, and never runs the cancelled one.
    sentinel = await producer.schedule("work", {"id": "sentinel"}, priority=10)
    ran: list[Any] = []
    async with _async_scheduler(mongo_db) as worker:

        @worker.task("work")
        async def work(job: Job) -> None:
            ran.append(job.data["id"])

        await wait_for(lambda: (admin.get_job(sentinel.id) or doomed).status is JobStatus.COMPLETED)
    assert ran == ["sentinel"]
    final = admin.get_job(doomed.id)
    assert final is not None and final.status is JobStatus.CANCELLED and final.attempts == 0


# -- threads ------------------------------------------------------------------------------------


def test_concurrent_dedupe_from_threads_yields_one_document(sync_db: Any) -> None:
    threads = 8
    keys = [f"race:{n}" for n in range(4)]
    schedulers = [Scheduler(MongoJobStore(sync_db)) for _ in range(threads)]
    for key in keys:
        barrier = threading.Barrier(threads)

        def race(index: int, key: str = key, barrier: threading.Barrier = barrier) -> Job:
            barrier.wait(timeout=10)
            return schedulers[index].schedule("race", {"by": index}, dedupe_key=key)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            jobs = list(pool.map(race, range(threads)))
        assert len({j.id for j in jobs}) == 1, key
        assert _count(sync_db, dedupeKey=key) == 1
        registry = sync_db[DEDUPE].find_one({"_id": key})
        assert registry is not None and registry["jobId"] == jobs[0].id
    assert _count(sync_db) == len(keys)


def test_one_scheduler_shared_by_threads(scheduler: Scheduler, sync_db: Any) -> None:
    created: list[Job] = []
    lock = threading.Lock()

    def record(job: Job) -> None:
        with lock:
            created.append(job)

    scheduler.on("job:created", record)

    def produce(index: int) -> list[Job]:
        return [
            scheduler.schedule("t", {"i": index, "j": j}, dedupe_key=f"t:{j}") for j in range(5)
        ]

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(produce, range(6)))
    assert _count(sync_db) == 5
    for j in range(5):
        assert len({r[j].id for r in results}) == 1
    assert len(created) == 5
