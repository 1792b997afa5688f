"""MongoDB queries shared by the async store and the sync store (pure builders, no I/O), and
each operation of the dedupe procedure as the PyMongo call that performs it (built, not made).

Sharding rule: every ``findAndModify`` on the jobs collection names ``_id`` and no upsert
touches it; the only unique index there is ``_id``; what needs uniqueness (dedupe keys,
concurrency slots, rate windows, paused names, worker registrations) lives in side collections
keyed by ``_id``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any, NoReturn

from bson.codec_options import CodecOptions
from bson.errors import InvalidDocument
from bson.min_key import MinKey
from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.collection import Collection
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DocumentTooLarge,
    DuplicateKeyError,
    InvalidOperation,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from .._dedupe import (
    AddEntry,
    DedupeOp,
    DropEntry,
    InsertJob,
    InsertJobs,
    Pause,
    ReadClock,
    ReadEntry,
    ReadJob,
    ReadKeyHolder,
    TakeOver,
    released_on_finish,
)
from .._documents import JobQuery
from .._history import HISTORY_LIMIT, Ending
from .._workflows import DEPENDANTS_OPEN, DEPENDANTS_SETTLED, FINISHED
from ..fleet import FORGET_AFTER
from ..job import AttemptOutcome
from .base import LOCK_FIELDS, Announced, Fence, Finish

DEFAULT_COLLECTION = "scheduler_jobs"

CODEC_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=timezone.utc)
"""Documents are read with aware UTC datetimes whatever the client's own options."""

CLAIM_SORT = [("priority", ASCENDING), ("nextRunAt", ASCENDING), ("_id", ASCENDING)]

FINISHED_RANGE = {"$gte": "cancelled", "$lte": "failed"}
"""The finished statuses (``cancelled``, ``completed``, ``failed``) are exactly the statuses
between these two in string order: a partial filter every MongoDB version accepts (``$in``
there needs 7.0). A query on ``status`` ``$in`` finished statuses is inside it."""

JOB_INDEXES = [
    # Claim: the global order of pending jobs. Partial, so finished and running jobs cost
    # nothing here; nextRunAt bounds skip future jobs within each priority. status (always
    # "pending" here: the planner checks a query's status on the keys instead of fetching each
    # document) and name close the key, so counts of pending and due jobs by name are read
    # from the keys alone. Neither changes while a job is pending: no write touches it more.
    IndexModel(
        [
            ("priority", ASCENDING),
            ("nextRunAt", ASCENDING),
            ("_id", ASCENDING),
            ("status", ASCENDING),
            ("name", ASCENDING),
        ],
        name="claim_order",
        partialFilterExpression={"status": "pending"},
    ),
    # Recovery of expired leases: running jobs by lease deadline (partial: running only).
    IndexModel(
        [("lockUntil", ASCENDING)],
        name="lease_expiry",
        partialFilterExpression={"status": "running"},
    ),
    # Retention: MongoDB's TTL monitor deletes a finished job once its expireAt has passed
    # (set only when a Scheduler has `retention` for its final status; never on repeating jobs).
    IndexModel([("expireAt", ASCENDING)], name="retention", expireAfterSeconds=0, sparse=True),
    # Finished jobs whose dependants are not settled yet (the sweep after a crash): partial,
    # so only jobs that have dependants waiting for their end are in it.
    IndexModel(
        [("dependants", ASCENDING), ("status", ASCENDING), ("updatedAt", ASCENDING)],
        name="unsettled_dependants",
        partialFilterExpression={"dependants": DEPENDANTS_OPEN},
    ),
    # Listing by name, oldest first (dashboard, CLI, get_jobs(name=...)); the job names
    # (one key per distinct name).
    IndexModel([("name", ASCENDING), ("createdAt", ASCENDING), ("_id", ASCENDING)], name="by_name"),
    # Finished jobs by status and finish time: throughput, activity by name, failures in the
    # last hour, purge, and lists of finished jobs by updatedAt. Partial, so only the write
    # that finishes a job (and the purge or revival that ends it) touches it; lastRunAt and
    # nextRunAt make the throughput read index-only (the wait before each start), name the
    # count by name of the jobs finished in a window.
    IndexModel(
        [
            ("status", ASCENDING),
            ("updatedAt", ASCENDING),
            ("_id", ASCENDING),
            ("lastRunAt", ASCENDING),
            ("nextRunAt", ASCENDING),
            ("name", ASCENDING),
        ],
        name="finished",
        partialFilterExpression={"status": FINISHED_RANGE},
    ),
    # Jobs waiting for their dependencies, by name (activity by name). Partial: only a
    # workflow job's creation, release or cancellation while waiting touches it.
    IndexModel(
        [("status", ASCENDING), ("name", ASCENDING)],
        name="waiting",
        partialFilterExpression={"status": "waiting"},
    ),
]


def side_collection_names(collection: str) -> tuple[str, str]:
    """Names of the dedupe registry and the concurrency-slot collections."""
    return f"{collection}_dedupe", f"{collection}_slots"


def rates_collection_name(collection: str) -> str:
    """Name of the collection of rate-limit windows (``_id`` = the job name)."""
    return f"{collection}_rates"


def rate_acquire_update(start_id: Any, limit: int, period_ms: int) -> list[dict[str, Any]]:
    """Record a start (``start_id``) in the name's sliding window if fewer than ``limit``
    starts happened in the last ``period_ms`` (older ones are dropped first)."""
    recent = {
        "$filter": {
            "input": {"$ifNull": ["$starts", []]},
            "cond": {"$gt": ["$$this.at", {"$subtract": ["$$NOW", period_ms]}]},
        }
    }
    return [
        {
            "$set": {
                "starts": {
                    "$let": {
                        "vars": {"recent": recent},
                        "in": {
                            "$cond": [
                                {"$lt": [{"$size": "$$recent"}, limit]},
                                {"$concatArrays": ["$$recent", [{"id": start_id, "at": "$$NOW"}]]},
                                "$$recent",
                            ]
                        },
                    }
                }
            }
        }
    ]


def deps_collection_name(collection: str) -> str:
    """Name of the collection of dependency edges (``_id`` = ``{job, on}``: ``job`` waits for
    ``on``)."""
    return f"{collection}_deps"


DEPS_INDEXES = [
    IndexModel([("on", ASCENDING)], name="by_dependency"),
    IndexModel([("job", ASCENDING), ("open", ASCENDING)], name="open_by_job"),
]


def edge_documents(job_id: Any, dependency_ids: Sequence[Any]) -> list[dict[str, Any]]:
    """The open edges of a new waiting job."""
    return [
        {"_id": {"job": job_id, "on": on}, "job": job_id, "on": on, "open": True}
        for on in dependency_ids
    ]


def mark_dependencies(dependency_ids: Sequence[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Filter and update that mark unfinished dependencies as having dependants to settle
    when they end (``updatedAt`` stamped: every write to a job is)."""
    return (
        {"_id": {"$in": list(dependency_ids)}, "status": {"$nin": list(FINISHED)}},
        {"$set": {"dependants": DEPENDANTS_OPEN}, "$currentDate": {"updatedAt": True}},
    )


def release_waiting_update() -> list[dict[str, Any]]:
    """A waiting job becomes pending: due now, or at its own ``nextRunAt`` if later."""
    return [
        {
            "$set": {
                "status": "pending",
                "nextRunAt": {"$max": ["$nextRunAt", "$$NOW"]},
                "updatedAt": "$$NOW",
            }
        }
    ]


def cancel_waiting_update(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A waiting job is cancelled because a dependency did not complete."""
    return {"$set": {"status": "cancelled", **fields}, "$currentDate": {"updatedAt": True}}


SETTLED_UPDATE = {"$set": {"dependants": DEPENDANTS_SETTLED}}
"""A finished job's dependants were all looked at (``updatedAt`` kept: its end is its last
change)."""


def unsettled_filter(before: datetime) -> dict[str, Any]:
    """Finished jobs last written before ``before`` whose dependants are not settled."""
    return {
        "dependants": DEPENDANTS_OPEN,
        "status": {"$in": list(FINISHED)},
        "updatedAt": {"$lt": before},
    }


def workers_collection_name(collection: str) -> str:
    """Name of the collection of live worker registrations (``_id`` = the owner id)."""
    return f"{collection}_workers"


WORKER_INDEXES = [
    # Registrations not renewed for an hour are deleted by MongoDB's TTL monitor.
    IndexModel(
        [("lastSeen", ASCENDING)],
        name="forget",
        expireAfterSeconds=int(FORGET_AFTER.total_seconds()),
    ),
]


def due_by_name_pipeline(now: datetime, head: int | None) -> list[dict[str, Any]]:
    """Counts of due pending jobs by name, with the earliest due time of each (among the
    first ``head`` in claim order if given: bounded); read from the ``claim_order`` keys
    alone."""
    stages: list[dict[str, Any]] = [{"$match": due_filter(now)}]
    if head is not None:
        stages += [{"$sort": dict(CLAIM_SORT)}, {"$limit": head}]
    group = {"_id": "$name", "n": {"$sum": 1}, "oldest": {"$min": "$nextRunAt"}}
    return [*stages, {"$group": group}]


def due_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The rows of :func:`due_by_name_pipeline` as ``{name: count}``."""
    return {str(row["_id"]): int(row["n"]) for row in rows}


def live_filter(since: datetime) -> dict[str, Any]:
    """Worker registrations renewed at or after ``since``."""
    return {"lastSeen": {"$gte": since}}


LIVE_SORT = [("startedAt", ASCENDING)]
"""Live workers are listed oldest start first."""


def paused_collection_name(collection: str) -> str:
    """Name of the collection of paused job names (``_id`` = the name)."""
    return f"{collection}_paused"


def pause_upsert(name: str, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """Filter and update of the upsert that pauses ``name`` (a second pause keeps the first
    one's ``pausedAt``; the upsert tells whether the name was paused before)."""
    return {"_id": name}, {"$setOnInsert": {"pausedAt": now}}


NAME_ONLY = {"_id": 1}
"""Projection of the paused names' documents."""


def sorted_names(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The names (``_id``) of side-collection documents, sorted (the paused names)."""
    return sorted(str(doc["_id"]) for doc in docs)


def _names(
    flt: dict[str, Any], names: Sequence[str] | None, exclude_names: Sequence[str]
) -> dict[str, Any]:
    condition: dict[str, Any] = {}
    if names is not None:
        condition["$in"] = list(names)
    if exclude_names:
        condition["$nin"] = list(exclude_names)
    if condition:
        flt["name"] = condition
    return flt


def due_filter(
    now: Any, exclude_names: Sequence[str] = (), names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Pending jobs due by ``now`` (optionally only ``names``, never ``exclude_names``)."""
    # The always-true priority condition makes claim_order's leading field part of the query,
    # so the planner bounds nextRunAt within each priority instead of scanning future jobs.
    flt = {"status": "pending", "priority": {"$gte": MinKey()}, "nextRunAt": {"$lte": now}}
    return _names(flt, names, exclude_names)


def upcoming_filter(
    now: Any, until: Any, exclude_names: Sequence[str] = (), names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Pending jobs not due by ``now`` that become due by ``until`` (bounded on claim_order
    like :func:`due_filter`)."""
    flt = {
        "status": "pending",
        "priority": {"$gte": MinKey()},
        "nextRunAt": {"$gt": now, "$lte": until},
    }
    return _names(flt, names, exclude_names)


def expired_filter(
    now: Any, exclude_names: Sequence[str] = (), names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Running jobs whose lease expired by ``now``."""
    return _names({"status": "running", "lockUntil": {"$lt": now}}, names, exclude_names)


def expiring_filter(
    now: Any, until: Any, exclude_names: Sequence[str] = (), names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Running jobs whose lease runs out after ``now`` and by ``until`` (on lease_expiry)."""
    flt = {"status": "running", "lockUntil": {"$gt": now, "$lte": until}}
    return _names(flt, names, exclude_names)


CANDIDATE_PROJECTION = {
    "_id": 1,
    "name": 1,
    "concurrency": 1,
    "rateLimit": 1,
    "priority": 1,
    "nextRunAt": 1,
}


def claim_order_key(doc: Mapping[str, Any]) -> tuple[int, Any, Any]:
    """The global claim order: priority (1 first), then due time, then insertion (``_id``)."""
    return (int(doc.get("priority") or 5), doc.get("nextRunAt"), doc["_id"])


def claim_filter(job_id: Any) -> dict[str, Any]:
    """The job is still claimable, judged by the server's clock."""
    return _claimable({"_id": job_id})


def claim_many_filter(job_ids: Sequence[Any]) -> dict[str, Any]:
    """Those of these jobs that are still claimable (a batch claim's ``update_many``)."""
    return _claimable({"_id": {"$in": list(job_ids)}})


def _claimable(ids: dict[str, Any]) -> dict[str, Any]:
    return {
        **ids,
        "status": {"$in": ["pending", "running"]},
        "$expr": {
            "$or": [
                {"$and": [{"$eq": ["$status", "pending"]}, {"$lte": ["$nextRunAt", "$$NOW"]}]},
                {"$and": [{"$eq": ["$status", "running"]}, {"$lt": ["$lockUntil", "$$NOW"]}]},
            ]
        },
    }


def claim_update(owner: str, lease: timedelta, claim_id: Any = None) -> list[dict[str, Any]]:
    """Take the job for ``owner`` until ``$$NOW + lease``, bumping the fencing token;
    ``claim_id`` marks the documents of one batch claim so they can be read back. Taking over
    a running job (its lease expired) records the lost attempt in its ``history``."""
    lease_ms = int(lease.total_seconds() * 1000)
    return [
        {
            "$set": {
                "leaseExpiries": {
                    "$add": [
                        {"$ifNull": ["$leaseExpiries", 0]},
                        {"$cond": [{"$eq": ["$status", "running"]}, 1, 0]},
                    ]
                },
                "status": "running",
                "lockedBy": {"$literal": owner},
                "lockedAt": "$$NOW",
                "lockUntil": {"$add": ["$$NOW", lease_ms]},
                "lockVersion": {"$add": [{"$ifNull": ["$lockVersion", 0]}, 1]},
                "lastRunAt": "$$NOW",
                "updatedAt": "$$NOW",
                "history": _if_running(_appended(LEASE_LOST_ENTRY)),
                **({} if claim_id is None else {"claimId": claim_id}),
            }
        }
    ]


def unchanged_filter(flt: dict[str, Any], docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``flt`` narrowed to the documents still as they were read in ``docs``: each must keep
    the ``updatedAt`` it had (every write to a job stamps it, see :func:`claimed_as_read`)."""
    pairs = [[doc["_id"], doc["updatedAt"]] for doc in docs]
    unchanged = {"$in": [["$_id", "$updatedAt"], {"$literal": pairs}]}
    return {**flt, "$expr": {"$and": [flt["$expr"], unchanged]}}


def claimed_as_read(
    doc: dict[str, Any], owner: str, lease: timedelta, claim_id: Any, now: datetime
) -> dict[str, Any]:
    """What :func:`claim_update` makes of the pending document ``doc``, with ``now`` (the
    store's estimate of the server's time, taken before the claim) standing for ``$$NOW``.

    A batch claim whose ``update_many`` took only jobs unchanged since it read them
    (:func:`unchanged_filter`) uses this for the ones it took instead of reading them back
    (``doc`` must have been read whole, while pending). Only the claim's
    own timestamps differ from the stored ones: they are a few milliseconds early, so
    ``lockUntil`` is never later than the lease the server granted. ``doc`` is updated in
    place and returned."""
    stamp = now.replace(microsecond=now.microsecond // 1000 * 1000)  # BSON keeps milliseconds
    expiries, version = doc.get("leaseExpiries"), doc.get("lockVersion")
    doc["leaseExpiries"] = 0 if expiries is None else expiries
    doc["status"] = "running"
    doc["lockedBy"] = owner
    doc["lockedAt"] = stamp
    doc["lockUntil"] = stamp + timedelta(milliseconds=int(lease.total_seconds() * 1000))
    doc["lockVersion"] = (0 if version is None else version) + 1
    doc["lastRunAt"] = stamp
    doc["updatedAt"] = stamp
    doc["claimId"] = claim_id
    return doc


def fence_filter(fence: Fence, expect: Mapping[str, Any] | None = None) -> dict[str, Any]:
    flt: dict[str, Any] = {
        "_id": fence.job_id,
        "status": "running",
        "lockedBy": fence.owner,
        "lockVersion": fence.token,
    }
    if expect:
        flt.update(expect)
    return flt


def fences_filter(
    job_ids: Sequence[Any], fence: Fence, expect: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """:func:`fence_filter` for several jobs held by one owner under the same token."""
    flt = fence_filter(fence, expect)
    flt["_id"] = {"$in": list(job_ids)}
    return flt


# -- operator counts (stats) and clean-up (purge), shared by both stores -----------------------

COUNT_BY_NAME_AND_STATUS: list[dict[str, Any]] = [
    {"$group": {"_id": {"name": "$name", "status": "$status"}, "n": {"$sum": 1}}}
]

OLDEST_DUE_PROJECTION = {"nextRunAt": 1}
OLDEST_DUE_SORT = [("nextRunAt", ASCENDING)]
"""The oldest due job: :func:`due_filter` read in this order with this projection."""

FAILED_WITHIN = timedelta(hours=1)
"""``stats`` counts the jobs that failed within this time before now."""


def failed_since_filter(now: datetime) -> dict[str, Any]:
    """Jobs that ended ``failed`` within :data:`FAILED_WITHIN` before ``now``."""
    return {"status": "failed", "updatedAt": {"$gte": now - FAILED_WITHIN}}


def stats_counts(
    rows: Iterable[Mapping[str, Any]],
    due: int,
    oldest: Mapping[str, Any] | None,
    failed: int,
) -> dict[str, Any]:
    """A store's ``stats`` answer from its reads: the :data:`COUNT_BY_NAME_AND_STATUS` rows,
    the count of due jobs, the oldest due job (or ``None``) and the count of recent failures."""
    by_name: dict[str, dict[str, int]] = {}
    for row in rows:
        by_name.setdefault(str(row["_id"]["name"]), {})[str(row["_id"]["status"])] = int(row["n"])
    return {
        "by_name": by_name,
        "due": due,
        "oldest_due": None if oldest is None else oldest["nextRunAt"],
        "failed_since_hour": failed,
    }


def finished_per_minute_pipeline(since: datetime, limit: int) -> list[dict[str, Any]]:
    """``throughput``: the jobs that finished at or after ``since`` (the newest ``limit`` of
    them), counted by minute of ``updatedAt`` and status, with the longest and summed wait
    between due time and start (``lastRunAt - nextRunAt``, ms; when both are known and the
    start was not early). It reads the ``finished`` index only, never a document."""
    wait = {
        "$let": {
            "vars": {"w": {"$subtract": ["$lastRunAt", "$nextRunAt"]}},
            "in": {"$cond": [{"$gte": ["$$w", 0]}, "$$w", None]},
        }
    }
    minute = {"$subtract": ["$updatedAt", {"$mod": [{"$toLong": "$updatedAt"}, 60_000]}]}
    return [
        {"$match": {"status": {"$in": list(FINISHED)}, "updatedAt": {"$gte": since}}},
        {"$sort": {"updatedAt": -1}},
        {"$limit": limit},
        {"$project": {"_id": 0, "status": 1, "minute": minute, "wait": wait}},
        {
            "$group": {
                "_id": {"minute": "$minute", "status": "$status"},
                "n": {"$sum": 1},
                "waitMax": {"$max": "$wait"},
                "waitSum": {"$sum": "$wait"},
                "waitN": {"$sum": {"$cond": [{"$eq": ["$wait", None]}, 0, 1]}},
            }
        },
    ]


def minute_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of :func:`finished_per_minute_pipeline` as the stores answer them."""
    return [
        {
            "minute": row["_id"]["minute"],
            "status": str(row["_id"]["status"]),
            "n": int(row["n"]),
            "waitMax": None if row.get("waitMax") is None else int(row["waitMax"]),
            "waitSum": int(row.get("waitSum") or 0),
            "waitN": int(row.get("waitN") or 0),
        }
        for row in rows
    ]


ACTIVE_READS: dict[str, tuple[dict[str, Any], list[tuple[str, int]]]] = {
    "pending": ({"status": "pending", "priority": {"$gte": MinKey()}}, CLAIM_SORT),
    "running": ({"status": "running", "lockUntil": {"$gte": MinKey()}}, [("lockUntil", ASCENDING)]),
    "waiting": ({"status": "waiting"}, [("name", ASCENDING)]),
}
"""``activity``'s read of each active status: its filter, and the order in which its first
jobs are counted, that of its partial index (so a capped read stops early): pending jobs in
the claim order (``claim_order``), running ones by lease deadline (``lease_expiry``), waiting
ones by name (``waiting``). The always-true conditions make the index's leading field part of
the query, as in :func:`due_filter`."""


def active_by_name_pipeline(status: str, limit: int) -> list[dict[str, Any]]:
    """Counts by name of the first ``limit`` jobs in the active ``status`` (pending, running
    or waiting), in the order of :data:`ACTIVE_READS`. Pending and waiting jobs are counted
    from the keys of ``claim_order`` and ``waiting`` alone; running ones are fetched (at most
    ``limit``: running jobs are bounded by the fleet's capacity anyway)."""
    flt, order = ACTIVE_READS[status]
    return [
        {"$match": flt},
        {"$sort": dict(order)},
        {"$limit": limit},
        {"$group": {"_id": "$name", "n": {"$sum": 1}}},
    ]


def finished_by_name_pipeline(status: str, since: datetime, limit: int) -> list[dict[str, Any]]:
    """``activity``: the newest ``limit`` jobs that finished in ``status`` at or after
    ``since``, counted by name from the ``finished`` keys alone. One backward scan of that
    status's range: about twice as fast as one read of the three statuses merged by
    ``updatedAt``, which the server cannot run in its faster engine."""
    return [
        {"$match": {"status": status, "updatedAt": {"$gte": since}}},
        {"$sort": {"updatedAt": -1}},
        {"$limit": limit},
        {"$group": {"_id": "$name", "n": {"$sum": 1}}},
    ]


def job_names_pipeline(limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` distinct job names in order: one ``by_name`` key per name."""
    return [
        {"$sort": {"name": 1}},
        {"$group": {"_id": "$name"}},
        {"$sort": {"_id": 1}},
        {"$limit": limit},
    ]


def finished_before_filter(before: datetime, statuses: Sequence[str]) -> dict[str, Any]:
    """``purge``: the jobs in one of ``statuses`` last updated before ``before``."""
    return {"status": {"$in": list(statuses)}, "updatedAt": {"$lt": before}}


PENDING_CHANGES: list[dict[str, Any]] = [
    {
        "$match": {
            "$or": [
                {"operationType": "insert", "fullDocument.status": "pending"},
                {
                    "operationType": "update",
                    "updateDescription.updatedFields.status": "pending",
                },
                {
                    "operationType": "update",
                    "updateDescription.updatedFields.nextRunAt": {"$exists": True},
                },
                {"operationType": "replace", "fullDocument.status": "pending"},
            ]
        }
    },
    {
        "$project": {
            "operationType": 1,
            "documentKey": 1,
            "fullDocument.name": 1,
            "fullDocument.concurrency": 1,
            "fullDocument.rateLimit": 1,
            "fullDocument.nextRunAt": 1,
            "fullDocument.status": 1,
            "updateDescription.updatedFields.nextRunAt": 1,
            "updateDescription.updatedFields.status": 1,
        }
    },
]
"""The change stream that wakes idle workers: jobs created or set back to pending."""

NO_CHANGE_STREAMS = {40573}
"""Server error codes meaning change streams are unavailable (standalone server)."""

RESUME_TOKEN_LOST = {260, 280, 286}
"""Error codes after which a change stream cannot resume from its token."""


def due_time_of_change(change: Mapping[str, Any]) -> datetime | None:
    """The ``nextRunAt`` a change event carries, if any."""
    for part in ("fullDocument", "updateDescription"):
        section = change.get(part) or {}
        if part == "updateDescription":
            section = section.get("updatedFields") or {}
        value = section.get("nextRunAt")
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None


def announced_of_change(change: Mapping[str, Any]) -> Announced | None:
    """The job a change event announces as created pending with no concurrency or rate limit
    of its own (:class:`~.base.Announced`), or ``None``."""
    if change.get("operationType") != "insert":
        return None
    full = change.get("fullDocument") or {}
    job_id = (change.get("documentKey") or {}).get("_id")
    name = full.get("name")
    if job_id is None or not isinstance(name, str) or full.get("status") != "pending":
        return None
    if not isinstance(full.get("nextRunAt"), datetime):
        return None
    if _has_slot(full.get("concurrency")) or full.get("rateLimit") is not None:
        return None
    return Announced(job_id, name)


def _has_slot(limit: Any) -> bool:
    return isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit >= 1


def announced_filter(announced: Announced) -> dict[str, Any]:
    """The announced job, still pending and due by the server's clock (a ``nextRunAt`` date
    not after ``$$NOW``), still of its name, and still without a concurrency limit (from 1) or
    a rate limit of its own."""
    return {
        "_id": announced.job_id,
        "name": announced.name,
        "status": "pending",
        "concurrency": {"$not": {"$gte": 1}},
        "rateLimit": None,
        "nextRunAt": {"$type": "date"},
        "$expr": {"$lte": ["$nextRunAt", "$$NOW"]},
    }


OUTCOME_PROJECTION = {"lockVersion": 1, "lockedBy": 1, "status": 1}


def shows_outcome(doc: Mapping[str, Any] | None, fence: Fence, finish: Finish) -> bool:
    """Whether ``doc`` carries ``finish`` written under ``fence``: same token, lock cleared,
    the finish's status (used when a write's reply was lost, or a batch was partly refused)."""
    return (
        doc is not None
        and doc.get("lockVersion") == fence.token
        and doc.get("lockedBy") is None
        and doc.get("status") == finish.set.get("status")
    )


OWNERSHIP_PROJECTION = {"status": 1, "lockedBy": 1, "lockVersion": 1}


def is_transient(exc: BaseException) -> bool:
    """Whether a PyMongo error may pass if the operation is tried again (network trouble, an
    election, a timeout); a refused document or a bad operation will not."""
    if isinstance(exc, (ConnectionFailure, NetworkTimeout, ServerSelectionTimeoutError)):
        return True
    if isinstance(exc, (BulkWriteError, DocumentTooLarge, InvalidOperation)):
        return False
    if isinstance(exc, OperationFailure):
        return exc.has_error_label("RetryableWriteError") or exc.code in RETRYABLE_CODES
    return isinstance(exc, PyMongoError) and not isinstance(exc, (InvalidDocument, TypeError))


RETRYABLE_CODES = frozenset(
    {6, 7, 50, 89, 91, 134, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436}
)
"""Server error codes of interrupted or unreachable operations (network, shutdown, election,
time limit) after which an idempotent fenced write may be tried again."""


def renew_filter(fences: Sequence[Fence]) -> dict[str, Any]:
    owner = fences[0].owner
    return {
        "$or": [{"_id": f.job_id, "lockVersion": f.token} for f in fences],
        "status": "running",
        "lockedBy": owner,
    }


def renew_update(lease: timedelta) -> list[dict[str, Any]]:
    return [{"$set": {"lockUntil": {"$add": ["$$NOW", int(lease.total_seconds() * 1000)]}}}]


def slot_acquire_update(
    job_id: Any, owner: str, limit: int, lease: timedelta
) -> list[dict[str, Any]]:
    """Add this execution to the name's holders if fewer than ``limit`` live holders remain
    (expired holders, whose owners died, are dropped first; so is this owner's own earlier
    entry for the job). Another owner's live entry for the same job is kept: that owner may be
    running the job, having claimed it after this owner read it as a candidate."""
    mine = {
        "$and": [{"$eq": ["$$this.job", job_id]}, {"$eq": ["$$this.owner", {"$literal": owner}]}]
    }
    live = {
        "$filter": {
            "input": {"$ifNull": ["$holders", []]},
            "cond": {"$and": [{"$gt": ["$$this.until", "$$NOW"]}, {"$not": [mine]}]},
        }
    }
    entry = {
        "job": job_id,
        "owner": {"$literal": owner},
        "until": {"$add": ["$$NOW", int(lease.total_seconds() * 1000)]},
    }
    return [
        {
            "$set": {
                "holders": {
                    "$let": {
                        "vars": {"live": live},
                        "in": {
                            "$cond": [
                                {"$lt": [{"$size": "$$live"}, limit]},
                                {"$concatArrays": ["$$live", [entry]]},
                                "$$live",
                            ]
                        },
                    }
                }
            }
        }
    ]


def slot_renew_update(fences: Sequence[Fence], lease: timedelta) -> list[dict[str, Any]]:
    ids = [f.job_id for f in fences]
    owner = fences[0].owner
    until = {"$add": ["$$NOW", int(lease.total_seconds() * 1000)]}
    return [
        {
            "$set": {
                "holders": {
                    "$map": {
                        "input": {"$ifNull": ["$holders", []]},
                        "in": {
                            "$cond": [
                                {
                                    "$and": [
                                        {"$in": ["$$this.job", ids]},
                                        {"$eq": ["$$this.owner", {"$literal": owner}]},
                                    ]
                                },
                                {"$mergeObjects": ["$$this", {"until": until}]},
                                "$$this",
                            ]
                        },
                    }
                }
            }
        }
    ]


# -- the attempt history (see _history): each entry built on the server from the document ----


def _present(path: str) -> dict[str, Any]:
    """The field's value, or no field at all when it is missing or null."""
    return {"$ifNull": [path, "$$REMOVE"]}


def _is_date(expr: Any) -> dict[str, Any]:
    return {"$eq": [{"$type": expr}, "date"]}


def history_entry(ending: Ending, ended: Any = "$$NOW") -> dict[str, Any]:
    """The expression of the ``history`` entry of the attempt the document is running, ended
    at ``ended`` (what :func:`.._history.entry` builds in Python): its values from the document
    as it is before the write, the ending's as literals."""
    given = {key: {"$literal": value} for key, value in ending.fields().items()}
    duration = {
        "$cond": [
            {"$and": [_is_date("$lastRunAt"), _is_date(ended)]},
            {"$subtract": [ended, "$lastRunAt"]},
            "$$REMOVE",
        ]
    }
    return {
        "outcome": given.pop("outcome"),
        "startedAt": _present("$lastRunAt"),
        "endedAt": ended,
        "durationMs": duration,
        "lockedBy": _present("$lockedBy"),
        "lockVersion": _present("$lockVersion"),
        **given,
    }


def _appended(entry: Mapping[str, Any]) -> dict[str, Any]:
    """``history`` with ``entry`` at its end, cut to the last HISTORY_LIMIT (a stored value
    that is not an array counts as empty)."""
    kept = {"$cond": [{"$isArray": "$history"}, "$history", []]}
    return {"$slice": [{"$concatArrays": [kept, [dict(entry)]]}, -HISTORY_LIMIT]}


def _if_running(then: Any) -> dict[str, Any]:
    """``then`` for a running job; the stored ``history`` (or none) for any other."""
    return {"$cond": [{"$eq": ["$status", "running"]}, then, "$history"]}


LEASE_LOST_ENTRY = history_entry(
    Ending(AttemptOutcome.LEASE_LOST), ended={"$ifNull": ["$lockUntil", "$$NOW"]}
)
"""The entry a takeover records for the attempt whose lease ran out (ended when it ran out)."""
STOPPED_ENTRY = history_entry(Ending(AttemptOutcome.STOPPED))
CANCELLED_ENTRY = history_entry(Ending(AttemptOutcome.CANCELLED))


def finish_update(
    set_fields: Mapping[str, Any], unset: Sequence[str], ending: Ending | None = None
) -> list[dict[str, Any]]:
    """An outcome write: set the fields (as literals: no value is read as an expression) and
    stamp ``updatedAt``; append the attempt's entry to ``history`` if ``ending`` is given
    (from the document's own fields, so identical outcomes of many jobs are still one update);
    then clear the lock and unset ``unset``."""
    fields: dict[str, Any] = {key: {"$literal": value} for key, value in set_fields.items()}
    fields["updatedAt"] = "$$NOW"
    if ending is not None:
        fields["history"] = _appended(history_entry(ending))
    return [{"$set": fields}, {"$unset": [*LOCK_FIELDS, *unset]}]


def cancel_update() -> list[dict[str, Any]]:
    """Cancel: a running job's attempt is recorded as cancelled, then the lock cleared."""
    return [
        {
            "$set": {
                "status": "cancelled",
                "updatedAt": "$$NOW",
                "history": _if_running(_appended(CANCELLED_ENTRY)),
            }
        },
        {"$unset": list(LOCK_FIELDS)},
    ]


def release_update() -> list[dict[str, Any]]:
    """Give a claimed job back (the worker stops): pending, due now, the attempt recorded as
    stopped."""
    return [
        {
            "$set": {
                "status": "pending",
                "nextRunAt": {"$min": ["$nextRunAt", "$$NOW"]},
                "updatedAt": "$$NOW",
                "history": _appended(STOPPED_ENTRY),
            }
        },
        {"$unset": list(LOCK_FIELDS)},
    ]


# -- producers and admin (shared by the async store and the sync facade) ---------------------


def dedupe_entry(key: str, job_id: Any, now: datetime) -> dict[str, Any]:
    """The registry document that gives dedupe ``key`` to ``job_id``."""
    return {"_id": key, "jobId": job_id, "registeredAt": now}


def dedupe_takeover(
    key: str, holder_id: Any, job_id: Any, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Filter and update moving ``key`` from ``holder_id`` (finished, or never created) to
    ``job_id``; the filter matches nothing if another producer took the key first."""
    return {"_id": key, "jobId": holder_id}, {"$set": {"jobId": job_id, "registeredAt": now}}


def is_dedupe_index_conflict(exc: DuplicateKeyError) -> bool:
    """Whether a jobs-collection insert hit a unique index on ``dedupeKey``. This project
    creates none, but the Node library's ``MongoJobStore`` does (mixed fleets, docs/interop.md):
    then a job the dedupe registry does not know holds the key."""
    details = exc.details or {}
    return "dedupeKey" in (details.get("keyPattern") or {}) or "dedupeKey_1" in str(
        details.get("errmsg", "")
    )


def in_transaction(session: Any) -> bool:
    """Whether ``session`` (a PyMongo session, or ``None``) is inside a transaction."""
    return session is not None and bool(session.in_transaction)


def _as_returned(returned: Any) -> Any:
    return returned


def _raise(exc: DuplicateKeyError) -> NoReturn:
    raise exc


def _nothing(returned: Any) -> None:
    return None


def _yes(returned: Any) -> bool:
    return True


def _no(exc: DuplicateKeyError) -> bool:
    return False


def _matched(returned: Any) -> bool:
    return bool(returned.matched_count)


@dataclass(frozen=True)
class DedupeStep:
    """One operation of a dedupe procedure (:mod:`.._dedupe`) as a call on a store's
    collections, the same for PyMongo's blocking and asyncio APIs: ``call()`` performs it (on
    the asyncio API it returns the awaitable to await), ``result`` turns what the call returned
    into the procedure's result, and ``refused`` gives the procedure's result when the call
    raised ``DuplicateKeyError``, or raises that error again."""

    call: Callable[[], Any]
    result: Callable[[Any], Any] = _as_returned
    refused: Callable[[DuplicateKeyError], Any] = _raise


def dedupe_step(
    op: DedupeOp,
    jobs: Collection[Any] | AsyncCollection[Any],
    registry: Collection[Any] | AsyncCollection[Any],
    session: Any,
    clock: Callable[[], Any],
    pause: Callable[[float], Any],
) -> DedupeStep:
    """The call that performs ``op`` on the ``jobs`` collection and the dedupe ``registry``
    (both PyMongo collections of one API), through ``session``; ``clock()`` reads the store's
    clock and ``pause(seconds)`` waits."""
    if isinstance(op, ReadClock):
        return DedupeStep(clock)
    if isinstance(op, Pause):
        return DedupeStep(partial(pause, op.seconds), _nothing)
    if isinstance(op, AddEntry):
        entry = dedupe_entry(op.key, op.job_id, op.at)
        return DedupeStep(partial(registry.insert_one, entry, session=session), _yes, _no)
    if isinstance(op, ReadEntry):
        return DedupeStep(partial(registry.find_one, {"_id": op.key}, session=session))
    if isinstance(op, ReadJob):
        return DedupeStep(partial(jobs.find_one, {"_id": op.job_id}, session=session))
    if isinstance(op, TakeOver):
        flt, update = dedupe_takeover(op.key, op.holder_id, op.job_id, op.at)
        return DedupeStep(partial(registry.update_one, flt, update, session=session), _matched)
    if isinstance(op, InsertJobs):
        insert_many = partial(jobs.insert_many, op.documents, ordered=True, session=session)
        return DedupeStep(insert_many, _nothing)
    if isinstance(op, InsertJob):
        fallback = op.index_fallback
        return DedupeStep(
            partial(jobs.insert_one, op.document, session=session),
            _yes,
            lambda exc: False if fallback and is_dedupe_index_conflict(exc) else _raise(exc),
        )
    if isinstance(op, DropEntry):
        drop = partial(registry.delete_one, {"_id": op.key, "jobId": op.job_id}, session=session)
        return DedupeStep(drop, _nothing)
    if isinstance(op, ReadKeyHolder):
        return DedupeStep(partial(jobs.find_one, {"dedupeKey": op.key}, session=session))
    raise TypeError(f"not a dedupe operation: {op!r}")


def status_filter(job_id: Any, statuses: Sequence[str]) -> dict[str, Any]:
    """The job, if its status is one of ``statuses`` (``cancel`` and ``update_job``)."""
    return {"_id": job_id, "status": {"$in": list(statuses)}}


def user_update(set_fields: Mapping[str, Any], unset: Sequence[str]) -> dict[str, Any]:
    """An ``update_job`` write: set and unset fields and stamp ``updatedAt``."""
    update: dict[str, Any] = {"$currentDate": {"updatedAt": True}}
    if set_fields:
        update["$set"] = dict(set_fields)
    if unset:
        update["$unset"] = {key: "" for key in unset}
    return update


def find_projection(query: JobQuery) -> dict[str, Any] | None:
    """The ``get_jobs`` projection: the fields asked for, each left out when its value takes
    more than ``max_value_size`` BSON bytes (as :meth:`JobQuery.project` does); ``None`` for
    whole documents."""
    if query.fields is None:
        return None
    limit = query.max_value_size
    if limit is None:
        return dict.fromkeys(query.fields, 1)
    return {
        name: {
            "$cond": [{"$lte": [{"$bsonSize": {"v": f"${name}"}}, limit]}, f"${name}", "$$REMOVE"]
        }
        for name in query.fields
    }


def find_sort(query: JobQuery) -> list[tuple[str, int]]:
    """The ``get_jobs`` order (:meth:`JobQuery.order`)."""
    return query.order()


# -- jobs that wait for other jobs: each store operation once, for both PyMongo APIs ---------

AnyCollection = Collection[Any] | AsyncCollection[Any]
"""A collection of either PyMongo API."""

Calls = Generator[Callable[[], Any], Any, Any]
"""A store operation as the PyMongo calls it makes, in order: each yielded call returns the
result (blocking API) or an awaitable of it (asyncio API), which is sent back in. Both MongoDB
stores run these with a few lines each (``_perform``), so the two cannot drift apart."""


def get_many(
    jobs: AnyCollection, ids: Sequence[Any], projection: Mapping[str, Any] | None, session: Any
) -> Calls:
    if not ids:
        return []
    cursor = jobs.find({"_id": {"$in": list(ids)}}, projection, session=session)
    return (yield partial(_to_list, cursor))


def add_dependencies(
    jobs: AnyCollection, deps: AnyCollection, job_id: Any, ids: Sequence[Any], session: Any
) -> Calls:
    if ids:
        edges = edge_documents(job_id, ids)
        yield partial(deps.insert_many, edges, ordered=False, session=session)
        yield partial(jobs.update_many, *mark_dependencies(ids), session=session)


def reopen_dependencies(
    jobs: AnyCollection, deps: AnyCollection, job_id: Any, ids: Sequence[Any]
) -> Calls:
    if ids:
        edges = [{"job": job_id, "on": on} for on in ids]
        yield partial(deps.update_many, {"_id": {"$in": edges}}, {"$set": {"open": True}})
        yield partial(jobs.update_many, *mark_dependencies(ids))


def close_dependencies(deps: AnyCollection, dependency_ids: Sequence[Any]) -> Calls:
    on = {"$in": list(dependency_ids)}
    yield partial(deps.update_many, {"on": on, "open": True}, {"$set": {"open": False}})
    edges = yield partial(_to_list, deps.find({"on": on}, {"job": 1, "on": 1}))
    return [(edge["job"], edge["on"]) for edge in edges]


def has_open_dependencies(deps: AnyCollection, job_id: Any) -> Calls:
    found = yield partial(deps.find_one, {"job": job_id, "open": True}, {"_id": 1})
    return found is not None


def release_waiting(jobs: AnyCollection, job_id: Any) -> Calls:
    return (
        yield partial(
            jobs.find_one_and_update,
            {"_id": job_id, "status": "waiting"},
            release_waiting_update(),
            projection={"dependsOn": 0},
            return_document=ReturnDocument.AFTER,
        )
    )


def cancel_waiting(
    jobs: AnyCollection, registry: AnyCollection, job_id: Any, fields: Mapping[str, Any]
) -> Calls:
    doc = yield partial(
        jobs.find_one_and_update,
        {"_id": job_id, "status": "waiting"},
        cancel_waiting_update(fields),
        return_document=ReturnDocument.AFTER,
    )
    if doc is not None:
        yield from release_key(registry, doc)
    return doc


def release_key(registry: AnyCollection, doc: Mapping[str, Any]) -> Calls:
    """Give back the dedupe key of a job that just ended, if its scope lets it go."""
    key = released_on_finish(doc)
    if key is not None:
        yield partial(registry.delete_one, {"_id": key, "jobId": doc["_id"]})


DELETED_PROJECTION = {
    "name": 1,
    "status": 1,
    "dedupeKey": 1,
    "dedupeScope": 1,
    "dedupeWindowMs": 1,
    "dependants": 1,
}
"""What ``delete_job`` reads of the job it deletes: enough to give back its dedupe key and
to settle its dependants."""


def delete_job(
    jobs: AnyCollection,
    registry: AnyCollection,
    deps: AnyCollection,
    job_id: Any,
    statuses: Sequence[str],
) -> Calls:
    """Delete the job if its status is one of ``statuses``, give back its dedupe key as a
    cancel does, and drop the edges of what it waited for; the deleted document (projected to
    :data:`DELETED_PROJECTION`), or ``None``."""
    doc = yield partial(
        jobs.find_one_and_delete, status_filter(job_id, statuses), projection=DELETED_PROJECTION
    )
    if doc is not None:
        yield from release_key(registry, doc)
        yield partial(deps.delete_many, {"job": job_id})
    return doc


def dependants_settled(jobs: AnyCollection, dependency_ids: Sequence[Any]) -> Calls:
    finished = {"_id": {"$in": list(dependency_ids)}, "status": {"$in": list(FINISHED)}}
    yield partial(jobs.update_many, finished, SETTLED_UPDATE)


def dependants(deps: AnyCollection, job_id: Any, limit: int) -> Calls:
    edges = yield partial(_to_list, deps.find({"on": job_id}, {"job": 1}).limit(limit))
    return [edge["job"] for edge in edges]


def _to_list(cursor: Any) -> Any:
    """All of a cursor's documents (a list, or an awaitable of one on the asyncio API)."""
    return cursor.to_list()


# -- the operator read made of several calls, once for both PyMongo APIs ------------------------


def activity(
    jobs: AnyCollection, now: datetime, since: datetime, limit: int, active_limit: int
) -> Calls:
    """``activity``: what :meth:`~.base.JobStore.activity` answers, in seven bounded reads
    (one per status, then the due jobs)."""
    pipelines = [(s, active_by_name_pipeline(s, active_limit)) for s in ACTIVE_READS]
    pipelines += [(s, finished_by_name_pipeline(s, since, limit)) for s in FINISHED]
    rows: list[dict[str, Any]] = []
    for status, pipeline in pipelines:
        found = yield from _aggregated(jobs, pipeline)
        rows += [{"name": str(r["_id"]), "status": status, "n": int(r["n"])} for r in found]
    due = yield from _aggregated(jobs, due_by_name_pipeline(now, active_limit))
    oldest = min((r["oldest"] for r in due if r.get("oldest") is not None), default=None)
    return {"counts": rows, "due": due_counts(due), "oldest_due": oldest}


def _aggregated(jobs: AnyCollection, pipeline: list[dict[str, Any]]) -> Calls:
    """The documents ``pipeline`` answers on ``jobs``."""
    cursor = yield partial(jobs.aggregate, pipeline)
    return (yield partial(_to_list, cursor))
