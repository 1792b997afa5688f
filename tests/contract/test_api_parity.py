"""One contract for both schedulers: every producer and admin method of the asyncio
``Scheduler`` and of the blocking ``mongo_job_scheduler.sync.Scheduler``, run against each.

The ``api`` fixture is one or the other on the same fresh database: the asyncio ``Scheduler``
on an async ``MongoJobStore``, or the blocking one on a sync ``MongoJobStore`` behind
:class:`Blocking`, whose methods are awaitable and run the blocking call in a thread (as a
Django view would call it), so that the asyncio workers these tests start keep running
meanwhile. Jobs are run by an asyncio worker (``run_jobs``) on another store object, as by
another process. Every test asserts the same arguments, validation, errors, return values and
stored documents for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId

from mongo_job_scheduler import (
    Activity,
    InvalidJobState,
    Job,
    JobNotFound,
    JobStatus,
    MongoJobStore,
    Scheduler,
    SchedulerStats,
    Throughput,
    ValidationError,
    WorkerInfo,
    sync,
)
from mongo_job_scheduler.fleet import LIVE_FOR
from tests.conftest import wait_for
from tests.contract.helpers import make, running

API_METHODS = (
    "schedule",
    "schedule_bulk",
    "get_job",
    "get_jobs",
    "update_job",
    "cancel",
    "delete_job",
    "wait",
    "retry_job",
    "pause",
    "resume",
    "paused_names",
    "stats",
    "throughput",
    "job_names",
    "activity",
    "purge",
    "live_workers",
    "dependants",
)
"""The producer and admin methods both schedulers have."""

RUNNING_JOBS_ONLY = {"start", "stop"}
"""Coroutine methods of the asyncio ``Scheduler`` the blocking one has no use for (it runs no
workers)."""


class Blocking:
    """The blocking scheduler with awaitable methods: each call of an :data:`API_METHODS`
    method runs in a thread; ``on`` and ``off`` are the scheduler's own."""

    def __init__(self, scheduler: sync.Scheduler) -> None:
        self.scheduler = scheduler
        self.on = scheduler.on
        self.off = scheduler.off

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in API_METHODS:
            raise AttributeError(name)
        method = getattr(self.scheduler, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call


@pytest.fixture(params=["asyncio", "sync"])
def api(request: pytest.FixtureRequest, mongo_db: Any, sync_db: Any) -> Any:
    """The scheduler under test, on the test's database."""
    if request.param == "asyncio":
        return Scheduler(MongoJobStore(mongo_db))
    return Blocking(sync.Scheduler(sync.MongoJobStore(sync_db)))


@pytest.fixture
def jobs_store(mongo_db: Any) -> MongoJobStore:
    """Another view of the same jobs, to read what the API under test stored."""
    return MongoJobStore(mongo_db)


RunJobs = Callable[..., contextlib.AbstractAsyncContextManager[Scheduler]]


@pytest.fixture
def run_jobs(mongo_db: Any) -> RunJobs:
    """``async with run_jobs(handler, **options) as worker``: an asyncio worker on the same
    database (its own store object, as in another process), stopped on the way out."""

    @contextlib.asynccontextmanager
    async def run(handler: Any = None, **options: Any) -> AsyncIterator[Scheduler]:
        async with running(make(MongoJobStore(mongo_db), handler, **options)) as worker:
            yield worker

    return run


async def stored(store: MongoJobStore, job_id: Any) -> dict[str, Any]:
    doc = await store.get(job_id)
    assert doc is not None
    return doc


async def reaches(store: MongoJobStore, job_id: Any, status: str) -> dict[str, Any]:
    """Poll the job's document until it is in ``status``; return it."""

    async def check() -> dict[str, Any] | None:
        doc = await store.get(job_id)
        return doc if doc is not None and doc["status"] == status else None

    result: dict[str, Any] = await wait_for(check, timeout=10)
    return result


def later(hours: float = 1) -> datetime:
    return datetime.now(timezone.utc) + timedelta(hours=hours)


# -- the same methods ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", API_METHODS)
def test_both_schedulers_have_the_method_with_the_same_signature(name: str) -> None:
    asyncio_method = getattr(Scheduler, name)
    blocking_method = getattr(sync.Scheduler, name)
    assert inspect.iscoroutinefunction(asyncio_method)
    assert not inspect.iscoroutinefunction(blocking_method)
    asyncio_signature = inspect.signature(asyncio_method)
    blocking_signature = inspect.signature(blocking_method)
    assert blocking_signature.return_annotation == asyncio_signature.return_annotation

    def described(signature: inspect.Signature) -> list[tuple[Any, ...]]:
        return [(p.name, p.kind, p.default, p.annotation) for p in signature.parameters.values()]

    assert described(blocking_signature) == described(asyncio_signature)


def test_every_coroutine_method_of_the_asyncio_scheduler_is_in_the_contract() -> None:
    coroutines = {
        name
        for name, member in inspect.getmembers(Scheduler, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    assert coroutines - RUNNING_JOBS_ONLY == set(API_METHODS)


# -- schedule, schedule_bulk ----------------------------------------------------------------------


async def test_schedule_stores_a_pending_job_once_per_dedupe_key(
    api: Any, jobs_store: MongoJobStore
) -> None:
    created: list[Job] = []
    api.on("job:created", created.append)
    job = await api.schedule("send-email", {"userId": 1}, priority=2, dedupe_key="email:1")
    assert isinstance(job, Job) and isinstance(job.id, ObjectId)
    assert (job.name, job.data, job.status, job.priority) == (
        "send-email",
        {"userId": 1},
        JobStatus.PENDING,
        2,
    )
    doc = await stored(jobs_store, job.id)
    assert dict(job.document) == doc
    assert doc["dedupeKey"] == "email:1" and doc["lockVersion"] == 0
    again = await api.schedule("send-email", {"userId": 2}, dedupe_key="email:1")
    assert again.id == job.id and again.data == {"userId": 1}
    assert [j.id for j in created] == [job.id]  # no event for the deduped schedule

    with pytest.raises(ValidationError) as info:
        await api.schedule("send-email", priority=11)
    assert info.value.field == "priority"
    assert [j.id for j in await api.get_jobs()] == [job.id]


async def test_schedule_bulk_keeps_the_order_and_dedupes_within_and_across_calls(
    api: Any, jobs_store: MongoJobStore
) -> None:
    created: list[Job] = []
    existing = await api.schedule("email", {"n": 0}, dedupe_key="e:0")
    api.on("job:created", created.append)
    jobs = await api.schedule_bulk(
        [
            {"name": "email", "data": {"n": 1}},
            {"name": "email", "data": {"n": 2}, "dedupe_key": "e:2", "priority": 1},
            {"name": "email", "data": {"n": 0}, "dedupe_key": "e:0"},
            {"name": "email", "data": {"n": 3}, "dedupe_key": "e:2"},
            {"name": "report", "delay": 60},
        ]
    )
    assert [j.data for j in jobs] == [{"n": 1}, {"n": 2}, {"n": 0}, {"n": 2}, None]
    assert jobs[2].id == existing.id and jobs[3].id == jobs[1].id
    assert jobs[1].priority == 1
    assert [j.id for j in created] == [jobs[0].id, jobs[1].id, jobs[4].id]
    assert len(await api.get_jobs()) == 4
    assert await api.schedule_bulk([]) == []
    with pytest.raises(ValidationError) as info:
        await api.schedule_bulk([{"name": "ok"}, {"data": 1}])
    assert info.value.field == "items[1].name"
    assert len(await api.get_jobs()) == 4


# -- get_job, get_jobs ----------------------------------------------------------------------------


async def test_get_job_by_object_id_or_hex_string(api: Any) -> None:
    job = await api.schedule("lookup", {"k": "v"})
    assert await api.get_job(job.id) == job
    by_hex = await api.get_job(str(job.id))
    assert by_hex is not None and by_hex.id == job.id and by_hex.data == {"k": "v"}
    assert await api.get_job(ObjectId()) is None
    for bad in ("nope", "g" * 24, 123, None):
        with pytest.raises(ValidationError) as info:
            await api.get_job(bad)
        assert info.value.field == "job_id"


async def test_get_jobs_filters_sorts_and_pages(api: Any) -> None:
    a = await api.schedule(
        "report", {"org": "o1", "meta": {"kind": "x"}}, priority=3, run_at=later()
    )
    b = await api.schedule("report", {"org": "o2"}, priority=1, run_at=later())
    c = await api.schedule("report", {"org": "o1"}, priority=7, run_at=later())
    d = await api.schedule("email", {"org": "o1"}, run_at=later())
    assert await api.cancel(c.id)

    async def ids(**kwargs: Any) -> list[Any]:
        return [job.id for job in await api.get_jobs(**kwargs)]

    assert await ids() == [a.id, b.id, c.id, d.id]  # creation order
    assert await ids(name="report", status="pending") == [a.id, b.id]
    assert await ids(status=["cancelled", JobStatus.PENDING], data={"org": "o1"}) == [
        a.id,
        c.id,
        d.id,
    ]
    assert await ids(data={"meta.kind": "x"}) == [a.id]
    assert await ids(sort=("priority", "asc")) == [b.id, a.id, d.id, c.id]
    assert await ids(sort=("priority", "desc"), limit=2, skip=1) == [d.id, a.id]
    for injection in ({"data": {"org": {"$ne": 1}}}, {"name": {"$ne": "x"}}, {"limit": 0}):
        with pytest.raises(ValidationError):
            await api.get_jobs(**injection)
    [only] = await api.get_jobs(data={"meta.kind": "x"}, fields=["priority", "data"])
    assert only.document == {
        "_id": a.id,
        "priority": 3,
        "data": {"org": "o1", "meta": {"kind": "x"}},
    }
    [bounded] = await api.get_jobs(
        data={"meta.kind": "x"}, fields=["name", "data"], max_value_size=32
    )
    assert bounded.document == {"_id": a.id, "name": "report"}


# -- update_job -----------------------------------------------------------------------------------


async def test_update_job_changes_the_given_fields_only(
    api: Any, jobs_store: MongoJobStore
) -> None:
    when = later()
    job = await api.schedule("edit", {"v": 1}, run_at=when, retry=2)
    updated = await api.update_job(
        str(job.id), data={"v": 2}, priority=1, concurrency=3, timeout=5, retry=None
    )
    assert (updated.data, updated.priority, updated.concurrency) == ({"v": 2}, 1, 3)
    assert updated.timeout == timedelta(seconds=5) and updated.retry is None
    assert updated.next_run_at == job.next_run_at  # untouched
    doc = await stored(jobs_store, job.id)
    assert dict(updated.document) == doc
    assert "retry" not in doc and doc["timeoutMs"] == 5000 and doc["status"] == "pending"

    moved = await api.update_job(job.id, run_at=when + timedelta(hours=1))
    assert moved.next_run_at == (await stored(jobs_store, job.id))["nextRunAt"]
    assert moved.next_run_at is not None and moved.next_run_at > when

    repeating = await api.update_job(job.id, repeat={"every": timedelta(hours=2)})
    assert repeating.repeat is not None and repeating.next_run_at is not None
    assert repeating.last_scheduled_at == repeating.next_run_at  # moved to its first slot
    cleared = await api.update_job(job.id, repeat=None)
    assert cleared.repeat is None and cleared.last_scheduled_at is None


async def test_update_job_refusals_write_nothing(api: Any, jobs_store: MongoJobStore) -> None:
    with pytest.raises(JobNotFound):
        await api.update_job(ObjectId(), data=1)
    job = await api.schedule("stable", {"v": 1}, run_at=later())
    before = await stored(jobs_store, job.id)
    for kwargs in ({}, {"priority": 0}, {"run_at": None}, {"repeat": {"cron": "61 * * * *"}}):
        with pytest.raises(ValidationError):
            await api.update_job(job.id, **kwargs)
    with pytest.raises(ValidationError):
        await api.update_job("not-an-id", data=1)
    assert await stored(jobs_store, job.id) == before
    assert await api.cancel(job.id)
    with pytest.raises(InvalidJobState, match="cancelled"):
        await api.update_job(job.id, data={"v": 2})


async def test_update_job_on_a_running_job_keeps_it_running(
    api: Any, jobs_store: MongoJobStore, run_jobs: RunJobs
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    seen: list[Any] = []

    async def handler(job: Job) -> None:
        seen.append(job.data)
        started.set()
        await release.wait()

    async with run_jobs(handler):
        job = await api.schedule("busy", {"v": 1})
        await asyncio.wait_for(started.wait(), 10)
        before = await stored(jobs_store, job.id)
        with pytest.raises(InvalidJobState, match="running"):
            await api.update_job(job.id, run_at=later())
        assert await stored(jobs_store, job.id) == before
        updated = await api.update_job(job.id, data={"v": 2})
        assert updated.status is JobStatus.RUNNING
        assert updated.lock_version == before["lockVersion"]
        release.set()
        done = await reaches(jobs_store, job.id, "completed")
    assert done["data"] == {"v": 2} and seen == [{"v": 1}]


async def test_update_job_run_at_revives_a_finished_job_unless_its_key_is_taken(
    api: Any, jobs_store: MongoJobStore, run_jobs: RunJobs
) -> None:
    async with run_jobs(lambda job: None):
        old = await api.schedule("once", dedupe_key="k")
        await reaches(jobs_store, old.id, "completed")
    revived = await api.update_job(old.id, run_at=later())
    assert revived.status is JobStatus.PENDING and revived.attempts == 0
    assert await api.schedule("once", dedupe_key="k") == revived  # it holds its key again

    async with run_jobs(lambda job: None):
        await api.update_job(old.id, run_at=datetime.now(timezone.utc))
        await reaches(jobs_store, old.id, "completed")
    newer = await api.schedule("once", dedupe_key="k", run_at=later())
    assert newer.id != old.id
    with pytest.raises(InvalidJobState, match="dedupe key"):
        await api.update_job(old.id, run_at=later())
    assert (await stored(jobs_store, old.id))["status"] == "completed"


# -- cancel ---------------------------------------------------------------------------------------


async def test_cancel_sticks_says_when_it_changed_nothing_and_frees_an_active_key(
    api: Any, jobs_store: MongoJobStore
) -> None:
    cancelled: list[Job] = []
    api.on("job:cancel", cancelled.append)
    job = await api.schedule("doomed", dedupe_key="d")
    assert await api.cancel(str(job.id)) is True
    assert [(j.id, j.status) for j in cancelled] == [(job.id, JobStatus.CANCELLED)]
    doc = await stored(jobs_store, job.id)
    assert doc["status"] == "cancelled" and "expireAt" not in doc
    assert await api.cancel(job.id) is False
    assert len(cancelled) == 1
    fresh = await api.schedule("doomed", dedupe_key="d")  # the key was released
    assert fresh.id != job.id

    forever = await api.schedule("kept", dedupe_key="f", dedupe="forever")
    assert await api.cancel(forever.id)
    assert (await api.schedule("kept", dedupe_key="f", dedupe="forever")).id == forever.id
    with pytest.raises(JobNotFound):
        await api.cancel(ObjectId())
    with pytest.raises(ValidationError):
        await api.cancel("zzz")


async def test_cancel_stops_a_job_running_elsewhere(
    api: Any, jobs_store: MongoJobStore, run_jobs: RunJobs
) -> None:
    started = asyncio.Event()
    stopped = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise

    async with run_jobs(handler, lock_timeout=10, heartbeat_interval=0.05):
        job = await api.schedule("long")
        await asyncio.wait_for(started.wait(), 10)
        assert await api.cancel(job.id) is True
        await asyncio.wait_for(stopped.wait(), 10)
    doc = await stored(jobs_store, job.id)
    assert doc["status"] == "cancelled" and "lockedBy" not in doc and "lastError" not in doc


# -- delete_job -----------------------------------------------------------------------------------


async def test_delete_job_deletes_what_is_not_running_and_refuses_a_running_job(
    api: Any, jobs_store: MongoJobStore, run_jobs: RunJobs
) -> None:
    cancels: list[Job] = []
    api.on("job:cancel", cancels.append)
    part = await api.schedule("part", dedupe_key="part:1", run_at=later())
    join = await api.schedule("join", depends_on=[part])
    assert await api.delete_job(str(part.id)) is True
    assert await jobs_store.get(part.id) is None
    doc = await stored(jobs_store, join.id)
    assert doc["status"] == "cancelled" and "was deleted" in doc["lastError"]
    assert [j.id for j in cancels] == [join.id]
    again = await api.schedule("part", dedupe_key="part:1", run_at=later())
    assert again.id != part.id  # the key was given back
    assert await api.delete_job(part.id) is False
    with pytest.raises(ValidationError):
        await api.delete_job("zzz")

    started = asyncio.Event()

    async def handler(job: Job) -> None:
        assert job.name == "long"
        started.set()
        await asyncio.sleep(60)

    async with run_jobs(handler, lock_timeout=10, heartbeat_interval=0.05):
        long = await api.schedule("long")
        await asyncio.wait_for(started.wait(), 10)
        with pytest.raises(InvalidJobState, match="cancel it first"):
            await api.delete_job(long.id)
        assert (await stored(jobs_store, long.id))["status"] == "running"
        assert await api.cancel(long.id)
    assert await api.delete_job(long.id) is True


# -- wait -----------------------------------------------------------------------------------------


async def test_wait_returns_the_finished_job_with_its_result(
    api: Any, jobs_store: MongoJobStore, run_jobs: RunJobs
) -> None:
    release = asyncio.Event()

    async def handler(job: Job) -> dict[str, int]:
        await release.wait()
        if job.name == "broken":
            raise RuntimeError("it broke")
        return {"sum": job.data["a"] + job.data["b"]}

    async with run_jobs(handler, workers=2):
        job = await api.schedule("add", {"a": 1, "b": 2})
        waiting = asyncio.create_task(api.wait(str(job.id), timeout=10))
        await reaches(jobs_store, job.id, "running")
        assert not waiting.done()  # a running job is not finished
        release.set()
        done = await waiting
        broken = await api.schedule("broken", {})
        failed = await api.wait(broken.id)
    assert done.id == job.id and done.status is JobStatus.COMPLETED
    assert done.result == {"sum": 3}
    assert failed.status is JobStatus.FAILED and failed.last_error is not None
    assert "it broke" in failed.last_error  # a failed job is returned, not raised

    cancelled = await api.schedule("later", run_at=later())
    assert await api.cancel(cancelled.id)
    assert (await api.wait(cancelled.id, timeout=0)).status is JobStatus.CANCELLED


async def test_wait_times_out_and_refuses_what_it_cannot_wait_for(api: Any) -> None:
    job = await api.schedule("never-run", run_at=later())
    with pytest.raises(TimeoutError, match=r"still pending after 0\.05s"):
        await api.wait(job.id, timeout=0.05)
    with pytest.raises(TimeoutError, match="after 0s"):
        await api.wait(job.id, timeout=timedelta(0))
    with pytest.raises(JobNotFound):
        await api.wait(ObjectId(), timeout=1)
    with pytest.raises(ValidationError) as info:
        await api.wait("nope")
    assert info.value.field == "job_id"
    for timeout in (-1, "soon", float("nan")):
        with pytest.raises(ValidationError) as info:
            await api.wait(job.id, timeout=timeout)
        assert info.value.field == "timeout"


# -- retry_job ------------------------------------------------------------------------------------


async def test_retry_job_runs_a_failed_job_again_with_fresh_attempts(
    api: Any, jobs_store: MongoJobStore, run_jobs: RunJobs
) -> None:
    calls: list[int] = []

    def handler(job: Job) -> str:
        calls.append(job.attempts)
        if len(calls) <= 2:
            raise RuntimeError(f"run {len(calls)} fails")
        return "third time lucky"

    async with run_jobs(handler):
        job = await api.schedule("flaky", retry={"maxAttempts": 2, "delay": 0}, dedupe_key="f")
        failed = await reaches(jobs_store, job.id, "failed")
    assert failed["attempts"] == 2 and calls == [0, 1]
    retried = await api.retry_job(str(job.id))
    assert retried.status is JobStatus.PENDING
    assert (retried.attempts, retried.lease_expiries) == (0, 0)
    assert retried.last_error is not None and "run 2 fails" in retried.last_error  # kept
    assert retried.next_run_at is not None
    assert retried.next_run_at <= datetime.now(timezone.utc) + timedelta(seconds=5)  # due now
    doc = await stored(jobs_store, job.id)
    assert dict(retried.document) == doc and "expireAt" not in doc
    assert await api.schedule("flaky", dedupe_key="f") == retried  # it holds its key again
    async with run_jobs(handler):
        done = await api.wait(job.id, timeout=10)
    assert done.status is JobStatus.COMPLETED and done.result == "third time lucky"
    assert calls == [0, 1, 0]


async def test_retry_job_revives_a_cancelled_job_and_refuses_other_states(
    api: Any, jobs_store: MongoJobStore
) -> None:
    job = await api.schedule("later", run_at=later(), repeat={"every": timedelta(hours=6)})
    before = await stored(jobs_store, job.id)
    with pytest.raises(InvalidJobState, match="only failed or cancelled"):
        await api.retry_job(job.id)
    assert await stored(jobs_store, job.id) == before
    assert await api.cancel(job.id)
    revived = await api.retry_job(job.id)
    assert revived.status is JobStatus.PENDING
    assert revived.next_run_at is not None
    assert revived.next_run_at <= datetime.now(timezone.utc) + timedelta(seconds=5)
    assert revived.last_scheduled_at == revived.next_run_at  # its grid restarts now
    with pytest.raises(JobNotFound):
        await api.retry_job(ObjectId())
    with pytest.raises(ValidationError):
        await api.retry_job("not-an-id")


async def test_retry_job_refuses_when_another_active_job_holds_the_key(
    api: Any, jobs_store: MongoJobStore
) -> None:
    first = await api.schedule("mail", dedupe_key="k", run_at=later())
    assert await api.cancel(first.id)
    second = await api.schedule("mail", dedupe_key="k", run_at=later())
    assert second.id != first.id
    with pytest.raises(InvalidJobState, match="dedupe key"):
        await api.retry_job(first.id)
    assert (await stored(jobs_store, first.id))["status"] == "cancelled"


# -- pause, resume, paused_names ------------------------------------------------------------------


async def test_pause_and_resume_by_name_reach_the_workers(
    api: Any, jobs_store: MongoJobStore, run_jobs: RunJobs
) -> None:
    assert await api.paused_names() == []
    assert await api.pause("report") is True
    assert await api.pause("report") is False  # already paused
    assert await api.pause("audit") is True
    assert await api.paused_names() == ["audit", "report"]
    ran: list[str] = []

    async def handler(job: Job) -> None:
        ran.append(job.name)

    async with run_jobs(handler):
        paused = await api.schedule("report")
        probe = await api.schedule("mail")
        await reaches(jobs_store, probe.id, "completed")
        doc = await stored(jobs_store, paused.id)
        assert doc["status"] == "pending" and doc["lockVersion"] == 0  # never claimed
        assert await api.resume("report") is True
        assert await api.resume("report") is False  # not paused any more
        await reaches(jobs_store, paused.id, "completed")
    assert ran == ["mail", "report"]
    assert await api.paused_names() == ["audit"]


async def test_pause_and_resume_validate_the_name(api: Any) -> None:
    for bad in ("", "   ", 5, None, "x" * 500):
        with pytest.raises(ValidationError) as info:
            await api.pause(bad)
        assert info.value.field == "name"
        with pytest.raises(ValidationError):
            await api.resume(bad)
    assert await api.paused_names() == []


# -- stats ----------------------------------------------------------------------------------------


async def test_stats_count_by_status_and_name_with_the_backlog_failures_and_pauses(
    api: Any, jobs_store: MongoJobStore, run_jobs: RunJobs
) -> None:
    now = datetime.now(timezone.utc)
    await api.schedule("a", run_at=now - timedelta(minutes=5))
    await api.schedule("a", run_at=now - timedelta(minutes=1))
    await api.schedule("b", run_at=later())
    cancelled = await api.schedule("b", run_at=later())
    assert await api.cancel(cancelled.id)
    await api.pause("b")

    stats = await api.stats()
    assert isinstance(stats, SchedulerStats)
    assert abs((stats.at - now).total_seconds()) < 5
    assert stats.by_name == {"a": {"pending": 2}, "b": {"pending": 1, "cancelled": 1}}
    assert stats.by_status == {
        "pending": 3,
        "running": 0,
        "waiting": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 1,
    }
    assert stats.total == 4 and stats.due == 2
    assert stats.oldest_due_at is not None
    assert abs((stats.oldest_due_at - (now - timedelta(minutes=5))).total_seconds()) < 1
    assert stats.lag is not None and stats.lag >= timedelta(minutes=4, seconds=59)
    assert stats.failed_last_hour == 0
    assert stats.paused == ["b"]
    assert stats.unhandled == {"a": 2}  # no worker is running

    def fail(job: Job) -> None:
        raise RuntimeError("nope")

    async with run_jobs(fail, id="fails-a"):
        await wait_for(lambda: _failed_last_hour(api, 2), timeout=10)
    after = await api.stats()
    assert after.due == 0 and after.oldest_due_at is None and after.lag is None
    assert after.by_name["a"] == {"failed": 2}
    assert after.unhandled == {}


async def test_throughput_and_job_names_read_the_same_on_both_schedulers(
    api: Any, run_jobs: RunJobs
) -> None:
    ok = await api.schedule("ok")
    cancelled = await api.schedule("later", run_at=later())
    assert await api.cancel(cancelled.id)
    async with run_jobs(lambda job: None):
        await wait_for(lambda: _completed(api, ok.id), timeout=10)
    seen = await api.throughput(minutes=5)
    assert isinstance(seen, Throughput) and len(seen.minutes) == 5
    assert (seen.completed, seen.failed, seen.cancelled) == (1, 0, 1)
    assert abs((seen.at - datetime.now(timezone.utc)).total_seconds()) < 5
    assert seen.minutes[-1].start == seen.at.replace(second=0, microsecond=0)
    assert await api.job_names() == ["later", "ok"]
    assert await api.job_names(limit=1) == ["later"]
    with pytest.raises(ValidationError):
        await api.throughput(minutes=0)
    with pytest.raises(ValidationError):
        await api.job_names(limit=0)


async def test_activity_reads_the_same_on_both_schedulers(api: Any, run_jobs: RunJobs) -> None:
    ok = await api.schedule("ok")
    await api.schedule("later", run_at=later())
    overdue = await api.schedule("late", run_at=datetime.now(timezone.utc) - timedelta(minutes=1))
    await api.schedule("join", depends_on=[overdue.id])
    await api.pause("late")
    async with run_jobs(lambda job: None):
        await wait_for(lambda: _completed(api, ok.id), timeout=10)
    seen = await api.activity(minutes=5)
    assert isinstance(seen, Activity) and seen.minutes == 5
    assert seen.since == seen.at.replace(second=0, microsecond=0) - timedelta(minutes=4)
    assert seen.by_name == {
        "ok": {"completed": 1},
        "later": {"pending": 1},
        "late": {"pending": 1},
        "join": {"waiting": 1},
    }
    assert seen.due_by_name == {"late": 1} and seen.due == 1
    assert seen.lag is not None and seen.lag >= timedelta(minutes=1)
    assert seen.paused == ["late"] and seen.unhandled == {"late": 1}  # no worker is running
    assert seen.capped == frozenset()
    assert (await api.activity()).minutes == 60
    with pytest.raises(ValidationError):
        await api.activity(minutes=0)


async def _completed(api: Any, job_id: Any) -> bool:
    job = await api.get_job(job_id)
    return job is not None and job.status is JobStatus.COMPLETED


async def _failed_last_hour(api: Any, count: int) -> bool:
    stats: SchedulerStats = await api.stats()
    return stats.failed_last_hour == count


# -- purge ----------------------------------------------------------------------------------------


async def test_purge_deletes_only_finished_jobs_older_than_the_cutoff(
    api: Any, jobs_store: MongoJobStore, run_jobs: RunJobs
) -> None:
    async with run_jobs(lambda job: None):
        done = [await api.schedule("ok") for _ in range(2)]
        for job in done:
            await reaches(jobs_store, job.id, "completed")
    waiting = await api.schedule("ok", run_at=later())
    cancelled = await api.schedule("ok", run_at=later())
    assert await api.cancel(cancelled.id)

    assert await api.purge(timedelta(hours=1)) == 0  # nothing is an hour old
    assert await api.purge(3600, statuses=["completed"]) == 0
    cutoff = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert await api.purge(cutoff, statuses=[JobStatus.CANCELLED]) == 1
    assert await api.purge(cutoff) == 2
    assert [job.id for job in await api.get_jobs()] == [waiting.id]
    assert await api.purge(cutoff) == 0


async def test_purge_refuses_active_statuses_and_bad_cutoffs(api: Any) -> None:
    job = await api.schedule("x", run_at=later())
    cutoff = later(24)
    for statuses in (["pending"], ["completed", "running"]):
        with pytest.raises(ValidationError, match="only finished jobs") as info:
            await api.purge(cutoff, statuses=statuses)
        assert info.value.field == "statuses"
    with pytest.raises(ValidationError):
        await api.purge(cutoff, statuses=["done"])
    for older_than in (datetime(2020, 1, 1), -5, "soon"):
        with pytest.raises(ValidationError) as info:
            await api.purge(older_than)
        assert info.value.field == "older_than"
    assert await api.get_job(job.id) == job


# -- live_workers ---------------------------------------------------------------------------------


async def test_live_workers_lists_the_running_workers_of_every_process(
    api: Any, mongo_db: Any
) -> None:
    store = MongoJobStore(mongo_db)
    await store.register_worker("stale-1", {"schedulerId": "stale", "startedAt": later(-1)})
    stale = await store.now() - LIVE_FOR - timedelta(seconds=1)
    await store.workers.update_one({"_id": "stale-1"}, {"$set": {"lastSeen": stale}})
    assert await api.live_workers() == []  # a registration not renewed lately is not live
    worker = make(store, workers=3, id="parity-worker")

    @worker.task("send-email")
    async def send(job: Job) -> None: ...

    async with running(worker):
        [me] = await wait_for(api.live_workers, timeout=10)
        assert isinstance(me, WorkerInfo)
        assert me.scheduler_id == "parity-worker" and me.id.startswith("parity-worker-")
        assert me.names == ("send-email",) and me.workers == 3 and me.pid == os.getpid()
        assert me.started_at is not None and me.last_seen is not None
        await api.schedule("orphan", run_at=datetime.now(timezone.utc) - timedelta(seconds=1))
        stats = await api.stats()
        assert stats.unhandled == {"orphan": 1}  # the live worker handles "send-email" only
    assert await api.live_workers() == []


# -- the blocking scheduler from several threads --------------------------------------------------


async def test_the_blocking_scheduler_answers_from_any_thread(
    sync_db: Any, jobs_store: MongoJobStore, run_jobs: RunJobs
) -> None:
    """``wait`` blocks only its own thread: another thread pauses, resumes and reads stats
    meanwhile, and an asyncio worker runs the job."""
    blocking = sync.Scheduler(sync.MongoJobStore(sync_db))
    job = blocking.schedule("slow-start")
    assert blocking.pause("slow-start")
    results: list[Job] = []
    waiter = threading.Thread(target=lambda: results.append(blocking.wait(job.id, timeout=20)))
    waiter.start()
    async with run_jobs(lambda job: "done"):
        stats = await asyncio.to_thread(blocking.stats)
        assert stats.paused == ["slow-start"] and stats.due == 1
        assert waiter.is_alive()
        assert await asyncio.to_thread(blocking.resume, "slow-start")
        await asyncio.to_thread(waiter.join, 20)
    assert [(j.id, j.status, j.result) for j in results] == [(job.id, JobStatus.COMPLETED, "done")]


# -- jobs that wait for other jobs --------------------------------------------------------------


async def test_a_job_waits_for_its_dependencies_and_is_released_once(
    api: Any, jobs_store: MongoJobStore, run_jobs: RunJobs
) -> None:
    first = await api.schedule("part", {"n": 1})
    second = await api.schedule("part", {"n": 2}, delay=0.2)
    joined = await api.schedule("join", depends_on=[first, second.id], run_on_failure=False)
    assert joined.status is JobStatus.WAITING
    assert joined.depends_on == (first.id, second.id)
    assert [j.id for j in await api.get_jobs(ids=joined.depends_on)] == [first.id, second.id]
    assert [j.id for j in await api.dependants(first.id)] == [joined.id]

    async def handler(job: Job) -> Any:
        if job.name == "join":
            parts = await Scheduler(jobs_store).get_jobs(ids=job.depends_on)
            return sorted(p.result for p in parts)
        return job.data["n"]

    async with run_jobs(handler):
        done = await reaches(jobs_store, joined.id, "completed")
    assert done["result"] == [1, 2]


async def test_cancelling_a_dependency_cancels_its_dependants(
    api: Any, jobs_store: MongoJobStore
) -> None:
    cancels: list[Job] = []
    api.on("job:cancel", cancels.append)
    first = await api.schedule("part", delay=3600)
    waiting = await api.schedule("join", depends_on=[first])
    cleanup = await api.schedule("cleanup", depends_on=[first], run_on_failure=True)
    assert await api.cancel(first.id)
    assert (await stored(jobs_store, waiting.id))["status"] == "cancelled"
    assert (await stored(jobs_store, cleanup.id))["status"] == "pending"
    assert {j.id for j in cancels} == {first.id, waiting.id}


async def test_bad_dependencies_are_refused_before_anything_is_written(
    api: Any, jobs_store: MongoJobStore
) -> None:
    real = await api.schedule("part")
    with pytest.raises(ValidationError) as one:
        await api.schedule("join", depends_on=[real, ObjectId()])
    assert one.value.field == "depends_on[1]"
    with pytest.raises(ValidationError) as bulk:
        await api.schedule_bulk([{"name": "x"}, {"name": "y", "depends_on": [ObjectId()]}])
    assert bulk.value.field == "items[1].depends_on[0]"
    assert [j.id for j in await api.get_jobs()] == [real.id]
