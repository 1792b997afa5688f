"""Pure rules of the operator reads: the partial filter of the ``finished`` index, and how a
store's rows become a :class:`Throughput`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from mongo_job_scheduler import JobStatus, ThroughputMinute
from mongo_job_scheduler.job import FINISHED_STATUSES
from mongo_job_scheduler.stats import THROUGHPUT_READ_LIMIT, throughput_from_rows
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
