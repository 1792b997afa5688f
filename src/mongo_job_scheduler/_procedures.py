"""Operations of the public API written once for the asyncio and the blocking scheduler.

A procedure is a generator that yields the store calls it needs (:class:`Call`) and receives
their results; it holds the logic (loops, checks, errors) and no I/O. ``run_async`` carries it
out on a :class:`~.stores.base.JobStore`, ``run_sync`` on a
:class:`~.stores.base.SyncJobStore`: both stores have the same method names and arguments, so
``mongo_job_scheduler.Scheduler`` and ``mongo_job_scheduler.sync.Scheduler`` behave alike
without two copies of each operation.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from ._documents import NewJob
from ._errors import JobNotFound
from ._updates import UPDATE_ATTEMPTS, UpdatePlan, update_gave_up
from ._workflows import (
    DEPENDANT_PROJECTION,
    DEPENDANTS_OPEN,
    DEPENDENCY_PROJECTION,
    FINISHED,
    Verdict,
    cancellation_error,
    check_dependencies,
    settle,
    verdict,
)

__all__ = [
    "Call",
    "Procedure",
    "apply_update",
    "create_waiting",
    "rewait",
    "run_async",
    "run_sync",
    "settle_dependants",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One store call: ``store.<method>(*args, **kwargs)``."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


Procedure = Generator[Call, Any, T]


async def run_async(procedure: Procedure[T], store: Any) -> T:
    """Carry out ``procedure`` on an asyncio store."""
    result: Any = None
    while True:
        try:
            call = procedure.send(result)
        except StopIteration as done:
            value: T = done.value
            return value
        result = await getattr(store, call.method)(*call.args, **call.kwargs)


def run_sync(procedure: Procedure[T], store: Any) -> T:
    """Carry out ``procedure`` on a blocking store."""
    result: Any = None
    while True:
        try:
            call = procedure.send(result)
        except StopIteration as done:
            value: T = done.value
            return value
        result = getattr(store, call.method)(*call.args, **call.kwargs)


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
        for dependency in finished:
            yield from settle_dependants(dependency)
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


def settle_dependants(dependency: Mapping[str, Any]) -> Procedure[list[dict[str, Any]]]:
    """A job with dependants finished (``dependency``: its ``_id``, ``status`` and ``name``):
    close its edges; release each dependant left with no open edge, or cancel it if the
    dependency did not complete (unless ``run_on_failure``), and settle the dependants of what
    was cancelled, down the graph. Idempotent. Returns the dependants it cancelled."""
    cancelled: list[dict[str, Any]] = []
    queue = [dependency]
    while queue:
        current = queue.pop()
        waiting = yield Call("close_dependencies", (current["_id"],))
        for job_id in waiting:
            found = yield Call("get_many", ([job_id], DEPENDANT_PROJECTION))
            doc = found[0] if found else None
            if doc is None or doc.get("status") != "waiting":
                continue
            seen = verdict(current.get("status"), doc.get("runOnFailure") is True)
            if seen is Verdict.CANCEL:
                done = yield Call("cancel_waiting", (job_id, cancellation_error(current)))
                if done is not None:
                    cancelled.append(done)
                    if done.get("dependants") == DEPENDANTS_OPEN:
                        queue.append(done)
            elif seen is Verdict.MET and not (yield Call("has_open_dependencies", (job_id,))):
                yield Call("release_waiting", (job_id,))
        yield Call("dependants_settled", (current["_id"],))
    return cancelled
