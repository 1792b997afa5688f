"""Helpers shared by the contract tests: a scheduler factory with fast polling, a context
manager that starts and hard-stops it, and polling for a stored document's state."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from mongo_job_scheduler import JobStore, Scheduler
from tests.conftest import wait_for


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
