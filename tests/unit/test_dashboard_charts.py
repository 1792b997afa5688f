"""The overview's chart geometry (pure): scales, stacked bars, the status mix, and which orders
the job list offers for which filters."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")

from mongo_job_scheduler import Throughput, ThroughputMinute, ValidationError
from mongo_job_scheduler.dashboard._charts import (
    CHART_HEIGHT,
    SLOT_WIDTH,
    axis_duration,
    finished_chart,
    mix_segments,
    nice_ceiling,
    nice_duration,
    wait_chart,
)
from mongo_job_scheduler.dashboard._sorting import list_sort, sort_refusal

START = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1), (1, 1), (3, 5), (5, 5), (7, 10), (11, 20), (45, 50), (51, 100)]
)
def test_counts_are_scaled_to_a_round_top(value: float, top: float) -> None:
    assert nice_ceiling(value) == top


@pytest.mark.parametrize(
    ("seconds", "top", "label"),
    [
        (0.004, 0.01, "10 ms"),
        (0.3, 0.5, "500 ms"),
        (8, 10, "10 s"),
        (30, 30, "30 s"),
        (82, 120, "2 min"),
        (4000, 7200, "2 h"),
        (200_000, 259_200, "3 d"),
    ],
)
def test_waits_are_scaled_to_a_round_duration(seconds: float, top: float, label: str) -> None:
    assert nice_duration(seconds) == top
    assert axis_duration(top) == label


def test_finished_bars_stack_the_outcomes_of_each_minute_from_the_bottom() -> None:
    minutes = (
        ThroughputMinute(START, completed=3, failed=1, max_wait=timedelta(seconds=8)),
        ThroughputMinute(START + timedelta(minutes=1)),
        ThroughputMinute(START + timedelta(minutes=2), cancelled=2, max_wait=None),
    )
    chart = finished_chart(Throughput(START + timedelta(minutes=2), minutes))
    assert (chart.width, chart.slots, chart.top) == (3 * SLOT_WIDTH, 3, 5)
    first, last = chart.bars
    assert first.minute == START and first.label == "2 min ago: 3 completed, 1 failed, 0 cancelled"
    completed, failed = first.segments
    assert (completed.kind, completed.value, completed.height) == ("completed", 3, 60)
    assert completed.y == CHART_HEIGHT - 60 and failed.y == CHART_HEIGHT - 80
    assert (failed.x, failed.width) == (1, SLOT_WIDTH - 2)
    assert last.segments[0].x == 2 * SLOT_WIDTH + 1 and last.label.startswith("this minute")
    waits = wait_chart(Throughput(START, minutes))
    assert waits.top == 10 and len(waits.bars) == 1
    assert waits.bars[0].segments[0].value == 8000 and waits.bars[0].segments[0].height == 80
    assert finished_chart(Throughput(START, (ThroughputMinute(START),))).empty


def test_the_mix_splits_a_bar_100_wide_in_the_order_of_the_statuses() -> None:
    segments = mix_segments({"failed": 1, "pending": 3, "unknown": 9}, ["pending", "failed"])
    assert [(s.kind, s.x, s.width, s.value) for s in segments] == [
        ("pending", 0, 75, 3),
        ("failed", 75, 25, 1),
    ]
    assert mix_segments({}, ["pending"]) == []


def test_the_list_sorts_only_where_an_index_keeps_the_order() -> None:
    assert list_sort("createdAt", "desc", None, []) == ("_id", "desc")
    assert list_sort("createdAt", "asc", "email", ["failed"]) == ("createdAt", "asc")
    assert list_sort("name", "asc", None, ["running"]) == ("name", "asc")
    assert list_sort("priority", "asc", None, ["pending"]) == ("priority", "asc")
    assert list_sort("updatedAt", "desc", None, ["failed", "cancelled"]) == ("updatedAt", "desc")
    for key, statuses in (
        ("priority", []),
        ("priority", ["pending", "running"]),
        ("updatedAt", []),
        ("updatedAt", ["completed", "pending"]),
        ("nextRunAt", ["pending"]),
        ("lastRunAt", []),
        ("status", []),
        ("$natural", []),
    ):
        assert sort_refusal(key, None, statuses) is not None
        with pytest.raises(ValidationError) as info:
            list_sort(key, "asc", None, statuses)
        assert info.value.field == "sort"
