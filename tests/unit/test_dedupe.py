"""Pure tests of the dedupe rules (``_dedupe``): who keeps a key, the dedupe window, which key a
finished job gives back, the unique-index fallback, and the registration procedure both MongoDB
stores run, driven here by a script of the operations it must ask for and their results."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId

from mongo_job_scheduler import InvalidJobState
from mongo_job_scheduler._dedupe import (
    DEDUPE_GRACE,
    DEDUPE_WAIT,
    AddEntry,
    DedupeDecision,
    DedupeOp,
    DropEntry,
    InsertJob,
    InsertJobs,
    Pause,
    Procedure,
    ReadClock,
    ReadEntry,
    ReadJob,
    ReadKeyHolder,
    TakeOver,
    decide_dedupe,
    index_holder,
    insert_jobs,
    insert_with_key,
    released_on_finish,
    reserve_key,
    window_end,
)
from mongo_job_scheduler._documents import NewJob

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
RETURN, WAIT, TAKE = DedupeDecision.RETURN_EXISTING, DedupeDecision.WAIT, DedupeDecision.TAKE_OVER


def job_doc(status: str, **fields: Any) -> dict[str, Any]:
    return {"_id": ObjectId(), "status": status, "dedupeKey": "k", **fields}


# -- decide_dedupe -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "running"])
@pytest.mark.parametrize("scope", ["active", "forever"])
def test_an_active_holder_keeps_its_key(status: str, scope: str) -> None:
    assert decide_dedupe(job_doc(status), NOW - timedelta(days=9), NOW, scope) is RETURN


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_a_finished_holder_gives_its_key_to_an_active_scope_caller(status: str) -> None:
    assert decide_dedupe(job_doc(status), NOW, NOW, "active") is TAKE


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_a_finished_holder_keeps_its_key_for_a_forever_caller(status: str) -> None:
    assert decide_dedupe(job_doc(status), NOW, NOW, "forever") is RETURN


def test_a_finished_forever_holder_keeps_its_key_for_any_caller() -> None:
    assert decide_dedupe(job_doc("completed", dedupeScope="forever"), NOW, NOW, "active") is RETURN


def test_a_finished_holder_keeps_its_key_until_its_window_ends() -> None:
    holder = job_doc("completed", dedupeWindowMs=60_000, updatedAt=NOW - timedelta(seconds=59))
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
    pending = job_doc("pending")
    assert index_holder(pending, "k", "active", NOW) is pending
    finished = job_doc("completed")
    assert index_holder(finished, "k", "forever", NOW) is finished


def test_a_finished_index_holder_forbids_the_key() -> None:
    finished = job_doc("failed")
    with pytest.raises(InvalidJobState, match="unique index on dedupeKey") as refused:
        index_holder(finished, "k", "active", NOW)
    assert f"held by failed job {finished['_id']}" in str(refused.value)


# -- the registration procedure ------------------------------------------------------------------

Script = Sequence[tuple[DedupeOp, Any]]


def drive(procedure: Procedure[Any], script: Script) -> Any:
    """Run ``procedure`` against ``script``: each step is the operation it must ask for next and
    the result to send back. Returns what the procedure returns once the script is used up."""
    result: Any = None
    for number, (expected, reply) in enumerate(script):
        op = procedure.send(result)
        assert op == expected, f"step {number}"
        result = reply
    with pytest.raises(StopIteration) as done:
        procedure.send(result)
    return done.value.value


def new_job(key: str | None = "k", scope: str = "active") -> NewJob:
    document = {"_id": ObjectId(), "name": "email", "status": "pending"}
    if key is not None:
        document["dedupeKey"] = key
    return NewJob(document, key, scope)  # type: ignore[arg-type]


LATER = NOW + DEDUPE_GRACE


def entry(holder_id: Any, registered_at: datetime = NOW) -> dict[str, Any]:
    return {"_id": "k", "jobId": holder_id, "registeredAt": registered_at}


def registered(job: NewJob, at: datetime = NOW) -> Script:
    """The steps of a registration that finds the key free."""
    return [(ReadClock(), at), (AddEntry("k", job.id, at), True)]


def held(
    job_id: Any,
    holder_id: Any,
    holder: dict[str, Any] | None,
    at: datetime = NOW,
    registered_at: datetime = NOW,
) -> Script:
    """The steps of a registration attempt at ``at`` that finds the key registered to
    ``holder_id`` at ``registered_at``, and reads that job: ``holder``."""
    return [
        (ReadClock(), at),
        (AddEntry("k", job_id, at), False),
        (ReadEntry("k"), entry(holder_id, registered_at)),
        (ReadJob(holder_id), holder),
    ]


def test_a_free_key_is_registered_then_the_job_inserted() -> None:
    job = new_job()
    script = [*registered(job), (InsertJob(job.document, index_fallback=True), True)]
    assert drive(insert_with_key(job, "k", False), script) == (job.document, True)


def test_plain_jobs_go_in_one_insert_first_and_results_keep_the_order() -> None:
    first, keyed, last = new_job(None), new_job(), new_job(None)
    script = [
        (InsertJobs([first.document, last.document]), None),
        *registered(keyed),
        (InsertJob(keyed.document, index_fallback=True), True),
    ]
    got = drive(insert_jobs([first, keyed, last], False), script)
    assert got == [(first.document, True), (keyed.document, True), (last.document, True)]


def test_plain_jobs_alone_need_no_registry() -> None:
    assert drive(insert_jobs([], False), []) == []
    job = new_job(None)
    assert drive(insert_jobs([job], False), [(InsertJobs([job.document]), None)]) == [
        (job.document, True)
    ]


@pytest.mark.parametrize(
    ("scope", "holder"),
    [
        ("active", job_doc("running")),
        ("forever", job_doc("completed")),
        ("active", job_doc("completed", dedupeWindowMs=60_000, updatedAt=NOW)),
    ],
)
def test_a_holder_that_keeps_the_key_is_returned_and_nothing_inserted(
    scope: str, holder: dict[str, Any]
) -> None:
    job = new_job(scope=scope)
    script = held(job.id, holder["_id"], holder)
    assert drive(insert_with_key(job, "k", False), script) == (holder, False)


def test_an_entry_that_vanished_meanwhile_starts_over() -> None:
    job = new_job()
    script = [
        (ReadClock(), NOW),
        (AddEntry("k", job.id, NOW), False),
        (ReadEntry("k"), None),
        *registered(job, LATER),
        (InsertJob(job.document, index_fallback=True), True),
    ]
    assert drive(insert_with_key(job, "k", False), script) == (job.document, True)


def test_a_creator_between_its_inserts_is_waited_for_then_taken_over() -> None:
    job, ghost = new_job(), ObjectId()
    script = [
        *held(job.id, ghost, None),
        (Pause(DEDUPE_WAIT), None),
        *held(job.id, ghost, None, at=LATER),
        (TakeOver("k", ghost, job.id, LATER), True),
        (InsertJob(job.document, index_fallback=True), True),
    ]
    assert drive(insert_with_key(job, "k", False), script) == (job.document, True)


def test_a_finished_holder_is_taken_over_and_a_lost_take_over_starts_over() -> None:
    job, finished, winner = new_job(), job_doc("failed"), job_doc("pending")
    script = [
        *held(job.id, finished["_id"], finished),
        (TakeOver("k", finished["_id"], job.id, NOW), False),  # another producer won it
        *held(job.id, winner["_id"], winner, at=LATER),
    ]
    assert drive(insert_with_key(job, "k", False), script) == (winner, False)


def test_a_job_refused_by_a_unique_index_dedupes_against_the_index_holder() -> None:
    job, holder = new_job(), job_doc("pending")
    script = [
        *registered(job),
        (InsertJob(job.document, index_fallback=True), False),
        (DropEntry("k", job.id), None),
        (ReadKeyHolder("k"), holder),
    ]
    assert drive(insert_with_key(job, "k", False), script) == (holder, False)


def test_a_unique_index_holder_gone_meanwhile_starts_over() -> None:
    job = new_job()
    script = [
        *registered(job),
        (InsertJob(job.document, index_fallback=True), False),
        (DropEntry("k", job.id), None),
        (ReadKeyHolder("k"), None),
        *registered(job, LATER),
        (InsertJob(job.document, index_fallback=True), True),
    ]
    assert drive(insert_with_key(job, "k", False), script) == (job.document, True)


def test_a_finished_unique_index_holder_forbids_the_key() -> None:
    job, holder = new_job(), job_doc("completed")
    script = [
        *registered(job),
        (InsertJob(job.document, index_fallback=True), False),
        (DropEntry("k", job.id), None),
        (ReadKeyHolder("k"), holder),
    ]
    with pytest.raises(InvalidJobState, match="unique index on dedupeKey"):
        drive(insert_with_key(job, "k", False), script)


def test_inside_a_transaction_a_unique_index_refusal_is_not_tolerated() -> None:
    job = new_job()
    script = [*registered(job), (InsertJob(job.document, index_fallback=False), True)]
    assert drive(insert_with_key(job, "k", True), script) == (job.document, True)
    plain, keyed = new_job(None), new_job()
    script = [
        (InsertJobs([plain.document]), None),
        *registered(keyed),
        (InsertJob(keyed.document, index_fallback=False), True),
    ]
    drive(insert_jobs([plain, keyed], True), script)


# -- reserving a key for a job that runs again ---------------------------------------------------

MINE = ObjectId()


def test_reserving_a_free_key_registers_it() -> None:
    assert drive(reserve_key("k", MINE), [(ReadClock(), NOW), (AddEntry("k", MINE, NOW), True)])


def test_a_key_registered_to_the_job_already_is_its() -> None:
    script = [(ReadClock(), NOW), (AddEntry("k", MINE, NOW), False), (ReadEntry("k"), entry(MINE))]
    assert drive(reserve_key("k", MINE), script) is True


def test_reserving_starts_over_when_the_entry_vanished_meanwhile() -> None:
    script = [
        (ReadClock(), NOW),
        (AddEntry("k", MINE, NOW), False),
        (ReadEntry("k"), None),
        (ReadClock(), LATER),
        (AddEntry("k", MINE, LATER), True),
    ]
    assert drive(reserve_key("k", MINE), script) is True


@pytest.mark.parametrize(
    "holder",
    [
        job_doc("pending"),
        job_doc("completed", dedupeScope="forever"),
        job_doc("failed", dedupeWindowMs=60_000, updatedAt=NOW),
    ],
)
def test_a_key_kept_by_another_job_is_refused(holder: dict[str, Any]) -> None:
    script = held(MINE, holder["_id"], holder)
    assert drive(reserve_key("k", MINE), script) is False


def test_a_holder_still_being_created_is_refused_without_waiting() -> None:
    ghost = ObjectId()
    assert drive(reserve_key("k", MINE), held(MINE, ghost, None)) is False


@pytest.mark.parametrize("won", [True, False])
def test_a_finished_or_long_missing_holder_is_taken_over_once(won: bool) -> None:
    for holder_id, holder in ((ObjectId(), None), (ObjectId(), job_doc("completed"))):
        script = [
            *held(MINE, holder_id, holder, registered_at=NOW - DEDUPE_GRACE),
            (TakeOver("k", holder_id, MINE, NOW), won),
        ]
        assert drive(reserve_key("k", MINE), script) is won
