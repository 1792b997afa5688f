"""Pure tests of which rate limit a job's start counts against (``rate_limit_for``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mongo_job_scheduler import RateLimit
from mongo_job_scheduler.rate_limit import rate_limit_for

TASK = RateLimit(3, timedelta(seconds=1))
OWN = {"limit": 10, "periodMs": 60_000}


def test_the_task_limit_wins_over_the_jobs_own() -> None:
    doc = {"name": "email", "rateLimit": OWN}
    assert rate_limit_for(doc, {"email": TASK}) == TASK


def test_the_jobs_own_limit_applies_without_a_task_limit_for_its_name() -> None:
    doc = {"name": "email", "rateLimit": OWN}
    expected = RateLimit(10, timedelta(seconds=60))
    assert rate_limit_for(doc, {"report": TASK}) == expected
    assert rate_limit_for(doc, {}) == expected
    assert rate_limit_for(doc, None) == expected


def test_no_limit_when_neither_applies() -> None:
    assert rate_limit_for({"name": "email"}, {"report": TASK}) is None
    assert rate_limit_for({"name": "email"}, None) is None


@pytest.mark.parametrize(
    "stored", [None, "10/min", {"limit": 0, "periodMs": 1000}, {"limit": 5}, {"periodMs": 5}]
)
def test_an_unusable_stored_limit_means_none(stored: object) -> None:
    assert rate_limit_for({"name": "email", "rateLimit": stored}, None) is None


def test_the_task_is_found_by_the_stored_name_as_a_string() -> None:
    assert rate_limit_for({"name": 7}, {"7": TASK}) == TASK
