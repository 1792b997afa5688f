"""Administering jobs: get_job, get_jobs (filters, sort, paging, no operator
injection), cancel (sticks, stops running handlers: B4) and update_job (never orphans a running
job: B18). Runs over both stores."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from mongo_job_scheduler import (
    InvalidJobState,
    Job,
    JobNotFound,
    JobStatus,
    JobStore,
    Scheduler,
    StopReason,
    ValidationError,
)
from tests.conftest import wait_for
from tests.contract.helpers import make, running, status_is, wait_doc


async def barrier(scheduler: Scheduler, store: JobStore, rounds: int = 2) -> None:
    """Run jobs named ``barrier`` one after another through ``scheduler``."""
    for _ in range(rounds):
        job = await scheduler.schedule("barrier")
        await wait_doc(store, job.id, status_is("completed"))


class Events:
    def __init__(self, scheduler: Scheduler) -> None:
        self.seen: list[tuple[str, Any]] = []
        for name in ("job:start", "job:success", "job:fail", "job:retry", "job:cancel"):
            scheduler.on(name, lambda job, *rest, _n=name: self.seen.append((_n, job.id)))

    def names(self, job_id: Any) -> list[str]:
        return [name for name, jid in self.seen if jid == job_id]


# -- get_job -----------------------------------------------------------------------------------


async def test_get_job_by_object_id_and_hex_string(store: JobStore) -> None:
    scheduler = make(store)
    job = await scheduler.schedule("lookup", {"k": "v"})
    by_oid = await scheduler.get_job(job.id)
    by_hex = await scheduler.get_job(str(job.id))
    assert by_oid is not None and by_hex is not None
    assert by_oid.id == by_hex.id == job.id
    assert isinstance(by_hex.id, ObjectId)
    assert by_hex.data == {"k": "v"}
    assert by_hex.status is JobStatus.PENDING


async def test_get_job_returns_none_when_absent(store: JobStore) -> None:
    scheduler = make(store)
    await scheduler.schedule("other")
    assert await scheduler.get_job(ObjectId()) is None
    assert await scheduler.get_job(str(ObjectId())) is None


@pytest.mark.parametrize("bad", ["nope", "g" * 24, "0" * 23, "", 123, None, 1.5, b"x" * 12])
async def test_get_job_rejects_invalid_ids(store: JobStore, bad: Any) -> None:
    with pytest.raises(ValidationError) as info:
        await make(store).get_job(bad)
    assert info.value.field == "job_id"


# -- get_jobs ----------------------------------------------------------------------------------


@pytest.fixture
async def catalogue(store: JobStore) -> dict[str, Job]:
    """Jobs in every status: three pending (future), one cancelled, one completed, one failed."""

    async def handler(job: Job) -> None:
        if job.data.get("fail"):
            raise RuntimeError("failed on purpose")

    scheduler = make(store, handler)
    later = await store.now() + timedelta(hours=1)
    jobs = {
        "welcome": await scheduler.schedule(
            "email", {"user": {"id": 1, "org": "a"}, "kind": "welcome"}, priority=3, run_at=later
        ),
        "reset": await scheduler.schedule(
            "email", {"user": {"id": 2, "org": "a"}, "kind": "reset"}, priority=1, run_at=later
        ),
        "daily": await scheduler.schedule(
            "report", {"user": {"id": 1, "org": "b"}, "kind": "daily"}, priority=7, run_at=later
        ),
        "weekly": await scheduler.schedule("report", {"kind": "weekly"}, priority=5, run_at=later),
        "done": await scheduler.schedule("cleanup", {"kind": "done"}, priority=4),
        "broken": await scheduler.schedule("cleanup", {"kind": "broken", "fail": True}, priority=6),
    }
    assert await scheduler.cancel(jobs["weekly"].id)
    async with running(scheduler):
        await wait_doc(store, jobs["done"].id, status_is("completed"))
        await wait_doc(store, jobs["broken"].id, status_is("failed"))
    return jobs


def keys(found: list[Job], jobs: dict[str, Job]) -> list[str]:
    names = {job.id: key for key, job in jobs.items()}
    return [names[job.id] for job in found]


async def test_get_jobs_filters(store: JobStore, catalogue: dict[str, Job]) -> None:
    s = make(store)

    async def found(**kwargs: Any) -> set[str]:
        return set(keys(await s.get_jobs(**kwargs), catalogue))

    assert await found() == set(catalogue)
    assert await found(name="email") == {"welcome", "reset"}
    assert await found(name="nothing") == set()
    assert await found(status="pending") == {"welcome", "reset", "daily"}
    assert await found(status=JobStatus.COMPLETED) == {"done"}
    assert await found(status=["failed", "cancelled"]) == {"broken", "weekly"}
    assert await found(status=[JobStatus.FAILED, "completed"]) == {"broken", "done"}
    assert await found(data={"kind": "welcome"}) == {"welcome"}
    assert await found(data={"user.id": 1}) == {"welcome", "daily"}
    assert await found(data={"user.org": "a", "user.id": 2}) == {"reset"}
    assert await found(data={"user": {"id": 1, "org": "a"}}) == {"welcome"}
    assert await found(data={"user.id": "1"}) == set()  # equality, types included
    assert await found(name="report", status=["pending", "cancelled"], data={"kind": "weekly"}) == {
        "weekly"
    }
    assert await found(name="email", status="completed") == set()


async def test_get_jobs_data_filters_agree_across_stores(store: JobStore) -> None:
    """Both stores evaluate ``data`` filters as MongoDB does: arrays match an element, dotted
    paths go through arrays of documents, ``None`` matches a missing field, and booleans never
    equal numbers."""
    s = make(store)
    later = await store.now() + timedelta(hours=1)
    one = await s.schedule(
        "d",
        {"tags": ["a", "b"], "n": 1, "items": [{"sku": "x"}, {"sku": "y"}]},
        run_at=later,
    )
    two = await s.schedule("d", {"tags": "a", "n": 1.0, "flag": True}, run_at=later)
    three = await s.schedule("d", {"n": True, "x": None}, run_at=later)
    four = await s.schedule("d", None, run_at=later)
    names = {one.id: 1, two.id: 2, three.id: 3, four.id: 4}

    async def found(data: dict[str, Any]) -> list[int]:
        return sorted(names[job.id] for job in await s.get_jobs(data=data))

    assert await found({"tags": "a"}) == [1, 2]
    assert await found({"tags": ["a", "b"]}) == [1]
    assert await found({"items.sku": "y"}) == [1]
    assert await found({"items.0.sku": "x"}) == [1]
    assert await found({"n": 1}) == [1, 2]
    assert await found({"n": True}) == [3]
    assert await found({"flag": 1}) == []
    assert await found({"x": None}) == [1, 2, 3, 4]


async def test_get_jobs_sort_and_paging(store: JobStore, catalogue: dict[str, Job]) -> None:
    s = make(store)
    by_priority = ["reset", "welcome", "done", "weekly", "broken", "daily"]
    assert keys(await s.get_jobs(sort=("priority", "asc")), catalogue) == by_priority
    assert keys(await s.get_jobs(sort=("priority", "desc")), catalogue) == by_priority[::-1]
    created = ["welcome", "reset", "daily", "weekly", "done", "broken"]
    assert keys(await s.get_jobs(), catalogue) == created  # default: createdAt ascending
    assert keys(await s.get_jobs(sort=("createdAt", "desc")), catalogue) == created[::-1]
    assert keys(await s.get_jobs(sort=("name", "asc"), limit=2), catalogue) == ["done", "broken"]
    page = await s.get_jobs(sort=("priority", "asc"), limit=2, skip=1)
    assert keys(page, catalogue) == ["welcome", "done"]
    assert await s.get_jobs(sort=("priority", "asc"), skip=6) == []
    updated = await s.get_jobs(sort=("updatedAt", "desc"), limit=1)
    assert len(updated) == 1
    # The job id orders by creation too (it starts with its creation second).
    assert keys(await s.get_jobs(sort=("_id", "desc")), catalogue) == created[::-1]
    assert keys(await s.get_jobs(sort=("_id", "asc"), limit=2), catalogue) == created[:2]


async def test_get_jobs_breaks_ties_in_the_order_of_the_index_behind_the_sort(
    store: JobStore,
) -> None:
    """Equal priorities go by due time (the claim order), then id; equal names by creation."""
    s = make(store)
    now = await store.now()
    later = await s.schedule("b", priority=2, run_at=now + timedelta(hours=2))
    sooner = await s.schedule("a", priority=2, run_at=now + timedelta(hours=1))
    first = await s.schedule("c", priority=1, run_at=now + timedelta(hours=3))
    by_priority = [job.id for job in await s.get_jobs(sort=("priority", "asc"))]
    assert by_priority == [first.id, sooner.id, later.id]
    assert [job.id for job in await s.get_jobs(sort=("priority", "desc"))] == by_priority[::-1]
    again = await s.schedule("a", priority=9, run_at=now)
    by_name = [job.id for job in await s.get_jobs(sort=("name", "asc"))]
    assert by_name == [sooner.id, again.id, later.id, first.id]


async def test_get_jobs_default_limit_is_100(store: JobStore) -> None:
    s = make(store)
    later = await store.now() + timedelta(hours=1)
    await s.schedule_bulk([{"name": "many", "data": {"i": i}, "run_at": later} for i in range(105)])
    assert len(await s.get_jobs()) == 100
    assert len(await s.get_jobs(limit=200)) == 105
    assert len(await s.get_jobs(skip=100)) == 5
    first = await s.get_jobs(limit=3)
    assert [job.data["i"] for job in first] == [0, 1, 2]


async def test_get_jobs_reads_only_the_fields_asked_for(store: JobStore) -> None:
    """``fields`` projects each job on those stored fields (its id always); with
    ``max_value_size``, a field larger than that many BSON bytes is left out of the job."""
    scheduler = Scheduler(store)
    small = await scheduler.schedule("proj", {"k": "v"}, priority=2)
    large = await scheduler.schedule("proj", {"blob": "x" * 100_000}, priority=3)
    found = await scheduler.get_jobs(name="proj", fields=["name", "priority", "data"])
    assert [job.id for job in found] == [small.id, large.id]
    assert [set(job.document) for job in found] == [{"_id", "name", "priority", "data"}] * 2
    assert (found[0].name, found[0].priority, found[0].data) == ("proj", 2, {"k": "v"})
    assert found[1].data == {"blob": "x" * 100_000}
    assert found[0].status is JobStatus.PENDING and found[0].created_at is None  # not read
    bounded = await scheduler.get_jobs(
        name="proj", fields=["name", "data", "createdAt"], max_value_size=1024
    )
    assert bounded[0].document["data"] == {"k": "v"}
    assert "data" not in bounded[1].document and bounded[1].data is None
    assert bounded[1].document["name"] == "proj" and bounded[1].created_at is not None
    missing = await scheduler.get_jobs(name="proj", fields=["result"], limit=1)
    assert missing[0].document == {"_id": small.id}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": {"x": {"$ne": 1}}},
        {"data": {"x": {"$gt": ""}}},
        {"data": {"$where": "sleep(1000) || true"}},
        {"data": {"$or": [{"a": 1}]}},
        {"data": {"x": [{"$ne": 1}]}},
        {"data": {"a.$b": 1}},
        {"data": "kind=welcome"},
        {"name": {"$ne": "x"}},
        {"name": ["email"]},
        {"status": {"$ne": "pending"}},
        {"status": "$ne"},
        {"sort": ("$natural", "asc")},
        {"sort": ("data.x", "asc")},
        {"sort": ("priority", {"$meta": "textScore"})},
    ],
)
async def test_get_jobs_rejects_operator_injection(
    store: JobStore, catalogue: dict[str, Job], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        await make(store).get_jobs(**kwargs)


# -- cancel ------------------------------------------------------------------------------------


async def test_cancel_pending_job_never_runs(store: JobStore) -> None:
    ran: list[Any] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    scheduler = make(store, handler)
    events = Events(scheduler)
    job = await scheduler.schedule("doomed")
    assert await scheduler.cancel(job.id) is True
    cancelled = await scheduler.get_job(job.id)
    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
    async with running(scheduler):
        await barrier(scheduler, store, rounds=3)
    assert job.id not in ran
    assert events.names(job.id) == ["job:cancel"]
    # A second cancel is a no-op that says so.
    assert await scheduler.cancel(str(job.id)) is False
    doc = await store.get(job.id)
    assert doc is not None and doc["status"] == "cancelled"


async def test_cancel_running_async_one_shot_with_retries(store: JobStore) -> None:
    started = asyncio.Event()
    outcome: list[str] = []
    calls = 0

    async def handler(job: Job) -> None:
        nonlocal calls
        if job.name == "barrier":
            return
        calls += 1
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.append(f"cancelled:{job.stop_reason}")
            raise

    scheduler = make(store, handler, workers=1)
    events = Events(scheduler)
    async with running(scheduler):
        job = await scheduler.schedule("long", retry={"maxAttempts": 3, "delay": 0})
        await asyncio.wait_for(started.wait(), 10)
        assert await scheduler.cancel(job.id) is True
        await wait_for(lambda: outcome)
        # One worker: the barrier runs only after the cancelled execution is over.
        await barrier(scheduler, store, rounds=2)
    doc = await store.get(job.id)
    assert doc is not None
    assert doc["status"] == "cancelled"
    assert doc.get("lockedBy") is None
    assert outcome == [f"cancelled:{StopReason.CANCELLED}"]
    assert calls == 1
    assert events.names(job.id) == ["job:start", "job:cancel"]


async def test_cancel_running_sync_handler_sees_the_stop_event(store: JobStore) -> None:
    started = threading.Event()
    saw: list[tuple[bool, Any]] = []

    def handler(job: Job) -> str:
        if job.name == "barrier":
            return "ok"
        started.set()
        stopped = job.stop_event.wait(10)
        saw.append((stopped, job.stop_reason))
        return "finished anyway"

    scheduler = make(store, handler, workers=1)
    events = Events(scheduler)
    async with running(scheduler):
        job = await scheduler.schedule("sync-long", retry=3)
        await asyncio.to_thread(started.wait, 10)
        assert await scheduler.cancel(job.id) is True
        await wait_for(lambda: saw)
        await barrier(scheduler, store, rounds=2)
    assert saw == [(True, StopReason.CANCELLED)]
    doc = await store.get(job.id)
    assert doc is not None and doc["status"] == "cancelled"
    assert "job:success" not in events.names(job.id)
    assert "job:retry" not in events.names(job.id)


async def test_cancel_running_interval_job_sticks(store: JobStore) -> None:
    """B4: the run ending must not put a cancelled interval job back to pending."""
    started = asyncio.Event()
    calls = 0

    async def handler(job: Job) -> None:
        nonlocal calls
        if job.name == "barrier":
            return
        calls += 1
        started.set()
        await asyncio.sleep(30)

    scheduler = make(store, handler, workers=1)
    async with running(scheduler):
        job = await scheduler.schedule("ticker", repeat={"every": 0.1}, run_at=await store.now())
        await asyncio.wait_for(started.wait(), 10)
        assert await scheduler.cancel(job.id)
        await barrier(scheduler, store, rounds=3)
    doc = await store.get(job.id)
    assert doc is not None and doc["status"] == "cancelled"
    assert calls == 1


@pytest.mark.parametrize(
    "kind", ["repeating", "one-off-returns", "one-off-raises", "one-off-raises-retries-left"]
)
async def test_job_cancelled_elsewhere_as_its_run_ends_is_no_worker_error(
    store: JobStore, kind: str
) -> None:
    """Another process cancels a job while its handler runs, and the handler ends (returning,
    or raising with or without retries left) before the runner hears of it: nothing is written
    (no next occurrence, no retry, no outcome), the job stays cancelled, and the runner reports
    no error (a cancel is not a lost lease)."""
    admin = Scheduler(store)
    runs: list[Any] = []
    errors: list[BaseException] = []

    async def handler(job: Job) -> None:
        if job.name == "barrier":
            return
        runs.append(job.id)
        assert await admin.cancel(job.id)  # lands in the store while this run is still going
        if "raises" in kind:
            raise RuntimeError("failed after the cancel")

    worker = make(store, handler, workers=1)
    worker.on("worker:error", errors.append)
    async with running(worker):
        if kind == "repeating":
            job = await admin.schedule("cancelled-ticker", repeat={"every": 0.1})
        else:
            retry = 3 if kind.endswith("retries-left") else 0
            job = await admin.schedule("cancelled-once", retry=retry)
        await wait_for(lambda: runs, timeout=10)
        await barrier(worker, store, rounds=3)
    assert runs == [job.id]
    assert errors == []
    doc = await store.get(job.id)
    assert doc is not None and doc["status"] == "cancelled"


async def test_cancel_from_another_scheduler_stops_the_handler(store: JobStore) -> None:
    """The cancelling process is not the one running the job: the runner learns it from its
    next lease renewal."""
    started = asyncio.Event()
    outcome: list[Any] = []

    async def handler(job: Job) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome.append(job.stop_reason)
            raise

    worker = make(store, handler, lock_timeout=3, heartbeat_interval=0.1)
    admin = Scheduler(store)
    async with running(worker):
        job = await admin.schedule("remote-cancel", retry=3)
        await asyncio.wait_for(started.wait(), 10)
        assert await admin.cancel(job.id)
        await wait_for(lambda: outcome, timeout=10)
    assert outcome == [StopReason.CANCELLED]
    doc = await store.get(job.id)
    assert doc is not None and doc["status"] == "cancelled"


@pytest.mark.parametrize("final", ["completed", "failed"])
async def test_cancel_finished_job_changes_nothing(store: JobStore, final: str) -> None:
    async def handler(job: Job) -> None:
        if final == "failed":
            raise RuntimeError("x")

    scheduler = make(store, handler)
    async with running(scheduler):
        job = await scheduler.schedule("finished")
        await wait_doc(store, job.id, status_is(final))
    before = await store.get(job.id)
    assert await scheduler.cancel(job.id) is False
    assert await store.get(job.id) == before


async def test_cancel_unknown_job(store: JobStore) -> None:
    scheduler = make(store)
    with pytest.raises(JobNotFound):
        await scheduler.cancel(ObjectId())
    with pytest.raises(ValidationError):
        await scheduler.cancel("not-an-id")


# -- update_job --------------------------------------------------------------------------------


async def test_update_pending_job_fields(store: JobStore) -> None:
    scheduler = make(store)
    later = await store.now() + timedelta(hours=1)
    job = await scheduler.schedule("editable", {"v": 1}, run_at=later, retry=2)
    updated = await scheduler.update_job(
        job.id,
        data={"v": 2, "nested": {"ok": True}},
        priority=1,
        retry={"maxAttempts": 4, "delay": 2, "backoff": "linear"},
        concurrency=3,
        timeout=5,
    )
    assert updated.data == {"v": 2, "nested": {"ok": True}}
    assert updated.priority == 1
    assert updated.next_run_at == later  # untouched
    doc = await store.get(job.id)
    assert doc is not None
    assert doc["data"] == {"v": 2, "nested": {"ok": True}}
    assert doc["priority"] == 1
    assert doc["retry"] == {"maxAttempts": 4, "delay": 2000, "backoff": "linear"}
    assert doc["concurrency"] == 3
    assert doc["timeoutMs"] == 5000
    assert doc["status"] == "pending"
    # None clears optional fields.
    await scheduler.update_job(str(job.id), retry=None, concurrency=None, timeout=None)
    doc = await store.get(job.id)
    assert doc is not None
    assert "retry" not in doc and "concurrency" not in doc and "timeoutMs" not in doc


async def test_update_run_at_reschedules_a_pending_job(store: JobStore) -> None:
    ran: list[Any] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    scheduler = make(store, handler)
    async with running(scheduler):
        job = await scheduler.schedule("move-me", run_at=await store.now() + timedelta(seconds=3))
        later = await store.now() + timedelta(hours=2)
        moved = await scheduler.update_job(job.id, run_at=later)
        assert moved.next_run_at == later
        await barrier(scheduler, store)
        assert job.id not in ran
        await scheduler.update_job(job.id, run_at=await store.now())
        await wait_doc(store, job.id, status_is("completed"))
    assert ran.count(job.id) == 1


async def test_update_run_at_moves_a_future_job(store: JobStore) -> None:
    scheduler = make(store)
    job = await scheduler.schedule("future", run_at=await store.now() + timedelta(days=1))
    new_time = await store.now() + timedelta(days=2)
    moved = await scheduler.update_job(job.id, run_at=new_time)
    assert moved.next_run_at == new_time
    doc = await store.get(job.id)
    assert doc is not None and doc["nextRunAt"] == new_time and doc["status"] == "pending"


@pytest.mark.parametrize("final", ["completed", "failed"])
async def test_update_run_at_revives_a_finished_job(store: JobStore, final: str) -> None:
    seen: list[int] = []

    async def handler(job: Job) -> None:
        seen.append(job.attempts)
        if final == "failed" and len(seen) <= 2:
            raise RuntimeError("first life fails")

    scheduler = make(store, handler)
    async with running(scheduler):
        job = await scheduler.schedule("phoenix", retry=2)
        await wait_doc(store, job.id, status_is(final))
        revived = await scheduler.update_job(job.id, run_at=await store.now())
        assert revived.attempts == 0
        await wait_doc(
            store,
            job.id,
            status_is("completed")
            if final == "failed"
            else (lambda d: d["status"] == "completed" and len(seen) == 2),
        )
    expected = [0, 1, 0] if final == "failed" else [0, 0]
    assert seen == expected


async def test_update_cancelled_job_is_refused(store: JobStore) -> None:
    scheduler = make(store)
    job = await scheduler.schedule("gone", {"v": 1})
    await scheduler.cancel(job.id)
    before = await store.get(job.id)
    with pytest.raises(InvalidJobState):
        await scheduler.update_job(job.id, run_at=await store.now())
    with pytest.raises(InvalidJobState):
        await scheduler.update_job(job.id, data={"v": 2})
    assert await store.get(job.id) == before


async def test_update_running_one_shot(store: JobStore) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    seen: list[Any] = []

    async def handler(job: Job) -> None:
        seen.append(job.data)
        started.set()
        await release.wait()

    scheduler = make(store, handler)
    async with running(scheduler):
        job = await scheduler.schedule("busy", {"v": 1})
        await asyncio.wait_for(started.wait(), 10)
        before = await store.get(job.id)
        assert before is not None and before["status"] == "running"
        with pytest.raises(InvalidJobState):
            await scheduler.update_job(job.id, run_at=await store.now() + timedelta(hours=1))
        assert await store.get(job.id) == before  # nothing changed
        updated = await scheduler.update_job(job.id, data={"v": 2}, priority=2)
        assert updated.status is JobStatus.RUNNING
        doc = await store.get(job.id)
        assert doc is not None
        assert (doc["lockedBy"], doc["lockVersion"]) == (before["lockedBy"], before["lockVersion"])
        release.set()
        doc = await wait_doc(store, job.id, lambda d: d["status"] != "running")
    assert doc["status"] == "completed"  # not orphaned
    assert doc["data"] == {"v": 2}
    assert doc.get("lockedBy") is None
    assert seen == [{"v": 1}]


async def test_update_running_interval_job_applies_from_its_next_occurrence(
    store: JobStore,
) -> None:
    """B18: changing a running repeating job neither orphans it nor disturbs the run; the new
    schedule applies from the next occurrence."""
    started = asyncio.Event()
    release = asyncio.Event()
    seen: list[Any] = []

    async def handler(job: Job) -> None:
        seen.append(job.data)
        started.set()
        await release.wait()

    scheduler = make(store, handler)
    async with running(scheduler):
        slot = await store.now()
        job = await scheduler.schedule("hourly", {"v": 1}, repeat={"every": 3600}, run_at=slot)
        await asyncio.wait_for(started.wait(), 10)
        updated = await scheduler.update_job(job.id, data={"v": 2}, repeat={"every": 7200})
        assert updated.status is JobStatus.RUNNING
        release.set()
        doc = await wait_doc(store, job.id, status_is("pending"))
        assert doc.get("lockedBy") is None
        assert doc["repeat"] == {"every": 7_200_000}
        assert doc["nextRunAt"] == slot + timedelta(hours=2)
        assert doc["data"] == {"v": 2}
        # It is a healthy pending job: it can be run now and sees the new data.
        started.clear()
        await scheduler.update_job(job.id, run_at=await store.now())
        await asyncio.wait_for(started.wait(), 10)
        release.set()
    assert seen == [{"v": 1}, {"v": 2}]


async def test_update_pending_repeat_moves_to_the_new_first_slot(store: JobStore) -> None:
    scheduler = make(store)
    job = await scheduler.schedule("sched", repeat={"every": 3600})
    before = await store.now()
    updated = await scheduler.update_job(job.id, repeat={"cron": "0 0 1 1 *"})
    assert updated.next_run_at is not None
    assert updated.next_run_at == datetime_next_new_year(before)
    assert updated.repeat is not None and updated.repeat.cron == "0 0 1 1 *"


def datetime_next_new_year(now: Any) -> Any:
    from datetime import datetime, timezone

    return datetime(now.year + 1, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"priority": 0},
        {"priority": "high"},
        {"run_at": "tomorrow"},
        {"run_at": None},
        {"repeat": {"cron": "every minute"}},
        {"repeat": {"every": 0.01}},
        {"retry": {"maxAttempts": 2, "tries": 3}},
        {"data": {"$set": {"x": 1}}},
        {"concurrency": 0},
        {"timeout": -1},
        {},
    ],
)
async def test_invalid_update_changes_nothing(store: JobStore, kwargs: dict[str, Any]) -> None:
    scheduler = make(store)
    job = await scheduler.schedule("stable", {"v": 1}, retry=2)
    before = await store.get(job.id)
    with pytest.raises(ValidationError):
        await scheduler.update_job(job.id, **kwargs)
    assert await store.get(job.id) == before


async def test_update_unknown_job(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        await make(store).update_job(ObjectId(), data={"x": 1})
