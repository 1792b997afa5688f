"""Pure tests of the dedupe rules (``_dedupe``): who keeps a key, the dedupe window, which key a
finished job gives back, and the unique-index fallback."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId

from mongo_job_scheduler import InvalidJobState
from mongo_job_scheduler._dedupe import (
    DEDUPE_GRACE,
    DedupeDecision,
    decide_dedupe,
    index_holder,
    released_on_finish,
    window_end,
)

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
RETURN, WAIT, TAKE = DedupeDecision.RETURN_EXISTING, DedupeDecision.WAIT, DedupeDecision.TAKE_OVER


def job(status: str, **fields: Any) -> dict[str, Any]:
    return {"_id": ObjectId(), "status": status, "dedupeKey": "k", **fields}


# -- decide_dedupe -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "running"])
@pytest.mark.parametrize("scope", ["active", "forever"])
def test_an_active_holder_keeps_its_key(status: str, scope: str) -> None:
    assert decide_dedupe(job(status), NOW - timedelta(days=9), NOW, scope) is RETURN


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_a_finished_holder_gives_its_key_to_an_active_scope_caller(status: str) -> None:
    assert decide_dedupe(job(status), NOW, NOW, "active") is TAKE


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_a_finished_holder_keeps_its_key_for_a_forever_caller(status: str) -> None:
    assert decide_dedupe(job(status), NOW, NOW, "forever") is RETURN


def test_a_finished_forever_holder_keeps_its_key_for_any_caller() -> None:
    assert decide_dedupe(job("completed", dedupeScope="forever"), NOW, NOW, "active") is RETURN


def test_a_finished_holder_keeps_its_key_until_its_window_ends() -> None:
    holder = job("completed", dedupeWindowMs=60_000, updatedAt=NOW - timedelta(seconds=59))
    assert decide_dedupe(holder, None, NOW, "active") is RETURN
    assert decide_dedupe(holder, None, NOW + timedelta(seconds=1), "active") is TAKE
    assert decide_dedupe(holder, None, NOW + timedelta(seconds=2), "active") is TAKE


def test_a_missing_holder_is_waited_for_during_the_grace_then_taken_over() -> None:
    assert decide_dedupe(None, NOW, NOW, "active") is WAIT
    just_in = NOW - DEDUPE_GRACE + timedelta(milliseconds=1)
    assert decide_dedupe(None, just_in, NOW, "active") is WAIT
    assert decide_dedupe(None, just_in, NOW, "forever") is WAIT
    assert decide_dedupe(None, NOW - DEDUPE_GRACE, NOW, "active") is TAKE
    assert decide_dedupe(None, NOW - DEDUPE_GRACE, NOW, "forever") is TAKE


def test_a_missing_holder_without_a_registration_time_is_taken_over() -> None:
    assert decide_dedupe(None, None, NOW, "active") is TAKE


# -- the window rule -----------------------------------------------------------------------------


def test_the_window_ends_its_length_after_the_job_finished() -> None:
    assert window_end({"dedupeWindowMs": 1500, "updatedAt": NOW}) == NOW + timedelta(
        milliseconds=1500
    )
    assert window_end({"dedupeWindowMs": 2.5, "updatedAt": NOW}) == NOW + timedelta(
        microseconds=2500
    )


def test_a_naive_finish_time_is_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    assert window_end({"dedupeWindowMs": 1000, "updatedAt": naive}) == NOW + timedelta(seconds=1)


@pytest.mark.parametrize(
    "holder",
    [
        {},
        {"updatedAt": NOW},
        {"dedupeWindowMs": 1000},
        {"dedupeWindowMs": "1000", "updatedAt": NOW},
        {"dedupeWindowMs": 1000, "updatedAt": "2030-01-02"},
    ],
)
def test_no_window_without_a_numeric_length_and_a_finish_time(holder: dict[str, Any]) -> None:
    assert window_end(holder) is None


# -- released_on_finish --------------------------------------------------------------------------


def test_a_finished_active_scope_job_gives_back_its_key() -> None:
    assert released_on_finish({"dedupeKey": "k"}) == "k"
    assert released_on_finish({"dedupeKey": "k", "dedupeScope": "active"}) == "k"
    assert released_on_finish({"dedupeKey": 42}) == "42"


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"dedupeKey": None},
        {"dedupeKey": "k", "dedupeScope": "forever"},
        {"dedupeKey": "k", "dedupeWindowMs": 60_000},
    ],
)
def test_no_key_is_given_back_without_a_key_under_forever_or_with_a_window(
    doc: dict[str, Any],
) -> None:
    assert released_on_finish(doc) is None


# -- index_holder --------------------------------------------------------------------------------


def test_a_gone_index_holder_means_try_again() -> None:
    assert index_holder(None, "k", "active", NOW) is None


def test_an_index_holder_that_keeps_its_key_is_returned() -> None:
    pending = job("pending")
    assert index_holder(pending, "k", "active", NOW) is pending
    finished = job("completed")
    assert index_holder(finished, "k", "forever", NOW) is finished


def test_a_finished_index_holder_forbids_the_key() -> None:
    finished = job("failed")
    with pytest.raises(InvalidJobState, match="unique index on dedupeKey") as refused:
        index_holder(finished, "k", "active", NOW)
    assert f"held by failed job {finished['_id']}" in str(refused.value)
