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

from ._documents import NewJob, build_query, parse_job_id, validate_name
from ._durations import Duration, to_seconds, to_utc
from ._errors import InvalidJobState, JobNotFound, ValidationError
from ._updates import UPDATE_ATTEMPTS, UpdatePlan, plan_retry, update_gave_up
from ._workflows import (
    DEPENDANT_PROJECTION,
    DEPENDANTS_OPEN,
    DEPENDENCY_PROJECTION,
    FINISHED,
    Verdict,
    as_deleted,
    cancellation_error,
    check_dependencies,
    settle,
    verdict,
)
from .fleet import LIVE_FOR, WorkerInfo, unhandled
from .job import FINISHED_STATUSES, Job, JobStatus
from .stats import (
    ACTIVITY_READ_LIMIT,
    THROUGHPUT_READ_LIMIT,
    Activity,
    SchedulerStats,
    Throughput,
    activity_from_counts,
    throughput_from_rows,
)

__all__ = [
    "DELETABLE",
    "FIRST_POLL",
    "LONGEST_POLL",
    "PURGEABLE",
    "Call",
    "Procedure",
    "Sleep",
    "apply_update",
    "create_waiting",
    "delete_job",
    "insert_jobs",
    "list_dependants",
    "list_job_names",
    "list_live_workers",
    "list_paused",
    "pause_name",
    "purge_finished",
    "read_activity",
    "read_stats",
    "read_throughput",
    "resume_name",
    "retry",
    "rewait",
    "run_async",
    "run_sync",
    "settle_dependants",
    "wait_finished",
]

T = TypeVar("T")

FIRST_POLL = 0.01
"""Seconds ``wait`` sleeps after its first look at an unfinished job; each pause doubles..."""
LONGEST_POLL = 0.25
"""...up to this many seconds."""

MAX_THROUGHPUT_MINUTES = 1440
"""The longest window ``throughput`` covers: a day."""
MAX_JOB_NAMES = 10_000
"""The most names one ``job_names`` call returns."""

PURGEABLE = ("completed", "failed", "cancelled")
"""The statuses ``purge`` deletes by default, and the only ones it accepts."""

DELETABLE = ("pending", "waiting", "completed", "failed", "cancelled")
"""The statuses ``delete_job`` deletes: all but ``running`` (a handler may be running it)."""


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
    attempts (:func:`~._updates.plan_retry`, through :func:`apply_update`); a job with
    dependencies waits for them again (:func:`rewait`)."""
    oid = parse_job_id(job_id)
    doc = yield from apply_update(
        job_id, oid, lambda current, now: plan_retry(job_id, current, now)
    )
    if doc.get("status") == "waiting":  # it has dependencies: it waits for them again
        doc = yield from rewait(doc)
    return Job.from_document(doc)


def delete_job(job_id: Any) -> Procedure[tuple[bool, list[dict[str, Any]]]]:
    """``delete_job``: delete a job in one of the :data:`DELETABLE` statuses (its dedupe key
    given back and its own dependency edges dropped by the store) and settle the jobs waiting
    for it as if it had been cancelled, unless it had finished. :class:`InvalidJobState` for
    a running job. Returns whether a job was deleted (``False``: there was none) and the
    dependants that were cancelled because of it."""
    oid = parse_job_id(job_id)
    for _ in range(UPDATE_ATTEMPTS):
        doc = yield Call("delete", (oid, DELETABLE))
        if doc is not None:
            if doc.get("dependants") != DEPENDANTS_OPEN:
                return True, []
            return True, (yield from settle_dependants([as_deleted(doc)]))
        current = yield Call("get", (oid,))
        if current is None:
            return False, []
        status = current.get("status")
        if status not in DELETABLE:
            raise InvalidJobState(
                f"job {job_id} is {status}: a running job cannot be deleted; cancel it first"
            )
    raise InvalidJobState(f"job {job_id} kept changing state; not deleted")


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


def read_throughput(minutes: Any) -> Procedure[Throughput]:
    """``throughput``: the jobs that finished in each of the last ``minutes`` wall-clock
    minutes (the current one included), by outcome, with the wait before their starts."""
    count = _bounded_int("minutes", minutes, MAX_THROUGHPUT_MINUTES)
    now = yield Call("now")
    first = _window_start(now, count)
    rows = yield Call("finished_per_minute", (first, THROUGHPUT_READ_LIMIT))
    return throughput_from_rows(now, first, count, rows, THROUGHPUT_READ_LIMIT)


def read_activity(minutes: Any) -> Procedure[Activity]:
    """``activity``: each name's active jobs now and its jobs finished in the last
    ``minutes`` wall-clock minutes (the window of ``throughput``), by status, the due jobs
    and the lag, each read bounded by its limit; the paused names, and the due jobs whose
    name no live worker handles."""
    count = _bounded_int("minutes", minutes, MAX_THROUGHPUT_MINUTES)
    now = yield Call("now")
    since = _window_start(now, count)
    limits = (THROUGHPUT_READ_LIMIT, ACTIVITY_READ_LIMIT)
    raw = yield Call("activity", (now, since, *limits))
    live = yield from _live_at(now)
    paused = yield Call("paused_names")
    unhandled_due = unhandled(raw["due"], live)
    return activity_from_counts(now, since, count, raw, limits, paused, unhandled_due)


def _window_start(now: datetime, minutes: int) -> datetime:
    """The start of the last ``minutes`` wall-clock minutes as of ``now`` (the current minute
    is the last of them)."""
    return now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)


def list_job_names(limit: Any) -> Procedure[list[str]]:
    """``job_names``: the first ``limit`` distinct names of the stored jobs, sorted."""
    names: list[str] = yield Call("job_names", (_bounded_int("limit", limit, MAX_JOB_NAMES),))
    return names


def _bounded_int(field_name: str, value: Any, highest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= highest:
        raise ValidationError(field_name, f"must be an integer from 1 to {highest}, got {value!r}")
    return value


def list_live_workers() -> Procedure[list[WorkerInfo]]:
    """``live_workers``: the workers seen within :data:`~.fleet.LIVE_FOR`, oldest start
    first."""
    now = yield Call("now")
    return (yield from _live_at(now))


def _live_at(now: datetime) -> Procedure[list[WorkerInfo]]:
    docs = yield Call("live_workers", (now - LIVE_FOR,))
    return [WorkerInfo.from_document(d) for d in docs]


# -- jobs that wait for other jobs -------------------------------------------------------------


def create_waiting(new: NewJob, session: Any = None) -> Procedure[tuple[dict[str, Any], bool]]:
    """Store a job with ``depends_on``: check that every dependency exists and does not repeat
    (``ValidationError``, nothing written), store it ``pending`` if all completed already,
    ``cancelled`` if one failed or was cancelled (unless ``run_on_failure``), else ``waiting``
    with an open edge to each unfinished dependency; then settle the dependencies that
    finished meanwhile. Returns the stored document (or the dedupe holder) and whether it was
    created."""
    in_session = {"session": session}
    found = yield Call("get_many", (new.depends_on, DEPENDENCY_PROJECTION), in_session)
    by_id = check_dependencies(new.depends_on, found)
    run_on_failure = new.document.get("runOnFailure") is True
    settlement = settle([by_id[i] for i in new.depends_on], run_on_failure)
    if settlement.cancelled_by is not None:
        new.document.update(status="cancelled", **cancellation_error(settlement.cancelled_by))
    elif not settlement.open:
        new.document["status"] = "pending"
    [(doc, created)] = yield Call("insert", ([new],), in_session)
    if created and doc.get("status") == "waiting":
        yield Call("add_dependencies", (doc["_id"], settlement.open), in_session)
        doc = yield from _settle_meanwhile(doc, settlement.open, session)
    return doc, created


def rewait(doc: Mapping[str, Any]) -> Procedure[dict[str, Any]]:
    """A job with dependencies was retried and waits again: open its edges to the unfinished
    dependencies and settle it as at its creation. Returns the job as it is then."""
    found = yield Call("get_many", (list(doc.get("dependsOn") or ()), DEPENDENCY_PROJECTION))
    settlement = settle(found, doc.get("runOnFailure") is True)
    if settlement.cancelled_by is not None:
        cancelled = yield Call(
            "cancel_waiting", (doc["_id"], cancellation_error(settlement.cancelled_by))
        )
        return dict(cancelled or doc)
    yield Call("reopen_dependencies", (doc["_id"], settlement.open))
    return (yield from _settle_meanwhile(doc, settlement.open, None))


def _settle_meanwhile(
    doc: Mapping[str, Any], still_open: list[Any], session: Any
) -> Procedure[dict[str, Any]]:
    """After a waiting job's edges were opened: the dependencies that finished in between may
    have closed their edges before this one existed, so settle those here."""
    now = yield Call("get_many", (still_open, DEPENDENCY_PROJECTION), {"session": session})
    finished = [d for d in now if d.get("status") in FINISHED]
    if session is None:
        if finished:
            yield from settle_dependants(finished)
    elif finished:
        # Inside a transaction the new edges are invisible to other processes until it
        # commits: settle this job alone, from the dependencies as this transaction sees them.
        again = settle(now, doc.get("runOnFailure") is True)
        if again.cancelled_by is not None:
            fields = cancellation_error(again.cancelled_by)
            yield Call("cancel_waiting", (doc["_id"], fields), {"session": session})
        elif not again.open:
            yield Call("release_waiting", (doc["_id"],), {"session": session})
    current = yield Call("get_many", ([doc["_id"]],), {"session": session})
    return dict(current[0] if current else doc)


def settle_dependants(
    dependencies: Sequence[Mapping[str, Any]],
) -> Procedure[list[dict[str, Any]]]:
    """Jobs with dependants finished (each given by its ``_id``, ``status`` and ``name``):
    close their edges; release each dependant left with no open edge, or cancel it if one of
    them did not complete (unless it runs on failure), and settle the dependants of what was
    cancelled, down the graph. A batch costs a few round trips whatever its size, plus a few
    per dependant. Idempotent. Returns the dependants it cancelled."""
    cancelled: list[dict[str, Any]] = []
    queue = list(dependencies)
    while queue:
        by_id = {dependency["_id"]: dependency for dependency in queue}
        queue = []
        pairs = yield Call("close_dependencies", (list(by_id),))
        ended: dict[Any, list[Mapping[str, Any]]] = {}
        for job_id, on in pairs:
            ended.setdefault(job_id, []).append(by_id[on])
        found = (yield Call("get_many", (list(ended), DEPENDANT_PROJECTION))) if ended else []
        for doc in found:
            if doc.get("status") != "waiting":
                continue
            run_on_failure = doc.get("runOnFailure") is True
            blocker = next(
                (
                    dependency
                    for dependency in ended[doc["_id"]]
                    if verdict(dependency.get("status"), run_on_failure) is Verdict.CANCEL
                ),
                None,
            )
            if blocker is not None:
                fields = cancellation_error(blocker)
                done = yield Call("cancel_waiting", (doc["_id"], fields))
                if done is not None:
                    cancelled.append(done)
                    if done.get("dependants") == DEPENDANTS_OPEN:
                        queue.append(done)
            elif not (yield Call("has_open_dependencies", (doc["_id"],))):
                yield Call("release_waiting", (doc["_id"],))
        yield Call("dependants_settled", (list(by_id),))
    return cancelled


def insert_jobs(
    news: Sequence[NewJob], session: Any = None, *, bulk: bool = False
) -> Procedure[list[tuple[Any, bool]]]:
    """``schedule`` and ``schedule_bulk``: check every job's dependencies before anything is
    written (``ValidationError`` naming ``items[i]...`` for a ``bulk`` call), insert the jobs
    without dependencies together, then each job with dependencies
    (:func:`create_waiting`). Returns ``(document, created)`` per job, in order."""
    wanted = list(dict.fromkeys(i for new in news for i in new.depends_on))
    if wanted:
        found = yield Call("get_many", (wanted, DEPENDENCY_PROJECTION), {"session": session})
        for index, new in enumerate(news):
            try:
                check_dependencies(new.depends_on, found)
            except ValidationError as exc:
                if not bulk:
                    raise
                raise ValidationError(f"items[{index}].{exc.field}", exc.reason) from None
    plain = [new for new in news if not new.depends_on]
    stored = iter((yield Call("insert", (plain,), {"session": session})) if plain else [])
    out: list[tuple[Any, bool]] = []
    for new in news:
        if new.depends_on:
            out.append((yield from create_waiting(new, session)))
        else:
            out.append(next(stored))
    return out


def list_dependants(job_id: Any, limit: int) -> Procedure[list[Job]]:
    """``dependants``: the jobs that wait or waited for ``job_id``, in edge order."""
    waiting = yield Call("dependants", (parse_job_id(job_id), limit))
    found = yield Call("get_many", (waiting,))
    order = {dependant: index for index, dependant in enumerate(waiting)}
    return sorted((Job.from_document(d) for d in found), key=lambda j: order[j.id])
