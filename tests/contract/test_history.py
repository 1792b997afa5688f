"""Contract: the attempt history (``history``, ``Job.history``) over both stores: one entry per
attempt, written by the write that ends it (outcome, release, cancel, the takeover of an
expired lease), bounded to the last ``HISTORY_LIMIT``, built from the document's own lock
fields, and stored as given (never read as an expression)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from mongo_job_scheduler import (
    AttemptOutcome,
    AttemptRecord,
    Job,
    JobStore,
    MongoJobStore,
    Scheduler,
)
from mongo_job_scheduler._history import HISTORY_LIMIT, MAX_HISTORY_ERROR_LENGTH, Ending
from mongo_job_scheduler.stores.base import Claimed, Fence, Finish
from tests.conftest import wait_for
from tests.contract.helpers import (
    LONG_LEASE,
    claim_jobs,
    make,
    running,
    sibling,
    stored,
    wait_doc,
)
from tests.contract.test_batching import Commands

DONE = Ending(AttemptOutcome.COMPLETED)


def _fence(claimed: Claimed, owner: str) -> Fence:
    return Fence(claimed.job_id, owner, claimed.token)


async def _history(scheduler: Scheduler, job_id: Any) -> tuple[AttemptRecord, ...]:
    job = await scheduler.get_job(job_id)
    assert job is not None
    return job.history


def _assert_timed(record: AttemptRecord) -> None:
    """Start, end and duration are present and agree (BSON keeps milliseconds)."""
    assert record.started_at is not None and record.ended_at is not None
    assert record.duration is not None
    assert record.ended_at >= record.started_at
    assert abs(record.ended_at - record.started_at - record.duration) < timedelta(milliseconds=1)


class Declined(Exception):
    pass


async def test_a_success_records_one_completed_attempt(store: JobStore) -> None:
    started: list[Job] = []
    completed: list[Job] = []

    async def handler(job: Job) -> str:
        started.append(job)
        return "ok"

    scheduler = make(store, handler)
    scheduler.on("job:complete", completed.append)
    async with running(scheduler):
        job = await scheduler.schedule("history-ok")
        assert job.history == ()
        doc = await wait_doc(store, job.id, lambda d: d["status"] == "completed")
        await wait_for(lambda: completed)

    [record] = await _history(scheduler, job.id)
    assert record.outcome is AttemptOutcome.COMPLETED
    assert record.worker == started[0].locked_by is not None
    assert record.token == 1
    assert record.started_at == doc["lastRunAt"]
    _assert_timed(record)
    assert (record.error, record.error_type, record.retry_delay) == (None, None, None)
    assert not record.retried
    # The job the event carried (as written) has the entry already.
    assert [r.outcome for r in completed[0].history] == [AttemptOutcome.COMPLETED]
    assert completed[0].history[0].token == 1


async def test_a_failure_with_a_retry_then_a_success(store: JobStore) -> None:
    async def handler(job: Job) -> None:
        if job.attempts == 0:
            raise Declined("card declined")

    scheduler = make(store, handler)
    async with running(scheduler):
        job = await scheduler.schedule(
            "history-retry", retry={"maxAttempts": 3, "delay": 0.05, "backoff": "linear"}
        )
        await wait_doc(store, job.id, lambda d: d["status"] == "completed")

    retried, completed = await _history(scheduler, job.id)
    assert retried.outcome is AttemptOutcome.RETRIED
    assert retried.retried
    assert retried.retry_delay == timedelta(milliseconds=50)
    assert (retried.error, retried.error_type) == ("card declined", "Declined")
    assert (retried.token, completed.token) == (1, 2)
    assert retried.worker == completed.worker is not None
    assert completed.outcome is AttemptOutcome.COMPLETED
    assert completed.error is None
    for record in (retried, completed):
        _assert_timed(record)
    assert retried.ended_at is not None and completed.started_at is not None
    assert completed.started_at >= retried.ended_at


async def test_a_final_failure_keeps_a_bounded_message(store: JobStore) -> None:
    long_message = "x" * (MAX_HISTORY_ERROR_LENGTH * 3)

    async def handler(job: Job) -> None:
        raise Declined(long_message if job.attempts else "first")

    scheduler = make(store, handler)
    async with running(scheduler):
        job = await scheduler.schedule("history-fail", retry=2)
        doc = await wait_doc(store, job.id, lambda d: d["status"] == "failed")

    first, last = await _history(scheduler, job.id)
    assert first.outcome is AttemptOutcome.RETRIED
    assert first.retry_delay == timedelta(0)  # retry=2: no wait, but a retry all the same
    assert last.outcome is AttemptOutcome.FAILED
    assert not last.retried
    assert last.error == long_message[:MAX_HISTORY_ERROR_LENGTH]
    assert doc["lastError"] == long_message  # the job's own field keeps more
    assert last.error_type == "Declined"


async def test_timeouts_are_recorded_as_timed_out(store: JobStore) -> None:
    async def handler(job: Job) -> None:
        await asyncio.Event().wait()

    scheduler = make(store, handler)
    async with running(scheduler):
        job = await scheduler.schedule(
            "history-slow", timeout=0.1, retry={"maxAttempts": 2, "delay": 0.02}
        )
        await wait_doc(store, job.id, lambda d: d["status"] == "failed")

    first, last = await _history(scheduler, job.id)
    assert [first.outcome, last.outcome] == [AttemptOutcome.TIMED_OUT] * 2
    assert first.retry_delay == timedelta(milliseconds=20)
    assert last.retry_delay is None
    assert first.error_type == last.error_type == "JobTimeout"
    assert last.duration is not None and last.duration >= timedelta(milliseconds=100)


async def test_a_takeover_records_the_lost_lease_of_the_old_owner(store: JobStore) -> None:
    job = await Scheduler(store).schedule("history-lost")
    [first] = await claim_jobs(store, "owner-a", 1, timedelta(milliseconds=200), 10)
    ran_out = (await stored(store, job.id))["lockUntil"]
    other = sibling(store)
    [second] = await wait_for(lambda: claim_jobs(other, "owner-b", 1, LONG_LEASE, 10), 10)
    assert second.token == 2

    # The claimed document carries the entry already, ended when the lease ran out.
    [lost] = Job.from_document(second.document).history
    assert lost.outcome is AttemptOutcome.LEASE_LOST
    assert (lost.worker, lost.token) == ("owner-a", 1)
    assert lost.started_at == first.document["lastRunAt"]
    assert lost.ended_at == ran_out
    assert lost.duration == ran_out - lost.started_at

    # The old owner's late outcome is refused and records nothing; the new owner's is kept.
    assert not await store.finish(
        _fence(first, "owner-a"), Finish({"status": "completed"}, attempt=DONE)
    )
    assert await store.finish(
        _fence(second, "owner-b"), Finish({"status": "completed"}, attempt=DONE)
    )
    lost_again, done = Job.from_document(await stored(store, job.id)).history
    assert lost_again == lost
    assert (done.outcome, done.worker, done.token) == (AttemptOutcome.COMPLETED, "owner-b", 2)


async def test_a_cancel_records_the_running_attempt_only(store: JobStore) -> None:
    started = asyncio.Event()
    stopped = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    scheduler = make(store, handler, heartbeat_interval=0.05)
    async with running(scheduler):
        job = await scheduler.schedule("history-cancel")
        waiting = await scheduler.schedule("history-cancel-later", delay=3600)
        await asyncio.wait_for(started.wait(), timeout=10)
        assert await scheduler.cancel(job.id)
        assert await scheduler.cancel(waiting.id)
        await asyncio.wait_for(stopped.wait(), timeout=10)

    [record] = await _history(scheduler, job.id)
    assert record.outcome is AttemptOutcome.CANCELLED
    assert (record.token, record.error) == (1, None)
    assert record.worker is not None
    _assert_timed(record)
    assert await _history(scheduler, waiting.id) == ()  # it never ran: nothing to record


async def test_a_release_at_shutdown_records_a_stopped_attempt(store: JobStore) -> None:
    started = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()
        await asyncio.Event().wait()

    scheduler = make(store, handler)
    async with running(scheduler):
        job = await scheduler.schedule("history-stop")
        await asyncio.wait_for(started.wait(), timeout=10)
    doc = await stored(store, job.id)
    assert doc["status"] == "pending"
    [record] = Job.from_document(doc).history
    assert record.outcome is AttemptOutcome.STOPPED
    assert record.token == 1
    _assert_timed(record)


async def test_the_history_keeps_the_last_attempts_only(store: JobStore) -> None:
    job = await Scheduler(store).schedule("history-many")
    runs = HISTORY_LIMIT + 5
    for run in range(1, runs + 1):
        [claimed] = await claim_jobs(store, f"owner-{run}", 1, LONG_LEASE, 10)
        again = {"status": "pending", "nextRunAt": await store.now() - timedelta(seconds=1)}
        ending = Ending.of(AttemptOutcome.RETRIED, f"failure {run}", "Declined", timedelta(0))
        assert await store.finish(_fence(claimed, f"owner-{run}"), Finish(again, attempt=ending))

    history = Job.from_document(await stored(store, job.id)).history
    assert len(history) == HISTORY_LIMIT
    kept = range(runs - HISTORY_LIMIT + 1, runs + 1)
    assert [r.token for r in history] == list(kept)
    assert [r.worker for r in history] == [f"owner-{run}" for run in kept]
    assert [r.error for r in history] == [f"failure {run}" for run in kept]


async def test_grouped_outcomes_record_each_job_from_its_own_document(
    store: JobStore, mongodb_uri: str
) -> None:
    """Identical outcomes of one owner and token go out as one write (one ``update_many`` on
    MongoDB), and each job still gets its own entry (its own start)."""
    commands = Commands()
    writer = store
    client: AsyncMongoClient[dict[str, Any]] | None = None
    if isinstance(store, MongoJobStore):
        client = AsyncMongoClient(mongodb_uri, event_listeners=[commands])
        writer = MongoJobStore(client[store.database.name], store.collection_name)
    try:
        producer = Scheduler(store)
        jobs = [await producer.schedule("history-group", {"i": i}) for i in range(3)]
        claimed = await claim_jobs(store, "owner-a", 3, LONG_LEASE, 10)
        assert {c.token for c in claimed} == {1}
        done = Finish({"status": "completed"}, attempt=DONE)
        applied = await writer.finish_many([(_fence(c, "owner-a"), done) for c in claimed])
        assert applied == [True] * 3
    finally:
        if client is not None:
            await client.close()
    if isinstance(store, MongoJobStore):
        [(_, update)] = [(n, c) for n, c in commands.on(store.collection_name) if n == "update"]
        assert [u.get("multi") for u in update["updates"]] == [True]
    starts = {c.job_id: c.document["lastRunAt"] for c in claimed}
    for job in jobs:
        [record] = Job.from_document(await stored(store, job.id)).history
        assert (record.outcome, record.worker, record.token) == (
            AttemptOutcome.COMPLETED,
            "owner-a",
            1,
        )
        assert record.started_at == starts[job.id]


@pytest.mark.parametrize("text", ["$lockedBy", "$$NOW", "$literal"])
async def test_values_are_stored_as_given_never_read_as_expressions(
    store: JobStore, text: str
) -> None:
    """An outcome's values (a result, an error message, a replaced document) are stored as
    they are: a string that looks like a field path or a variable stays a string, and a
    document replaces the stored one instead of being merged into it."""
    job = await Scheduler(store).schedule("history-literal")
    [claimed] = await claim_jobs(store, "owner-a", 1, LONG_LEASE, 10)
    first = {
        "status": "pending",
        "nextRunAt": await store.now() - timedelta(seconds=1),
        "result": {"a": 1, "b": 2},
        "lastError": text,
    }
    ending = Ending.of(AttemptOutcome.RETRIED, text, text, timedelta(0))
    assert await store.finish(_fence(claimed, "owner-a"), Finish(first, attempt=ending))
    [claimed] = await claim_jobs(store, "owner-a", 1, LONG_LEASE, 10)
    result = {"c": text, text.strip("$"): [text]}
    finish = Finish({"status": "completed", "result": result}, attempt=DONE)
    assert await store.finish(_fence(claimed, "owner-a"), finish)

    doc = await stored(store, job.id)
    assert doc["result"] == result
    assert doc["lastError"] == text
    failed, _ = Job.from_document(doc).history
    assert (failed.error, failed.error_type) == (text, text)


async def test_documents_without_a_history_read_as_empty(store: JobStore) -> None:
    job = await Scheduler(store).schedule("history-none")
    assert job.history == ()
    view = Job.from_document({**job.document, "history": "not a list"})
    assert view.history == ()
    odd: list[Any] = [
        {"outcome": "completed", "durationMs": -5, "lockVersion": True, "lockedBy": 7},
        {"outcome": "exploded"},
        "text",
        {"outcome": ["completed"]},
        {"outcome": "failed", "startedAt": datetime(2024, 5, 1), "retryDelayMs": float("inf")},
    ]
    readable = Job.from_document({**job.document, "history": odd}).history
    assert [r.outcome for r in readable] == [AttemptOutcome.COMPLETED, AttemptOutcome.FAILED]
    assert (readable[0].duration, readable[0].token, readable[0].worker) == (None, None, None)
    assert readable[1].started_at is not None and readable[1].started_at.tzinfo is not None
    assert readable[1].retry_delay is None
