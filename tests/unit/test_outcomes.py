"""The decisions around one execution, without a database: whether a claimed job runs, and
what success, failure (with and without attempts left), a timeout, the death of a handler's
process, a misfire skip, a poison job, a schedule changed during the run, a cancel, a lost lease
and a shutdown mean for it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId

from mongo_job_scheduler import HandlerCrashed, HandlerError, JobTimeout, PoisonJob, Retry
from mongo_job_scheduler._outcomes import (
    Plan,
    Policy,
    Start,
    after_crash,
    after_failure,
    after_schedule_change,
    after_stop,
    after_success,
    before_run,
    describe,
    unstorable_result,
)
from mongo_job_scheduler.job import Job, StopReason
from mongo_job_scheduler.tasks import TaskSpec

NOW = datetime(2026, 3, 2, 12, 0, 30, tzinfo=timezone.utc)
MINUTE_CRON = {"cron": "* * * * *", "timezone": "UTC"}
CLOCK = lambda: NOW  # noqa: E731 - the decisions' clock, fixed
POLICY = Policy(default_timezone="UTC", max_lease_expiries=3, retention={})
KEEP = Policy(
    default_timezone="UTC",
    max_lease_expiries=3,
    retention={"completed": timedelta(hours=1), "failed": timedelta(days=1)},
)


def job(**fields: Any) -> Job:
    """The view of a running job as a claim leaves it, with ``fields`` stored on top."""
    doc: dict[str, Any] = {
        "_id": ObjectId(),
        "name": "work",
        "data": {"n": 1},
        "status": "running",
        "attempts": 0,
        "priority": 5,
        "nextRunAt": NOW - timedelta(seconds=30),
        "lockVersion": 1,
        "lockedBy": "owner",
    }
    doc.update(fields)
    return Job.from_document({k: v for k, v in doc.items() if v is not None})


def repeating(**fields: Any) -> Job:
    slot = NOW.replace(second=0)
    return job(repeat=MINUTE_CRON, nextRunAt=slot, lastScheduledAt=slot, **fields)


def noop(job: Job) -> None:
    return None


def fail(
    failed: Job,
    error: BaseException,
    start: Start | None,
    task: TaskSpec | None = None,
    policy: Policy = POLICY,
) -> Plan:
    """``after_failure`` at NOW."""
    return after_failure(failed, error, start, task=task, now=CLOCK, policy=policy)


# -- before the run -------------------------------------------------------------------------


def test_a_one_off_job_runs() -> None:
    assert before_run(job(), poisoned=False, now=CLOCK, policy=POLICY) == Start()


def test_a_poison_job_is_failed_without_running() -> None:
    plan = before_run(job(leaseExpiries=3), poisoned=True, now=CLOCK, policy=POLICY)
    assert isinstance(plan, Plan)
    assert plan.finish.set["status"] == "failed"
    assert plan.finish.set["lastErrorType"] == "PoisonJob"
    assert "lease expired 3 times" in plan.finish.set["lastError"]
    assert "limit 3" in plan.finish.set["lastError"]
    assert isinstance(plan.error, PoisonJob)
    assert plan.events == ("job:fail",)


def test_a_poison_job_fails_even_with_attempts_left() -> None:
    doc = job(leaseExpiries=3, retry={"maxAttempts": 5, "delay": 1000})
    plan = before_run(doc, poisoned=True, now=CLOCK, policy=POLICY)
    assert isinstance(plan, Plan) and plan.finish.set["status"] == "failed"


def test_a_repeating_poison_job_moves_to_its_next_slot() -> None:
    plan = before_run(repeating(leaseExpiries=3), poisoned=True, now=CLOCK, policy=POLICY)
    assert isinstance(plan, Plan)
    assert plan.finish.set["status"] == "pending"
    assert plan.finish.set["nextRunAt"] == NOW.replace(second=0) + timedelta(minutes=1)
    assert plan.finish.set["lastErrorType"] == "PoisonJob"
    assert plan.events == ("job:fail",)


def test_an_unusable_stored_schedule_fails_the_job_for_good() -> None:
    broken = job(repeat={"cron": "not a cron"})
    plan = before_run(broken, poisoned=False, now=CLOCK, policy=POLICY)
    assert isinstance(plan, Plan)
    assert plan.finish.set["status"] == "failed"
    assert "invalid repeat" in plan.finish.set["lastError"]


def test_a_repeating_job_on_time_runs_its_slot() -> None:
    decided = before_run(repeating(), poisoned=False, now=CLOCK, policy=POLICY)
    assert decided == Start(NOW.replace(second=0))


def test_missed_slots_run_once_at_the_latest() -> None:
    old = NOW.replace(second=0) - timedelta(minutes=10)
    late = job(repeat=MINUTE_CRON, nextRunAt=old, lastScheduledAt=old)
    assert before_run(late, poisoned=False, now=CLOCK, policy=POLICY) == Start(
        NOW.replace(second=0)
    )


def test_missed_slots_are_skipped_under_the_skip_policy() -> None:
    old = NOW.replace(second=0) - timedelta(minutes=10)
    late = job(repeat={**MINUTE_CRON, "misfire": "skip"}, nextRunAt=old, lastScheduledAt=old)
    plan = before_run(late, poisoned=False, now=CLOCK, policy=POLICY)
    assert isinstance(plan, Plan)
    following = NOW.replace(second=0) + timedelta(minutes=1)
    assert plan.finish.set == {
        "status": "pending",
        "nextRunAt": following,
        "lastScheduledAt": following,
        "missedRuns": 0,
    }
    assert plan.events == ()


def test_missed_slots_are_each_run_under_the_all_policy_up_to_its_cap() -> None:
    old = NOW.replace(second=0) - timedelta(minutes=10)
    schedule = {**MINUTE_CRON, "misfire": "all", "catchUpLimit": 2}
    late = job(repeat=schedule, nextRunAt=old, lastScheduledAt=old)
    assert before_run(late, poisoned=False, now=CLOCK, policy=POLICY) == Start(old, caught_up=True)
    capped = job(repeat=schedule, nextRunAt=old, lastScheduledAt=old, missedRuns=2)
    assert before_run(capped, poisoned=False, now=CLOCK, policy=POLICY) == Start(
        NOW.replace(second=0)
    )


def test_a_retry_run_of_a_repeating_job_runs_its_own_slot() -> None:
    old = NOW.replace(second=0) - timedelta(minutes=10)
    retrying = job(repeat=MINUTE_CRON, nextRunAt=NOW, lastScheduledAt=old, attempts=1)
    assert before_run(retrying, poisoned=False, now=CLOCK, policy=POLICY) == Start(old)


# -- success -------------------------------------------------------------------------------


def test_success_completes_a_one_off_job() -> None:
    plan = after_success(job(dedupeKey="k"), {"ok": 1}, Start(), now=CLOCK, policy=POLICY)
    assert plan.finish.set == {"status": "completed", "leaseExpiries": 0, "result": {"ok": 1}}
    assert plan.finish.release_dedupe_key == "k"
    assert plan.events == ("job:success", "job:complete")
    assert not plan.failed


def test_success_keeps_the_dedupe_key_of_a_forever_scope() -> None:
    plan = after_success(
        job(dedupeKey="k", dedupeScope="forever"), None, Start(), now=CLOCK, policy=POLICY
    )
    assert plan.finish.release_dedupe_key is None


def test_success_sets_the_retention_expiry() -> None:
    plan = after_success(job(), None, Start(), now=CLOCK, policy=KEEP)
    assert plan.finish.set["expireAt"] == NOW + timedelta(hours=1)


def test_success_moves_a_repeating_job_to_its_next_slot() -> None:
    done = repeating(attempts=0, leaseExpiries=1)
    slot = NOW.replace(second=0)
    plan = after_success(done, "r", Start(slot), now=CLOCK, policy=KEEP)
    following = slot + timedelta(minutes=1)
    assert plan.finish.set == {
        "status": "pending",
        "nextRunAt": following,
        "lastScheduledAt": following,
        "attempts": 0,
        "leaseExpiries": 0,
        "missedRuns": 0,
        "result": "r",
    }
    assert plan.finish.expect == {"repeat": MINUTE_CRON}
    assert plan.events == ("job:complete",)
    assert plan.start == Start(slot)
    assert "expireAt" not in plan.finish.set  # repeating jobs are never expired


def test_a_caught_up_slot_counts_missed_runs() -> None:
    late = repeating(missedRuns=1)
    slot = NOW.replace(second=0) - timedelta(minutes=5)
    plan = after_success(late, None, Start(slot, caught_up=True), now=CLOCK, policy=POLICY)
    assert plan.finish.set["missedRuns"] == 2
    assert plan.finish.set["nextRunAt"] == slot + timedelta(minutes=1)


def test_an_unstorable_result_is_a_failure() -> None:
    assert unstorable_result(job(), {"fine": [1, 2]}) is None
    assert unstorable_result(job(), None) is None
    error = unstorable_result(job(), object())
    assert isinstance(error, TypeError)
    assert "cannot be stored" in str(error)
    huge = unstorable_result(job(data="x" * (15 * 1024 * 1024)), "y" * (2 * 1024 * 1024))
    assert isinstance(huge, TypeError)


# -- failure -------------------------------------------------------------------------------


def test_a_failure_with_attempts_left_is_retried_after_its_backoff() -> None:
    flaky = job(attempts=0, retry={"maxAttempts": 3, "delay": 2000, "backoff": "fixed"})
    error = RuntimeError("boom")
    plan = fail(flaky, error, Start())
    assert plan.finish.set["status"] == "pending"
    assert plan.finish.set["nextRunAt"] == NOW + timedelta(seconds=2)
    assert plan.finish.set["attempts"] == 1
    assert plan.finish.set["lastError"] == "boom"
    assert plan.finish.set["lastErrorType"] == "RuntimeError"
    assert "lastScheduledAt" not in plan.finish.set
    assert plan.events == ("job:retry",)
    assert not plan.failed


def test_the_last_attempt_fails_the_job() -> None:
    flaky = job(attempts=2, retry={"maxAttempts": 3, "delay": 1000}, dedupeKey="k")
    plan = fail(flaky, RuntimeError("boom"), Start(), policy=KEEP)
    assert plan.finish.set["status"] == "failed"
    assert plan.finish.set["attempts"] == 3
    assert plan.finish.set["expireAt"] == NOW + timedelta(days=1)
    assert plan.finish.release_dedupe_key == "k"
    assert plan.events == ("job:fail",)
    assert plan.failed and isinstance(plan.error, RuntimeError)


def test_a_job_without_retry_fails_at_once() -> None:
    plan = fail(job(), ValueError("x"), Start())
    assert plan.finish.set["status"] == "failed"


def test_the_tasks_retry_policy_and_backoff_function_win() -> None:
    task = TaskSpec(noop, retry=Retry.parse(4), backoff=lambda attempt: attempt * 10)
    plan = after_failure(
        job(attempts=1), ValueError("x"), Start(), task=task, now=CLOCK, policy=POLICY
    )
    assert plan.finish.set["nextRunAt"] == NOW + timedelta(seconds=20)
    as_timedelta = TaskSpec(noop, retry=Retry.parse(4), backoff=lambda _: timedelta(minutes=1))
    plan = fail(job(), ValueError("x"), Start(), task=as_timedelta)
    assert plan.finish.set["nextRunAt"] == NOW + timedelta(minutes=1)
    negative = TaskSpec(noop, retry=Retry.parse(4), backoff=lambda _: -5)
    plan = fail(job(), ValueError("x"), Start(), task=negative)
    assert plan.finish.set["nextRunAt"] == NOW


def test_a_timeout_is_a_failed_attempt() -> None:
    slow = job(retry={"maxAttempts": 2, "delay": 1000})
    error = JobTimeout("handler exceeded its timeout of 2s")
    plan = fail(slow, error, Start())
    assert plan.events == ("job:retry",)
    assert plan.finish.set["lastErrorType"] == "JobTimeout"
    last = fail(job(), error, Start())
    assert last.finish.set["status"] == "failed"


def test_a_retry_of_a_repeating_job_never_passes_its_next_slot() -> None:
    slot = NOW.replace(second=0)
    flaky = repeating(retry={"maxAttempts": 3, "delay": 3_600_000})
    plan = fail(flaky, ValueError("x"), Start(slot))
    assert plan.finish.set["nextRunAt"] == slot + timedelta(minutes=1)
    assert plan.finish.set["lastScheduledAt"] == slot
    assert plan.events == ("job:retry",)


def test_a_repeating_job_out_of_attempts_moves_to_its_next_slot() -> None:
    slot = NOW.replace(second=0)
    plan = fail(repeating(), ValueError("x"), Start(slot), policy=KEEP)
    assert plan.finish.set["status"] == "pending"
    assert plan.finish.set["nextRunAt"] == slot + timedelta(minutes=1)
    assert plan.finish.set["lastError"] == "x"
    assert "expireAt" not in plan.finish.set
    assert plan.events == ("job:fail",)
    assert plan.start == Start(slot)


def test_a_failure_without_a_run_uses_the_stored_slot() -> None:
    """No handler ran for a slot (none registered): the job's stored slot is the one left."""
    stored_slot = NOW.replace(second=0) - timedelta(minutes=3)
    orphan = job(repeat=MINUTE_CRON, nextRunAt=NOW, lastScheduledAt=stored_slot)
    plan = fail(orphan, LookupError("no handler"), None)
    assert plan.finish.set["nextRunAt"] == stored_slot + timedelta(minutes=1)


def test_errors_are_stored_cut_to_size() -> None:
    message, kind, _ = describe(ValueError("m" * 10_000))
    assert len(message) == 4_000 and kind == "ValueError"
    assert describe(RuntimeError())[0] == "RuntimeError"
    try:
        raise KeyError("inner")
    except KeyError as exc:
        assert "KeyError" in describe(exc)[2] and "raise KeyError" in describe(exc)[2]


def test_an_error_from_a_handlers_process_keeps_its_type_and_traceback() -> None:
    trace = "Traceback (most recent call last):\n  File \"h.py\", line 3\nKeyError: 'k'\n"
    message, kind, stored_trace = describe(HandlerError("KeyError", "'k'", trace))
    assert (message, kind, stored_trace) == ("'k'", "KeyError", trace)
    assert describe(HandlerError("Quiet", "", "t"))[0] == "Quiet"


# -- the handler's process died --------------------------------------------------------------

DIED = HandlerCrashed("the handler's process was killed by SIGKILL (exit -9)")


def crash(crashed: Job, start: Start | None = None) -> Plan:
    """``after_crash`` at NOW."""
    return after_crash(crashed, DIED, start or Start(), task=None, now=CLOCK, policy=POLICY)


def test_a_crash_is_a_failed_attempt_counted_as_a_lease_expiry() -> None:
    flaky = job(retry={"maxAttempts": 10, "delay": 1000}, leaseExpiries=1)
    plan = crash(flaky)
    assert plan.finish.set["status"] == "pending"
    assert plan.finish.set["nextRunAt"] == NOW + timedelta(seconds=1)
    assert plan.finish.set["attempts"] == 1
    assert plan.finish.set["leaseExpiries"] == 2
    assert plan.finish.set["lastErrorType"] == "HandlerCrashed"
    assert "killed by SIGKILL (exit -9)" in plan.finish.set["lastError"]
    assert plan.events == ("job:retry",)


def test_a_crash_without_attempts_left_fails_the_job_and_keeps_the_count() -> None:
    plan = crash(job())
    assert plan.finish.set["status"] == "failed"
    assert plan.finish.set["leaseExpiries"] == 1
    assert plan.finish.set["lastErrorType"] == "HandlerCrashed"
    assert plan.events == ("job:fail",) and plan.error is DIED


def test_a_job_whose_process_keeps_dying_is_quarantined_as_poison() -> None:
    """Attempts left or not, the death that reaches ``max_lease_expiries`` ends the retries."""
    flaky = job(retry={"maxAttempts": 10, "delay": 0}, attempts=2, leaseExpiries=2)
    plan = crash(flaky)
    assert plan.finish.set["status"] == "failed"
    assert plan.finish.set["attempts"] == 3
    assert plan.finish.set["leaseExpiries"] == 3
    assert plan.finish.set["lastErrorType"] == "PoisonJob"
    assert "died or the lease expired 3 times" in plan.finish.set["lastError"]
    assert "(limit 3)" in plan.finish.set["lastError"]
    assert "killed by SIGKILL" in plan.finish.set["lastError"]
    assert isinstance(plan.error, PoisonJob) and plan.events == ("job:fail",)


def test_a_repeating_poison_crash_moves_to_its_next_slot_with_a_fresh_count() -> None:
    slot = NOW.replace(second=0)
    plan = crash(repeating(retry={"maxAttempts": 10}, leaseExpiries=2), Start(slot))
    assert plan.finish.set["status"] == "pending"
    assert plan.finish.set["nextRunAt"] == slot + timedelta(minutes=1)
    assert plan.finish.set["leaseExpiries"] == 0
    assert plan.finish.set["lastErrorType"] == "PoisonJob"
    assert plan.start == Start(slot) and plan.events == ("job:fail",)


def test_a_retried_crash_of_a_repeating_job_keeps_the_count() -> None:
    slot = NOW.replace(second=0)
    plan = crash(repeating(retry={"maxAttempts": 10}), Start(slot))
    assert plan.finish.set["leaseExpiries"] == 1
    assert plan.finish.set["lastScheduledAt"] == slot
    assert plan.events == ("job:retry",)


# -- a schedule changed during the run -----------------------------------------------------


def test_the_next_occurrence_follows_a_schedule_changed_during_the_run() -> None:
    slot = NOW.replace(second=0)
    plan = after_success(repeating(), "r", Start(slot), now=CLOCK, policy=POLICY)
    hourly = {"cron": "0 * * * *", "timezone": "UTC"}
    current = job(repeat=hourly, nextRunAt=slot, lastScheduledAt=slot)
    again = after_schedule_change(current, plan, POLICY)
    assert again.finish.set["nextRunAt"] == slot.replace(minute=0) + timedelta(hours=1)
    assert again.finish.set["result"] == "r"
    assert again.finish.expect == {"repeat": hourly}
    assert again.events == plan.events


def test_a_schedule_removed_during_the_run_completes_the_job() -> None:
    slot = NOW.replace(second=0)
    failed = after_failure(
        repeating(), ValueError("x"), Start(slot), task=None, now=CLOCK, policy=POLICY
    )
    current = job(nextRunAt=slot)
    again = after_schedule_change(current, failed, POLICY)
    assert again.finish.set["status"] == "completed"
    assert again.finish.set["lastError"] == "x"
    assert again.finish.expect == {"repeat": None}
    assert again.events == ("job:fail",)


# -- stops ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "release", "free_slot", "lease_lost"),
    [
        (StopReason.SHUTDOWN, True, False, False),
        (StopReason.CANCELLED, False, True, False),
        (StopReason.LEASE_LOST, False, True, True),
    ],
)
def test_a_stopped_run_writes_no_outcome(
    reason: StopReason, release: bool, free_slot: bool, lease_lost: bool
) -> None:
    plan = after_stop(reason)
    assert (plan.release, plan.free_slot, plan.lease_lost) == (release, free_slot, lease_lost)
