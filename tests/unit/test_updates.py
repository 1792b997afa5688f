"""Pure tests of how ``update_job`` and ``retry_job`` plan their writes (``_updates``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId

from mongo_job_scheduler import InvalidJobState
from mongo_job_scheduler._documents import JobChanges
from mongo_job_scheduler._updates import (
    UPDATE_ATTEMPTS,
    UpdatePlan,
    plan_retry,
    plan_update,
    update_gave_up,
)

JOB = ObjectId()
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
LATER = NOW + timedelta(hours=1)
REPEAT = {"every": 60_000}


def job(status: str, **fields: Any) -> dict[str, Any]:
    return {"_id": JOB, "status": status, **fields}


def run_at(when: datetime, **more: Any) -> JobChanges:
    return JobChanges(set={"nextRunAt": when, **more}, reschedules=True)


# -- plan_update ---------------------------------------------------------------------------------


def test_a_pending_job_takes_the_changes_as_given() -> None:
    changes = JobChanges(set={"data": {"a": 1}, "priority": 2}, unset=["timeoutMs"])
    plan = plan_update(JOB, job("pending"), changes)
    assert plan == UpdatePlan("pending", {"data": {"a": 1}, "priority": 2}, ["timeoutMs"])
    assert plan.set is not changes.set  # the changes are not modified by later planning


def test_a_cancelled_job_refuses_every_change() -> None:
    with pytest.raises(InvalidJobState, match=f"job {JOB} is cancelled; cancelled jobs never"):
        plan_update(JOB, job("cancelled"), JobChanges(set={"priority": 1}))


def test_a_running_job_refuses_run_at_but_takes_other_changes() -> None:
    with pytest.raises(InvalidJobState, match=f"job {JOB} is running; wait for it to finish"):
        plan_update(JOB, job("running"), run_at(LATER))
    plan = plan_update(JOB, job("running"), JobChanges(set={"priority": 1}))
    assert plan == UpdatePlan("running", {"priority": 1}, [])


def test_run_at_on_a_repeating_job_restarts_its_grid_there() -> None:
    plan = plan_update(JOB, job("pending", repeat=REPEAT), run_at(LATER))
    assert plan.set == {"nextRunAt": LATER, "lastScheduledAt": LATER}


def test_run_at_with_a_new_repeat_restarts_the_grid_there() -> None:
    plan = plan_update(JOB, job("pending"), run_at(LATER, repeat=REPEAT))
    assert plan.set == {"nextRunAt": LATER, "repeat": REPEAT, "lastScheduledAt": LATER}


def test_run_at_on_a_one_shot_job_leaves_the_grid_alone() -> None:
    plan = plan_update(JOB, job("pending"), run_at(LATER))
    assert plan.set == {"nextRunAt": LATER}


def test_a_new_repeat_moves_a_pending_job_to_its_first_slot() -> None:
    changes = JobChanges(set={"repeat": REPEAT}, repeat_first_slot=LATER)
    plan = plan_update(JOB, job("pending"), changes)
    assert plan.set == {"repeat": REPEAT, "nextRunAt": LATER, "lastScheduledAt": LATER}


def test_a_new_repeat_leaves_a_running_jobs_due_time_alone() -> None:
    changes = JobChanges(set={"repeat": REPEAT}, repeat_first_slot=LATER)
    plan = plan_update(JOB, job("running"), changes)
    assert plan.set == {"repeat": REPEAT}


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_run_at_revives_a_finished_job_with_fresh_attempts(status: str) -> None:
    current = job(status, dedupeKey="k", attempts=3, leaseExpiries=1)
    plan = plan_update(JOB, current, JobChanges(set={"nextRunAt": LATER}, unset=["timeoutMs"]))
    assert plan == UpdatePlan(status, {"nextRunAt": LATER}, ["timeoutMs"])  # no run_at
    changes = JobChanges(set={"nextRunAt": LATER}, unset=["timeoutMs"], reschedules=True)
    plan = plan_update(JOB, current, changes)
    assert plan == UpdatePlan(
        status,
        {"nextRunAt": LATER, "status": "pending", "attempts": 0, "leaseExpiries": 0},
        ["timeoutMs", "expireAt"],
        "k",
    )


def test_a_revival_without_a_dedupe_key_reserves_none() -> None:
    plan = plan_update(JOB, job("completed"), run_at(LATER))
    assert plan.reserve_dedupe_key is None
    assert plan.set["status"] == "pending"


def test_the_errors_of_the_update_loop() -> None:
    assert UPDATE_ATTEMPTS >= 2
    conflict = UpdatePlan("failed", {}, [], "k").dedupe_conflict(JOB)
    assert isinstance(conflict, InvalidJobState)
    assert str(conflict) == f"job {JOB} cannot run again: another active job holds its dedupe key"
    gave_up = update_gave_up(JOB)
    assert isinstance(gave_up, InvalidJobState)
    assert str(gave_up) == f"job {JOB} kept changing state; update not applied"


# -- plan_retry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_retry_makes_a_failed_or_cancelled_job_pending_now(status: str) -> None:
    current = job(status, attempts=4, leaseExpiries=2, expireAt=LATER)
    plan = plan_retry(JOB, current, NOW)
    assert plan == UpdatePlan(
        status,
        {"status": "pending", "nextRunAt": NOW, "attempts": 0, "leaseExpiries": 0},
        ["expireAt"],
        None,
    )


def test_retry_restarts_a_repeating_jobs_grid_now_and_takes_back_its_key() -> None:
    plan = plan_retry(JOB, job("failed", repeat=REPEAT, dedupeKey="k"), NOW)
    assert plan.set["lastScheduledAt"] == NOW
    assert plan.set["nextRunAt"] == NOW
    assert plan.reserve_dedupe_key == "k"


@pytest.mark.parametrize("status", ["pending", "running", "completed"])
def test_retry_refuses_other_statuses(status: str) -> None:
    with pytest.raises(InvalidJobState) as refused:
        plan_retry(JOB, job(status), NOW)
    assert str(refused.value) == (
        f"job {JOB} is {status}; only failed or cancelled jobs can be retried"
    )


def test_a_job_with_dependencies_cannot_be_given_a_schedule() -> None:
    from mongo_job_scheduler._documents import build_changes

    changes = build_changes(now=NOW, default_timezone="UTC", repeat={"cron": "0 * * * *"})
    with pytest.raises(InvalidJobState, match="cannot repeat"):
        plan_update("id", {"status": "waiting", "dependsOn": ["a"]}, changes)


def test_a_retried_dependant_waits_again() -> None:
    plan = plan_retry("id", {"status": "cancelled", "dependsOn": ["a"]}, NOW)
    assert plan.set["status"] == "waiting"
