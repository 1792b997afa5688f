"""Counts an operator looks at: jobs by status and name, due backlog, recent failures, and
jobs finished per minute."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .job import JobStatus

__all__ = [
    "MAX_NAMES_SHOWN",
    "THROUGHPUT_READ_LIMIT",
    "SchedulerStats",
    "Throughput",
    "ThroughputMinute",
    "busiest_names",
    "throughput_from_rows",
]

MAX_NAMES_SHOWN = 100
"""How many job names the dashboard, the ``stats`` command and the metrics show one by one;
the others are summed into one row or series."""


def busiest_names(
    totals: Mapping[str, int], limit: int = MAX_NAMES_SHOWN
) -> tuple[list[str], list[str]]:
    """The ``limit`` names with the largest totals (ties go to the first name in order),
    sorted, and the other names."""
    ranked = sorted(totals, key=lambda name: (-totals[name], name))
    return sorted(ranked[:limit]), ranked[limit:]


@dataclass(frozen=True)
class SchedulerStats:
    """A snapshot from :meth:`Scheduler.stats`.

    ``by_name`` maps each job name to its counts by status; ``due`` is how many pending jobs
    are due but not started, ``oldest_due_at`` the earliest due time among them and ``lag``
    how long that one has waited; ``failed_last_hour`` counts jobs that ended ``failed``
    within the hour before ``at`` (the store's clock).
    """

    at: datetime
    by_name: dict[str, dict[str, int]]
    due: int
    oldest_due_at: datetime | None
    failed_last_hour: int
    paused: list[str] = field(default_factory=list)
    """Job names paused with :meth:`Scheduler.pause`."""
    unhandled: dict[str, int] = field(default_factory=dict)
    """Due jobs, by name, that no live worker handles: they wait until a worker with a task
    for that name (or a catch-all handler) starts."""

    @property
    def by_status(self) -> dict[str, int]:
        """Counts by status over all names (every status present, zeros included)."""
        totals = {status.value: 0 for status in JobStatus}
        for counts in self.by_name.values():
            for status, n in counts.items():
                totals[status] = totals.get(status, 0) + n
        return totals

    @property
    def total(self) -> int:
        """How many jobs the collection holds."""
        return sum(self.by_status.values())

    @property
    def lag(self) -> timedelta | None:
        """How long the oldest due job has waited (``None`` when nothing is due)."""
        if self.oldest_due_at is None:
            return None
        return max(timedelta(0), self.at - self.oldest_due_at)


THROUGHPUT_READ_LIMIT = 100_000
"""The most finished jobs one :meth:`Scheduler.throughput` reads (the newest): its cost stays
bounded however many jobs finish within the window."""


@dataclass(frozen=True)
class ThroughputMinute:
    """The jobs that finished within one minute (by ``updatedAt``), by outcome.

    ``max_wait`` and ``mean_wait``: how long those jobs' last runs waited between their due time
    (``nextRunAt``) and their start (``lastRunAt``), over the jobs that ran (``None`` if none
    did).
    """

    start: datetime
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    max_wait: timedelta | None = None
    mean_wait: timedelta | None = None

    @property
    def finished(self) -> int:
        """All jobs that finished in this minute."""
        return self.completed + self.failed + self.cancelled


@dataclass(frozen=True)
class Throughput:
    """A snapshot from :meth:`Scheduler.throughput`: one :class:`ThroughputMinute` per
    wall-clock minute, oldest first, the last one the current minute (so far), as of ``at``
    (the store's clock). ``truncated``: more than :data:`THROUGHPUT_READ_LIMIT` jobs finished
    in the window, so the oldest minutes count only some of theirs."""

    at: datetime
    minutes: tuple[ThroughputMinute, ...]
    truncated: bool = False

    @property
    def completed(self) -> int:
        return sum(m.completed for m in self.minutes)

    @property
    def failed(self) -> int:
        return sum(m.failed for m in self.minutes)

    @property
    def cancelled(self) -> int:
        return sum(m.cancelled for m in self.minutes)

    @property
    def max_wait(self) -> timedelta | None:
        """The longest wait before a start among the jobs that finished in the window."""
        waits = [m.max_wait for m in self.minutes if m.max_wait is not None]
        return max(waits) if waits else None


def throughput_from_rows(
    at: datetime, first: datetime, count: int, rows: Iterable[Mapping[str, Any]], limit: int
) -> Throughput:
    """The :class:`Throughput` of ``count`` minutes from ``first`` (a minute's start), from a
    store's ``finished_per_minute`` rows; ``limit``: how many jobs the store read at most."""
    by_minute: dict[datetime, dict[str, Any]] = {}
    read = 0
    for row in rows:
        minute = by_minute.setdefault(row["minute"], {"waitSum": 0, "waitN": 0, "waitMax": None})
        read += row["n"]
        if row["status"] in ("completed", "failed", "cancelled"):
            minute[row["status"]] = minute.get(row["status"], 0) + row["n"]
        if row["waitMax"] is not None:
            minute["waitMax"] = max(row["waitMax"], minute["waitMax"] or 0)
        minute["waitSum"] += row["waitSum"]
        minute["waitN"] += row["waitN"]
    minutes = []
    for i in range(count):
        start = first + timedelta(minutes=i)
        seen = by_minute.get(start, {"waitSum": 0, "waitN": 0, "waitMax": None})
        n = seen["waitN"]
        minutes.append(
            ThroughputMinute(
                start=start,
                completed=seen.get("completed", 0),
                failed=seen.get("failed", 0),
                cancelled=seen.get("cancelled", 0),
                max_wait=None if seen["waitMax"] is None else _ms(seen["waitMax"]),
                mean_wait=_ms(seen["waitSum"] / n) if n else None,
            )
        )
    return Throughput(at=at, minutes=tuple(minutes), truncated=read >= limit)


def _ms(value: float) -> timedelta:
    return timedelta(milliseconds=value)
