"""Counts an operator looks at: jobs by status and name, due backlog, recent failures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .job import JobStatus

__all__ = ["MAX_NAMES_SHOWN", "SchedulerStats", "busiest_names"]

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
