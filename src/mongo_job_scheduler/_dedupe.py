"""Dedupe keys: who may hold a key, and when a finished job gives its key back (pure, no I/O).

A dedupe key belongs to one job at a time. A job under the default "active" scope holds its key
while it is pending or running, and for its dedupe window (``dedupeWindowMs``) after it
finished, if it has one; under the "forever" scope it holds the key for good. The stores keep a
registry of taken keys and decide with these rules, so every store dedupes alike. The
registration procedure both MongoDB stores follow is here too, written once without I/O: it
asks its caller to perform each read and write (see "the registration procedure" below).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, TypeAlias, TypeVar

from ._documents import NewJob
from ._errors import InvalidJobState
from .job import ACTIVE_STATUSES

__all__ = [
    "DEDUPE_GRACE",
    "DEDUPE_WAIT",
    "AddEntry",
    "DedupeDecision",
    "DedupeOp",
    "DropEntry",
    "InsertJob",
    "InsertJobs",
    "Pause",
    "Procedure",
    "ReadClock",
    "ReadEntry",
    "ReadJob",
    "ReadKeyHolder",
    "TakeOver",
    "decide_dedupe",
    "index_holder",
    "insert_jobs",
    "insert_with_key",
    "released_on_finish",
    "reserve_key",
    "window_end",
]

DEDUPE_GRACE = timedelta(seconds=10)
"""How long a dedupe registration may point at a job that does not exist yet before another
producer treats its creator as crashed and takes the key over."""


class DedupeDecision(Enum):
    """What ``schedule`` does when a dedupe key is already registered."""

    RETURN_EXISTING = "return"
    """The holder keeps the key: return it instead of creating a job."""
    WAIT = "wait"
    """The holder may still be being created: look again shortly."""
    TAKE_OVER = "take_over"
    """The key is free to take: move the registration to the new job."""


def decide_dedupe(
    holder: Mapping[str, Any] | None,
    registered_at: datetime | None,
    now: datetime,
    scope: str,
) -> DedupeDecision:
    """Decide for a dedupe key already registered to ``holder`` (``None`` if that job does not
    exist) at ``registered_at``, for a caller asking with ``scope``. Active holders always
    keep the key; finished ones keep it under the "forever" scope (the caller's or their own)
    and until their dedupe window ends; a missing holder is waited for during
    :data:`DEDUPE_GRACE` (its creator may be between its two inserts), then taken over."""
    if holder is not None:
        if holder.get("status") in ACTIVE_STATUSES:
            return DedupeDecision.RETURN_EXISTING
        if scope == "forever" or holder.get("dedupeScope") == "forever":
            return DedupeDecision.RETURN_EXISTING
        held_until = window_end(holder)
        if held_until is not None and now < held_until:
            return DedupeDecision.RETURN_EXISTING
        return DedupeDecision.TAKE_OVER
    if registered_at is not None and now - registered_at < DEDUPE_GRACE:
        return DedupeDecision.WAIT
    return DedupeDecision.TAKE_OVER


def window_end(holder: Mapping[str, Any]) -> datetime | None:
    """When a finished job's dedupe window (``dedupeWindowMs`` after it finished, its
    ``updatedAt``; a naive time is UTC) ends; ``None`` if it has no window."""
    window = holder.get("dedupeWindowMs")
    finished = holder.get("updatedAt")
    if not isinstance(window, (int, float)) or not isinstance(finished, datetime):
        return None
    if finished.tzinfo is None:
        finished = finished.replace(tzinfo=timezone.utc)
    return finished + timedelta(milliseconds=window)


def released_on_finish(doc: Mapping[str, Any]) -> str | None:
    """The dedupe key a job gives back when it finishes (completed, failed, cancelled): none
    under the "forever" scope, nor with a dedupe window (the key stays taken for the window;
    :func:`decide_dedupe` lets it go afterwards)."""
    key = doc.get("dedupeKey")
    if key is None or doc.get("dedupeScope") == "forever" or doc.get("dedupeWindowMs"):
        return None
    return str(key)


def index_holder(
    holder: Mapping[str, Any] | None, key: str, scope: str, now: datetime
) -> Mapping[str, Any] | None:
    """Dedupe against ``holder``, the job that holds ``key`` in a unique ``dedupeKey`` index
    on the jobs collection (the Node library creates one; the registry does not know that
    job): return it if it keeps the key (:func:`decide_dedupe`); ``None`` if it is gone (try
    again). A finished holder keeps its key in that index, which forbids a new job with it:
    that raises :class:`InvalidJobState`."""
    if holder is None:
        return None
    if decide_dedupe(holder, None, now, scope) is DedupeDecision.RETURN_EXISTING:
        return holder
    raise InvalidJobState(
        f"dedupe key {key!r} is still held by {holder.get('status')} job {holder.get('_id')}: "
        "the jobs collection has a unique index on dedupeKey (the Node library's MongoJobStore "
        "creates it), which forbids reusing a finished job's key; purge that job or use "
        "another key"
    )


# -- the registration procedure ------------------------------------------------------------------
#
# Both MongoDB stores register keys alike and differ only in how they perform each step
# (awaiting PyMongo's asyncio API, or calling its blocking one). So the procedure is written
# once, as generators that yield the operation they need next and receive its result; each
# store has a small driver that performs the operations on its collections.


@dataclass(frozen=True)
class ReadClock:
    """Read the store's clock. Result: the current time."""


@dataclass(frozen=True)
class AddEntry:
    """Insert the registry entry that gives ``key`` to ``job_id``, registered ``at``. Result:
    ``True``, or ``False`` if ``key`` is registered already."""

    key: str
    job_id: Any
    at: datetime


@dataclass(frozen=True)
class ReadEntry:
    """Read the registry entry of ``key``. Result: the entry (``jobId``, ``registeredAt``) or
    ``None``."""

    key: str


@dataclass(frozen=True)
class ReadJob:
    """Read the job ``job_id``. Result: its document or ``None``."""

    job_id: Any


@dataclass(frozen=True)
class TakeOver:
    """Move the registry entry of ``key`` from ``holder_id`` to ``job_id``, registered ``at``,
    if it still names ``holder_id``. Result: whether it did."""

    key: str
    holder_id: Any
    job_id: Any
    at: datetime


@dataclass(frozen=True)
class Pause:
    """Wait ``seconds``. Result: ``None``."""

    seconds: float


@dataclass(frozen=True)
class InsertJobs:
    """Insert these job documents (jobs without a dedupe key), in order. Result: ``None``."""

    documents: list[dict[str, Any]]


@dataclass(frozen=True)
class InsertJob:
    """Insert the job ``document``, whose key is registered to it. Result: ``True``; or, if
    ``index_fallback``, ``False`` when a unique index on ``dedupeKey`` in the jobs collection
    refused it. Any other refusal is an error of the operation."""

    document: dict[str, Any]
    index_fallback: bool


@dataclass(frozen=True)
class DropEntry:
    """Delete the registry entry of ``key`` if it still names ``job_id``. Result: ``None``."""

    key: str
    job_id: Any


@dataclass(frozen=True)
class ReadKeyHolder:
    """Read the job whose ``dedupeKey`` is ``key``. Result: its document or ``None``."""

    key: str


DedupeOp: TypeAlias = (
    ReadClock
    | AddEntry
    | ReadEntry
    | ReadJob
    | TakeOver
    | Pause
    | InsertJobs
    | InsertJob
    | DropEntry
    | ReadKeyHolder
)
"""An operation a dedupe procedure asks its driver to perform."""

T = TypeVar("T")
Procedure: TypeAlias = Generator[DedupeOp, Any, T]
"""A dedupe procedure: it yields operations, is sent their results, and returns a ``T``."""

DEDUPE_WAIT = 0.05
"""Seconds to wait before looking again at a dedupe key whose job is still being created."""


def insert_jobs(
    jobs: Sequence[NewJob], in_transaction: bool
) -> Procedure[list[tuple[dict[str, Any], bool]]]:
    """Store new jobs: those without a dedupe key in one insert, then each keyed one through
    the registry (:func:`insert_with_key`), so keys repeated within ``jobs`` dedupe too.
    Returns ``(document, created)`` per job, in order."""
    plain = [job.document for job in jobs if job.dedupe_key is None]
    if plain:
        yield InsertJobs(plain)
    out: list[tuple[dict[str, Any], bool]] = []
    for job in jobs:
        if job.dedupe_key is None:
            out.append((job.document, True))
        else:
            out.append((yield from insert_with_key(job, job.dedupe_key, in_transaction)))
    return out


def insert_with_key(
    job: NewJob, key: str, in_transaction: bool
) -> Procedure[tuple[dict[str, Any], bool]]:
    """Register ``key`` for the new ``job``, then insert the job: ``(job.document, True)``;
    or ``(holder, False)`` when the job ``holder`` keeps the key (:func:`decide_dedupe`).

    The registry entry goes in first. A key taken by a job that does not exist yet is waited
    for during :data:`DEDUPE_GRACE` (its creator may be between its two inserts); a lost
    take-over, or an entry that vanished meanwhile, starts over. If a unique ``dedupeKey``
    index on the jobs collection refuses the job (a job the registry does not know holds the
    key), the entry is dropped again and that job decides (:func:`index_holder`); inside a
    transaction that refusal is an error instead."""
    while True:
        taken = yield from _take_key(key, job.id, job.dedupe_scope, patient=True)
        if isinstance(taken, _Kept):
            assert taken.holder is not None  # a patient attempt never gives up
            return taken.holder, False
        if (yield InsertJob(job.document, index_fallback=not in_transaction)):
            return job.document, True
        yield DropEntry(key, job.id)
        found = index_holder((yield ReadKeyHolder(key)), key, job.dedupe_scope, taken.at)
        if found is not None:
            return dict(found), False


def reserve_key(key: str, job_id: Any) -> Procedure[bool]:
    """Register ``key`` for ``job_id``, an existing job about to be pending again: ``True``
    once the key is its (free, registered to it already, or taken over from a finished or
    long-missing holder); ``False`` if another job keeps the key or may still be being
    created. It never waits."""
    taken = yield from _take_key(key, job_id, "active", patient=False)
    return isinstance(taken, _Taken)


@dataclass(frozen=True)
class _Taken:
    """The key is the job's now; ``at`` is the time of the attempt that got it."""

    at: datetime


@dataclass(frozen=True)
class _Kept:
    """Another job keeps the key: ``holder``, or ``None`` when an impatient attempt gave up
    (the holder may still be being created, or another producer took the key first)."""

    holder: dict[str, Any] | None


def _take_key(key: str, job_id: Any, scope: str, patient: bool) -> Procedure[_Taken | _Kept]:
    """Make ``key`` ``job_id``'s in the registry, unless another job keeps it for a caller
    asking with ``scope``. ``patient``: wait for a holder still being created, and start over
    after a lost take-over; otherwise both give up."""
    while True:
        now: datetime = yield ReadClock()
        if (yield AddEntry(key, job_id, now)):
            return _Taken(now)
        entry = yield ReadEntry(key)
        if entry is None:
            continue  # released meanwhile: try again
        holder_id = entry["jobId"]
        if holder_id == job_id:
            return _Taken(now)
        holder = yield ReadJob(holder_id)
        decision = decide_dedupe(holder, entry.get("registeredAt"), now, scope)
        if decision is DedupeDecision.RETURN_EXISTING:
            return _Kept(holder)
        if decision is DedupeDecision.WAIT:
            if not patient:
                return _Kept(None)
            yield Pause(DEDUPE_WAIT)
            continue
        if (yield TakeOver(key, holder_id, job_id, now)):
            return _Taken(now)
        if not patient:
            return _Kept(None)
