"""Helpers shared by the contract tests: a scheduler factory with fast polling, a context
manager that starts and hard-stops it, and polling for a stored document's state."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

from mongo_job_scheduler import InMemoryJobStore, JobStore, MongoJobStore, Scheduler
from mongo_job_scheduler.stores.base import Claimed
from tests.conftest import wait_for

LONG_LEASE = timedelta(seconds=60)


@contextlib.asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[Scheduler]:
    """Start ``scheduler``; stop it without waiting for jobs on the way out."""
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop(graceful=False)


def make(store: JobStore, handler: Any = None, **options: Any) -> Scheduler:
    """A scheduler on ``store`` that polls every 20 ms unless told otherwise."""
    options.setdefault("poll_interval", 0.02)
    return Scheduler(store, handler, **options)


async def wait_doc(
    store: JobStore, job_id: Any, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> dict[str, Any]:
    """Poll the stored document until ``predicate`` holds; return it."""

    async def check() -> dict[str, Any] | None:
        doc = await store.get(job_id)
        return doc if doc is not None and predicate(doc) else None

    result: dict[str, Any] = await wait_for(check, timeout)
    return result


def status_is(status: str) -> Callable[[dict[str, Any]], bool]:
    """A :func:`wait_doc` predicate: the job is in ``status``."""
    return lambda d: d["status"] == status


def sibling(store: JobStore) -> JobStore:
    """Another store object on the same jobs (a second process's view, for MongoDB; the
    in-memory store is one process, so it is its own sibling)."""
    if isinstance(store, MongoJobStore):
        return MongoJobStore(store.database, store.collection_name)
    assert isinstance(store, InMemoryJobStore)
    return store


@contextlib.asynccontextmanager
async def running_all(*schedulers: Scheduler) -> AsyncIterator[None]:
    """Start every scheduler; stop them all without waiting for jobs on the way out."""
    for scheduler in schedulers:
        await scheduler.start()
    try:
        yield
    finally:
        for scheduler in schedulers:
            await scheduler.stop(graceful=False)


async def claim_jobs(store: JobStore, *args: Any, **kwargs: Any) -> list[Claimed]:
    """The jobs one :meth:`JobStore.claim` takes."""
    return (await store.claim(*args, **kwargs)).jobs


async def stored(store: JobStore, job_id: Any) -> dict[str, Any]:
    """The stored document of a job that must exist."""
    doc = await store.get(job_id)
    assert doc is not None
    return doc


async def status_of(store: JobStore, job_id: Any) -> str:
    """The stored status of a job that must exist."""
    return str((await stored(store, job_id))["status"])


async def backdate_lease(store: JobStore, job_id: Any) -> None:
    """Fault injection: make the job's current lease look expired (as if its owner had stopped
    renewing), so that another owner can claim it."""
    past = await store.now() - timedelta(seconds=5)
    if isinstance(store, MongoJobStore):
        await store.jobs.update_one({"_id": job_id}, {"$set": {"lockUntil": past}})
    else:
        assert isinstance(store, InMemoryJobStore)
        store._jobs[job_id]["lockUntil"] = past


async def steal(store: JobStore, job_id: Any, thief: str) -> int:
    """Take the running job over as ``thief`` through the store; returns the new token."""
    other = sibling(store)

    async def attempt() -> Any:
        await backdate_lease(store, job_id)  # a heartbeat may renew it in between: retry
        return (await other.claim(thief, 1, LONG_LEASE, 10)).jobs

    [claimed] = await wait_for(attempt, timeout=10)
    assert claimed.document["_id"] == job_id
    return claimed.token


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def reported_pid(store: JobStore, job_id: Any, timeout: float = 20) -> int:
    """The pid a handler of ``tests.process_handlers`` reported as its progress message (the
    process it runs in: a child of the worker)."""
    doc = await wait_doc(store, job_id, lambda d: bool(d.get("progress")), timeout=timeout)
    pid = int(doc["progress"]["message"])
    assert pid != os.getpid()
    return pid
