"""Contract: the fleet view — every running worker registers itself while it runs, the live
ones are listed, and due jobs that no live worker handles are counted and warned about."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from mongo_job_scheduler import InMemoryJobStore, Job, JobStore, MongoJobStore, Scheduler
from mongo_job_scheduler.fleet import LIVE_FOR, WorkerInfo, handled_names, unhandled
from mongo_job_scheduler.worker import _acks, _registration
from tests.conftest import wait_for
from tests.contract.helpers import make, running, running_all, sibling


def shows_running(scheduler: Scheduler, n: int) -> Callable[[], Awaitable[bool]]:
    """Whether the scheduler's one registration says it runs ``n`` jobs."""

    async def check() -> bool:
        return [w.running for w in await scheduler.live_workers()] == [n]

    return check


def _names_of(workers: list[WorkerInfo]) -> list[tuple[str, ...] | None]:
    return [w.names for w in workers]


async def test_a_running_scheduler_is_listed_until_it_stops(store: JobStore) -> None:
    scheduler = make(store, workers=3, id="api-1")

    @scheduler.task("send-email")
    async def send(job: Job) -> None: ...

    assert await scheduler.live_workers() == []
    async with running(scheduler):
        [me] = await wait_for(scheduler.live_workers, timeout=10)
        assert me.scheduler_id == "api-1"
        assert me.id.startswith("api-1-")
        assert me.names == ("send-email",)
        assert me.workers == 3
        assert me.host == socket.gethostname()
        assert me.pid == os.getpid()
        assert me.started_at is not None and me.last_seen is not None
        assert me.version
    assert await scheduler.live_workers() == []


async def test_every_process_on_the_store_is_listed(store: JobStore) -> None:
    catch_all = make(store, lambda job: None, id="catch-all")
    reports = make(sibling(store), id="reports")

    @reports.task("report")
    def report(job: Job) -> None: ...

    async with running_all(catch_all, reports):
        live = await wait_for(lambda: _listed(catch_all, 2), timeout=10)
    assert sorted(_names_of(live), key=str) == sorted([None, ("report",)], key=str)


async def _listed(scheduler: Scheduler, count: int) -> list[WorkerInfo] | None:
    live = await scheduler.live_workers()
    return live if len(live) == count else None


async def test_stats_count_due_jobs_no_live_worker_handles(store: JobStore) -> None:
    producer = Scheduler(store)
    await producer.schedule("orphan")
    await producer.schedule("orphan")
    await producer.schedule("handled", delay=3600)  # not due: never counted
    assert (await producer.stats()).unhandled == {"orphan": 2}

    worker = make(sibling(store), id="handles-other")

    @worker.task("other")
    async def other(job: Job) -> None: ...

    async with running(worker):
        await wait_for(producer.live_workers, timeout=10)
        assert (await producer.stats()).unhandled == {"orphan": 2}

    catch_all = make(sibling(store), lambda job: asyncio.sleep(60), id="catch-all")
    await catch_all.pause("orphan")  # keep them due: only the handling is counted
    async with running(catch_all):
        await wait_for(producer.live_workers, timeout=10)
        assert (await producer.stats()).unhandled == {}


async def test_a_worker_warns_once_about_names_nobody_handles(
    store: JobStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_registration, "REGISTER_EVERY", 0.05)
    monkeypatch.setattr(_registration, "UNHANDLED_CHECK_EVERY", 0.05)
    producer = Scheduler(store)
    await producer.schedule("nobody-runs-this", {"n": 1})
    worker = make(sibling(store), id="narrow")

    @worker.task("something-else")
    async def something_else(job: Job) -> None: ...

    def warnings() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "wait for a worker" in r.getMessage()]

    with caplog.at_level(logging.WARNING, logger="mongo_job_scheduler"):
        async with running(worker):
            [record] = await wait_for(warnings, timeout=10)
            assert "'nobody-runs-this'" in record.getMessage()
            assert record.__dict__["job_name"] == "nobody-runs-this"
            checks = _registration.Registration.warn_unhandled
            calls: list[Any] = []

            async def counted(self: Any) -> None:
                calls.append(self)
                await checks(self)

            monkeypatch.setattr(_registration.Registration, "warn_unhandled", counted)
            await wait_for(lambda: len(calls) >= 3, timeout=10)
    assert len(warnings()) == 1  # checked again, not warned again within WARN_AGAIN_AFTER


async def test_the_registration_follows_how_busy_the_worker_is(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_registration, "REGISTER_EVERY", 0.05)
    release = asyncio.Event()
    scheduler = make(store, workers=4)

    @scheduler.task("slow")
    async def slow(job: Job) -> None:
        await release.wait()

    await scheduler.schedule_bulk([{"name": "slow"}, {"name": "slow"}])
    async with running(scheduler):
        await wait_for(shows_running(scheduler, 2), timeout=10)
        release.set()

        await wait_for(shows_running(scheduler, 0), timeout=10)


async def test_a_registration_is_written_again_only_when_what_it_shows_changed(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rounds every 50 ms, periodic registrations once an hour: every write below comes from
    # a change of how busy the worker is (or from its start).
    monkeypatch.setattr(_registration, "UPKEEP_EVERY", 0.05)
    monkeypatch.setattr(_registration, "REGISTER_EVERY", 3600.0)
    writes: list[int] = []
    rounds: list[None] = []
    register, sweep = _registration.Registration.register, _acks.Outcomes.sweep

    async def counted_register(self: Any) -> None:
        writes.append(len(self.executions))
        await register(self)

    async def counted_sweep(self: Any) -> None:
        rounds.append(None)  # a fleet of one sweeps in every round
        await sweep(self)

    monkeypatch.setattr(_registration.Registration, "register", counted_register)
    monkeypatch.setattr(_acks.Outcomes, "sweep", counted_sweep)
    release = asyncio.Event()
    scheduler = make(store, workers=4)

    @scheduler.task("slow")
    async def slow(job: Job) -> None:
        await release.wait()

    async with running(scheduler):
        await wait_for(lambda: len(rounds) >= 8, timeout=10)
        assert writes == [0]  # idle: nothing changed, nothing written after the start

        await scheduler.schedule("slow")

        await wait_for(shows_running(scheduler, 1), timeout=10)
        release.set()

        await wait_for(shows_running(scheduler, 0), timeout=10)
        settled = len(rounds)
        await wait_for(lambda: len(rounds) >= settled + 8, timeout=10)
    assert writes == [0, 1, 0]


async def test_a_registration_not_renewed_is_no_longer_live(store: JobStore) -> None:
    scheduler = Scheduler(store)
    await store.register_worker("gone-1", {"schedulerId": "gone", "names": ["x"]})
    assert [w.id for w in await scheduler.live_workers()] == ["gone-1"]
    stale = await store.now() - LIVE_FOR - timedelta(seconds=5)
    if isinstance(store, MongoJobStore):
        await store.workers.update_one({"_id": "gone-1"}, {"$set": {"lastSeen": stale}})
    else:
        assert isinstance(store, InMemoryJobStore)
        store._workers["gone-1"]["lastSeen"] = stale
    assert await scheduler.live_workers() == []


@pytest.mark.mongo_only
async def test_registrations_are_forgotten_by_a_ttl_index(store: JobStore) -> None:
    assert isinstance(store, MongoJobStore)
    await store.setup()
    indexes = await store.workers.index_information()
    [ttl] = [i for i in indexes.values() if "expireAfterSeconds" in i]
    assert ttl["key"] == [("lastSeen", 1)]
    assert ttl["expireAfterSeconds"] == 3600


def test_unhandled_names_follow_the_live_workers() -> None:
    def worker(names: tuple[str, ...] | None) -> WorkerInfo:
        return WorkerInfo("w", "s", "h", 1, names, 1, 0, None, None, "0")

    due = {"a": 2, "b": 1, "c": 0}
    assert unhandled(due, []) == {"a": 2, "b": 1}
    assert unhandled(due, [worker(("a",))]) == {"b": 1}
    assert unhandled(due, [worker(("a",)), worker(None)]) == {}
    assert handled_names([worker(("a",)), worker(("b", "c"))]) == {"a", "b", "c"}
    assert worker(None).handles("anything") and not worker(("a",)).handles("b")
