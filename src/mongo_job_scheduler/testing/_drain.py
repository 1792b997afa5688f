"""``drain(scheduler)``: run every due job to completion, for deterministic tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .._errors import SchedulerError
from ..job import Job, JobStatus

if TYPE_CHECKING:
    from ..scheduler import Scheduler

__all__ = ["drain"]

_FINISH_EVENTS = ("job:complete", "job:fail", "job:cancel")
"""Events that end a run; their job joins drain's result."""

_PROGRESS_EVENTS = ("job:start", "job:retry", "job:created")
"""Events that only mean "look again"."""

_CHECK_EVERY = 0.05
"""Seconds between two looks at the jobs when no event arrives."""

_PAGE = 10_000
"""The largest page ``get_jobs`` returns."""


async def drain(
    scheduler: Scheduler, *, timeout: float = 30.0, include_future: bool = False
) -> list[Job]:
    """Run every due job of ``scheduler`` to completion and return the jobs that finished.

    Starts ``scheduler`` if it is not running (and stops it gracefully at the end), then waits
    until no pending job is due and none is running (a job this scheduler runs counts until its
    events are emitted: :attr:`Scheduler.in_progress`): jobs that become due meanwhile (a retry
    with no delay, a job scheduled by a handler to run now) run too. With ``include_future``,
    pending one-off jobs due later (including retries waiting out a back-off) are moved to now
    with :meth:`Scheduler.update_job`; repeating jobs keep their schedule either way.

    Returns each job that completed, failed or was cancelled during the drain once, as it was
    after its last such event, in the order they first finished (a repeating job appears as
    rescheduled: ``pending`` with its next occurrence). Raises :class:`TimeoutError` naming the
    jobs still due or running after ``timeout`` seconds (a drain that started the scheduler
    stops it hard first).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    deadline = time.monotonic() + timeout
    finished: dict[str, Job] = {}
    changed = asyncio.Event()
    generation = 0

    def on_finish(job: Job, *_: Any) -> None:
        nonlocal generation
        finished[str(job.id)] = job
        generation += 1
        changed.set()

    def on_progress(*_: Any) -> None:
        nonlocal generation
        generation += 1
        changed.set()

    listeners: list[tuple[str, Callable[..., None]]] = [(e, on_finish) for e in _FINISH_EVENTS]
    listeners += [(e, on_progress) for e in _PROGRESS_EVENTS]
    for event, listener in listeners:
        scheduler.on(event, listener)
    started_here = not scheduler.is_running
    clean = False
    try:
        if started_here:
            await scheduler.start()
        quiet_looks = 0
        while True:
            seen = generation
            changed.clear()
            if include_future:
                await _bring_forward(scheduler)
            # The scheduler's own jobs count until their events are emitted: a job's outcome
            # is stored before its event, and drain must not end in between.
            busy = scheduler.in_progress > 0 or bool(await _busy_jobs(scheduler, limit=1))
            # Two consecutive quiet looks with no job event in between: a job changing state
            # while one look was reading cannot hide from both.
            if not busy and generation == seen:
                quiet_looks += 1
                if quiet_looks >= 2:
                    break
            else:
                quiet_looks = 0
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stuck = await _busy_jobs(scheduler, limit=20)
                raise TimeoutError(_timeout_message(timeout, stuck))
            if quiet_looks:
                continue
            try:
                await asyncio.wait_for(changed.wait(), min(_CHECK_EVERY, remaining))
            except asyncio.TimeoutError:
                pass
        clean = True
    finally:
        try:
            if started_here and scheduler.is_running:
                if clean:
                    await scheduler.stop(graceful=True, timeout=max(deadline - time.monotonic(), 1))
                else:
                    await scheduler.stop(graceful=False)
        finally:
            for event, listener in listeners:
                scheduler.off(event, listener)
    return list(finished.values())


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def _store_now(scheduler: Scheduler) -> datetime:
    """The store's clock: jobs are stamped with it (the local clock may be a few milliseconds
    behind it, and a job due now would then look due later)."""
    store = scheduler.store
    return _utcnow() if store is None else await store.now()


def _is_due(job: Job, now: datetime) -> bool:
    return job.next_run_at is not None and job.next_run_at <= now


async def _busy_jobs(scheduler: Scheduler, *, limit: int) -> list[Job]:
    """Up to ``limit`` jobs that keep the drain going: running, or pending and due.

    Pending and running jobs are read in one query ordered by due time, so due and running jobs
    come before any job due later; running jobs are then read on their own in case one sorts
    after those.
    """
    now = await _store_now(scheduler)
    page = await scheduler.get_jobs(
        status=[JobStatus.PENDING, JobStatus.RUNNING],
        sort=("nextRunAt", "asc"),
        limit=max(limit, 50),
    )
    busy = [job for job in page if job.status is JobStatus.RUNNING or _is_due(job, now)]
    if len(busy) < limit:
        known = {str(job.id) for job in busy}
        running = await scheduler.get_jobs(status=JobStatus.RUNNING, limit=limit)
        busy += [job for job in running if str(job.id) not in known]
    return busy[:limit]


async def _bring_forward(scheduler: Scheduler) -> None:
    """Move pending one-off jobs that are due later to now (repeating ones keep their slot)."""
    now = await _store_now(scheduler)
    future = await scheduler.get_jobs(
        status=JobStatus.PENDING, sort=("nextRunAt", "desc"), limit=_PAGE
    )
    for job in future:
        if job.next_run_at is None or job.next_run_at <= now:
            break
        if job.repeat is not None:
            continue
        try:
            await scheduler.update_job(job.id, run_at=now)
        except SchedulerError:
            # It changed under us (started, cancelled, deleted): the next look sees it.
            continue


def _timeout_message(timeout: float, stuck: list[Job]) -> str:
    if not stuck:
        return (
            f"drain() timed out after {timeout:g}s while jobs kept becoming due "
            "(a repeating job with a very short interval, or handlers scheduling new jobs?)"
        )
    now = _utcnow()
    lines = []
    for job in stuck:
        if job.status is JobStatus.RUNNING:
            since = job.last_run_at or job.updated_at
            state = "running" + (f" for {(now - since).total_seconds():.1f}s" if since else "")
            state += f", attempt {job.attempts + 1}"
        else:
            due = job.next_run_at
            state = "pending, due" + (f" since {due.isoformat()}" if due else "")
            state += " but not started"
        lines.append(f"  job {job.id} {job.name!r}: {state}")
    hint = ""
    if any(job.status is JobStatus.PENDING for job in stuck):
        hint = (
            "\n(due jobs that never start usually have no handler registered on this scheduler, "
            "a paused name, or a full concurrency limit)"
        )
    return f"drain() timed out after {timeout:g}s; jobs still busy:\n" + "\n".join(lines) + hint
