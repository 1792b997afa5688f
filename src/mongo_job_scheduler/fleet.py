"""The fleet view: which schedulers are running workers right now, and which due jobs no live
worker can run (pure rules; the stores keep the registrations)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from ._durations import as_aware_utc

__all__ = [
    "FORGET_AFTER",
    "LIVE_FOR",
    "REGISTER_EVERY",
    "SWEEPERS_PER_ROUND",
    "WorkerInfo",
    "handled_names",
    "registration_due",
    "sweeps_this_round",
    "unhandled",
]

REGISTER_EVERY = 60.0
"""Seconds between two registrations of a running worker whose registration would say the
same as the last one (one small write each; a change of what it shows is written at the next
upkeep round instead). Every write wakes every idle change stream on the server, so a fleet of
n idle processes writing n registrations costs about n² wake-ups: the writes of one round, sent
at the same wall-clock instant by every process, cost ``mongod`` about 0.1 s of CPU with 50
idle processes."""
LIVE_FOR = timedelta(seconds=3 * REGISTER_EVERY)
"""A worker whose last registration is older than this is not live (it stopped or died)."""
SWEEPERS_PER_ROUND = 4
"""About how many live workers of a fleet sweep for unsettled dependants in each upkeep round
(see :func:`sweeps_this_round`): the fleet's sweeps stay about this many per round whatever
its size."""
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


Shown = TypeVar("Shown")


def registration_due(now: float, next_at: float, written: Shown | None, shown: Shown) -> bool:
    """Whether a worker writes its registration in the upkeep round at ``now`` (wall clock,
    seconds): its periodic registration is due (``next_at``), or what it shows (``shown``: the
    names it claims, how many jobs it runs) differs from what it last wrote (``written``,
    ``None`` before the first registration)."""
    return written is None or now >= next_at or shown != written


def sweeps_this_round(round_index: int, offset: int, live: int) -> bool:
    """Whether a worker sweeps for unsettled dependants in upkeep round ``round_index`` (the
    number of the wall-clock tick): every ``max(1, live // SWEEPERS_PER_ROUND)`` rounds, at the
    rounds its own ``offset`` (random, fixed at start) picks, so that in a fleet of ``live``
    workers about ``SWEEPERS_PER_ROUND`` sweep in each round (one round in about 50 has none:
    its dependants are settled a round later)."""
    every = max(1, live // SWEEPERS_PER_ROUND)
    return (round_index + offset) % every == 0


def _aware(value: Any) -> datetime | None:
    return as_aware_utc(value) if isinstance(value, datetime) else None
