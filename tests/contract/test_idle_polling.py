"""Contract: how often an idle worker claims. While the store's change notifications are
healthy and its last claim held nothing back, an idle worker claims only at the safety poll:
notifications, in-process wake-ups and the timers of its look-ahead start everything else. It
polls every ``poll_interval`` while notifications are unhealthy, after a claim that held jobs
back (a paused name, a concurrency or rate limit), and on stores without notifications.

These tests drive the worker through ``NotifyingStore``, the in-memory store with notifications
whose health the test sets; the same behaviour on MongoDB (command counts, one stream per
process, a future job stored long ago) is in the tests marked ``mongo_only`` below.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from mongo_job_scheduler import InMemoryJobStore, Job, JobStore, MongoJobStore, Scheduler
from mongo_job_scheduler.stores._mongo_watch import WATCH_AWAIT
from mongo_job_scheduler.stores.base import Fence
from mongo_job_scheduler.worker._wakeups import SAFETY_POLL
from tests.conftest import wait_for

POLL = 0.05  # short: a polling worker claims about 20 times a second


class NotifyingStore(InMemoryJobStore):
    """The in-memory store with notifications that say nothing but their health (set by the
    test), and a count of claims."""

    def __init__(self, healthy: bool = True) -> None:
        super().__init__()
        self.claims: list[float] = []
        self.healthy = healthy
        self.watching = asyncio.Event()
        self._health: Callable[[bool], None] | None = None

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        self.claims.append(time.monotonic())
        return await super().claim(*args, **kwargs)

    async def watch(
        self,
        notify: Callable[[float], None],
        ready: Callable[[], None] | None = None,
        health: Callable[[bool], None] | None = None,
    ) -> bool:
        self._health = health
        if ready is not None:
            ready()
        if health is not None:
            health(self.healthy)
        self.watching.set()
        await asyncio.Event().wait()
        return True

    def set_health(self, healthy: bool) -> None:
        self.healthy = healthy
        assert self._health is not None
        self._health(healthy)

    def claims_within(self, seconds: float) -> int:
        since = time.monotonic() - seconds
        return sum(1 for at in self.claims if at >= since)


async def settle(store: NotifyingStore) -> None:
    """Wait until the worker watches and the claims of its start are over."""
    await asyncio.wait_for(store.watching.wait(), timeout=10)
    await asyncio.sleep(0.3)


async def noop(job: Job) -> None:
    return None


async def test_with_healthy_notifications_an_idle_worker_claims_only_at_the_safety_poll() -> None:
    assert SAFETY_POLL >= 10  # far longer than this test
    store = NotifyingStore()
    async with Scheduler(store, noop, poll_interval=POLL):
        await settle(store)
        await asyncio.sleep(1.0)
        assert store.claims_within(1.0) == 0  # a polling worker would have claimed ~20 times


async def test_unhealthy_notifications_wake_the_worker_and_it_polls_until_they_recover() -> None:
    store = NotifyingStore()
    async with Scheduler(store, noop, poll_interval=POLL):
        await settle(store)
        store.set_health(False)
        await wait_for(lambda: store.claims_within(0.2) >= 1, timeout=1)  # woken at once
        await asyncio.sleep(1.0)
        assert store.claims_within(1.0) >= 8  # polling every 50 ms
        store.set_health(True)
        await asyncio.sleep(2 * POLL)  # the short sleep in progress ends
        await asyncio.sleep(0.5)
        assert store.claims_within(0.5) == 0


async def test_without_notifications_an_idle_worker_polls() -> None:
    store = NotifyingStore(healthy=False)
    async with Scheduler(store, noop, poll_interval=POLL):
        await settle(store)
        await asyncio.sleep(1.0)
        assert store.claims_within(1.0) >= 8


async def test_a_paused_name_keeps_the_worker_polling_so_a_resume_elsewhere_is_seen() -> None:
    """A resume in another process notifies nobody: while a name is paused, the claims hold
    jobs back and the worker polls."""
    store = NotifyingStore()
    ran = asyncio.Event()

    async def handler(job: Job) -> None:
        ran.set()

    other = Scheduler(store)  # "another process": its resume does not wake the worker
    await other.pause("held")
    await other.schedule("held")
    async with Scheduler(store, handler, poll_interval=POLL):
        await settle(store)
        await asyncio.sleep(0.5)
        assert store.claims_within(0.5) >= 4
        assert await store.resume("held")  # straight to the store: no in-process wake-up
        await asyncio.wait_for(ran.wait(), timeout=1)


async def test_a_concurrency_limit_that_held_a_job_back_keeps_the_worker_polling() -> None:
    """A slot freed in another process notifies nobody: the worker polls while its claims
    find a due job whose name has no free slot."""
    store = NotifyingStore()
    holder = Scheduler(store)
    await holder.schedule("limited", concurrency=1)
    waiting = await holder.schedule("limited", concurrency=1)
    [first] = (await store.claim("elsewhere", 1, timedelta(seconds=60), 3)).jobs
    async with Scheduler(store, noop, poll_interval=POLL):
        await settle(store)
        await asyncio.sleep(0.5)
        assert store.claims_within(0.5) >= 4
        await store.free_slot(Fence(first.job_id, "elsewhere", first.token, first.slot_name))
        await wait_for(lambda: _status(store, waiting.id, "completed"), timeout=1)


async def _status(store: JobStore, job_id: Any, status: str) -> bool:
    doc = await store.get(job_id)
    return doc is not None and doc["status"] == status


async def test_a_job_stored_long_before_its_due_time_starts_on_time_between_safety_polls() -> None:
    """No notification announces a job written before the worker started watching: the
    look-ahead after its first (empty) claim arms a timer for it."""
    store = NotifyingStore()
    started: list[datetime] = []

    async def handler(job: Job) -> None:
        started.append(datetime.now(timezone.utc))

    due = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    job = await Scheduler(store).schedule("later", run_at=due)
    assert job.next_run_at is not None
    async with Scheduler(store, handler, poll_interval=POLL):
        await wait_for(lambda: started, timeout=5)
    late = (started[0] - job.next_run_at).total_seconds()
    assert -0.01 <= late < 0.5, f"started {late:.3f} s after its due time"


async def test_an_expiring_lease_is_taken_over_when_it_runs_out_not_at_the_safety_poll() -> None:
    """A job whose owner died is claimable when its lease runs out; the look-ahead arms a
    timer for that instant."""
    store = NotifyingStore()
    scheduler = Scheduler(store)
    job = await scheduler.schedule("orphan")
    [claimed] = (await store.claim("dead-owner", 1, timedelta(seconds=1.5), 3)).jobs
    lease_end = claimed.document["lockUntil"]
    runs: list[datetime] = []

    async def handler(job: Job) -> None:
        runs.append(datetime.now(timezone.utc))

    async with Scheduler(store, handler, poll_interval=POLL):
        await wait_for(lambda: runs, timeout=5)
    late = (runs[0] - lease_end).total_seconds()
    assert 0 <= late < 0.5, f"taken over {late:.3f} s after the lease ran out"
    doc = await store.get(job.id)
    assert doc is not None and doc["lockVersion"] == 2  # claimed by the dead owner, then taken over


# -- MongoDB ------------------------------------------------------------------------------------


class Commands(monitoring.CommandListener):
    """The commands a client sent, with the collection they name and when."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        if event.command_name == "find" and "dependants" in event.command.get("filter", {}):
            # The registration's sweep for unsettled dependants (every 10 s), not a claim.
            self.sent.append((time.monotonic(), "sweep", target))
            return
        self.sent.append((time.monotonic(), event.command_name, target))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def since(self, moment: float, name: str, target: Any = None) -> int:
        return sum(
            1
            for at, command, collection in self.sent
            if at >= moment and command == name and (target is None or collection == target)
        )


async def change_streams(client: AsyncMongoClient[Any], db_name: str, app: str) -> int:
    cursor = await client.admin.aggregate(
        [
            {"$currentOp": {"idleCursors": True, "allUsers": True}},
            {"$match": {"ns": f"{db_name}.scheduler_jobs", "appName": app}},
        ]
    )
    return sum(1 for op in await cursor.to_list() if "$changeStream" in repr(op))


@pytest.mark.mongo_only
async def test_idle_worker_on_a_healthy_stream_sends_no_claim_queries(
    store: JobStore, mongodb_uri: str
) -> None:
    """Default poll interval (0.5 s): once its stream is open, an idle worker sends no query
    on the jobs collection for seconds, and one getMore per WATCH_AWAIT."""
    assert isinstance(store, MongoJobStore)
    commands = Commands()
    app = f"idle-{uuid.uuid4().hex[:8]}"
    client: AsyncMongoClient[Any] = AsyncMongoClient(
        mongodb_uri, appname=app, event_listeners=[commands]
    )
    db_name = store.database.name
    try:
        worker = Scheduler(MongoJobStore(client[db_name]), noop)
        assert worker.poll_interval == 0.5
        async with worker:
            await wait_for(lambda: change_streams(store.database.client, db_name, app), 10)
            # The claim and look-ahead that follow the opening: wait until the jobs
            # collection has had no query for a second (a polling worker never gets there).
            opened = time.monotonic()
            await wait_for(
                lambda: (
                    time.monotonic() - opened >= 1.0
                    and commands.since(time.monotonic() - 1.0, "find", "scheduler_jobs") == 0
                ),
                20,
            )
            since = time.monotonic()
            await asyncio.sleep(4.0)
            assert commands.since(since, "find", "scheduler_jobs") == 0  # polling: ~16 claims
            assert commands.since(since, "sweep", "scheduler_jobs") <= 1  # a registration tick
            assert commands.since(since, "update", "scheduler_jobs") == 0
            assert commands.since(since, "getMore") <= 4.0 / WATCH_AWAIT + 1
    finally:
        await client.close()


@pytest.mark.mongo_only
async def test_schedulers_on_one_client_share_one_change_stream(
    store: JobStore, mongodb_uri: str
) -> None:
    """Three schedulers on one client and collection: one change stream on the server; a job
    written by another client wakes them all, and runs once."""
    assert isinstance(store, MongoJobStore)
    app = f"shared-{uuid.uuid4().hex[:8]}"
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongodb_uri, appname=app)
    db_name = store.database.name
    runs: list[Any] = []

    async def handler(job: Job) -> None:
        runs.append(job.id)

    schedulers = [Scheduler(MongoJobStore(client[db_name]), handler) for _ in range(3)]
    try:
        for scheduler in schedulers:
            await scheduler.start()
        await wait_for(lambda: change_streams(store.database.client, db_name, app), 10)
        await asyncio.sleep(1.0)
        assert await change_streams(store.database.client, db_name, app) == 1
        job = await Scheduler(store).schedule("shared")
        await wait_for(lambda: runs, timeout=5)
        await asyncio.sleep(0.3)
        assert runs == [job.id]
        # The stream stays open while any of them watches, and closes with the last one.
        await schedulers[0].stop()
        await schedulers[1].stop()
        assert await change_streams(store.database.client, db_name, app) == 1
        await schedulers[2].stop()
        # A getMore in flight when the stream closes may stay on the server until its
        # maxAwaitTimeMS runs out.
        await wait_for(
            lambda: _none(change_streams(store.database.client, db_name, app)),
            timeout=WATCH_AWAIT + 10,
        )
    finally:
        for scheduler in schedulers:
            await scheduler.stop()
        await client.close()


async def _none(count: Any) -> bool:
    return await count == 0


@pytest.mark.mongo_only
async def test_a_job_stored_long_before_its_due_time_starts_on_time_on_mongodb(
    store: JobStore, mongodb_uri: str
) -> None:
    """A job written before the worker's stream opened, due 2 s after the worker started:
    the look-ahead finds it (no event will), and a timer starts it at its due time, not at
    the next safety poll."""
    assert isinstance(store, MongoJobStore)
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongodb_uri)
    started: list[datetime] = []

    async def handler(job: Job) -> None:
        started.append(datetime.now(timezone.utc))

    try:
        due = await store.now() + timedelta(seconds=2)
        job = await Scheduler(store).schedule("later", run_at=due)
        assert job.next_run_at is not None
        async with Scheduler(MongoJobStore(client[store.database.name]), handler):
            await wait_for(lambda: started, timeout=10)
        doc = await store.get(job.id)
        assert doc is not None
        # lastRunAt is the server's $$NOW at the claim.
        assert job.next_run_at <= doc["lastRunAt"] <= job.next_run_at + timedelta(seconds=1)
    finally:
        await client.close()
