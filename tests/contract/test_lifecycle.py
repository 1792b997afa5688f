"""Contract: the scheduler's lifecycle — stop, start, ``async with``, events, and
surviving transient database errors, over both stores."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from mongo_job_scheduler import (
    InMemoryJobStore,
    Job,
    JobStatus,
    JobStore,
    MongoJobStore,
    Scheduler,
    StopReason,
    ValidationError,
)
from mongo_job_scheduler.stores.base import ClaimResult
from tests.conftest import wait_for
from tests.contract.helpers import make, running_all, sibling, status_of, stored


def _assert_released(doc: dict[str, Any]) -> None:
    """Given back at shutdown: pending, unlocked, no attempt counted."""
    assert doc["status"] == "pending"
    for field in ("lockedBy", "lockedAt", "lockUntil"):
        assert field not in doc, field
    assert doc.get("attempts", 0) == 0
    assert doc["lockVersion"] == 1
    assert "lastError" not in doc


# -- 9. stop --------------------------------------------------------------------------------


async def test_graceful_stop_waits_for_in_flight_jobs(store: JobStore) -> None:
    started: list[Any] = []
    cancelled: list[Any] = []

    async def handler(job: Job) -> str:
        started.append(job.id)
        try:
            await asyncio.sleep(0.3)
        except asyncio.CancelledError:
            cancelled.append(job.id)
            raise
        return "done"

    scheduler = make(store, handler, workers=2)
    await scheduler.start()
    try:
        jobs = [await scheduler.schedule("graceful", {"i": i}) for i in range(2)]
        await wait_for(lambda: len(started) == 2, timeout=10)
    finally:
        await scheduler.stop(graceful=True, timeout=20)

    assert cancelled == []
    for job in jobs:
        assert await status_of(store, job.id) == "completed"


async def test_graceful_stop_timeout_releases_unfinished_jobs_for_others(
    store: JobStore,
) -> None:
    started: list[Any] = []
    stop_reasons: list[StopReason | None] = []

    async def stubborn(job: Job) -> None:
        started.append(job.id)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stop_reasons.append(job.stop_reason)
            raise

    first = make(store, stubborn, workers=2)
    await first.start()
    try:
        jobs = [await first.schedule("unfinished", {"i": i}) for i in range(2)]
        await wait_for(lambda: len(started) == 2, timeout=10)
    finally:
        await first.stop(graceful=True, timeout=0.2)

    assert stop_reasons == [StopReason.SHUTDOWN, StopReason.SHUTDOWN]
    for job in jobs:
        _assert_released(await stored(store, job.id))

    # Another scheduler takes them at once (the default lease is ten minutes).
    done: list[Any] = []

    async def finisher(job: Job) -> None:
        done.append(job.id)

    async with running_all(make(sibling(store), finisher)):
        await wait_for(lambda: len(done) == 2, timeout=10)
    assert sorted(map(str, done)) == sorted(str(job.id) for job in jobs)


@pytest.mark.parametrize("swallows", [False, True], ids=["reraises", "carries-on"])
async def test_hard_stop_cancels_handlers_and_releases_now(store: JobStore, swallows: bool) -> None:
    # Async handlers run in the execution's own task, which is cancelled to stop them: one
    # that catches the cancellation and carries on must still have the write that follows it
    # made (here the release at shutdown).
    started = asyncio.Event()
    stop_reasons: list[StopReason | None] = []

    async def handler(job: Job) -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stop_reasons.append(job.stop_reason)
            if not swallows:
                raise
            await asyncio.sleep(0.05)
        return "late"

    scheduler = make(store, handler)
    await scheduler.start()
    try:
        job = await scheduler.schedule("hard-stop")
        await asyncio.wait_for(started.wait(), timeout=10)
    finally:
        began = time.monotonic()
        await scheduler.stop(graceful=False)
        elapsed = time.monotonic() - began

    assert elapsed < 10  # far below the handler's 60 s
    assert stop_reasons == [StopReason.SHUTDOWN]
    _assert_released(await stored(store, job.id))


async def test_stop_while_idle_returns_promptly(store: JobStore) -> None:
    scheduler = make(store, lambda job: None, poll_interval=60)
    await scheduler.start()
    await Scheduler(store).schedule("nothing-due", delay=3600)
    began = time.monotonic()
    await scheduler.stop()
    assert time.monotonic() - began < 10  # not the 60 s poll interval


async def test_start_and_stop_twice_are_no_ops_and_lifecycle_events_fire_once(
    store: JobStore,
) -> None:
    events: list[str] = []
    scheduler = make(store, lambda job: None)
    for name in ("scheduler:start", "scheduler:stop", "worker:start", "worker:stop"):
        scheduler.on(name, lambda *args, name=name: events.append(name))

    assert scheduler.is_running is False
    await scheduler.start()
    await scheduler.start()
    assert scheduler.is_running is True
    await scheduler.stop()
    await scheduler.stop()
    assert scheduler.is_running is False
    assert events == ["scheduler:start", "worker:start", "worker:stop", "scheduler:stop"]


async def test_async_with_starts_and_gracefully_stops(store: JobStore) -> None:
    events: list[str] = []
    ran: list[Any] = []
    started = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()
        await asyncio.sleep(0.1)
        ran.append(job.id)

    scheduler = make(store, handler)
    scheduler.on("scheduler:start", lambda: events.append("start"))
    scheduler.on("scheduler:stop", lambda: events.append("stop"))
    async with scheduler as entered:
        assert entered is scheduler
        assert scheduler.is_running
        job = await scheduler.schedule("inside")
        await asyncio.wait_for(started.wait(), timeout=10)
    # Leaving the block waited for the running job (graceful stop).
    assert scheduler.is_running is False
    assert events == ["start", "stop"]
    assert ran == [job.id]
    assert await status_of(store, job.id) == "completed"


async def test_job_claimed_while_stopping_is_given_back(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B27: a claim in flight when stop() begins does not leave its job locked."""
    claimed_one = asyncio.Event()
    gate = asyncio.Event()
    original = store.claim

    async def gated_claim(*args: Any, **kwargs: Any) -> ClaimResult:
        result = await original(*args, **kwargs)
        if result.jobs and not claimed_one.is_set():
            claimed_one.set()
            await gate.wait()  # stop() begins while this claim is "in flight"
        return result

    monkeypatch.setattr(store, "claim", gated_claim)
    ran: list[Any] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    job = await Scheduler(store).schedule("claimed-during-stop")
    scheduler = make(store, handler)
    await scheduler.start()
    await asyncio.wait_for(claimed_one.wait(), timeout=10)
    stopping = asyncio.create_task(scheduler.stop())
    await wait_for(lambda: not scheduler.is_running, timeout=10)
    gate.set()
    await asyncio.wait_for(stopping, timeout=20)

    assert ran == []
    _assert_released(await stored(store, job.id))
    monkeypatch.undo()
    async with running_all(make(sibling(store), handler)):
        await wait_for(lambda: ran == [job.id], timeout=10)


# -- 10. events -----------------------------------------------------------------------------

JOB_EVENTS = ("job:start", "job:success", "job:fail", "job:retry", "job:complete")


def _record_job_events(scheduler: Scheduler) -> list[str]:
    seen: list[str] = []
    for name in JOB_EVENTS:
        scheduler.on(name, lambda *args, name=name: seen.append(name))
    return seen


async def test_one_shot_success_events_in_order(store: JobStore) -> None:
    scheduler = make(store, lambda job: "ok")
    seen = _record_job_events(scheduler)
    async with running_all(scheduler):
        await scheduler.schedule("ok")
        await wait_for(lambda: "job:complete" in seen, timeout=10)
    assert seen == ["job:start", "job:success", "job:complete"]


async def test_failure_events_with_and_without_retries_left(store: JobStore) -> None:
    failures: list[tuple[Job, BaseException]] = []
    raised: list[ValueError] = []

    async def handler(job: Job) -> None:
        error = ValueError(f"boom {job.attempts}")
        raised.append(error)
        raise error

    scheduler = make(store, handler)
    seen = _record_job_events(scheduler)
    scheduler.on("job:fail", lambda job, exc: failures.append((job, exc)))
    async with running_all(scheduler):
        job = await scheduler.schedule("fails", retry={"maxAttempts": 2, "delay": 0})
        await wait_for(lambda: failures, timeout=10)

    assert seen == ["job:start", "job:retry", "job:start", "job:fail"]
    [(failed, exc)] = failures
    assert exc is raised[-1]
    assert failed.id == job.id
    assert failed.status is JobStatus.FAILED
    assert failed.attempts == 2
    assert failed.last_error == "boom 1"
    assert (await stored(store, job.id))["status"] == "failed"


async def test_raising_listener_neither_breaks_the_scheduler_nor_skips_others(
    store: JobStore,
) -> None:
    after: list[Any] = []
    reported: list[BaseException] = []
    problem = RuntimeError("listener bug")

    def bad_listener(job: Job) -> None:
        raise problem

    scheduler = make(store, lambda job: None)
    scheduler.on("job:success", bad_listener)
    scheduler.on("job:success", lambda job: after.append(job.id))
    scheduler.on("scheduler:error", reported.append)
    async with running_all(scheduler):
        first = await scheduler.schedule("listened")
        second = await scheduler.schedule("listened")
        await wait_for(lambda: len(after) == 2, timeout=10)

        async def both_completed() -> bool:
            return all([await status_of(store, j.id) == "completed" for j in (first, second)])

        await wait_for(both_completed, timeout=10)
    assert sorted(map(str, after)) == sorted([str(first.id), str(second.id)])
    assert reported[:2] == [problem, problem]


async def test_async_listeners_are_awaited(store: JobStore) -> None:
    got: list[Any] = []
    reported: list[BaseException] = []

    async def listener(job: Job) -> None:
        await asyncio.sleep(0.01)
        got.append(job.id)

    async def failing_listener(job: Job) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("async listener bug")

    scheduler = make(store, lambda job: None)
    scheduler.on("job:complete", failing_listener)
    scheduler.on("job:complete", listener)
    scheduler.on("scheduler:error", reported.append)
    async with running_all(scheduler):
        job = await scheduler.schedule("async-listener")
        await wait_for(lambda: got == [job.id] and reported, timeout=10)
    assert isinstance(reported[0], RuntimeError)


def test_unknown_event_name_is_rejected() -> None:
    scheduler = Scheduler(InMemoryJobStore())
    with pytest.raises(ValidationError):
        scheduler.on("job:finished", lambda job: None)
    with pytest.raises(ValueError):
        scheduler.on("", lambda job: None)


# -- 11. transient database errors ------------------------------------------------------------


class FlakyMongoJobStore(MongoJobStore):
    """A real MongoDB store whose first few calls fail as a network blip would (fault
    injection on top of the real store; every other call reaches the server)."""

    def __init__(
        self,
        database: Any,
        *,
        claims: int = 0,
        renews: int = 0,
        finishes_before: int = 0,
        finishes_after: int = 0,
    ) -> None:
        super().__init__(database)
        self.failing = {
            "claim": claims,
            "renew": renews,
            "finish_before": finishes_before,
            "finish_after": finishes_after,
        }
        self.calls = {"claim": 0, "renew": 0, "finish": 0}

    def _blip(self, what: str) -> None:
        if self.failing[what] > 0:
            self.failing[what] -= 1
            raise AutoReconnect(f"injected {what} failure")

    async def claim(self, *args: Any, **kwargs: Any) -> ClaimResult:
        self.calls["claim"] += 1
        self._blip("claim")
        return await super().claim(*args, **kwargs)

    async def renew(self, *args: Any, **kwargs: Any) -> set[Any]:
        self.calls["renew"] += 1
        self._blip("renew")
        return await super().renew(*args, **kwargs)

    async def finish(self, *args: Any, **kwargs: Any) -> bool:
        self.calls["finish"] += 1
        self._blip("finish_before")
        applied = await super().finish(*args, **kwargs)
        self._blip("finish_after")  # applied, but the reply was "lost"
        return applied


def _auto_reconnects(errors: list[BaseException]) -> int:
    return sum(isinstance(e, AutoReconnect) for e in errors)


@pytest.mark.mongo_only
async def test_worker_survives_failing_claims(store: JobStore) -> None:
    assert isinstance(store, MongoJobStore)
    flaky = FlakyMongoJobStore(store.database, claims=3)
    ran: list[Any] = []
    errors: list[BaseException] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    scheduler = make(flaky, handler, workers=2)
    scheduler.on("worker:error", errors.append)
    jobs = await Scheduler(store).schedule_bulk([{"name": "after-blip"} for _ in range(5)])
    async with running_all(scheduler):
        await wait_for(lambda: len(ran) == 5, timeout=15)

        async def all_completed() -> bool:
            return all([await status_of(store, j.id) == "completed" for j in jobs])

        await wait_for(all_completed, timeout=10)
    assert _auto_reconnects(errors) == 3
    assert sorted(map(str, ran)) == sorted(str(j.id) for j in jobs)
    assert flaky.calls["claim"] > 3


@pytest.mark.mongo_only
async def test_failing_renewals_do_not_lose_the_job(store: JobStore) -> None:
    assert isinstance(store, MongoJobStore)
    flaky = FlakyMongoJobStore(store.database, renews=2)
    ran: list[Any] = []
    errors: list[BaseException] = []
    successes: list[Job] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)
        await asyncio.sleep(1.0)  # longer than the lease: renewals must resume

    scheduler = make(flaky, handler, lock_timeout=0.6, heartbeat_interval=0.1)
    scheduler.on("worker:error", errors.append)
    scheduler.on("job:success", successes.append)
    async with running_all(scheduler):
        job = await scheduler.schedule("renewed-after-blip")
        await wait_for(lambda: successes, timeout=15)
    assert _auto_reconnects(errors) == 2
    assert flaky.calls["renew"] > 2
    assert ran == [job.id]
    assert len(successes) == 1
    doc = await stored(store, job.id)
    assert doc["status"] == "completed"
    assert doc["lockVersion"] == 1


@pytest.mark.mongo_only
@pytest.mark.parametrize("when", ["before", "after"])
async def test_failing_finish_still_writes_the_outcome_exactly_once(
    store: JobStore, when: str
) -> None:
    assert isinstance(store, MongoJobStore)
    flaky = FlakyMongoJobStore(store.database, **{f"finishes_{when}": 1})
    ran: list[Any] = []
    errors: list[BaseException] = []
    outcomes: list[str] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    scheduler = make(flaky, handler)
    scheduler.on("worker:error", errors.append)
    for name in ("job:success", "job:fail", "job:retry", "job:complete"):
        scheduler.on(name, lambda *args, name=name: outcomes.append(name))
    async with running_all(scheduler):
        job = await scheduler.schedule("finish-blip", retry=3)
        await wait_for(lambda: "job:complete" in outcomes, timeout=15)
        # Give a wrong second outcome every chance to show up before stopping.
        follow_up = await scheduler.schedule("finish-blip-2")

        async def follow_up_done() -> bool:
            return await status_of(store, follow_up.id) == "completed"

        await wait_for(follow_up_done, timeout=10)
    assert _auto_reconnects(errors) == 1
    assert ran == [job.id, follow_up.id]
    assert outcomes == ["job:success", "job:complete"] * 2
    doc = await stored(store, job.id)
    assert doc["status"] == "completed"
    assert doc.get("attempts", 0) == 0
    assert doc["lockVersion"] == 1
    assert "lockedBy" not in doc
