"""The ``history`` entry built on the server (``stores/_mongo_common``) is the one
``_history.entry`` builds in Python (the in-memory store, the worker's view of a written job):
the same fields from the same document, for ordinary documents and odd ones (fields missing or
null, a start that is not a date, a stored history that is not an array, a full history), in
the outcome write, the takeover of an expired lease, the release and the cancel."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId

from mongo_job_scheduler._history import HISTORY_LIMIT, Ending, appended, entry
from mongo_job_scheduler.job import AttemptOutcome
from mongo_job_scheduler.stores import _mongo_common as q

START = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
FULL = [{"outcome": "retried", "lockVersion": n} for n in range(HISTORY_LIMIT)]
RUNNING: dict[str, Any] = {
    "status": "running",
    "lastRunAt": START,
    "lockedBy": "w-1",
    "lockVersion": 4,
    "lockUntil": START + timedelta(seconds=30),
}
SHAPES = {
    "ordinary": {},
    "no start": {"lastRunAt": None},
    "a start that is not a date": {"lastRunAt": "yesterday"},
    "null owner": {"lockedBy": None},
    "no token": {"lockVersion": None},
    "a history that is not an array": {"history": {"oops": 1}},
    "a full history": {"history": FULL},
}
ENDINGS = [
    Ending(AttemptOutcome.COMPLETED),
    Ending.of(AttemptOutcome.RETRIED, "$lockedBy {$x}", "ValueError", timedelta(seconds=1.5)),
]


def _document(shape: dict[str, Any]) -> dict[str, Any]:
    """A running job with ``shape`` on top (``None`` removes a field, except for the lock
    owner, which is stored null)."""
    doc = {"_id": ObjectId(), **RUNNING, **shape}
    return {k: v for k, v in doc.items() if v is not None or k == "lockedBy"}


def _expected(before: dict[str, Any], ending: Ending, after: dict[str, Any]) -> list[Any]:
    """What ``_history`` makes of ``before``, ended when the server says it ended."""
    ended_at = after["history"][-1]["endedAt"]
    return appended(before.get("history"), entry(before, ending, ended_at))


@pytest.mark.parametrize("shape", SHAPES.values(), ids=list(SHAPES))
@pytest.mark.parametrize("ending", ENDINGS, ids=["completed", "retried"])
def test_an_outcome_write_appends_the_entry_python_builds(
    sync_db: Any, shape: dict[str, Any], ending: Ending
) -> None:
    jobs = sync_db.jobs
    jobs.insert_one(_document(shape))
    before = jobs.find_one()
    jobs.update_one({"_id": before["_id"]}, q.finish_update({"status": "completed"}, [], ending))
    after = jobs.find_one()
    assert after["history"] == _expected(before, ending, after)
    assert list(after["history"][-1]) == list(_expected(before, ending, after)[-1])
    assert len(after["history"]) <= HISTORY_LIMIT
    assert "lockedBy" not in after
    assert after["status"] == "completed"


@pytest.mark.parametrize("shape", SHAPES.values(), ids=list(SHAPES))
def test_a_takeover_appends_the_lost_lease_python_builds(
    sync_db: Any, shape: dict[str, Any]
) -> None:
    jobs = sync_db.jobs
    jobs.insert_one({**_document(shape), "lockUntil": START})  # ran out long ago
    before = jobs.find_one()
    taken = jobs.update_one(q.claim_filter(before["_id"]), q.claim_update("w-2", timedelta(1)))
    assert taken.modified_count == 1
    after = jobs.find_one()
    lost = Ending(AttemptOutcome.LEASE_LOST)
    assert after["history"] == appended(
        before.get("history"), entry(before, lost, before["lockUntil"])
    )
    assert after["lockedBy"] == "w-2"


def test_a_claim_of_a_pending_job_leaves_its_history_alone(sync_db: Any) -> None:
    jobs = sync_db.jobs
    jobs.insert_many(
        [
            {"_id": 1, "status": "pending", "nextRunAt": START, "history": FULL},
            {"_id": 2, "status": "pending", "nextRunAt": START},
        ]
    )
    jobs.update_many(q.claim_many_filter([1, 2]), q.claim_update("w", timedelta(seconds=30)))
    assert jobs.find_one({"_id": 1})["history"] == FULL
    assert "history" not in jobs.find_one({"_id": 2})


@pytest.mark.parametrize(
    ("update", "outcome"),
    [(q.release_update(), AttemptOutcome.STOPPED), (q.cancel_update(), AttemptOutcome.CANCELLED)],
    ids=["release", "cancel"],
)
def test_a_release_and_a_cancel_append_the_entry_python_builds(
    sync_db: Any, update: list[dict[str, Any]], outcome: AttemptOutcome
) -> None:
    jobs = sync_db.jobs
    jobs.insert_one({**_document({}), "nextRunAt": START})
    before = jobs.find_one()
    jobs.update_one({"_id": before["_id"]}, update)
    after = jobs.find_one()
    assert after["history"] == _expected(before, Ending(outcome), after)


def test_a_cancel_of_a_job_that_is_not_running_records_nothing(sync_db: Any) -> None:
    jobs = sync_db.jobs
    jobs.insert_many([{"_id": 1, "status": "pending"}, {"_id": 2, "status": "waiting"}])
    jobs.update_many({}, q.cancel_update())
    for doc in jobs.find():
        assert doc["status"] == "cancelled"
        assert "history" not in doc
