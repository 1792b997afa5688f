"""The fleet view: which schedulers are running workers right now, and which due jobs no live
worker can run (pure rules; the stores keep the registrations)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ._durations import as_aware_utc

__all__ = [
    "FORGET_AFTER",
    "LIVE_FOR",
    "REGISTER_EVERY",
    "WorkerInfo",
    "handled_names",
    "unhandled",
]

REGISTER_EVERY = 30.0
"""Seconds between two registrations of a running worker (one small write each). Every write
wakes every idle change stream on the server, so a fleet of n idle processes writing n
registrations costs about n² wake-ups: with 50 idle processes, registrations every 10 s kept
``mongod`` about 0.5% of a core busier than every 30 s."""
LIVE_FOR = timedelta(seconds=3 * REGISTER_EVERY)
"""A worker whose last registration is older than this is not live (it stopped or died)."""
FORGET_AFTER = timedelta(hours=1)
"""Registrations not renewed for this long are deleted (a TTL index on MongoDB)."""


@dataclass(frozen=True)
class WorkerInfo:
    """One running worker as it last registered itself."""

    id: str
    """Its owner id (``lockedBy`` of the jobs it runs): the scheduler id and a per-start
    suffix."""
    scheduler_id: str
    host: str
    pid: int
    names: tuple[str, ...] | None
    """The job names it claims; ``None``: any name (it has a catch-all handler)."""
    workers: int
    """How many jobs it runs at once at most."""
    running: int
    """How many jobs it was running at its last registration."""
    started_at: datetime | None
    last_seen: datetime | None
    version: str

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> WorkerInfo:
        """Read a stored registration (tolerant of missing fields)."""
        names = doc.get("names")
        return cls(
            id=str(doc.get("_id")),
            scheduler_id=str(doc.get("schedulerId", "")),
            host=str(doc.get("host", "")),
            pid=int(doc.get("pid") or 0),
            names=None if names is None else tuple(str(n) for n in names),
            workers=int(doc.get("workers") or 0),
            running=int(doc.get("running") or 0),
            started_at=_aware(doc.get("startedAt")),
            last_seen=_aware(doc.get("lastSeen")),
            version=str(doc.get("version", "")),
        )

    def handles(self, name: str) -> bool:
        """Whether this worker claims jobs named ``name``."""
        return self.names is None or name in self.names


def handled_names(live: Iterable[WorkerInfo]) -> frozenset[str] | None:
    """The job names some live worker claims; ``None`` if one of them claims any name."""
    names: set[str] = set()
    for worker in live:
        if worker.names is None:
            return None
        names.update(worker.names)
    return frozenset(names)


def unhandled(due_by_name: Mapping[str, int], live: Iterable[WorkerInfo]) -> dict[str, int]:
    """The due jobs, by name, that no live worker claims (they wait until one starts)."""
    handled = handled_names(live)
    if handled is None:
        return {}
    return {name: n for name, n in sorted(due_by_name.items()) if n and name not in handled}


def _aware(value: Any) -> datetime | None:
    return as_aware_utc(value) if isinstance(value, datetime) else None
