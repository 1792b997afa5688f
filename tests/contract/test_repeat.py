"""Repeating jobs: the fixed grid, cron with seconds, the first slot, no
self-overlap, misfire policies, retries of repeating jobs, and validation at schedule time.
Runs over both stores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import pytest

from mongo_job_scheduler import Job, JobStore, MongoJobStore, Repeat, Scheduler, ValidationError
from tests.conftest import wait_for
from tests.contract.helpers import make, running, wait_doc


async def barrier(scheduler: Scheduler, store: JobStore, rounds: int = 2) -> None:
    """Run one-shot jobs through ``scheduler`` one after another: afterwards its workers have
    had several chances to claim anything that was due."""
    for _ in range(rounds):
        job = await scheduler.schedule("barrier")
        await wait_doc(store, job.id, lambda d: d["status"] == "completed")


async def stored_count(store: JobStore) -> int:
    if isinstance(store, MongoJobStore):
        return await store.jobs.count_documents({})
    return len(await Scheduler(store).get_jobs(limit=10_000))


class Recorder:
    """A handler that records what each run saw; ``fail`` decides which runs raise."""

    def __init__(self, fail: Callable[[int, Job], bool] = lambda n, job: False) -> None:
        self.runs: list[Job] = []
        self.fail = fail

    async def __call__(self, job: Job) -> None:
        if job.name == "barrier":
            return
        self.runs.append(job)
        if self.fail(len(self.runs), job):
            raise RuntimeError(f"run {len(self.runs)} failed")

    @property
    def slots(self) -> list[datetime | None]:
        return [job.last_scheduled_at for job in self.runs]


def on_grid(value: datetime, first: datetime, every: timedelta) -> bool:
    return value >= first and (value - first) % every == timedelta(0)


# -- the grid ----------------------------------------------------------------------------------


async def test_interval_stays_on_the_grid_of_its_first_slot(store: JobStore) -> None:
    every = timedelta(milliseconds=200)
    durations = iter([0.01, 0.33, 0.05, 0.25, 0.0, 0.41] + [0.0] * 100)
    runs: list[datetime] = []
    completions: list[Job] = []

    async def handler(job: Job) -> None:
        runs.append(job.document["lastRunAt"])
        await asyncio.sleep(next(durations))

    scheduler = make(store, handler)
    scheduler.on("job:complete", completions.append)
    async with running(scheduler):
        job = await scheduler.schedule("grid", repeat={"every": every})
        first = job.next_run_at
        assert first is not None and job.created_at is not None
        # No run_at: the first run is the first slot after now, not now.
        assert first == job.created_at + every
        await wait_for(lambda: len(completions) >= 6, timeout=15)
    next_slots = [c.next_run_at for c in completions]
    assert all(n is not None and on_grid(n, first, every) for n in next_slots), next_slots
    assert next_slots == sorted(set(next_slots))  # strictly increasing
    # Never ran before its slot.
    assert runs[0] >= first
    doc = await store.get(job.id)
    assert doc is not None
    assert on_grid(doc["nextRunAt"], first, every)
    assert doc["lastScheduledAt"] == doc["nextRunAt"] or doc["status"] == "running"


async def test_interval_grid_starts_at_run_at(store: JobStore) -> None:
    recorder = Recorder()
    completions: list[Job] = []
    scheduler = make(store, recorder)
    scheduler.on("job:complete", completions.append)
    async with running(scheduler):
        run_at = await store.now() + timedelta(milliseconds=300)
        job = await scheduler.schedule("anchored", repeat={"every": 0.5}, run_at=run_at)
        assert job.next_run_at == run_at
        await wait_for(lambda: len(completions) >= 2)
    assert completions[0].next_run_at == run_at + timedelta(milliseconds=500)
    assert completions[1].next_run_at == run_at + timedelta(milliseconds=1000)
    assert recorder.runs[0].document["lastRunAt"] >= run_at


async def test_six_field_cron_runs_at_its_second_slots(store: JobStore) -> None:
    recorder = Recorder()
    async with running(make(store, recorder)) as scheduler:
        before = await store.now()
        job = await scheduler.schedule("tick", repeat={"cron": "* * * * * *"})
        first = job.next_run_at
        assert first is not None
        assert first.microsecond == 0
        assert before < first <= before + timedelta(seconds=1)
        await wait_for(lambda: len(recorder.runs) >= 2)
    slots = recorder.slots
    assert slots[0] == first
    for slot, run in zip(slots, recorder.runs, strict=True):
        assert slot is not None and slot.microsecond == 0
        assert run.document["lastRunAt"] >= slot  # never early
        assert run.document["lastRunAt"] - slot < timedelta(seconds=3)  # and on time
    assert all(b is not None and a is not None and b > a for a, b in pairwise(slots))


async def test_cron_first_slot_uses_the_zone(store: JobStore) -> None:
    scheduler = make(store)
    job = await scheduler.schedule(
        "report", repeat={"cron": "0 9 * * *", "timezone": "Asia/Kolkata"}
    )
    assert job.created_at is not None and job.next_run_at is not None
    expected = Repeat.parse({"cron": "0 9 * * *", "timezone": "Asia/Kolkata"}).next_after(
        job.created_at
    )
    assert job.next_run_at == expected
    assert (job.next_run_at.hour, job.next_run_at.minute) == (3, 30)
    assert job.created_at < job.next_run_at <= job.created_at + timedelta(days=1)


async def test_cron_without_zone_uses_the_scheduler_default(store: JobStore) -> None:
    scheduler = make(store, default_timezone="America/New_York")
    job = await scheduler.schedule("ny", repeat={"cron": "0 9 * * *"})
    assert job.next_run_at is not None
    local = job.next_run_at.astimezone(Repeat(cron="0 9 * * *").zone("America/New_York"))
    assert (local.hour, local.minute) == (9, 0)


async def test_repeating_job_does_not_run_before_its_first_slot(store: JobStore) -> None:
    recorder = Recorder()
    async with running(make(store, recorder)) as scheduler:
        job = await scheduler.schedule("yearly", repeat={"cron": "0 0 1 1 *"})
        interval = await scheduler.schedule("later", repeat={"every": 3600})
        await barrier(scheduler, store, rounds=3)
    assert recorder.runs == []
    assert job.created_at is not None and job.next_run_at is not None
    assert job.next_run_at == datetime(job.created_at.year + 1, 1, 1, tzinfo=timezone.utc)
    assert interval.next_run_at == interval.created_at + timedelta(hours=1)  # type: ignore[operator]
    for j in (job, interval):
        doc = await store.get(j.id)
        assert doc is not None and doc["status"] == "pending" and doc.get("lastRunAt") is None


async def test_run_at_now_runs_a_repeating_job_at_once(store: JobStore) -> None:
    recorder = Recorder()
    completions: list[Job] = []
    scheduler = make(store, recorder)
    scheduler.on("job:complete", completions.append)
    async with running(scheduler):
        now = await store.now()
        job = await scheduler.schedule("now-then-hourly", repeat={"every": 3600}, run_at=now)
        await wait_for(lambda: completions)
    assert len(recorder.runs) == 1
    assert recorder.runs[0].document["lastRunAt"] < now + timedelta(minutes=1)
    doc = await store.get(job.id)
    assert doc is not None
    assert doc["status"] == "pending"
    assert doc["nextRunAt"] == now + timedelta(hours=1)


# -- no self-overlap ---------------------------------------------------------------------------


async def test_a_repeating_job_never_overlaps_itself(store: JobStore) -> None:
    active = 0
    most = 0
    intervals: list[tuple[float, float]] = []
    loop = asyncio.get_running_loop()

    async def handler(job: Job) -> None:
        nonlocal active, most
        if job.name == "barrier":
            return
        active += 1
        most = max(most, active)
        start = loop.time()
        try:
            await asyncio.sleep(0.3)  # three times the interval
        finally:
            active -= 1
            intervals.append((start, loop.time()))

    schedulers = [make(store, handler, workers=3, poll_interval=0.01) for _ in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        for s in schedulers:
            await stack.enter_async_context(running(s))
        await schedulers[0].schedule("slow-interval", repeat={"every": 0.1})
        await wait_for(lambda: len(intervals) >= 4, timeout=15)
    assert most == 1
    intervals.sort()
    for (_, end), (start, _) in pairwise(intervals):
        assert start >= end


async def test_a_running_repeating_job_is_not_claimed_again(store: JobStore) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def handler(job: Job) -> None:
        nonlocal calls
        if job.name == "barrier":
            return
        calls += 1
        started.set()
        await release.wait()

    async with running(make(store, handler, workers=4)) as scheduler:
        job = await scheduler.schedule("busy", repeat={"every": 0.1}, run_at=await store.now())
        await asyncio.wait_for(started.wait(), 10)
        # Many slots pass while it runs; idle workers must leave it alone.
        await barrier(scheduler, store, rounds=5)
        doc = await store.get(job.id)
        assert doc is not None and doc["status"] == "running"
        assert calls == 1
        release.set()
        await wait_doc(store, job.id, lambda d: d["status"] == "pending" or calls > 1)


# -- misfires ----------------------------------------------------------------------------------

EVERY = timedelta(minutes=1)


async def schedule_missed(
    scheduler: Scheduler, store: JobStore, repeat: dict[str, Any]
) -> tuple[Job, datetime]:
    """A repeating job whose first slot was 10.5 intervals ago (slots S0..S10 are missed,
    S11 is 30 s in the future)."""
    start = await store.now() - 10 * EVERY - timedelta(seconds=30)
    job = await scheduler.schedule("missed", repeat=repeat, run_at=start)
    return job, start


@pytest.mark.parametrize(
    "repeat",
    [{"every": 60}, {"every": 60, "misfire": "once"}],
    ids=["default", "once"],
)
async def test_misfire_once_runs_once_then_jumps_ahead(
    store: JobStore, repeat: dict[str, Any]
) -> None:
    recorder = Recorder()
    async with running(make(store, recorder)) as scheduler:
        job, start = await schedule_missed(scheduler, store, repeat)
        doc = await wait_doc(store, job.id, lambda d: d["nextRunAt"] > start + 10 * EVERY)
        await barrier(scheduler, store)
    assert len(recorder.runs) == 1
    assert doc["status"] == "pending"
    assert doc["nextRunAt"] == start + 11 * EVERY
    assert doc["nextRunAt"] > await store.now()


async def test_misfire_skip_runs_nothing_for_missed_slots(store: JobStore) -> None:
    recorder = Recorder()
    async with running(make(store, recorder)) as scheduler:
        job, start = await schedule_missed(scheduler, store, {"every": 60, "misfire": "skip"})
        doc = await wait_doc(store, job.id, lambda d: d["nextRunAt"] > start + 10 * EVERY)
        await barrier(scheduler, store)
    assert recorder.runs == []
    assert doc["status"] == "pending"
    assert doc["nextRunAt"] == start + 11 * EVERY
    assert doc["lastScheduledAt"] == start + 11 * EVERY


async def test_misfire_skip_with_cron(store: JobStore) -> None:
    recorder = Recorder()
    async with running(make(store, recorder)) as scheduler:
        now = await store.now()
        start = now - timedelta(hours=5)
        job = await scheduler.schedule(
            "hourly", repeat={"cron": "0 * * * *", "misfire": "skip"}, run_at=start
        )
        doc = await wait_doc(store, job.id, lambda d: d["nextRunAt"] > now)
        await barrier(scheduler, store)
    assert recorder.runs == []
    expected = Repeat.parse({"cron": "0 * * * *"}).next_after(now)
    assert doc["nextRunAt"] in (expected, expected + timedelta(hours=1))
    assert doc["nextRunAt"].minute == 0 and doc["nextRunAt"].second == 0


async def test_misfire_all_runs_every_missed_slot(store: JobStore) -> None:
    recorder = Recorder()
    async with running(make(store, recorder)) as scheduler:
        job, start = await schedule_missed(scheduler, store, {"every": 60, "misfire": "all"})
        doc = await wait_doc(store, job.id, lambda d: d["nextRunAt"] > start + 10 * EVERY)
        await barrier(scheduler, store)
    assert recorder.slots == [start + k * EVERY for k in range(11)]
    assert doc["nextRunAt"] == start + 11 * EVERY
    assert doc["status"] == "pending"


async def test_misfire_all_stops_catching_up_at_the_limit(store: JobStore) -> None:
    recorder = Recorder()
    async with running(make(store, recorder)) as scheduler:
        job, start = await schedule_missed(
            scheduler, store, {"every": 60, "misfire": "all", "catchUpLimit": 3}
        )
        doc = await wait_doc(store, job.id, lambda d: d["nextRunAt"] > start + 10 * EVERY)
        await barrier(scheduler, store)
    # Three missed slots run one by one, then the rest collapse into one run (as "once").
    assert len(recorder.runs) == 4
    assert recorder.slots[:3] == [start, start + EVERY, start + 2 * EVERY]
    assert doc["nextRunAt"] == start + 11 * EVERY


# -- failures of repeating jobs ----------------------------------------------------------------


async def test_a_retry_does_not_skip_the_next_slot(store: JobStore) -> None:
    """B9: a 1-second cron failing once with a zero retry delay still runs at the next slot."""
    recorder = Recorder(fail=lambda n, job: n == 1)
    async with running(make(store, recorder)) as scheduler:
        await scheduler.schedule(
            "cron-retry", repeat={"cron": "* * * * * *"}, retry={"maxAttempts": 3, "delay": 0}
        )
        await wait_for(lambda: len(recorder.runs) >= 3, timeout=15)
    first, retried, regular = recorder.runs[:3]
    s1 = first.last_scheduled_at
    assert s1 is not None
    assert (first.attempts, retried.attempts, regular.attempts) == (0, 1, 0)
    assert retried.last_scheduled_at == s1
    assert regular.last_scheduled_at == s1 + timedelta(seconds=1)


async def test_a_long_retry_wait_is_cut_to_the_next_slot(store: JobStore) -> None:
    recorder = Recorder(fail=lambda n, job: True)
    async with running(make(store, recorder)) as scheduler:
        job = await scheduler.schedule(
            "cron-long-retry",
            repeat={"cron": "0 * * * *"},
            retry={"maxAttempts": 3, "delay": 7200},  # two hours
            run_at=await store.now(),
        )
        doc = await wait_doc(store, job.id, lambda d: d.get("attempts") == 1)
    assert doc["status"] == "pending"
    slot = recorder.runs[0].last_scheduled_at
    assert slot is not None
    next_slot = Repeat.parse({"cron": "0 * * * *"}).next_after(slot)
    assert doc["nextRunAt"] <= next_slot


async def test_final_failure_moves_a_repeating_job_to_its_next_occurrence(
    store: JobStore,
) -> None:
    recorder = Recorder(fail=lambda n, job: True)
    failures: list[Job] = []
    scheduler = make(store, recorder)
    scheduler.on("job:fail", lambda job, error: failures.append(job))
    async with running(scheduler):
        start = await store.now()
        job = await scheduler.schedule(
            "interval-fails", repeat={"every": 3600}, retry=2, run_at=start
        )
        doc = await wait_doc(
            store,
            job.id,
            lambda d: d["status"] == "pending" and d["nextRunAt"] > start + timedelta(minutes=1),
        )
        await barrier(scheduler, store)
    assert len(recorder.runs) == 2
    assert doc["attempts"] == 0
    assert doc["lastError"] == "run 2 failed"
    assert doc["lastErrorType"] == "RuntimeError"
    assert doc["nextRunAt"] == start + timedelta(hours=1)
    assert doc.get("lockedBy") is None
    assert len(failures) == 1
    after = await scheduler.get_job(job.id)
    assert after is not None and after.status.value == "pending"


async def test_a_failing_cron_job_keeps_its_schedule(store: JobStore) -> None:
    statuses: list[str] = []
    recorder = Recorder(fail=lambda n, job: True)
    scheduler = make(store, recorder)
    scheduler.on("job:fail", lambda job, error: statuses.append(job.status.value))
    async with running(scheduler):
        job = await scheduler.schedule("cron-fails", repeat={"cron": "* * * * * *"})
        await wait_for(lambda: statuses, timeout=15)
        doc = await wait_doc(store, job.id, lambda d: d.get("lastError") is not None)
    assert statuses[0] == "pending"
    slot = recorder.slots[0]
    assert slot is not None
    assert doc["lastError"] == "run 1 failed"
    if doc["status"] == "pending":  # else the next slot's run has started already
        assert doc["nextRunAt"] == slot + timedelta(seconds=1)
        assert doc["attempts"] == 0


# -- validation at schedule time (B1) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("repeat", "field"),
    [
        ({"cron": "every day"}, "repeat.cron"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "repeat.timezone"),
        ({"every": 0.05}, "repeat.every"),
        ({"every": -5}, "repeat.every"),
        ({}, "repeat"),
        ({"every": 60, "misfire": "never"}, "repeat.misfire"),
    ],
)
async def test_invalid_repeat_is_rejected_and_nothing_written(
    store: JobStore, repeat: dict[str, Any], field: str
) -> None:
    scheduler = make(store)
    with pytest.raises(ValidationError) as info:
        await scheduler.schedule("bad-repeat", repeat=repeat)
    assert info.value.field == field
    assert await stored_count(store) == 0
    with pytest.raises(ValidationError):
        await scheduler.schedule_bulk([{"name": "ok"}, {"name": "bad", "repeat": repeat}])
    assert await stored_count(store) == 0
