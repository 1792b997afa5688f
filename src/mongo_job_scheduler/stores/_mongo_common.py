"""MongoDB queries shared by the async store and the sync facade (pure builders, no I/O).

Sharding rule (SPEC §5.8): every ``findAndModify`` and upsert on the jobs collection names
``_id``; the only unique index there is ``_id``; dedupe keys and concurrency slots live in side
collections keyed by ``_id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta, timezone
from typing import Any

from bson.codec_options import CodecOptions
from pymongo import ASCENDING, IndexModel

from .base import Fence

DEFAULT_COLLECTION = "scheduler_jobs"

CODEC_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=timezone.utc)
"""Documents are read with aware UTC datetimes whatever the client's own options."""

LOCK_FIELDS = ("lockedBy", "lockedAt", "lockUntil")

CLAIM_SORT = [("priority", ASCENDING), ("nextRunAt", ASCENDING), ("_id", ASCENDING)]

JOB_INDEXES = [
    # Claim: equality on status, then the global order; nextRunAt bounds skip future jobs.
    IndexModel(
        [
            ("status", ASCENDING),
            ("priority", ASCENDING),
            ("nextRunAt", ASCENDING),
            ("_id", ASCENDING),
        ],
        name="claim_order",
    ),
    # Recovery of expired leases: running jobs by lease deadline.
    IndexModel([("status", ASCENDING), ("lockUntil", ASCENDING)], name="lease_expiry"),
    # Listing by name (dashboard, CLI, get_jobs(name=...)).
    IndexModel(
        [("name", ASCENDING), ("status", ASCENDING), ("createdAt", ASCENDING)], name="by_name"
    ),
    # Dedupe lookups and interop with the Node library's queries (not unique: see SPEC §5.8).
    IndexModel([("dedupeKey", ASCENDING)], name="dedupe_key", sparse=True),
]


def side_collection_names(collection: str) -> tuple[str, str]:
    """Names of the dedupe registry and the concurrency-slot collections."""
    return f"{collection}_dedupe", f"{collection}_slots"


def due_filter(now: Any, exclude_names: Sequence[str] = ()) -> dict[str, Any]:
    flt: dict[str, Any] = {"status": "pending", "nextRunAt": {"$lte": now}}
    if exclude_names:
        flt["name"] = {"$nin": list(exclude_names)}
    return flt


def expired_filter(now: Any) -> dict[str, Any]:
    return {"status": "running", "lockUntil": {"$lt": now}}


CANDIDATE_PROJECTION = {"_id": 1, "name": 1, "concurrency": 1}


def claim_filter(job_id: Any) -> dict[str, Any]:
    """The job is still claimable, judged by the server's clock."""
    return {
        "_id": job_id,
        "status": {"$in": ["pending", "running"]},
        "$expr": {
            "$or": [
                {"$and": [{"$eq": ["$status", "pending"]}, {"$lte": ["$nextRunAt", "$$NOW"]}]},
                {"$and": [{"$eq": ["$status", "running"]}, {"$lt": ["$lockUntil", "$$NOW"]}]},
            ]
        },
    }


def claim_update(owner: str, lease: timedelta) -> list[dict[str, Any]]:
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
            }
        }
    ]


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
    (expired holders, whose owners died, are dropped first)."""
    live = {
        "$filter": {
            "input": {"$ifNull": ["$holders", []]},
            "cond": {"$and": [{"$gt": ["$$this.until", "$$NOW"]}, {"$ne": ["$$this.job", job_id]}]},
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


def finish_update(set_fields: Mapping[str, Any], unset: Sequence[str]) -> dict[str, Any]:
    update: dict[str, Any] = {
        "$unset": {key: "" for key in (*LOCK_FIELDS, *unset)},
        "$currentDate": {"updatedAt": True},
    }
    if set_fields:
        update["$set"] = dict(set_fields)
    return update


def cancel_update() -> dict[str, Any]:
    return {
        "$set": {"status": "cancelled"},
        "$unset": {key: "" for key in LOCK_FIELDS},
        "$currentDate": {"updatedAt": True},
    }


def release_update() -> list[dict[str, Any]]:
    return [
        {
            "$set": {
                "status": "pending",
                "nextRunAt": {"$min": ["$nextRunAt", "$$NOW"]},
                "updatedAt": "$$NOW",
            }
        },
        {"$unset": list(LOCK_FIELDS)},
    ]
