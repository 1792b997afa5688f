"""Dedupe keys: who may hold a key, and when a finished job gives its key back (pure, no I/O).

A dedupe key belongs to one job at a time. A job under the default "active" scope holds its key
while it is pending or running, and for its dedupe window (``dedupeWindowMs``) after it
finished, if it has one; under the "forever" scope it holds the key for good. The stores keep a
registry of taken keys and decide with these rules, so every store dedupes alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from ._errors import InvalidJobState
from .job import ACTIVE_STATUSES

__all__ = [
    "DEDUPE_GRACE",
    "DedupeDecision",
    "decide_dedupe",
    "index_holder",
    "released_on_finish",
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
