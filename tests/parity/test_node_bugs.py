"""Node parity: one regression test per known bug B1-B27 of the Node library,
showing this project's right behaviour (over both stores where it applies).

``docs/node-parity.md`` says, per bug, what the Node library did and what this project does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.errors import AutoReconnect

import mongo_job_scheduler
from mongo_job_scheduler import (
    ConfigurationError,
    InMemoryJobStore,
    InvalidJobState,
    Job,
    JobNotFound,
    JobStatus,
    JobStore,
    LeaseLost,
    MongoJobStore,
    PoisonJob,
    Repeat,
    Retry,
    Scheduler,
    StopReason,
    ValidationError,
)
from mongo_job_scheduler._documents import NewJob, build_new_job
from tests.conftest import wait_for
from tests.parity import FAST, Recorder, claim_all, insert, running, utcnow

# -- helpers ----------------------------------------------------------------------------------


async def _doc(store: JobStore, job_id: Any) -> dict[str, Any]:
    doc = await store.get(job_id)
    assert doc is not None
    return doc


def _has_status(store: JobStore, job_id: Any, *statuses: str) -> Any:
    async def check() -> bool:
        doc = await store.get(job_id)
        return doc is not None and doc["status"] in statuses

    return check


async def _insert_raw(store: JobStore, name: str, **fields: Any) -> dict[str, Any]:
    """Store a document as another writer (e.g. a Node worker) could have written it."""
    new = build_new_job(name, now=await store.now())
    new.document.update(fields)
    [(doc, _)] = await store.insert([NewJob(new.document)])
    return doc


def _sibling(store: JobStore) -> JobStore:
    """Another store object on the same jobs (another process's view, for MongoDB)."""
    if isinstance(store, MongoJobStore):
        return MongoJobStore(store.database, store.collection_name)
    return store


# -- B1 ---------------------------------------------------------------------------------------


async def test_b01_invalid_cron_or_zone_rejected_at_schedule(store: JobStore) -> None:
    scheduler = Scheduler(store)
    for repeat, field in (
        ({"cron": "not a cron"}, "repeat.cron"),
        ({"cron": "61 * * * *"}, "repeat.cron"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "repeat.timezone"),
        ({"cron": "0 9 * * *", "timezone": "+05:30"}, "repeat.timezone"),
    ):
        with pytest.raises(ValidationError) as info:
            await scheduler.schedule("bad", repeat=repeat)
        assert info.value.field == field
    assert await scheduler.get_jobs() == []


async def test_b01_stored_invalid_cron_fails_once_without_hot_loop(store: JobStore) -> None:
    # A document written by another writer with a bad schedule: failed once, never looped.
    rec = Recorder()
    fails: list[Job] = []
    bad_cron = await _insert_raw(store, "bad-cron", repeat={"cron": "not a cron"})
    bad_zone = await _insert_raw(
        store, "bad-zone", repeat={"cron": "0 * * * *", "timezone": "Mars/Olympus"}
    )
    async with running(store, rec.record) as scheduler:
        scheduler.on("job:fail", lambda job, exc: fails.append(job))
        for doc in (bad_cron, bad_zone):
            await wait_for(_has_status(store, doc["_id"], "failed"))
    assert rec.count == 0
    assert sorted(j.name for j in fails) == ["bad-cron", "bad-zone"]
    assert "repeat" in (await _doc(store, bad_cron["_id"]))["lastError"]


# -- B2 ---------------------------------------------------------------------------------------


async def test_b02_lease_renewal_uses_the_scheduler_lock_timeout(store: JobStore) -> None:
    done = asyncio.Event()

    async def handler(job: Job) -> None:
        await asyncio.wait_for(done.wait(), 20)

    async with running(store, handler, lock_timeout=2, heartbeat_interval=0.05) as scheduler:
        job = await scheduler.schedule("long")
        first = await wait_for(lambda: _locked_until(store, job.id))

        async def renewed() -> Any:
            until = await _locked_until(store, job.id)
            return until if until is not None and until > first else None

        until = await wait_for(renewed)
        ahead = (until - await store.now()).total_seconds()
        done.set()
    assert 1.5 < ahead <= 2.1  # renewed for the scheduler's 2 s lease, not a fixed 30 s
    defaults = Scheduler()
    assert defaults.lock_timeout == 600
    assert defaults.heartbeat_interval <= 5  # renewed long before the lease runs out


async def _locked_until(store: JobStore, job_id: Any) -> datetime | None:
    doc = await store.get(job_id)
    return None if doc is None else doc.get("lockUntil")


# -- B3 ---------------------------------------------------------------------------------------


async def test_b03_lost_ownership_is_not_a_failure_and_new_owner_is_untouched(
    store: JobStore,
) -> None:
    release = asyncio.Event()
    stalled = asyncio.Event()
    events: list[str] = []
    errors: list[BaseException] = []

    async def handler(job: Job) -> None:
        await asyncio.wait_for(release.wait(), 20)

    async with running(store, handler, lock_timeout=0.3, max_execution=0.1) as scheduler:
        scheduler.on("job:stalled", lambda job: stalled.set())
        scheduler.on("job:fail", lambda job, exc: events.append("fail"))
        scheduler.on("job:retry", lambda job: events.append("retry"))
        scheduler.on("worker:error", errors.append)
        job = await scheduler.schedule("victim", retry={"maxAttempts": 3, "delay": 0})
        await asyncio.wait_for(stalled.wait(), 10)

        async def steal() -> Any:
            return await claim_all(store, "thief")

        [stolen] = await wait_for(steal, timeout=10)
        release.set()
        await wait_for(lambda: any(isinstance(e, LeaseLost) for e in errors))
        doc = await _doc(store, job.id)
    assert events == []
    assert doc["status"] == "running" and doc["lockedBy"] == "thief"
    assert doc["lockVersion"] == stolen.token
    assert doc["attempts"] == 0 and "lastError" not in doc


async def test_b03_stalled_run_is_stopped_when_its_own_worker_retakes_the_job(
    store: JobStore,
) -> None:
    # The same worker (a free slot, same owner id) takes its own stalled job over once the
    # un-renewed lease expired: the first run must learn it lost the lease, exactly as when
    # another worker takes the job, and the scheduler's stop must reach every run.
    rec = Recorder()
    stopped: list[int] = []

    async def handler(job: Job) -> None:
        rec.record(job)
        run = rec.count
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.append(run)
            raise

    async with running(store, handler, workers=2, lock_timeout=0.3, max_execution=0.1) as s:
        await s.schedule("stalls")
        await wait_for(lambda: rec.count >= 2, timeout=10)
        await wait_for(lambda: 1 in stopped, timeout=10)
        assert rec.calls[0].stop_reason is StopReason.LEASE_LOST
        assert rec.calls[1].token > rec.calls[0].token
    assert sorted(stopped) == list(range(1, rec.count + 1))  # no run outlives stop()


# -- B4 ---------------------------------------------------------------------------------------


async def _cancel_mid_run(store: JobStore, **schedule: Any) -> tuple[Job, list[Job], Recorder]:
    """Run a job whose handler blocks, cancel it mid-run, and wait until the worker is done."""
    rec = Recorder()
    started = asyncio.Event()
    cancel_events: list[Job] = []

    async def handler(job: Job) -> None:
        rec.record(job)
        if job.name == "probe":
            return
        started.set()
        await asyncio.sleep(30)

    async with running(store, handler, workers=1) as scheduler:
        scheduler.on("job:cancel", cancel_events.append)
        job = await scheduler.schedule("victim", **schedule)
        await asyncio.wait_for(started.wait(), 10)
        assert await scheduler.cancel(job.id) is True
        # One worker: the probe runs only once the cancelled execution has ended.
        probe = await scheduler.schedule("probe")
        await wait_for(_has_status(store, probe.id, "completed"))
    return job, cancel_events, rec


async def test_b04_cancelled_interval_job_stays_cancelled(store: JobStore) -> None:
    job, cancels, rec = await _cancel_mid_run(store, repeat={"everyMs": 100}, run_at=utcnow())
    doc = await _doc(store, job.id)
    assert doc["status"] == "cancelled" and "lockedBy" not in doc
    assert [c.name for c in rec.calls] == ["victim", "probe"]
    assert [c.status for c in cancels] == [JobStatus.CANCELLED]


async def test_b04_cancelled_one_shot_with_retries_is_not_run_again(store: JobStore) -> None:
    job, _, rec = await _cancel_mid_run(store, retry={"maxAttempts": 3, "delay": 0})
    doc = await _doc(store, job.id)
    assert doc["status"] == "cancelled"
    assert doc["attempts"] == 0 and "lastError" not in doc
    assert [c.name for c in rec.calls] == ["victim", "probe"]


async def test_b04_sync_handler_sees_cancellation(store: JobStore) -> None:
    started = asyncio.Event()
    seen: list[StopReason | None] = []
    loop = asyncio.get_running_loop()

    def handler(job: Job) -> None:
        loop.call_soon_threadsafe(started.set)
        job.stop_event.wait(20)
        seen.append(job.stop_reason)

    async with running(store, handler) as scheduler:
        job = await scheduler.schedule("sync-victim")
        await asyncio.wait_for(started.wait(), 10)
        await scheduler.cancel(job.id)
        await wait_for(lambda: seen)
    assert seen == [StopReason.CANCELLED]
    assert (await _doc(store, job.id))["status"] == "cancelled"


async def test_b04_cancel_of_finished_job_is_a_no_op(store: JobStore) -> None:
    async with running(store, lambda job: None) as scheduler:
        job = await scheduler.schedule("done")
        await wait_for(_has_status(store, job.id, "completed"))
        assert await scheduler.cancel(job.id) is False
        with pytest.raises(JobNotFound):
            await scheduler.cancel(ObjectId())
    assert (await _doc(store, job.id))["status"] == "completed"


async def test_b04_update_cannot_revive_a_cancelled_job(store: JobStore) -> None:
    # Node's updateJob({nextRunAt}) revives cancelled jobs; here a cancel sticks.
    scheduler = Scheduler(store)
    job = await scheduler.schedule("a")
    await scheduler.cancel(job.id)
    with pytest.raises(InvalidJobState):
        await scheduler.update_job(job.id, run_at=utcnow())
    assert (await _doc(store, job.id))["status"] == "cancelled"


# -- B5 ---------------------------------------------------------------------------------------


async def test_b05_cron_job_stays_locked_while_running_and_never_overlaps(
    store: JobStore,
) -> None:
    rec = Recorder()
    during: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    spans: list[tuple[float, float]] = []

    async def handler(job: Job) -> None:
        rec.enter(job)
        start = time.monotonic()
        try:
            if rec.count == 1:
                during.append(await _doc(store, job.id))
                # Outlast the next one-second slot: it must wait, not overlap.
                slot = Repeat(cron="* * * * * *").next_after(job.last_scheduled_at or utcnow())

                async def slot_passed() -> bool:
                    return await store.now() > slot + timedelta(milliseconds=300)

                await wait_for(slot_passed)
        finally:
            spans.append((start, time.monotonic()))
            rec.leave()

    async with running(store, handler, workers=2, lock_timeout=0.3) as scheduler:
        scheduler.on("worker:error", errors.append)
        await scheduler.schedule("cron", repeat={"cron": "* * * * * *"}, run_at=utcnow())
        await wait_for(lambda: len(spans) >= 2, timeout=10)
    assert during[0]["status"] == "running" and during[0]["lockedBy"]
    assert rec.max_active == 1
    assert spans[1][0] >= spans[0][1]
    assert errors == []


# -- B6 ---------------------------------------------------------------------------------------


async def test_b06_crashed_limited_job_does_not_deadlock_its_name(store: JobStore) -> None:
    rec = Recorder()
    scheduler = Scheduler(store, rec.record, poll_interval=FAST)
    crashed = await scheduler.schedule("limited", {"n": 1}, concurrency=1)
    [dead] = await claim_all(store, "dead-worker", lease=0.1)
    assert dead.document["_id"] == crashed.id
    waiting = await scheduler.schedule("limited", {"n": 2}, concurrency=1)
    async with scheduler:
        for job in (crashed, waiting):
            await wait_for(_has_status(store, job.id, "completed"))
    assert sorted(c.data["n"] for c in rec.calls) == [1, 2]


# -- B7 ---------------------------------------------------------------------------------------


async def test_b07_limited_high_priority_beats_unlimited_low_priority(store: JobStore) -> None:
    await insert(store, "bulk", priority=10)
    urgent = await insert(store, "urgent", priority=1, concurrency=1)
    [first] = await claim_all(store, "w1", limit=1)
    assert first.document["_id"] == urgent["_id"]


# -- B8 ---------------------------------------------------------------------------------------


async def test_b08_many_saturated_names_do_not_starve_another_name(store: JobStore) -> None:
    now = await store.now()
    holders = [build_new_job(f"name-{i}", now=now, priority=1, concurrency=1) for i in range(25)]
    await store.insert(holders)
    assert len(await claim_all(store, "other", limit=100)) == 25  # every name at its limit
    waiting = [build_new_job(f"name-{i}", now=now, priority=1, concurrency=1) for i in range(25)]
    await store.insert(waiting)
    lonely = await insert(store, "lonely", priority=5, concurrency=1)
    claimed = await claim_all(store, "w1", limit=1)
    assert [c.document["_id"] for c in claimed] == [lonely["_id"]]


# -- B9 ---------------------------------------------------------------------------------------


async def test_b09_retried_cron_does_not_skip_next_slot(store: JobStore) -> None:
    rec = Recorder()
    completes: list[Job] = []
    retries: list[Job] = []

    async def handler(job: Job) -> None:
        rec.record(job)
        if rec.count == 1:
            raise RuntimeError("first try fails")

    async with running(store, handler) as scheduler:
        scheduler.on("job:complete", completes.append)
        scheduler.on("job:retry", retries.append)
        job = await scheduler.schedule(
            "hourly",
            repeat={"cron": "0 * * * *", "timezone": "UTC"},
            retry={"maxAttempts": 3, "delayMs": 100},
            run_at=utcnow(),
        )
        await wait_for(lambda: completes)
    assert job.next_run_at is not None
    next_slot = Repeat(cron="0 * * * *").next_after(job.next_run_at)
    assert retries[0].next_run_at is not None and retries[0].next_run_at < next_slot
    assert completes[0].next_run_at == next_slot  # not the slot after it
    assert completes[0].last_scheduled_at == next_slot


async def test_b09_retry_delay_never_pushes_past_the_next_slot(store: JobStore) -> None:
    retries: list[Job] = []

    async def handler(job: Job) -> None:
        raise RuntimeError("down")

    async with running(store, handler) as scheduler:
        scheduler.on("job:retry", retries.append)
        job = await scheduler.schedule(
            "hourly",
            repeat={"cron": "0 * * * *"},
            retry={"maxAttempts": 3, "delayMs": 2 * 3_600_000},
            run_at=utcnow(),
        )
        await wait_for(lambda: retries)
    assert job.next_run_at is not None
    assert retries[0].next_run_at == Repeat(cron="0 * * * *").next_after(job.next_run_at)


# -- B10 --------------------------------------------------------------------------------------


async def test_b10_worker_survives_store_errors_and_resumes(store: JobStore) -> None:
    failures = {"left": 3}
    real_claim = store.claim

    async def flaky_claim(*args: Any, **kwargs: Any) -> Any:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise AutoReconnect("connection reset (injected)")
        return await real_claim(*args, **kwargs)

    store.claim = flaky_claim  # type: ignore[method-assign]
    rec = Recorder()
    errors: list[BaseException] = []
    scheduler = Scheduler(store, rec.record, poll_interval=FAST)
    scheduler.on("worker:error", errors.append)
    job = await scheduler.schedule("after-outage")
    await scheduler.start()
    await wait_for(_has_status(store, job.id, "completed"))
    assert scheduler.is_running
    await scheduler.stop(graceful=True)  # does not re-raise the earlier errors
    assert len([e for e in errors if isinstance(e, AutoReconnect)]) == 3
    assert rec.count == 1


class _TcpProxy:
    """A TCP forwarder to the real mongod that can be cut and restored: a real network
    outage between one client and the server."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.target = host, port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def proxied_store(mongodb_uri: str, db_name: str) -> AsyncIterator[tuple[_TcpProxy, Any]]:
    parsed = urlparse(mongodb_uri)
    if parsed.scheme != "mongodb" or "," in parsed.netloc or "@" in parsed.netloc:
        pytest.skip("needs a single-host mongodb:// URI")
    proxy = _TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or 27017)
    await proxy.up()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true",
        serverSelectionTimeoutMS=300,
        connectTimeoutMS=300,
        socketTimeoutMS=2000,
    )
    try:
        yield proxy, client[db_name]
    finally:
        await client.close()


@pytest.mark.mongo_only
async def test_b10_worker_survives_a_real_network_outage(
    store: JobStore, proxied_store: tuple[_TcpProxy, Any]
) -> None:
    proxy, database = proxied_store
    assert isinstance(store, MongoJobStore)
    rec = Recorder()
    errors: list[BaseException] = []
    scheduler = Scheduler(MongoJobStore(database), rec.record, poll_interval=FAST)
    scheduler.on("worker:error", errors.append)
    producer = Scheduler(store)  # talks to the server directly, not through the proxy
    async with scheduler:
        before = await producer.schedule("before")
        await wait_for(_has_status(store, before.id, "completed"))
        await proxy.down()
        await wait_for(lambda: len(errors) >= 2, timeout=20)
        during = await producer.schedule("during")
        assert scheduler.is_running
        await proxy.up()
        await wait_for(_has_status(store, during.id, "completed"), timeout=20)
    assert [c.name for c in rec.calls] == ["before", "during"]


# -- B11 --------------------------------------------------------------------------------------


async def test_b11_non_positive_or_empty_repeat_is_rejected(store: JobStore) -> None:
    scheduler = Scheduler(store)
    past = utcnow() - timedelta(hours=1)
    for repeat in ({"every": 0}, {"every": -5}, {}, {"timezone": "UTC"}):
        with pytest.raises(ValidationError):
            await asyncio.wait_for(scheduler.schedule("r", repeat=repeat, run_at=past), 5)
    assert await scheduler.get_jobs() == []


async def test_b11_interval_due_long_ago_schedules_and_runs_promptly(store: JobStore) -> None:
    rec = Recorder()
    completes: list[Job] = []
    async with running(store, rec.record) as scheduler:
        scheduler.on("job:complete", completes.append)
        await asyncio.wait_for(
            scheduler.schedule(
                "tick", repeat={"everyMs": 100}, run_at=utcnow() - timedelta(days=30)
            ),
            5,
        )
        await wait_for(lambda: completes)
    assert rec.count >= 1
    assert completes[0].next_run_at is not None
    assert completes[0].next_run_at > utcnow() - timedelta(seconds=5)


async def test_b11_stored_empty_or_negative_repeat_never_sticks_running(store: JobStore) -> None:
    empty = await _insert_raw(store, "empty-repeat", repeat={})
    negative = await _insert_raw(store, "negative", repeat={"every": -5})
    async with running(store, lambda job: None):
        await wait_for(_has_status(store, empty["_id"], "completed", "failed"))
        await wait_for(_has_status(store, negative["_id"], "failed"))


# -- B12 --------------------------------------------------------------------------------------


async def test_b12_lease_expiries_count_and_poison_job_fails(store: JobStore) -> None:
    rec = Recorder()
    fails: list[tuple[Job, BaseException]] = []
    job = await Scheduler(store).schedule("poison")
    for owner in ("crashed-1", "crashed-2"):

        async def claim(owner: str = owner) -> Any:
            return await claim_all(store, owner, lease=0.05)

        await wait_for(claim, timeout=10)
    async with running(store, rec.record, max_lease_expiries=2) as scheduler:
        scheduler.on("job:fail", lambda job, exc: fails.append((job, exc)))
        await wait_for(_has_status(store, job.id, "failed"))
        await wait_for(lambda: fails)
    doc = await _doc(store, job.id)
    assert rec.count == 0
    assert doc["lastErrorType"] == "PoisonJob" and "lease expired" in doc["lastError"]
    assert isinstance(fails[0][1], PoisonJob)


# -- B13 --------------------------------------------------------------------------------------

_BAD_OPTIONS: list[dict[str, Any]] = [
    {"name": ""},
    {"name": "x", "priority": 0},
    {"name": "x", "concurrency": 0},
    {"name": "x", "max_execution": 0},
    {"name": "x", "repeat": {"cron": "* * * * *", "every": 0}},
    {"name": "x", "repeat": {"cron": "* * * * *", "everyMs": 1000}},
    {"name": "x", "run_at": datetime(2030, 1, 1)},
    {"name": "x", "retry": {"maxAttempts": 0}},
]


async def test_b13_schedule_and_bulk_validate_alike(store: JobStore) -> None:
    scheduler = Scheduler(store)
    for options in _BAD_OPTIONS:
        kwargs = dict(options)
        name = kwargs.pop("name")
        with pytest.raises(ValidationError) as single:
            await scheduler.schedule(name, **kwargs)
        with pytest.raises(ValidationError) as bulk:
            await scheduler.schedule_bulk([options])
        assert bulk.value.field == f"items[0].{single.value.field}"
    assert await scheduler.get_jobs() == []
    for unstored in (Scheduler(), Scheduler()):
        with pytest.raises(ConfigurationError):
            await unstored.schedule("x")
        with pytest.raises(ConfigurationError):
            await unstored.schedule_bulk([{"name": "x"}])


async def test_b13_bulk_jobs_have_the_same_fields_and_updates_validate(store: JobStore) -> None:
    scheduler = Scheduler(store)
    single = await scheduler.schedule("x")
    [bulk] = await scheduler.schedule_bulk([{"name": "x"}])
    one, other = await _doc(store, single.id), await _doc(store, bulk.id)
    assert set(one) == set(other)
    assert other["attempts"] == 0 and other["createdAt"] and other["updatedAt"]
    for change in ({"priority": 0}, {"priority": 99}, {"concurrency": 0}, {"concurrency": 1.5}):
        with pytest.raises(ValidationError):
            await scheduler.update_job(bulk.id, **change)
    assert (await _doc(store, bulk.id))["priority"] == 5


# -- B14 --------------------------------------------------------------------------------------


class _FastClockStore(MongoJobStore):
    """A MongoJobStore on a machine whose clock runs ten minutes fast."""

    async def now(self) -> datetime:
        return await super().now() + timedelta(minutes=10)


@pytest.mark.mongo_only
async def test_b14_skewed_worker_clock_neither_runs_early_nor_steals(store: JobStore) -> None:
    assert isinstance(store, MongoJobStore)
    skewed = _FastClockStore(store.database, store.collection_name)
    scheduler = Scheduler(store)
    future = await scheduler.schedule("future", run_at=utcnow() + timedelta(minutes=1))
    live = await scheduler.schedule("live")
    [held] = await claim_all(store, "honest", lease=120)
    assert held.document["_id"] == live.id
    assert await claim_all(skewed, "skewed") == []
    assert (await _doc(store, future.id))["status"] == "pending"
    assert (await _doc(store, live.id))["lockedBy"] == "honest"
    await scheduler.update_job(future.id, run_at=utcnow() - timedelta(seconds=1))
    [mine] = await claim_all(skewed, "skewed", lease=60)
    lease_left = mine.document["lockUntil"] - await store.now()
    assert timedelta(seconds=50) < lease_left <= timedelta(seconds=61)  # server clock lease


# -- B15 --------------------------------------------------------------------------------------


async def test_b15_listing_is_bounded_by_default(store: JobStore) -> None:
    scheduler = Scheduler(store)
    await scheduler.schedule_bulk([{"name": "many"} for _ in range(150)])
    assert len(await scheduler.get_jobs()) == 100
    assert len(await scheduler.get_jobs(limit=150)) == 150
    for bad in (0, 10_001, -1):
        with pytest.raises(ValidationError):
            await scheduler.get_jobs(limit=bad)


# -- B16 --------------------------------------------------------------------------------------


async def test_b16_concurrent_schedules_with_one_key_make_one_job(store: JobStore) -> None:
    created: list[Job] = []
    schedulers = [Scheduler(_sibling(store)) for _ in range(4)]
    for scheduler in schedulers:
        scheduler.on("job:created", created.append)
    jobs = await asyncio.gather(
        *(schedulers[i % 4].schedule("mail", {"i": i}, dedupe_key="mail:1") for i in range(20))
    )
    assert len({j.id for j in jobs}) == 1
    assert len(created) == 1
    assert len(await schedulers[0].get_jobs()) == 1


async def test_b16_bulk_dedupes_and_finished_key_is_reusable(store: JobStore) -> None:
    scheduler = Scheduler(store, poll_interval=FAST)
    jobs = await scheduler.schedule_bulk(
        [{"name": "a", "dedupe_key": "k"}, {"name": "a", "dedupe_key": "k"}, {"name": "b"}]
    )
    assert jobs[0].id == jobs[1].id and len(await scheduler.get_jobs()) == 2
    scheduler.handler = lambda job: None
    async with scheduler:
        await wait_for(_has_status(store, jobs[0].id, "completed"))
        fresh = await scheduler.schedule("a", dedupe_key="k")
    assert fresh.id != jobs[0].id


# -- B17 --------------------------------------------------------------------------------------


async def test_b17_callable_backoff_is_used_and_retry_functions_rejected(store: JobStore) -> None:
    scheduler = Scheduler(store, poll_interval=FAST)
    retries: list[Job] = []

    @scheduler.task("flaky", retry=3, backoff=lambda attempt: timedelta(minutes=attempt))
    async def flaky(job: Job) -> None:
        raise RuntimeError("nope")

    scheduler.on("job:retry", retries.append)
    async with scheduler:
        job = await scheduler.schedule("flaky")
        await wait_for(lambda: retries)
    wait = retries[0].next_run_at - await store.now()  # type: ignore[operator]
    assert timedelta(seconds=50) < wait <= timedelta(minutes=1)
    assert (await _doc(store, job.id))["status"] == "pending"
    for bad in ({"maxAttempts": 3, "delay": lambda attempt: attempt * 1000}, lambda: 3):
        with pytest.raises(ValidationError):
            await scheduler.schedule("x", retry=bad)
    with pytest.raises(ValidationError):
        scheduler.task("y", backoff=5)  # type: ignore[arg-type]


async def test_b17_node_document_with_dropped_delay_function_retries(store: JobStore) -> None:
    # What the Node library stored for retry={maxAttempts: 3, delay: fn}: BSON dropped the
    # function, and undefined options became nulls. A Python worker runs it as 3 attempts.
    rec = Recorder()

    async def handler(job: Job) -> None:
        rec.record(job)
        raise RuntimeError("still failing")

    doc = await _insert_raw(
        store,
        "node-job",
        retry={"maxAttempts": 3},
        repeat=None,
        lastScheduledAt=None,
        concurrency=None,
        maxExecutionMs=None,
    )
    async with running(store, handler):
        await wait_for(_has_status(store, doc["_id"], "failed"))
    assert rec.count == 3
    assert (await _doc(store, doc["_id"]))["attempts"] == 3


# -- B18 --------------------------------------------------------------------------------------


async def test_b18_update_of_running_job_does_not_orphan_it(store: JobStore) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()
        await asyncio.wait_for(release.wait(), 20)

    async with running(store, handler) as scheduler:
        job = await scheduler.schedule("busy", {"v": 1})
        await asyncio.wait_for(started.wait(), 10)
        with pytest.raises(InvalidJobState):
            await scheduler.update_job(job.id, run_at=utcnow() + timedelta(hours=1))
        updated = await scheduler.update_job(job.id, data={"v": 2}, priority=2)
        assert updated.status is JobStatus.RUNNING and updated.locked_by is not None
        release.set()
        await wait_for(_has_status(store, job.id, "completed"))
    doc = await _doc(store, job.id)
    assert doc["data"] == {"v": 2} and "lockedBy" not in doc


# -- B19 --------------------------------------------------------------------------------------


async def test_b19_final_failure_is_one_consistent_write(store: JobStore) -> None:
    seen_in_listener: list[dict[str, Any]] = []
    fails: list[Job] = []

    async def handler(job: Job) -> None:
        raise ValueError("bad input")

    async def on_fail(job: Job, exc: BaseException) -> None:
        fails.append(job)
        seen_in_listener.append(await _doc(store, job.id))

    async with running(store, handler) as scheduler:
        scheduler.on("job:fail", on_fail)
        job = await scheduler.schedule("f", retry={"maxAttempts": 2, "delay": 0})
        await wait_for(lambda: seen_in_listener)
    doc = await _doc(store, job.id)
    # The event fires after the write, and the write set every field at once.
    assert seen_in_listener[0]["status"] == "failed"
    assert doc["status"] == "failed" and doc["attempts"] == 2 == fails[0].attempts
    assert doc["lastError"] == "bad input" and doc["lastErrorType"] == "ValueError"
    assert not {"lockedBy", "lockedAt", "lockUntil"} & set(doc)


# -- B20 --------------------------------------------------------------------------------------


async def test_b20_starting_another_scheduler_leaves_live_jobs_alone(store: JobStore) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    calls: list[str] = []

    async def owner_handler(job: Job) -> None:
        calls.append(job.name)
        started.set()
        await asyncio.wait_for(release.wait(), 20)

    async with running(store, owner_handler, lock_timeout=0.5) as owner:
        long_job = await owner.schedule("long")
        await asyncio.wait_for(started.wait(), 10)
        before = await _doc(store, long_job.id)
        newcomer_calls: list[str] = []
        async with running(_sibling(store), lambda job: newcomer_calls.append(job.name)) as other:
            probe = await other.schedule("probe")
            # The newcomer ran its probe, so it has polled past the live job at least once.
            await wait_for(_has_status(store, probe.id, "completed"))
            during = await _doc(store, long_job.id)
        release.set()
        await wait_for(_has_status(store, long_job.id, "completed"))
    assert during["status"] == "running"
    assert during["lockedBy"] == before["lockedBy"]
    assert during["lockVersion"] == before["lockVersion"]
    assert calls == ["long"]  # the owner's one worker was busy: the newcomer ran the probe
    assert newcomer_calls == ["probe"]


# -- B21 --------------------------------------------------------------------------------------


async def test_b21_query_operators_cannot_be_injected(store: JobStore) -> None:
    scheduler = Scheduler(store)
    await scheduler.schedule("secret", {"owner": "alice"})
    for query in (
        {"name": {"$ne": "x"}},
        {"data": {"owner": {"$ne": None}}},
        {"data": {"$where": "true"}},
        {"status": {"$in": ["pending"]}},
        {"status": "$ne"},
    ):
        with pytest.raises(ValidationError):
            await scheduler.get_jobs(**query)
    assert await scheduler.get_jobs(data={"owner": "bob"}) == []
    assert len(await scheduler.get_jobs(data={"owner": "alice"})) == 1


# -- B22 --------------------------------------------------------------------------------------


async def test_b22_idle_graceful_stop_is_prompt_and_leaves_no_tasks(store: JobStore) -> None:
    scheduler = Scheduler(store, lambda job: None, poll_interval=5)
    await scheduler.start()
    await scheduler.schedule("one")
    await wait_for(lambda: _count_completed(scheduler))
    began = time.monotonic()
    await scheduler.stop(graceful=True, timeout=30)
    assert time.monotonic() - began < 3  # does not wait out the 5 s poll sleep
    leftovers = [t for t in asyncio.all_tasks() if t.get_name().startswith("mjs-") and not t.done()]
    assert leftovers == []


async def _count_completed(scheduler: Scheduler) -> int:
    return len(await scheduler.get_jobs(status="completed"))


# -- B23 --------------------------------------------------------------------------------------


async def test_b23_no_spurious_heartbeat_errors(store: JobStore) -> None:
    errors: list[BaseException] = []

    async def handler(job: Job) -> None:
        await asyncio.sleep(job.data / 1000)

    async with running(store, handler, workers=4, lock_timeout=0.2, heartbeat_interval=0.005) as s:
        s.on("worker:error", errors.append)
        await s.schedule_bulk([{"name": "short", "data": i % 15} for i in range(40)])
        await wait_for(lambda: _all_completed(s, 40), timeout=20)
    assert errors == []


async def _all_completed(scheduler: Scheduler, total: int) -> bool:
    return len(await scheduler.get_jobs(status="completed", limit=1000)) == total


# -- B24 --------------------------------------------------------------------------------------


def test_b24_documented_api_matches_the_code() -> None:
    # Root exports the docs rely on, documented defaults, and the backoff strategies.
    for name in (
        "Scheduler",
        "MongoJobStore",
        "InMemoryJobStore",
        "Job",
        "JobStatus",
        "Retry",
        "Repeat",
        "ValidationError",
        "JobNotFound",
        "LeaseLost",
        "InvalidJobState",
    ):
        assert name in mongo_job_scheduler.__all__ and hasattr(mongo_job_scheduler, name)
    defaults = Scheduler()
    assert defaults.poll_interval == 0.5 and defaults.lock_timeout == 600
    second = timedelta(seconds=1)
    exponential = Retry.parse({"maxAttempts": 5, "delayMs": 1000, "backoff": "exponential"})
    linear = Retry.parse({"maxAttempts": 5, "delayMs": 1000, "backoff": "linear"})
    capped = Retry.parse(
        {"maxAttempts": 9, "delayMs": 1000, "backoff": "exponential", "maxDelayMs": 5000}
    )
    assert [exponential.delay_for(n) for n in (1, 2, 3)] == [second, 2 * second, 4 * second]
    assert [linear.delay_for(n) for n in (1, 2, 3)] == [second, 2 * second, 3 * second]
    assert capped.delay_for(8) == 5 * second
    jittered = Retry(max_attempts=3, delay=second, jitter=True)
    assert all(timedelta(0) <= jittered.delay_for(1) <= second for _ in range(50))


# -- B25 --------------------------------------------------------------------------------------


async def test_b25_schedulers_sharing_an_id_keep_distinct_owners(store: JobStore) -> None:
    owners: list[str | None] = []
    both = asyncio.Event()

    async def handler(job: Job) -> None:
        owners.append(job.locked_by)
        if len(owners) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 10)

    async with (
        running(store, handler, id="pod") as one,
        running(_sibling(store), handler, id="pod"),
    ):
        jobs = [await one.schedule("j", {"i": i}) for i in range(2)]
        for job in jobs:
            await wait_for(_has_status(store, job.id, "completed"))
    assert len(set(owners)) == 2
    assert all(o is not None and o.startswith("pod") for o in owners)


# -- B26 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"workers": "3"},
        {"poll_interval": "1000"},
        {"lock_timeout": "60000"},
        {"max_execution": "5"},
        {"workers": 0},
        {"lock_timeout": float("nan")},
        {"poll_interval": -1},
    ],
)
def test_b26_option_types_are_validated(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Scheduler(InMemoryJobStore(), **options)


# -- B27 --------------------------------------------------------------------------------------


async def test_b27_job_claimed_while_stopping_is_given_back(store: JobStore) -> None:
    rec = Recorder()
    in_claim = asyncio.Event()
    real_claim = store.claim
    scheduler = Scheduler(store, rec.record, poll_interval=FAST)

    async def slow_claim(*args: Any, **kwargs: Any) -> Any:
        in_claim.set()
        await wait_for(lambda: not scheduler.is_running)  # stop() began meanwhile
        return await real_claim(*args, **kwargs)

    job = await scheduler.schedule("caught")
    store.claim = slow_claim  # type: ignore[method-assign]
    await scheduler.start()
    await asyncio.wait_for(in_claim.wait(), 10)
    await scheduler.stop(graceful=True)
    doc = await _doc(store, job.id)
    assert rec.count == 0
    assert doc["status"] == "pending" and "lockedBy" not in doc
    assert doc["nextRunAt"] <= await store.now()
    assert doc["lockVersion"] == 1  # it was claimed, then handed back
    del store.claim
    async with running(store, rec.record):
        await wait_for(_has_status(store, job.id, "completed"))
    assert rec.count == 1
