"""The steps of a job's timeline on its dashboard page (``dashboard/_timeline``), from the
``Job`` view alone: their order for each status, the retry time of a retried attempt, and
whether older attempts may have been dropped."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId

pytest.importorskip("starlette", reason="the dashboard extra is not installed")

from mongo_job_scheduler._history import HISTORY_LIMIT
from mongo_job_scheduler.dashboard._timeline import history_cut, job_timeline
from mongo_job_scheduler.job import Job

AT = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
RETRIED = {
    "outcome": "retried",
    "startedAt": AT,
    "endedAt": AT + timedelta(seconds=2),
    "retryDelayMs": 1500,
}


def view(status: str, **fields: Any) -> Job:
    return Job.from_document(
        {"_id": ObjectId(), "name": "n", "status": status, "createdAt": AT, **fields}
    )


@pytest.mark.parametrize(
    ("status", "fields", "kinds"),
    [
        ("pending", {}, ["created", "next"]),
        ("waiting", {}, ["created"]),
        ("running", {"history": [RETRIED]}, ["created", "attempt", "running"]),
        (
            "completed",
            {"history": [{"outcome": "completed"}], "progress": {"percent": 100}},
            ["created", "attempt", "progress", "ended"],
        ),
        ("cancelled", {}, ["created", "ended"]),
    ],
)
def test_the_steps_follow_the_status(status: str, fields: dict[str, Any], kinds: list[str]) -> None:
    assert [step.kind for step in job_timeline(view(status, **fields), [], [])] == kinds


def test_related_jobs_come_first_and_last() -> None:
    upstream, downstream = view("completed"), view("waiting")
    steps = job_timeline(view("pending"), [upstream], [downstream])
    assert [step.kind for step in steps] == ["created", "waits", "next", "dependants"]
    assert steps[1].jobs == (upstream,) and steps[-1].jobs == (downstream,)


def test_a_retried_attempt_says_when_the_next_one_was_due() -> None:
    [_, attempt, _] = job_timeline(view("running", history=[RETRIED]), [], [])
    assert attempt.at == AT
    assert attempt.outcome == "retried"
    assert attempt.retry_at == AT + timedelta(seconds=3.5)
    no_end = {**RETRIED, "endedAt": None}
    [_, unknown, _] = job_timeline(view("running", history=[no_end]), [], [])
    assert unknown.retry_at is None


def test_a_full_history_may_have_dropped_older_attempts() -> None:
    entry = {"outcome": "completed"}
    assert not history_cut(view("pending", history=[entry] * (HISTORY_LIMIT - 1)))
    assert history_cut(view("pending", history=[entry] * HISTORY_LIMIT))
