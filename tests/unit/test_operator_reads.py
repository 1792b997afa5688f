"""Pure rules of the operator reads: the partial filter of the ``finished`` index, how a
store's rows become a :class:`Throughput`, and how its activity counts become an
:class:`Activity` (which counts stopped at their read limit)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from mongo_job_scheduler import Activity, JobStatus, ThroughputMinute
from mongo_job_scheduler.job import FINISHED_STATUSES
from mongo_job_scheduler.stats import (
    ACTIVITY_READ_LIMIT,
    THROUGHPUT_READ_LIMIT,
    activity_from_counts,
    throughput_from_rows,
)
from mongo_job_scheduler.stores._mongo_common import FINISHED_RANGE


def test_the_finished_range_holds_exactly_the_finished_statuses() -> None:
    inside = {
        status.value
        for status in JobStatus
        if FINISHED_RANGE["$gte"] <= status.value <= FINISHED_RANGE["$lte"]
    }
    assert inside == set(FINISHED_STATUSES)


def test_throughput_from_rows_fills_every_minute_and_says_when_it_read_too_few() -> None:
    first = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    rows = [
        {
            "minute": first,
            "status": "completed",
            "n": 3,
            "waitMax": 500,
            "waitSum": 900,
            "waitN": 3,
        },
        {"minute": first, "status": "failed", "n": 1, "waitMax": 1500, "waitSum": 1500, "waitN": 1},
        {"minute": first + timedelta(minutes=2), "status": "cancelled", "n": 2, "waitMax": None}
        | {"waitSum": 0, "waitN": 0},
    ]
    seen = throughput_from_rows(first + timedelta(minutes=2), first, 3, rows, limit=6)
    assert [m.finished for m in seen.minutes] == [4, 0, 2]
    assert seen.minutes[0].max_wait == timedelta(milliseconds=1500)
    assert seen.minutes[0].mean_wait == timedelta(milliseconds=600)
    assert seen.minutes[1] == ThroughputMinute(first + timedelta(minutes=1))
    assert seen.truncated  # six jobs read: the limit, so there may have been more
    assert not throughput_from_rows(first, first, 3, rows, limit=7).truncated
    assert THROUGHPUT_READ_LIMIT == 100_000


AT = datetime(2024, 5, 1, 12, 30, 10, tzinfo=timezone.utc)
SINCE = datetime(2024, 5, 1, 11, 31, tzinfo=timezone.utc)


def _activity(counts: list[tuple[str, str, int]], due: dict[str, int]) -> Activity:
    raw: dict[str, Any] = {
        "counts": [{"name": name, "status": status, "n": n} for name, status, n in counts],
        "due": due,
        "oldest_due": AT - timedelta(minutes=3) if due else None,
    }
    return activity_from_counts(AT, SINCE, 60, raw, (10, 5), ["p"], {})


def test_an_activity_sums_its_rows_by_name_and_by_status() -> None:
    seen = _activity(
        [("a", "pending", 2), ("a", "completed", 3), ("b", "failed", 1), ("b", "waiting", 1)],
        {"a": 1},
    )
    assert seen.by_name == {"a": {"pending": 2, "completed": 3}, "b": {"failed": 1, "waiting": 1}}
    assert seen.by_status == {
        "pending": 2, "running": 0, "waiting": 1, "completed": 3, "failed": 1, "cancelled": 0,
    }  # fmt: skip
    assert (seen.due, seen.lag, seen.paused) == (1, timedelta(minutes=3), ["p"])
    assert seen.capped == frozenset()
    nothing = _activity([], {})
    assert (nothing.due, nothing.oldest_due_at, nothing.lag) == (0, None, None)


def test_a_count_is_capped_when_its_read_reached_the_limit() -> None:
    """A status read up to its limit (5 for an active status here, 10 for a finished one) may
    have more jobs, whatever the names they were spread over; so may the due jobs."""
    seen = _activity(
        [("a", "pending", 3), ("b", "pending", 2), ("a", "running", 4), ("a", "completed", 10)],
        {"a": 4, "b": 1},
    )
    assert seen.capped == {"pending", "due", "completed"}
    below = _activity([("a", "pending", 4), ("a", "completed", 6), ("b", "completed", 3)], {})
    assert below.capped == frozenset()
    assert ACTIVITY_READ_LIMIT == 10_000
