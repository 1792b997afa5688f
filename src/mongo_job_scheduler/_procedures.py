"""Operations of the public API written once for the asyncio and the blocking scheduler.

A procedure is a generator that yields the steps it needs and receives their results: a store
call (:class:`Call`) or a pause between two polls (:class:`Sleep`). It holds the logic (input
validation, loops, checks, errors, the values handed back) and no I/O. ``run_async`` carries it
out on a :class:`~.stores.base.JobStore` (pausing with ``asyncio.sleep``), ``run_sync`` on a
:class:`~.stores.base.SyncJobStore` (pausing with ``time.sleep``): both stores have the same
method names and arguments, so ``mongo_job_scheduler.Scheduler`` and
``mongo_job_scheduler.sync.Scheduler`` behave alike without two copies of each operation. What
only one scheduler does (waking its local worker, emitting events) stays in that scheduler.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from ._documents import build_query, parse_job_id, validate_name
from ._durations import Duration, to_seconds, to_utc
from ._errors import JobNotFound, ValidationError
from ._updates import UPDATE_ATTEMPTS, UpdatePlan, plan_retry, update_gave_up
from .fleet import LIVE_FOR, WorkerInfo, unhandled
from .job import FINISHED_STATUSES, Job, JobStatus
from .stats import SchedulerStats

__all__ = [
    "FIRST_POLL",
    "LONGEST_POLL",
    "PURGEABLE",
    "Call",
    "Procedure",
    "Sleep",
    "apply_update",
    "list_live_workers",
    "list_paused",
    "pause_name",
    "purge_finished",
    "read_stats",
    "resume_name",
    "retry",
    "run_async",
    "run_sync",
    "wait_finished",
]

T = TypeVar("T")

FIRST_POLL = 0.01
"""Seconds ``wait`` sleeps after its first look at an unfinished job; each pause doubles..."""
LONGEST_POLL = 0.25
"""...up to this many seconds."""

PURGEABLE = ("completed", "failed", "cancelled")
"""The statuses ``purge`` deletes by default, and the only ones it accepts."""


@dataclass(frozen=True)
class Call:
    """One store call: ``store.<method>(*args, **kwargs)``."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` before the next step (the driver's own sleep); its result is ``None``."""

    seconds: float


Procedure = Generator[Call | Sleep, Any, T]


async def run_async(procedure: Procedure[T], store: Any) -> T:
    """Carry out ``procedure`` on an asyncio store."""
    result: Any = None
    while True:
        try:
            step = procedure.send(result)
        except StopIteration as done:
            value: T = done.value
            return value
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            result = None
        else:
            result = await getattr(store, step.method)(*step.args, **step.kwargs)


def run_sync(procedure: Procedure[T], store: Any) -> T:
    """Carry out ``procedure`` on a blocking store."""
    result: Any = None
    while True:
        try:
            step = procedure.send(result)
        except StopIteration as done:
            value: T = done.value
            return value
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            result = None
        else:
            result = getattr(store, step.method)(*step.args, **step.kwargs)


def apply_update(
    job_id: Any, oid: Any, plan_for: Callable[[Mapping[str, Any], datetime], UpdatePlan]
) -> Procedure[dict[str, Any]]:
    """Change a job optimistically: read it, plan the change for its current status
    (``plan_for(document, now)`` raises if the status allows none), take back its dedupe key
    if the change revives it, and write only if the status is still the one planned for;
    read again when it changed meanwhile, at most :data:`UPDATE_ATTEMPTS` times. Returns the
    document after the write."""
    for _ in range(UPDATE_ATTEMPTS):
        current = yield Call("get", (oid,))
        if current is None:
            raise JobNotFound(job_id)
        plan = plan_for(current, (yield Call("now")))
        key = plan.reserve_dedupe_key
        if key is not None and not (yield Call("reserve_dedupe_key", (key, oid))):
            raise plan.dedupe_conflict(job_id)
        doc = yield Call(
            "update",
            (oid,),
            {"expect_status": [plan.expect_status], "set": plan.set, "unset": plan.unset},
        )
        if doc is not None:
            after: dict[str, Any] = doc
            return after
    raise update_gave_up(job_id)


def wait_finished(
    job_id: Any, timeout: Duration | None, clock: Callable[[], float] | None = None
) -> Procedure[Job]:
    """``wait``: read the job until it has finished (completed, failed or cancelled) and return
    it, sleeping :data:`FIRST_POLL` seconds between the first reads and twice as long each time
    after, up to :data:`LONGEST_POLL`. :class:`JobNotFound` if there is no such job;
    ``TimeoutError`` once ``timeout`` seconds have passed on ``clock`` (``time.monotonic``)."""
    monotonic = time.monotonic if clock is None else clock
    oid = parse_job_id(job_id)
    limit = None if timeout is None else to_seconds("timeout", timeout, allow_zero=True)
    deadline = None if limit is None else monotonic() + limit
    pause = FIRST_POLL
    while True:
        doc = yield Call("get", (oid,))
        if doc is None:
            raise JobNotFound(job_id)
        if doc.get("status") in FINISHED_STATUSES:
            return Job.from_document(doc)
        if deadline is not None and monotonic() >= deadline:
            raise TimeoutError(f"job {job_id} still {doc.get('status')} after {limit:g}s")
        yield Sleep(pause if deadline is None else min(pause, max(0.0, deadline - monotonic())))
        pause = min(pause * 2, LONGEST_POLL)


def retry(job_id: Any) -> Procedure[Job]:
    """``retry_job``: make a ``failed`` or ``cancelled`` job pending, due now, with fresh
    attempts (:func:`~._updates.plan_retry`, through :func:`apply_update`)."""
    oid = parse_job_id(job_id)
    doc = yield from apply_update(
        job_id, oid, lambda current, now: plan_retry(job_id, current, now)
    )
    return Job.from_document(doc)


def purge_finished(
    older_than: Any, statuses: Sequence[str | JobStatus] = PURGEABLE
) -> Procedure[int]:
    """``purge``: delete the jobs in ``statuses`` (finished ones only) last updated before
    ``older_than`` (an aware datetime, or a duration back from the store's clock); returns how
    many were deleted."""
    now = yield Call("now")
    if isinstance(older_than, datetime):
        before = to_utc("older_than", older_than)
    else:
        before = now - timedelta(seconds=to_seconds("older_than", older_than, allow_zero=True))
    chosen = build_query(status=list(statuses)).statuses or []
    active = sorted(set(chosen) - set(PURGEABLE))
    if active:
        raise ValidationError("statuses", f"only finished jobs can be purged, not {active}")
    deleted: int = yield Call("delete_finished", (before, chosen))
    return deleted


def pause_name(name: Any) -> Procedure[bool]:
    """``pause``: stop every worker from starting jobs named ``name``; ``False`` if it was
    already paused."""
    paused: bool = yield Call("pause", (validate_name(name),))
    return paused


def resume_name(name: Any) -> Procedure[bool]:
    """``resume``: let workers start jobs named ``name`` again; ``False`` if it was not
    paused."""
    resumed: bool = yield Call("resume", (validate_name(name),))
    return resumed


def list_paused() -> Procedure[list[str]]:
    """``paused_names``: the paused job names, sorted."""
    names: list[str] = yield Call("paused_names")
    return names


def read_stats() -> Procedure[SchedulerStats]:
    """``stats``: counts by status and name, the due backlog and its lag, failures in the last
    hour, the paused names, and the due jobs whose name no live worker handles."""
    now = yield Call("now")
    raw = yield Call("stats", (now,))
    live = yield from _live_at(now)
    return SchedulerStats(
        at=now,
        by_name=raw["by_name"],
        due=int(raw["due"]),
        oldest_due_at=raw["oldest_due"],
        failed_last_hour=int(raw["failed_since_hour"]),
        paused=(yield Call("paused_names")),
        unhandled=unhandled((yield Call("due_by_name", (now,))), live),
    )


def list_live_workers() -> Procedure[list[WorkerInfo]]:
    """``live_workers``: the workers seen within :data:`~.fleet.LIVE_FOR`, oldest start
    first."""
    now = yield Call("now")
    return (yield from _live_at(now))


def _live_at(now: datetime) -> Procedure[list[WorkerInfo]]:
    docs = yield Call("live_workers", (now - LIVE_FOR,))
    return [WorkerInfo.from_document(d) for d in docs]
