"""Node-parity tests: one short test per behaviour of the Node library's test suite that this
project keeps, and one regression test per known Node bug (B1-B27). ``docs/node-parity.md``
numbers those bugs and behaviours and maps every item to its test, to the rule of this project
that changes it, or to the reason it was dropped.

Small helpers shared by both test files live here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from mongo_job_scheduler import Job, JobStore, Scheduler
from mongo_job_scheduler._documents import build_new_job
from mongo_job_scheduler.stores.base import Claimed

FAST = 0.02
"""Poll interval for tests (seconds)."""


@asynccontextmanager
async def running(
    store: JobStore, handler: Callable[[Job], Any] | None = None, **options: Any
) -> AsyncIterator[Scheduler]:
    """A started scheduler on ``store`` that polls fast; stopped (handlers cancelled) on exit."""
    options.setdefault("poll_interval", FAST)
    scheduler = Scheduler(store, handler, **options)
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop(graceful=False)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def insert(store: JobStore, name: str = "job", **kwargs: Any) -> dict[str, Any]:
    """Store one job through the store API (no scheduler) and return its document."""
    new = build_new_job(name, kwargs.pop("data", None), now=await store.now(), **kwargs)
    [(doc, created)] = await store.insert([new])
    assert created
    return doc


async def claim_all(
    store: JobStore, owner: str = "w1", limit: int = 100, lease: float = 60
) -> list[Claimed]:
    """One claim round for ``owner`` (as a worker would make it)."""
    return (await store.claim(owner, limit, timedelta(seconds=lease), 3)).jobs


class Recorder:
    """Records handler calls and lets a test wait for a number of them."""

    def __init__(self) -> None:
        self.calls: list[Job] = []
        self.times: list[float] = []
        self.active = 0
        self.max_active = 0
        self._changed = asyncio.Event()

    def record(self, job: Job) -> None:
        self.calls.append(job)
        self.times.append(time.monotonic())

    def enter(self, job: Job) -> None:
        self.record(job)
        self.active += 1
        self.max_active = max(self.max_active, self.active)

    def leave(self) -> None:
        self.active -= 1

    @property
    def count(self) -> int:
        return len(self.calls)
