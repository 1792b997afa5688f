"""``throughput`` (jobs finished per minute, by outcome, with the wait before each start) and
``job_names`` (the distinct names of the stored jobs), over both stores."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from mongo_job_scheduler import (
    Job,
    JobStore,
    MongoJobStore,
    Throughput,
    ThroughputMinute,
    ValidationError,
)
from tests.contract.helpers import make, running, status_is, wait_doc


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


async def test_throughput_counts_each_outcome_with_the_wait_before_the_start(
    store: JobStore,
) -> None:
    async def handler(job: Job) -> None:
        if job.data.get("fail"):
            raise RuntimeError("failed on purpose")

    scheduler = make(store, handler)
    now = await store.now()
    late = [
        await scheduler.schedule("late", {"i": i}, run_at=now - timedelta(seconds=5))
        for i in range(2)
    ]
    broken = await scheduler.schedule("broken", {"fail": True})
    later = await scheduler.schedule("later", run_at=now + timedelta(hours=1))
    assert await scheduler.cancel(later.id)
    await scheduler.schedule("waits", run_at=now + timedelta(hours=1))  # pending: not counted
    empty = await scheduler.throughput(minutes=3)
    assert empty.completed == 0 and empty.cancelled == 1 and empty.failed == 0
    async with running(scheduler):
        for job in late:
            await wait_doc(store, job.id, status_is("completed"))
        await wait_doc(store, broken.id, status_is("failed"))

    seen = await scheduler.throughput(minutes=3)
    assert isinstance(seen, Throughput)
    assert [m.start for m in seen.minutes] == [
        minute_of(seen.at) - timedelta(minutes=2 - i) for i in range(3)
    ]
    assert (seen.completed, seen.failed, seen.cancelled) == (2, 1, 1)
    assert sum(m.finished for m in seen.minutes) == 4
    assert not seen.truncated
    # The two late jobs waited at least 5 s between their due time and their start.
    assert seen.max_wait is not None and seen.max_wait >= timedelta(seconds=5)
    assert seen.max_wait < timedelta(seconds=60)
    waited = [m for m in seen.minutes if m.mean_wait is not None]
    assert waited and all(m.max_wait is not None for m in waited)
    assert all(m.mean_wait <= m.max_wait for m in waited)  # type: ignore[operator]
    assert all(m.max_wait is None and m.mean_wait is None for m in seen.minutes if not m.finished)
    whole_hour = await scheduler.throughput()
    assert len(whole_hour.minutes) == 60
    assert (whole_hour.completed, whole_hour.failed, whole_hour.cancelled) == (2, 1, 1)


@pytest.mark.parametrize("bad", [0, -1, 1441, 1.5, "5", None, True])
async def test_throughput_refuses_a_bad_window_before_reading(
    store: JobStore, bad: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never(*args: Any) -> Any:
        raise AssertionError("the store was read")

    monkeypatch.setattr(store, "now", never)
    monkeypatch.setattr(store, "finished_per_minute", never)
    with pytest.raises(ValidationError) as info:
        await make(store).throughput(minutes=bad)
    assert info.value.field == "minutes"


async def test_finished_per_minute_reads_the_newest_jobs_up_to_its_limit(store: JobStore) -> None:
    scheduler = make(store)
    now = await store.now()
    jobs = [
        await scheduler.schedule("x", {"i": i}, run_at=now + timedelta(hours=1)) for i in range(3)
    ]
    for job in jobs:
        assert await scheduler.cancel(job.id)
    rows = await store.finished_per_minute(now - timedelta(minutes=1), 2)
    assert sum(row["n"] for row in rows) == 2
    assert {row["status"] for row in rows} == {"cancelled"}
    assert all(row["waitMax"] is None and row["waitN"] == 0 for row in rows)  # never ran
    assert await store.finished_per_minute(now + timedelta(minutes=5), 10) == []


@pytest.mark.mongo_only
async def test_throughput_puts_each_job_in_the_minute_it_finished(store: JobStore) -> None:
    """Jobs finished at known times (written straight to the collection): each counts in its
    own minute, the older ones not at all, and the waits are ``lastRunAt - nextRunAt``."""
    assert isinstance(store, MongoJobStore)
    await store.setup()
    now = await store.now()
    this_minute = minute_of(now)

    def finished(status: str, minutes_ago: int, wait_s: float | None) -> dict[str, Any]:
        at = this_minute - timedelta(minutes=minutes_ago) + timedelta(seconds=1)
        doc: dict[str, Any] = {"_id": ObjectId(), "name": "seeded", "status": status}
        doc["updatedAt"] = at
        if wait_s is not None:
            doc["nextRunAt"] = at - timedelta(seconds=30)
            doc["lastRunAt"] = doc["nextRunAt"] + timedelta(seconds=wait_s)
        return doc

    await store.jobs.insert_many(
        [
            finished("completed", 0, 2),
            finished("completed", 0, 4),
            finished("failed", 0, 1),
            finished("completed", 3, 10),
            finished("cancelled", 3, None),
            finished("completed", 5, -3),  # started before its due time: no wait counted
            finished("completed", 10, 1),  # outside a 10-minute window
            finished("pending", 0, 1),  # not finished
        ]
    )
    seen = await make(store).throughput(minutes=10)
    by_start = {m.start: m for m in seen.minutes}
    assert by_start[this_minute] == ThroughputMinute(
        this_minute,
        completed=2,
        failed=1,
        max_wait=timedelta(seconds=4),
        mean_wait=timedelta(seconds=7 / 3),
    )
    three = this_minute - timedelta(minutes=3)
    assert by_start[three] == ThroughputMinute(
        three,
        completed=1,
        cancelled=1,
        max_wait=timedelta(seconds=10),
        mean_wait=timedelta(seconds=10),
    )
    five = by_start[this_minute - timedelta(minutes=5)]
    assert (five.completed, five.max_wait, five.mean_wait) == (1, None, None)
    assert (seen.completed, seen.failed, seen.cancelled) == (4, 1, 1)


async def test_job_names_lists_each_name_once_in_order(store: JobStore) -> None:
    scheduler = make(store)
    assert await scheduler.job_names() == []
    now = await store.now()
    for name in ("resize", "email", "resize", "backup", "email"):
        await scheduler.schedule(name, run_at=now + timedelta(hours=1))
    assert await scheduler.job_names() == ["backup", "email", "resize"]
    assert await scheduler.job_names(limit=2) == ["backup", "email"]
    for bad in (0, 10_001, "3", None, True):
        with pytest.raises(ValidationError) as info:
            await scheduler.job_names(limit=bad)
        assert info.value.field == "limit"
