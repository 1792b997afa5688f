"""Contract: wake-ups. An idle worker polls rarely (``poll_interval=30`` here), yet
runs a job as soon as it becomes due:

- on a replica set, a change stream tells it (while it is idle) that a job became pending
  (created by another process, retried, released by another scheduler's stop), at once or, for
  a job due soon, by a timer armed for its due time; the stream resumes after an error;
- an in-process ``schedule`` wakes the local worker at once, on both stores;
- on a standalone server (no change streams) ``watch`` returns at once and polling remains.

Each test first waits until the worker's first claim came back empty (and, on MongoDB, until its
change stream is open on the server), so only a wake-up can explain a quick start.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from mongo_job_scheduler import Job, JobStore, MongoJobStore, Scheduler
from mongo_job_scheduler._mongod import LocalMongod
from tests.conftest import wait_for

IDLE_POLL = 30.0  # far longer than any wait below: only a wake-up can start a job in time
WAKE_WITHIN = 5.0  # generous: 2 cores shared with other test runs


# -- helpers ----------------------------------------------------------------------------------


class IdleClaims:
    """Instruments ``store.claim`` (one store object, one worker) to tell when a claim came
    back empty: the worker then sleeps until woken or until its next poll."""

    def __init__(self, store: JobStore) -> None:
        self.empty = asyncio.Event()
        self.calls = 0
        original = store.claim

        async def claim(*args: Any, **kwargs: Any) -> Any:
            result = await original(*args, **kwargs)
            self.calls += 1
            if not result.jobs:
                self.empty.set()
            return result

        store.claim = claim  # type: ignore[method-assign]

    async def wait_idle(self) -> None:
        await asyncio.wait_for(self.empty.wait(), timeout=10)


class Clients:
    """Separate ``AsyncMongoClient``s on one database (separate processes, as far as the
    scheduler can tell), closed at the end."""

    def __init__(self, uri: str, db_name: str) -> None:
        self.uri = uri
        self.db_name = db_name
        self.opened: list[AsyncMongoClient[dict[str, Any]]] = []

    def client(self, appname: str | None = None) -> AsyncMongoClient[dict[str, Any]]:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            self.uri, appname=appname or f"mjs-test-{uuid.uuid4().hex[:8]}"
        )
        self.opened.append(client)
        return client

    def store(self, appname: str | None = None) -> MongoJobStore:
        return MongoJobStore(self.client(appname)[self.db_name])

    async def change_streams(self, appname: str) -> list[dict[str, Any]]:
        """The server's operations and idle cursors of change streams on the jobs collection
        opened by the client named ``appname``."""
        admin = self.opened[0].admin if self.opened else self.client().admin
        cursor = await admin.aggregate(
            [
                {"$currentOp": {"idleCursors": True, "allUsers": True}},
                {"$match": {"ns": f"{self.db_name}.scheduler_jobs", "appName": appname}},
            ]
        )
        ops: list[dict[str, Any]] = await cursor.to_list()
        return [op for op in ops if "$changeStream" in repr(op)]

    async def wait_stream_open(self, appname: str) -> dict[str, Any]:
        [op, *_] = await wait_for(lambda: self.change_streams(appname), timeout=10)
        return op

    async def close(self) -> None:
        for client in self.opened:
            await client.close()


@pytest.fixture
async def clients(mongodb_uri: str, mongo_db: Any) -> AsyncIterator[Clients]:
    """Clients on the test's fresh database (``mongo_db`` drops it afterwards)."""
    made = Clients(mongodb_uri, mongo_db.name)
    made.client()  # the observer used for $currentOp
    try:
        yield made
    finally:
        await made.close()


def recorder() -> tuple[Callable[[Job], Awaitable[None]], asyncio.Queue[tuple[Job, datetime]]]:
    """A handler that records each job it runs, with the local wall-clock start time."""
    started: asyncio.Queue[tuple[Job, datetime]] = asyncio.Queue()

    async def handler(job: Job) -> None:
        await started.put((job, datetime.now(timezone.utc)))

    return handler, started


async def next_run(started: asyncio.Queue[tuple[Job, datetime]], timeout: float) -> Job:
    job, _ = await asyncio.wait_for(started.get(), timeout=timeout)
    return job


# -- change streams ---------------------------------------------------------------------------


@pytest.mark.mongo_only
async def test_job_created_by_another_client_wakes_an_idle_worker(clients: Clients) -> None:
    app = f"worker-{uuid.uuid4().hex[:8]}"
    store = clients.store(app)
    idle = IdleClaims(store)
    handler, started = recorder()
    worker = Scheduler(store, handler, poll_interval=IDLE_POLL)
    producer = Scheduler(clients.store())
    async with worker:
        await idle.wait_idle()
        await clients.wait_stream_open(app)
        sent = time.monotonic()
        job = await producer.schedule("ping", {"n": 1})
        ran = await next_run(started, WAKE_WITHIN)
        assert ran.id == job.id
        assert time.monotonic() - sent < WAKE_WITHIN
        assert idle.calls >= 2  # a second claim, caused by the wake-up, took the job


@pytest.mark.mongo_only
async def test_job_due_soon_starts_at_its_due_time_not_at_the_next_poll(
    clients: Clients,
) -> None:
    app = f"worker-{uuid.uuid4().hex[:8]}"
    store = clients.store(app)
    idle = IdleClaims(store)
    handler, started = recorder()
    worker = Scheduler(store, handler, poll_interval=IDLE_POLL)
    producer_store = clients.store()
    producer = Scheduler(producer_store)
    async with worker:
        await idle.wait_idle()
        await clients.wait_stream_open(app)
        due = await producer_store.now() + timedelta(seconds=1.5)
        job = await producer.schedule("soon", run_at=due)
        assert job.next_run_at == due.replace(microsecond=due.microsecond // 1000 * 1000)
        ran = await next_run(started, 1.5 + WAKE_WITHIN)
        assert ran.id == job.id
    doc = await producer_store.get(job.id)
    assert doc is not None
    # lastRunAt is the server's $$NOW at the claim: never before the due time, and within
    # about a second after it (a timer armed from the change event, not the 30 s poll).
    assert job.next_run_at is not None
    assert job.next_run_at <= doc["lastRunAt"] <= job.next_run_at + timedelta(seconds=1.5)


@pytest.mark.mongo_only
async def test_job_released_by_another_schedulers_stop_wakes_an_idle_one(
    clients: Clients,
) -> None:
    holding = asyncio.Event()

    async def hold(job: Job) -> None:
        holding.set()
        await asyncio.Event().wait()  # runs until the graceful stop gives up and cancels it

    first = Scheduler(clients.store(), hold, poll_interval=0.02)
    app = f"worker-{uuid.uuid4().hex[:8]}"
    store = clients.store(app)
    idle = IdleClaims(store)
    handler, started = recorder()
    second = Scheduler(store, handler, poll_interval=IDLE_POLL)
    await first.start()
    try:
        job = await first.schedule("held")
        await asyncio.wait_for(holding.wait(), timeout=10)
        async with second:
            await idle.wait_idle()  # the job is running elsewhere: nothing to claim
            await clients.wait_stream_open(app)
            await first.stop(graceful=True, timeout=0.1)  # gives the running job back
            ran = await next_run(started, WAKE_WITHIN)
            assert ran.id == job.id
            assert ran.token == 2
    finally:
        await first.stop(graceful=False)


@pytest.mark.mongo_only
async def test_change_stream_resumes_from_its_token_after_an_error(clients: Clients) -> None:
    """The server interrupts the worker's change stream (``killOp``); a job created while the
    worker reopens it still runs at once (the stream resumes from its token, and the worker
    claims once when the stream is open again), and so does one created afterwards."""
    app = f"worker-{uuid.uuid4().hex[:8]}"
    store = clients.store(app)
    idle = IdleClaims(store)
    handler, started = recorder()
    worker = Scheduler(store, handler, poll_interval=IDLE_POLL)
    producer = Scheduler(clients.store())
    errors: list[BaseException] = []
    worker.on("worker:error", errors.append)
    async with worker:
        await idle.wait_idle()
        op = await clients.wait_stream_open(app)
        if "opid" in op:  # a getMore waiting for events: interrupt it
            await clients.opened[0].admin.command("killOp", op=op["opid"])
        else:  # between two getMores: kill the cursor
            cursor_id = op["cursor"]["cursorId"]
            await clients.opened[0][clients.db_name].command(
                "killCursors", "scheduler_jobs", cursors=[cursor_id]
            )
        job = await producer.schedule("after-error")
        ran = await next_run(started, WAKE_WITHIN)
        assert ran.id == job.id
        # And the stream is open again for the next one.
        await clients.wait_stream_open(app)
        second = await producer.schedule("after-error")
        assert (await next_run(started, WAKE_WITHIN)).id == second.id
    assert errors == []


# -- in-process wake-ups (both stores) ----------------------------------------------------------


async def test_in_process_schedule_wakes_the_local_worker_at_once(store: JobStore) -> None:
    idle = IdleClaims(store)
    handler, started = recorder()
    scheduler = Scheduler(store, handler, poll_interval=IDLE_POLL)
    async with scheduler:
        await idle.wait_idle()
        idle.empty.clear()  # the next empty claim comes after the first job ran
        job = await scheduler.schedule("local")
        assert (await next_run(started, WAKE_WITHIN)).id == job.id
        # Again, now that the worker went back to sleep after running the first one; and
        # through schedule_bulk.
        await idle.wait_idle()
        [bulk] = await scheduler.schedule_bulk([{"name": "local-bulk"}])
        assert (await next_run(started, WAKE_WITHIN)).id == bulk.id


async def test_own_retry_and_next_occurrence_start_on_time(store: JobStore) -> None:
    """A worker arms its own timer for the retries and next occurrences it writes, so they start
    at their due time without a change stream (the in-memory store) and despite the 30 s poll."""
    starts: dict[str, list[datetime]] = {"flaky": [], "tick": []}

    async def handler(job: Job) -> None:
        starts[job.name].append(datetime.now(timezone.utc))
        if job.name == "flaky" and job.attempts == 0:
            raise RuntimeError("first attempt fails")

    scheduler = Scheduler(store, handler, workers=2, poll_interval=IDLE_POLL)
    async with scheduler:
        now = await store.now()
        flaky = await scheduler.schedule("flaky", retry={"maxAttempts": 2, "delay": 1})
        tick = await scheduler.schedule("tick", repeat={"every": timedelta(seconds=1)}, run_at=now)
        await wait_for(lambda: len(starts["flaky"]) >= 2 and len(starts["tick"]) >= 2, 11)
        await scheduler.cancel(tick.id)
    first, second = starts["flaky"][:2]
    assert timedelta(seconds=0.95) <= second - first <= timedelta(seconds=1 + WAKE_WITHIN / 2)
    first, second = starts["tick"][:2]
    assert timedelta(seconds=0.5) <= second - first <= timedelta(seconds=1 + WAKE_WITHIN / 2)
    doc = await store.get(flaky.id)
    assert doc is not None and doc["status"] == "completed" and doc["attempts"] == 1


# -- standalone server: polling fallback --------------------------------------------------------


@pytest.mark.mongo_only
async def test_standalone_server_has_no_stream_and_workers_poll() -> None:
    server = LocalMongod(replica_set=None)
    await asyncio.to_thread(server.start)
    opened: list[AsyncMongoClient[dict[str, Any]]] = []
    try:
        for _ in range(2):
            opened.append(AsyncMongoClient(server.uri))
        worker_client, producer_client = opened
        store = MongoJobStore(worker_client["mjs_standalone"])
        await store.setup()
        notified: list[float] = []
        # No change streams on a standalone server: watch returns (it does not hang or raise).
        await asyncio.wait_for(store.watch(notified.append), timeout=10)
        assert notified == []

        handler, started = recorder()
        errors: list[BaseException] = []
        worker = Scheduler(store, handler, poll_interval=0.2)
        worker.on("worker:error", errors.append)
        producer = Scheduler(MongoJobStore(producer_client["mjs_standalone"]))
        async with worker:
            jobs = [await producer.schedule("polled", {"n": n}) for n in range(3)]
            ran = {(await next_run(started, WAKE_WITHIN)).id for _ in jobs}
            assert ran == {job.id for job in jobs}
        assert errors == []
    finally:
        for client in opened:
            await client.close()
        await asyncio.to_thread(server.stop)


@pytest.mark.mongo_only
async def test_standalone_worker_looks_ahead_and_starts_a_job_due_between_polls_on_time() -> None:
    # Without change streams, each empty poll also asks when the next job becomes due before
    # the following poll, and arms a timer. The job is created by another client right after
    # an empty claim, due 2.5 s later; polls come every 2 s. Without the look-ahead it would
    # start at the first poll after its due time (up to 2 s late, 1.5 s here on average);
    # with it, the poll at ~2 s sees it and a timer starts it at its due time.
    server = LocalMongod(replica_set=None)
    await asyncio.to_thread(server.start)
    opened = [AsyncMongoClient(server.uri), AsyncMongoClient(server.uri)]
    try:
        worker_client, producer_client = opened
        store = MongoJobStore(worker_client["mjs_lookahead"])
        idle = IdleClaims(store)
        handler, started = recorder()
        errors: list[BaseException] = []
        worker = Scheduler(store, handler, poll_interval=2.0)
        worker.on("worker:error", errors.append)
        producer = Scheduler(MongoJobStore(producer_client["mjs_lookahead"]))
        async with worker:
            await idle.wait_idle()
            due = datetime.now(timezone.utc) + timedelta(seconds=2.5)
            job = await producer.schedule("later", run_at=due)
            assert job.next_run_at is not None
            ran, at = await asyncio.wait_for(started.get(), timeout=10)
            assert ran.id == job.id
            late = (at - job.next_run_at).total_seconds()
            assert -0.05 <= late < 0.4, f"started {late:.3f} s after its due time"
        assert errors == []
    finally:
        for client in opened:
            await client.close()
        await asyncio.to_thread(server.stop)


async def test_next_due_reports_the_earliest_upcoming_job_within_the_horizon(
    store: JobStore,
) -> None:
    scheduler = Scheduler(store)
    now = datetime.now(timezone.utc)
    assert await store.next_due(None, timedelta(seconds=10)) is None
    await scheduler.schedule("due-now")  # already due: a claim's business, not a look-ahead's
    await scheduler.schedule("later", run_at=now + timedelta(seconds=6))
    await scheduler.schedule("soon", run_at=now + timedelta(seconds=3))
    await scheduler.schedule("far", run_at=now + timedelta(hours=1))
    soon = await store.next_due(None, timedelta(seconds=10))
    assert soon is not None and 1.5 < soon <= 3.0
    later = await store.next_due(["later", "far"], timedelta(seconds=10))
    assert later is not None and 4.5 < later <= 6.0
    assert await store.next_due(["far"], timedelta(seconds=10)) is None
    await scheduler.pause("soon")
    await scheduler.pause("later")
    assert await store.next_due(None, timedelta(seconds=10)) is None
    assert await store.next_due(None, timedelta(hours=2)) is not None  # "far"
