"""Counts an operator looks at: jobs by status and name, due backlog, recent failures, jobs
finished per minute, and what each job name is doing now."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .job import ACTIVE_STATUSES, FINISHED_STATUSES, JobStatus

__all__ = [
    "ACTIVITY_READ_LIMIT",
    "MAX_NAMES_SHOWN",
    "THROUGHPUT_READ_LIMIT",
    "Activity",
    "SchedulerStats",
    "Throughput",
    "ThroughputMinute",
    "activity_from_counts",
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
        return _by_status(self.by_name)

    @property
    def total(self) -> int:
        """How many jobs the collection holds."""
        return sum(self.by_status.values())

    @property
    def lag(self) -> timedelta | None:
        """How long the oldest due job has waited (``None`` when nothing is due)."""
        return _lag(self.at, self.oldest_due_at)


def _by_status(by_name: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """The counts of every name summed by status (every status present, zeros included)."""
    totals = {status.value: 0 for status in JobStatus}
    for counts in by_name.values():
        for status, n in counts.items():
            totals[status] = totals.get(status, 0) + n
    return totals


def _lag(at: datetime, oldest_due_at: datetime | None) -> timedelta | None:
    """How long a job due at ``oldest_due_at`` has waited at ``at``."""
    if oldest_due_at is None:
        return None
    return max(timedelta(0), at - oldest_due_at)


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


ACTIVITY_READ_LIMIT = 10_000
"""The most jobs of each active status (pending, running, waiting), and the most due jobs,
that one :meth:`Scheduler.activity` reads: its cost stays bounded however many jobs wait."""


@dataclass(frozen=True)
class Activity:
    """A snapshot from :meth:`Scheduler.activity`: what each job name is doing, read in a few
    index reads of bounded size, cheap enough for a page that refreshes every few seconds
    over any number of jobs (:meth:`Scheduler.stats` counts every job instead).

    ``by_name`` maps each name to its counts by status: its ``pending``, ``running`` and
    ``waiting`` jobs now, and its jobs that finished (``completed``, ``failed``,
    ``cancelled``) at or after ``since``, the start of the last ``minutes`` wall-clock
    minutes as of ``at`` (the window of :meth:`Scheduler.throughput`). Each active status is
    read up to :data:`ACTIVITY_READ_LIMIT` jobs (pending ones first in the claim order,
    running ones by lease deadline, waiting ones by name) and each finished status up to its
    newest :data:`THROUGHPUT_READ_LIMIT`: ``capped`` holds the statuses whose read stopped at
    its limit, whose counts are then lower bounds (show them as "10000+").

    ``due_by_name`` counts the pending jobs due by ``at`` among the first
    :data:`ACTIVITY_READ_LIMIT` of them in the claim order (``"due"`` is in ``capped`` when
    that many were read), ``oldest_due_at`` is the earliest due time among them; ``paused``
    and ``unhandled`` are as in :class:`SchedulerStats` (``unhandled`` from those due jobs).
    """

    at: datetime
    since: datetime
    minutes: int
    by_name: dict[str, dict[str, int]]
    due_by_name: dict[str, int] = field(default_factory=dict)
    oldest_due_at: datetime | None = None
    capped: frozenset[str] = frozenset()
    """The statuses (and ``"due"``) whose counts stopped at the read limit."""
    paused: list[str] = field(default_factory=list)
    """Job names paused with :meth:`Scheduler.pause`."""
    unhandled: dict[str, int] = field(default_factory=dict)
    """Due jobs, by name, that no live worker handles."""

    @property
    def by_status(self) -> dict[str, int]:
        """Counts by status over all names (every status present, zeros included): the
        active statuses now, the finished ones within the window."""
        return _by_status(self.by_name)

    @property
    def due(self) -> int:
        """How many pending jobs are due but not started (a lower bound if ``"due"`` is in
        ``capped``)."""
        return sum(self.due_by_name.values())

    @property
    def lag(self) -> timedelta | None:
        """How long the oldest due job read has waited (``None`` when nothing is due)."""
        return _lag(self.at, self.oldest_due_at)


def activity_from_counts(
    at: datetime,
    since: datetime,
    minutes: int,
    raw: Mapping[str, Any],
    limits: tuple[int, int],
    paused: list[str],
    unhandled: dict[str, int],
) -> Activity:
    """The :class:`Activity` of a store's ``activity`` answer ``raw``, read with ``limits``:
    the most jobs of each finished status, and of each active status (and due jobs), read."""
    finished_limit, active_limit = limits
    by_name: dict[str, dict[str, int]] = {}
    read: dict[str, int] = {}
    for row in raw["counts"]:
        status, n = str(row["status"]), int(row["n"])
        counts = by_name.setdefault(str(row["name"]), {})
        counts[status] = counts.get(status, 0) + n
        read[status] = read.get(status, 0) + n
    each = dict.fromkeys(ACTIVE_STATUSES, active_limit)
    each.update(dict.fromkeys(FINISHED_STATUSES, finished_limit))
    capped = {status for status, limit in each.items() if read.get(status, 0) >= limit}
    due = {str(name): int(n) for name, n in raw["due"].items()}
    if sum(due.values()) >= active_limit:
        capped.add("due")
    return Activity(
        at=at,
        since=since,
        minutes=minutes,
        by_name=by_name,
        due_by_name=due,
        oldest_due_at=raw.get("oldest_due"),
        capped=frozenset(capped),
        paused=paused,
        unhandled=unhandled,
    )
