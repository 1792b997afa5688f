"""Contract: leases while handlers run — the lease-lost signal, heartbeats,
``timeout`` and ``max_execution``, over both stores."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest

from mongo_job_scheduler import (
    AttemptOutcome,
    Job,
    JobStatus,
    JobStore,
    JobTimeout,
    LeaseLost,
    StopReason,
)
from tests.conftest import wait_for
from tests.contract.helpers import LONG_LEASE, make, running_all, sibling, status_of, steal, stored

# -- 3. the lease-lost signal ---------------------------------------------------------------


async def test_async_handler_is_cancelled_when_its_lease_is_taken_over(store: JobStore) -> None:
    started = asyncio.Event()
    seen: dict[str, Any] = {}
    outcomes: list[str] = []
    errors: list[BaseException] = []

    async def handler(job: Job) -> str:
        seen["job"] = job
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["cancelled"] = True
            seen["stop_requested"] = job.stop_requested
            seen["stop_reason"] = job.stop_reason
            raise
        return "finished"

    # A long lease: only the heartbeat seeing the takeover can stop the handler in time.
    scheduler = make(store, handler, lock_timeout=30, heartbeat_interval=0.1)
    for event in ("job:success", "job:fail", "job:retry", "job:complete"):
        scheduler.on(event, lambda *args, event=event: outcomes.append(event))
    scheduler.on("worker:error", errors.append)
    async with running_all(scheduler):
        job = await scheduler.schedule("stolen")
        await asyncio.wait_for(started.wait(), timeout=10)
        token = await steal(store, job.id, "thief")
        await wait_for(lambda: "cancelled" in seen, timeout=10)
        await wait_for(lambda: any(isinstance(e, LeaseLost) for e in errors), timeout=10)

    assert seen["stop_requested"] is True
    assert seen["stop_reason"] is StopReason.LEASE_LOST
    assert seen["job"].stop_event.is_set()
    assert outcomes == []
    doc = await stored(store, job.id)
    assert doc["status"] == "running"
    assert doc["lockedBy"] == "thief"
    assert doc["lockVersion"] == token == 2
    assert doc.get("attempts", 0) == 0
    assert "lastError" not in doc


async def test_sync_handler_sees_the_stop_event_and_its_outcome_is_not_written(
    store: JobStore,
) -> None:
    started = threading.Event()
    seen: dict[str, Any] = {}
    outcomes: list[str] = []

    def handler(job: Job) -> str:
        started.set()
        seen["flag"] = job.stop_event.wait(timeout=20)
        seen["stop_reason"] = job.stop_reason
        return "finished anyway"  # a stale worker's result must not be written

    # A long lease: only the heartbeat seeing the takeover can stop the handler in time.
    scheduler = make(store, handler, lock_timeout=30, heartbeat_interval=0.1)
    for event in ("job:success", "job:fail", "job:retry", "job:complete"):
        scheduler.on(event, lambda *args, event=event: outcomes.append(event))
    async with running_all(scheduler):
        job = await scheduler.schedule("stolen-sync")
        await wait_for(started.is_set, timeout=10)
        await steal(store, job.id, "thief")
        await wait_for(lambda: "flag" in seen, timeout=10)
    # stop() has waited for the execution to end: any write it would make has happened.

    assert seen["flag"] is True
    assert seen["stop_reason"] is StopReason.LEASE_LOST
    assert outcomes == []
    doc = await stored(store, job.id)
    assert doc["status"] == "running"
    assert doc["lockedBy"] == "thief"
    assert "result" not in doc


async def test_stalled_handler_is_stopped_once_another_owner_takes_the_job(
    store: JobStore,
) -> None:
    """``max_execution`` stops renewals; when the expired lease is claimed elsewhere, the
    stalled handler is told it lost the lease (never two live owners)."""
    started = asyncio.Event()
    seen: dict[str, Any] = {}
    stalled: list[Job] = []

    async def handler(job: Job) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["stop_reason"] = job.stop_reason
            raise

    scheduler = make(store, handler, lock_timeout=0.3, heartbeat_interval=0.1, max_execution=0.1)
    scheduler.on("job:stalled", stalled.append)
    async with running_all(scheduler):
        job = await scheduler.schedule("stalls")
        await asyncio.wait_for(started.wait(), timeout=10)
        await wait_for(lambda: stalled, timeout=10)
        thief = sibling(store)

        async def steal() -> Any:
            return (await thief.claim("thief", 1, LONG_LEASE, 10)).jobs

        await wait_for(steal, timeout=10)  # the lease expires on its own: no renewals
        await wait_for(lambda: "stop_reason" in seen, timeout=10)

    assert seen["stop_reason"] is StopReason.LEASE_LOST
    assert len(stalled) == 1
    doc = await stored(store, job.id)
    assert doc["status"] == "running"
    assert doc["lockedBy"] == "thief"


# -- 7. heartbeats --------------------------------------------------------------------------


async def test_heartbeats_keep_a_long_handler_leased(store: JobStore) -> None:
    running = 0
    most = 0
    runs: list[str] = []

    def make_handler(label: str) -> Any:
        async def handler(job: Job) -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            runs.append(label)
            try:
                await asyncio.sleep(1.5)  # three lease lengths of work
            finally:
                running -= 1

        return handler

    options = {"lock_timeout": 0.5, "heartbeat_interval": 0.1}
    first = make(store, make_handler("first"), **options)
    second = make(sibling(store), make_handler("second"), **options)
    async with running_all(first, second):
        job = await first.schedule("long")

        async def leased() -> datetime | None:
            doc = await stored(store, job.id)
            return doc.get("lockUntil") if doc["status"] == "running" else None

        initial = await wait_for(leased, timeout=10)

        async def renewed() -> bool:
            until = await leased()
            return until is not None and until > initial + timedelta(seconds=0.4)

        await wait_for(renewed, timeout=10)

        async def completed() -> bool:
            return await status_of(store, job.id) == "completed"

        await wait_for(completed, timeout=15)

    assert len(runs) == 1
    assert most == 1
    doc = await stored(store, job.id)
    assert doc["lockVersion"] == 1
    assert doc.get("leaseExpiries", 0) == 0


async def test_a_claim_answered_later_than_the_lease_hands_its_jobs_back(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim whose answer takes longer than the lease (a failover, a stuck server
    selection) may hold a lease that has run out already: its jobs are given back at once,
    due now, and run from the next claim, instead of being started, stopped by the lease guard
    and left locked until the lease ends."""
    runs: list[Any] = []

    async def handler(job: Job) -> None:
        runs.append(job.id)

    scheduler = make(store, handler, lock_timeout=0.3, heartbeat_interval=0.1)
    claim = store.claim
    delayed: list[Any] = []

    async def late_answer(*args: Any, **kwargs: Any) -> Any:
        result = await claim(*args, **kwargs)
        if result.jobs and not delayed:
            delayed.extend(c.job_id for c in result.jobs)
            await asyncio.sleep(0.5)  # the answer arrives after the 0.3 s lease
        return result

    monkeypatch.setattr(store, "claim", late_answer)
    job = await scheduler.schedule("late")
    async with running_all(scheduler):

        async def completed() -> bool:
            return await status_of(store, job.id) == "completed"

        await wait_for(completed, timeout=10)
    assert delayed == [job.id]
    assert runs == [job.id]  # the late claim ran nothing; the next one ran it once
    done = await scheduler.get_job(job.id)
    assert done is not None
    assert [a.outcome for a in done.history] == [AttemptOutcome.STOPPED, AttemptOutcome.COMPLETED]


# -- 8. timeout and max_execution -----------------------------------------------------------


async def test_job_timeout_cancels_the_handler_and_counts_as_a_failed_attempt(
    store: JobStore,
) -> None:
    cancellations: list[StopReason | None] = []
    retried: list[Job] = []
    failed: list[tuple[Job, BaseException]] = []

    async def handler(job: Job) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancellations.append(job.stop_reason)
            raise

    scheduler = make(store, handler)
    scheduler.on("job:retry", retried.append)
    scheduler.on("job:fail", lambda job, exc: failed.append((job, exc)))
    async with running_all(scheduler):
        job = await scheduler.schedule("slow", timeout=0.2, retry={"maxAttempts": 2, "delay": 0})
        await wait_for(lambda: failed, timeout=15)

    assert cancellations == [StopReason.TIMEOUT, StopReason.TIMEOUT]
    [retry] = retried
    assert retry.last_error_type == "JobTimeout"
    assert retry.attempts == 1
    [(final, exc)] = failed
    assert isinstance(exc, JobTimeout)
    assert final.status is JobStatus.FAILED
    doc = await stored(store, job.id)
    assert doc["status"] == "failed"
    assert doc["attempts"] == 2
    assert doc["lastErrorType"] == "JobTimeout"
    assert "timeout" in doc["lastError"]


async def test_task_timeout_overrides_the_job_and_quick_handlers_are_untouched(
    store: JobStore,
) -> None:
    cancelled: list[Any] = []
    scheduler = make(store)

    @scheduler.task("slow-task", timeout=0.2)
    async def slow(job: Job) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(job.id)
            raise

    @scheduler.task("quick-task", timeout=5)
    async def quick(job: Job) -> str:
        await asyncio.sleep(0.01)
        return "ok"

    async with running_all(scheduler):
        slow_job = await scheduler.schedule("slow-task", timeout=60)
        quick_job = await scheduler.schedule("quick-task")

        async def settled() -> bool:
            return await status_of(store, slow_job.id) == "failed" and (
                await status_of(store, quick_job.id) == "completed"
            )

        await wait_for(settled, timeout=15)

    assert cancelled == [slow_job.id]
    doc = await stored(store, slow_job.id)
    assert doc["attempts"] == 1
    assert doc["lastErrorType"] == "JobTimeout"
    assert "lastError" not in await stored(store, quick_job.id)


async def test_max_execution_emits_stalled_once_and_stops_renewing(store: JobStore) -> None:
    release = asyncio.Event()
    stalled: list[Job] = []

    async def handler(job: Job) -> None:
        await release.wait()

    scheduler = make(store, handler, lock_timeout=0.4, heartbeat_interval=0.1)
    scheduler.on("job:stalled", stalled.append)
    async with running_all(scheduler):
        job = await scheduler.schedule("stuck", max_execution=0.15)
        await wait_for(lambda: stalled, timeout=10)
        until = (await stored(store, job.id))["lockUntil"]

        async def lease_over() -> bool:
            return await store.now() > until + timedelta(seconds=0.3)

        await wait_for(lease_over, timeout=10)
        doc = await stored(store, job.id)
        assert doc["lockUntil"] == until  # no renewal after the stall
        assert doc["status"] == "running"
        release.set()

        async def completed() -> bool:
            return await status_of(store, job.id) == "completed"

        await wait_for(completed, timeout=10)

    assert len(stalled) == 1
    assert stalled[0].id == job.id


async def test_a_renewal_answer_for_a_previous_run_leaves_the_jobs_newer_run_alone(
    store: JobStore,
) -> None:
    """A heartbeat renews the fence of a run that has finished but whose outcome is not yet
    written; while the renewal is held up (a failover), the job is claimed again and a new
    run of it starts in the same worker. The renewal's answer (the old fence lost) concerns
    the old run only: the new run, with a fence of its own, keeps running."""
    from mongo_job_scheduler._config import SchedulerConfig
    from mongo_job_scheduler.events import EventEmitter
    from mongo_job_scheduler.job import RunContext
    from mongo_job_scheduler.stores.base import Fence
    from mongo_job_scheduler.worker._leases import LeaseKeeper
    from mongo_job_scheduler.worker._running import Execution

    scheduler = make(store)
    job = await scheduler.schedule("renewed")
    lease = timedelta(seconds=30)

    async def run_of(owner: str) -> Execution:
        [claimed] = (await store.claim(owner, 1, lease, 5)).jobs
        fence = Fence(claimed.job_id, owner, claimed.token, claimed.slot_name)
        context = RunContext(claimed.token, owner, claimed.job_id)
        execution = Execution(fence, claimed, context, claimed.job(context))
        execution.lease_deadline = asyncio.get_running_loop().time() + 3600
        return execution

    old = await run_of("w")
    await store.release(old.fence)  # the old run's outcome made the job due again
    executions: dict[Any, Execution] = {job.id: old}
    errors: list[BaseException] = []
    keeper = LeaseKeeper(
        store,
        SchedulerConfig.from_options(lock_timeout=30),
        executions,
        EventEmitter(),
        lambda exc, _: errors.append(exc),
    )
    renew = store.renew
    newer: list[Execution] = []

    async def held_up(fences: Any, until: timedelta) -> set[Any]:
        newer.append(await run_of("w"))  # claimed again meanwhile, by the same worker
        executions[job.id] = newer[0]
        return await renew(fences, until)

    store.renew = held_up  # type: ignore[method-assign]
    try:
        await keeper.heartbeat()
    finally:
        del store.renew
    [new] = newer
    assert new.claimed.token > old.claimed.token
    assert new.context.stop_reason is None
    assert errors == []
