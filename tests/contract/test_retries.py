"""Retries: how many executions, the waits between them, per-task overrides, and
attempts that survive a restart. Runs over both stores.

Waits are checked on the stored document: after a failed attempt, ``nextRunAt - updatedAt`` is
the wait the worker chose. Waits are long (a minute) so that margins are wide; the test then
brings the retry forward with ``update_job(run_at=now)`` instead of waiting for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from mongo_job_scheduler import Job, JobStore, MongoJobStore, Retry
from tests.conftest import wait_for
from tests.contract.helpers import make, running, wait_doc


def pending_after(attempts: int) -> Callable[[dict[str, Any]], bool]:
    return lambda d: d["status"] == "pending" and d.get("attempts") == attempts


def chosen_wait(doc: dict[str, Any]) -> float:
    """The retry wait the worker wrote: due time minus the time of the write."""
    return (doc["nextRunAt"] - doc["updatedAt"]).total_seconds()


def assert_wait(doc: dict[str, Any], seconds: float) -> None:
    observed = chosen_wait(doc)
    assert seconds - 5 <= observed <= seconds + 1, (observed, seconds)


class PaymentDeclined(Exception):
    pass


# -- retry=N means N executions ------------------------------------------------------------------


@pytest.mark.parametrize("executions", [1, 3])
async def test_retry_n_means_n_executions_then_failed(store: JobStore, executions: int) -> None:
    calls: list[int] = []

    async def handler(job: Job) -> None:
        calls.append(job.attempts)
        raise PaymentDeclined(f"declined #{len(calls)}")

    retries: list[Job] = []
    failures: list[tuple[Job, BaseException]] = []
    scheduler = make(store, handler)
    scheduler.on("job:retry", retries.append)
    scheduler.on("job:fail", lambda job, error: failures.append((job, error)))
    async with running(scheduler):
        job = await scheduler.schedule("charge", {"order": 1}, retry=executions)
        doc = await wait_doc(store, job.id, lambda d: d["status"] == "failed")
        await wait_for(lambda: failures)
    assert calls == list(range(executions))
    assert doc["attempts"] == executions
    assert doc["lastError"] == f"declined #{executions}"
    assert doc["lastErrorType"] == "PaymentDeclined"
    assert doc.get("lockedBy") is None
    assert len(retries) == executions - 1
    assert [r.attempts for r in retries] == list(range(1, executions))
    assert len(failures) == 1
    assert isinstance(failures[0][1], PaymentDeclined)
    stored = await scheduler.get_job(job.id)
    assert stored is not None
    assert stored.last_error == f"declined #{executions}"
    assert stored.last_error_type == "PaymentDeclined"


async def test_without_retry_a_job_runs_once(store: JobStore) -> None:
    calls = 0

    async def handler(job: Job) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("boom")

    async with running(make(store, handler)) as scheduler:
        job = await scheduler.schedule("once")
        doc = await wait_doc(store, job.id, lambda d: d["status"] == "failed")
        # A second job runs after the first finished: the worker had the chance to run it again.
        barrier = await scheduler.schedule("once")
        await wait_doc(store, barrier.id, lambda d: d["status"] == "failed")
    assert calls == 2
    assert doc["attempts"] == 1
    assert doc["lastError"] == "boom"
    assert doc["lastErrorType"] == "ValueError"


async def test_handler_sees_attempts_zero_then_one(store: JobStore) -> None:
    seen: list[int] = []

    async def handler(job: Job) -> str:
        seen.append(job.attempts)
        if len(seen) == 1:
            raise RuntimeError("first try fails")
        return "ok"

    async with running(make(store, handler)) as scheduler:
        job = await scheduler.schedule("flaky", retry=2)
        doc = await wait_doc(store, job.id, lambda d: d["status"] == "completed")
    assert seen == [0, 1]
    # The failure of the first attempt stays visible.
    assert doc["lastError"] == "first try fails"
    assert doc["lastErrorType"] == "RuntimeError"


async def test_sync_handler_failures_are_retried_too(store: JobStore) -> None:
    seen: list[int] = []

    def handler(job: Job) -> None:
        seen.append(job.attempts)
        if job.attempts < 2:
            raise KeyError("missing")

    async with running(make(store, handler)) as scheduler:
        job = await scheduler.schedule("sync-flaky", retry={"maxAttempts": 3, "delay": 0})
        await wait_doc(store, job.id, lambda d: d["status"] == "completed")
    assert seen == [0, 1, 2]


# -- waits between attempts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backoff", "waits"),
    [
        ("fixed", [60, 60, 60]),
        ("linear", [60, 120, 180]),
        ("exponential", [60, 120, 240]),
    ],
)
async def test_backoff_waits(store: JobStore, backoff: str, waits: list[int]) -> None:
    async def handler(job: Job) -> None:
        raise RuntimeError(f"attempt {job.attempts} failed")

    async with running(make(store, handler)) as scheduler:
        job = await scheduler.schedule(
            "backoff", retry={"maxAttempts": 4, "delay": 60, "backoff": backoff}
        )
        for n, seconds in enumerate(waits, start=1):
            doc = await wait_doc(store, job.id, pending_after(n))
            assert_wait(doc, seconds)
            assert doc["lastError"] == f"attempt {n - 1} failed"
            assert doc.get("lockedBy") is None
            await scheduler.update_job(job.id, run_at=await store.now())
        doc = await wait_doc(store, job.id, lambda d: d["status"] == "failed")
    assert doc["attempts"] == 4
    assert doc["lastError"] == "attempt 3 failed"


async def test_waits_match_the_stored_policy(store: JobStore) -> None:
    """The wait the worker chose is the stored policy's ``delay_for`` (same maths everywhere)."""

    async def handler(job: Job) -> None:
        raise RuntimeError("no")

    async with running(make(store, handler)) as scheduler:
        job = await scheduler.schedule(
            "policy", retry={"maxAttempts": 3, "delay": 45, "backoff": "linear"}
        )
        doc = await wait_doc(store, job.id, pending_after(1))
        policy = Retry.from_document(doc["retry"])
        assert policy == Retry(3, timedelta(seconds=45), "linear")
        assert_wait(doc, policy.delay_for(1).total_seconds())
        await scheduler.update_job(job.id, run_at=await store.now())
        doc = await wait_doc(store, job.id, pending_after(2))
        assert_wait(doc, policy.delay_for(2).total_seconds())


async def test_max_delay_caps_the_wait(store: JobStore) -> None:
    async def handler(job: Job) -> None:
        raise RuntimeError("down")

    async with running(make(store, handler)) as scheduler:
        job = await scheduler.schedule(
            "capped",
            retry={"maxAttempts": 5, "delay": 60, "backoff": "exponential", "maxDelay": 90},
        )
        for n, seconds in enumerate([60, 90, 90], start=1):
            doc = await wait_doc(store, job.id, pending_after(n))
            assert_wait(doc, seconds)
            await scheduler.update_job(job.id, run_at=await store.now())
        await wait_doc(store, job.id, pending_after(4))


async def test_jitter_draws_waits_between_zero_and_the_delay(store: JobStore) -> None:
    async def handler(job: Job) -> None:
        raise RuntimeError("thundering herd")

    async with running(make(store, handler, workers=4)) as scheduler:
        jobs = [
            await scheduler.schedule(
                "jittered", {"i": i}, retry={"maxAttempts": 2, "delay": 600, "jitter": True}
            )
            for i in range(8)
        ]
        docs = [await wait_doc(store, job.id, pending_after(1)) for job in jobs]
    waits = [chosen_wait(doc) for doc in docs]
    assert all(-1 <= w <= 601 for w in waits), waits
    # Full jitter: the waits spread out instead of all sitting at the full delay
    # (all eight above 540 s has probability 1e-8).
    assert min(waits) < 540, waits
    assert len({round(w) for w in waits}) > 1, waits


# -- per-task overrides ------------------------------------------------------------------------


async def test_task_retry_and_backoff_callable_override_the_job(store: JobStore) -> None:
    backoff_calls: list[int] = []
    handler_calls: list[int] = []

    def backoff(attempt: int) -> float:
        backoff_calls.append(attempt)
        return 30.0 * attempt

    scheduler = make(store)

    @scheduler.task("override", retry=3, backoff=backoff)
    async def handle(job: Job) -> None:
        handler_calls.append(job.attempts)
        raise RuntimeError("task policy")

    async with running(scheduler):
        # The job's own policy (10 executions, no wait) is overridden by the task's.
        job = await scheduler.schedule("override", retry={"maxAttempts": 10, "delay": 0})
        for n, seconds in enumerate([30, 60], start=1):
            doc = await wait_doc(store, job.id, pending_after(n))
            assert_wait(doc, seconds)
            await scheduler.update_job(job.id, run_at=await store.now())
        doc = await wait_doc(store, job.id, lambda d: d["status"] == "failed")
    assert handler_calls == [0, 1, 2]
    assert backoff_calls == [1, 2]
    assert doc["attempts"] == 3


async def test_task_backoff_may_return_a_timedelta(store: JobStore) -> None:
    scheduler = make(store)

    @scheduler.task("td", backoff=lambda attempt: timedelta(minutes=2))
    async def handle(job: Job) -> None:
        raise RuntimeError("x")

    async with running(scheduler):
        job = await scheduler.schedule("td", retry=2)
        doc = await wait_doc(store, job.id, pending_after(1))
    assert_wait(doc, 120)


async def test_task_retry_applies_to_jobs_without_their_own(store: JobStore) -> None:
    calls = 0
    scheduler = make(store)

    @scheduler.task("task-retry", retry={"maxAttempts": 2, "delay": 0})
    async def handle(job: Job) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("x")

    async with running(scheduler):
        job = await scheduler.schedule("task-retry")
        doc = await wait_doc(store, job.id, lambda d: d["status"] == "failed")
    assert calls == 2
    assert doc["attempts"] == 2


# -- attempts survive a restart ----------------------------------------------------------------


def reopen(store: JobStore) -> JobStore:
    """The same jobs seen by a new process: a new MongoJobStore on the same database (the
    in-memory store cannot be reopened, so the same one is used)."""
    if isinstance(store, MongoJobStore):
        return MongoJobStore(store.database, store.collection_name)
    return store


async def test_attempts_persist_across_a_restart(store: JobStore) -> None:
    first_calls: list[int] = []
    second_calls: list[int] = []

    async def first(job: Job) -> None:
        first_calls.append(job.attempts)
        raise RuntimeError("before restart")

    async def second(job: Job) -> None:
        second_calls.append(job.attempts)
        raise RuntimeError("after restart")

    async with running(make(store, first)) as scheduler:
        job = await scheduler.schedule("durable", retry={"maxAttempts": 3, "delay": 60})
        await wait_doc(store, job.id, pending_after(1))

    again = reopen(store)
    async with running(make(again, second)) as restarted:
        await restarted.update_job(job.id, run_at=await again.now())
        await wait_doc(again, job.id, pending_after(2))
        await restarted.update_job(job.id, run_at=await again.now())
        doc = await wait_doc(again, job.id, lambda d: d["status"] == "failed")
    assert first_calls == [0]
    assert second_calls == [1, 2]
    assert doc["attempts"] == 3
    assert doc["lastError"] == "after restart"


async def test_a_retry_is_not_run_early_by_another_scheduler(store: JobStore) -> None:
    """A pending retry waits for its time even with idle workers elsewhere."""
    calls = 0

    async def handler(job: Job) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("wait for me")

    async with running(make(store, handler)) as a, running(make(store, handler)) as b:
        job = await a.schedule("patient", retry={"maxAttempts": 3, "delay": 60})
        await wait_doc(store, job.id, pending_after(1))
        # Barrier: a later job on both schedulers completes; the retry is still waiting.
        done = asyncio.Event()
        ran_barrier = 0

        async def barrier(job: Job) -> None:
            nonlocal ran_barrier
            ran_barrier += 1
            done.set()

        a.task("barrier")(barrier)
        b.task("barrier")(barrier)
        for _ in range(3):
            done.clear()
            await b.schedule("barrier")
            await asyncio.wait_for(done.wait(), 10)
    assert calls == 1
    assert ran_barrier == 3
    doc = await store.get(job.id)
    assert doc is not None and doc["status"] == "pending" and doc["attempts"] == 1
