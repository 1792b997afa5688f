"""The attempt history's pure rules: how an ending is bounded, the entry built from the
document as it is before the write, the bound on the list, and the ending each decision of
``_outcomes`` records."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.test_outcomes import CLOCK, MINUTE_CRON, NOW, POLICY, fail, job, repeating

from mongo_job_scheduler import JobTimeout
from mongo_job_scheduler._history import (
    HISTORY_LIMIT,
    MAX_HISTORY_ERROR_LENGTH,
    MAX_HISTORY_ERROR_TYPE_LENGTH,
    Ending,
    appended,
    entry,
)
from mongo_job_scheduler._outcomes import (
    Start,
    after_crash,
    after_schedule_change,
    after_success,
    before_run,
)
from mongo_job_scheduler.job import AttemptOutcome

STARTED = NOW - timedelta(seconds=3, milliseconds=250)


def test_an_ending_is_cut_to_its_bounds() -> None:
    long = Ending.of(AttemptOutcome.FAILED, "m" * (MAX_HISTORY_ERROR_LENGTH + 1), "T" * 1000, None)
    assert long.error == "m" * MAX_HISTORY_ERROR_LENGTH
    assert long.error_type == "T" * MAX_HISTORY_ERROR_TYPE_LENGTH
    delayed = Ending.of(AttemptOutcome.RETRIED, retry_delay=timedelta(seconds=1.2345678))
    assert delayed.retry_delay_ms == 1234
    assert Ending.of(AttemptOutcome.RETRIED, retry_delay=timedelta(seconds=-1)).retry_delay_ms == 0


def test_an_ending_gives_only_the_fields_it_has() -> None:
    assert Ending(AttemptOutcome.COMPLETED).fields() == {"outcome": "completed"}
    retried = Ending(AttemptOutcome.RETRIED, "boom", "ValueError", 0)
    assert retried.fields() == {
        "outcome": "retried",
        "error": "boom",
        "errorType": "ValueError",
        "retryDelayMs": 0,
    }


def test_the_entry_comes_from_the_document_before_the_write() -> None:
    doc = {"lastRunAt": STARTED, "lockedBy": "w-1", "lockVersion": 7, "status": "running"}
    ending = Ending(AttemptOutcome.RETRIED, "boom", "ValueError", 500)
    assert entry(doc, ending, NOW) == {
        "outcome": "retried",
        "startedAt": STARTED,
        "endedAt": NOW,
        "durationMs": 3250,
        "lockedBy": "w-1",
        "lockVersion": 7,
        "error": "boom",
        "errorType": "ValueError",
        "retryDelayMs": 500,
    }
    assert list(entry(doc, ending, NOW)) == [
        "outcome", "startedAt", "endedAt", "durationMs", "lockedBy", "lockVersion", "error",
        "errorType", "retryDelayMs",
    ]  # fmt: skip


def test_fields_the_document_lacks_are_left_out() -> None:
    bare = entry({"lockedBy": None}, Ending(AttemptOutcome.STOPPED), NOW)
    assert bare == {"outcome": "stopped", "endedAt": NOW}
    odd = entry({"lastRunAt": "yesterday"}, Ending(AttemptOutcome.STOPPED), NOW)
    assert odd == {"outcome": "stopped", "startedAt": "yesterday", "endedAt": NOW}


def test_the_history_keeps_the_last_entries() -> None:
    history: list[dict[str, int]] = []
    for n in range(HISTORY_LIMIT + 3):
        history = appended(history, {"n": n})
    assert [e["n"] for e in history] == list(range(3, HISTORY_LIMIT + 3))
    assert appended("not a list", {"n": 1}) == [{"n": 1}]
    assert appended(None, {"n": 1}) == [{"n": 1}]
    stored = [{"n": 0}]
    appended(stored, {"n": 1})
    assert stored == [{"n": 0}]  # the stored list is not changed in place


# -- what each decision records ------------------------------------------------------------


def test_a_success_records_completed() -> None:
    one_off = after_success(job(), "ok", Start(), now=CLOCK, policy=POLICY)
    assert one_off.finish.attempt == Ending(AttemptOutcome.COMPLETED)
    slot = NOW.replace(second=0)
    repeated = after_success(repeating(), None, Start(slot), now=CLOCK, policy=POLICY)
    assert repeated.finish.attempt == Ending(AttemptOutcome.COMPLETED)


def test_a_failure_records_retried_with_the_delay_or_failed() -> None:
    retried = fail(job(retry={"maxAttempts": 3, "delay": 90_000}), ValueError("no"), None)
    assert retried.finish.attempt == Ending(AttemptOutcome.RETRIED, "no", "ValueError", 90_000)
    final = fail(job(retry={"maxAttempts": 1}), ValueError("no"), None)
    assert final.finish.attempt == Ending(AttemptOutcome.FAILED, "no", "ValueError")


def test_a_retry_delay_capped_at_the_next_slot_is_recorded_capped() -> None:
    slot = NOW.replace(second=0)
    plan = fail(repeating(retry={"maxAttempts": 3, "delay": 3_600_000}), ValueError(), Start(slot))
    assert plan.finish.attempt is not None
    assert plan.finish.attempt.retry_delay_ms == 30_000  # the next minute slot, 30 s away


def test_a_timeout_records_timed_out_retried_or_not() -> None:
    timeout = JobTimeout("handler exceeded its timeout of 1s")
    retried = fail(job(retry={"maxAttempts": 2, "delay": 0}), timeout, None)
    assert retried.finish.attempt == Ending(AttemptOutcome.TIMED_OUT, str(timeout), "JobTimeout", 0)
    final = fail(job(retry={"maxAttempts": 1}), timeout, None)
    assert final.finish.attempt == Ending(AttemptOutcome.TIMED_OUT, str(timeout), "JobTimeout")


def test_a_repeating_job_out_of_attempts_records_failed_as_it_moves_on() -> None:
    slot = NOW.replace(second=0)
    plan = fail(repeating(), ValueError("no"), Start(slot))
    assert plan.finish.set["status"] == "pending"
    assert plan.finish.attempt == Ending(AttemptOutcome.FAILED, "no", "ValueError")


def test_a_poison_job_and_a_crash_record_failures() -> None:
    poison = before_run(job(leaseExpiries=3), poisoned=True, now=CLOCK, policy=POLICY)
    assert not isinstance(poison, Start)
    assert poison.finish.attempt is not None
    assert poison.finish.attempt.outcome is AttemptOutcome.FAILED
    assert poison.finish.attempt.error_type == "PoisonJob"
    crash = after_crash(
        job(retry={"maxAttempts": 3}),
        RuntimeError("killed by SIGKILL"),
        Start(),
        task=None,
        now=CLOCK,
        policy=POLICY,
    )
    assert crash.finish.attempt is not None
    assert crash.finish.attempt.outcome is AttemptOutcome.RETRIED


def test_skipped_slots_record_skipped() -> None:
    old = NOW.replace(second=0) - timedelta(minutes=5)
    late = job(repeat={**MINUTE_CRON, "misfire": "skip"}, nextRunAt=old, lastScheduledAt=old)
    plan = before_run(late, poisoned=False, now=CLOCK, policy=POLICY)
    assert not isinstance(plan, Start)
    assert plan.finish.attempt == Ending(AttemptOutcome.SKIPPED)


def test_a_recomputed_next_occurrence_keeps_the_ending() -> None:
    slot = NOW.replace(second=0)
    plan = fail(repeating(), ValueError("no"), Start(slot))
    changed = job(repeat={"every": 60_000}, nextRunAt=slot, lastScheduledAt=slot)
    again = after_schedule_change(changed, plan, POLICY)
    assert again.finish.attempt == plan.finish.attempt
    removed = after_schedule_change(job(), plan, POLICY)
    assert removed.finish.set["status"] == "completed"
    assert removed.finish.attempt == plan.finish.attempt
