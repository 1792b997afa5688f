"""Procedures shared by the asyncio and the blocking scheduler, driven with scripted store
results (no database): the calls they ask for, in order, and how they end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId

from mongo_job_scheduler import InvalidJobState, JobNotFound, JobStatus, ValidationError
from mongo_job_scheduler._procedures import (
    FIRST_POLL,
    LONGEST_POLL,
    Call,
    Procedure,
    Sleep,
    apply_update,
    list_live_workers,
    list_paused,
    pause_name,
    purge_finished,
    read_activity,
    read_stats,
    resume_name,
    retry,
    run_async,
    run_sync,
    wait_finished,
)
from mongo_job_scheduler._updates import UPDATE_ATTEMPTS, UpdatePlan
from mongo_job_scheduler.fleet import LIVE_FOR
from mongo_job_scheduler.stats import ACTIVITY_READ_LIMIT, THROUGHPUT_READ_LIMIT

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def plan(current: Mapping[str, Any], now: datetime, *, key: str | None = None) -> UpdatePlan:
    return UpdatePlan(str(current["status"]), {"data": 1, "at": now}, ["expireAt"], key)


def script(
    procedure: Procedure[Any],
    answers: list[Any],
    on_sleep: Callable[[float], None] | None = None,
) -> tuple[list[Any], Any]:
    """Feed ``answers`` to ``procedure`` one per store call (a :class:`Sleep` gets ``None``
    and is passed to ``on_sleep``); the steps it asked for and its result."""
    steps: list[Any] = []
    result: Any = None
    feed = iter(answers)
    while True:
        try:
            step = procedure.send(result)
        except StopIteration as done:
            return steps, done.value
        steps.append(step)
        if isinstance(step, Sleep):
            if on_sleep is not None:
                on_sleep(step.seconds)
            result = None
        else:
            result = next(feed)


def test_an_update_reads_plans_and_writes_for_the_status_it_saw() -> None:
    calls, doc = script(apply_update("id", "oid", plan), [{"status": "pending"}, NOW, {"ok": 1}])
    assert [c.method for c in calls] == ["get", "now", "update"]
    assert calls[2].kwargs == {
        "expect_status": ["pending"],
        "set": {"data": 1, "at": NOW},
        "unset": ["expireAt"],
    }
    assert doc == {"ok": 1}


def test_a_missing_job_is_not_found() -> None:
    with pytest.raises(JobNotFound):
        script(apply_update("id", "oid", plan), [None])


def test_a_revived_job_takes_its_dedupe_key_back_first() -> None:
    def reviving(current: Mapping[str, Any], now: datetime) -> UpdatePlan:
        return plan(current, now, key="k")

    calls, _ = script(
        apply_update("id", "oid", reviving), [{"status": "failed"}, NOW, True, {"ok": 1}]
    )
    assert [c.method for c in calls] == ["get", "now", "reserve_dedupe_key", "update"]
    assert calls[2].args == ("k", "oid")
    with pytest.raises(InvalidJobState, match="dedupe key"):
        script(apply_update("id", "oid", reviving), [{"status": "failed"}, NOW, False])


def test_a_status_that_keeps_changing_gives_up() -> None:
    answers = [{"status": "pending"}, NOW, None] * UPDATE_ATTEMPTS
    with pytest.raises(InvalidJobState, match="kept changing"):
        script(apply_update("id", "oid", plan), answers)
    calls, doc = script(
        apply_update("id", "oid", plan),
        [{"status": "pending"}, NOW, None, {"status": "running"}, NOW, {"ok": 2}],
    )
    assert doc == {"ok": 2}
    assert calls[-1].kwargs["expect_status"] == ["running"]


class _Store:
    def __init__(self) -> None:
        self.doc = {"status": "pending"}

    def get(self, oid: Any) -> dict[str, Any]:
        return self.doc

    def now(self) -> datetime:
        return NOW

    def update(self, oid: Any, **kwargs: Any) -> dict[str, Any]:
        return {**self.doc, **kwargs["set"]}


class _AsyncStore:
    def __init__(self) -> None:
        self.inner = _Store()

    async def get(self, oid: Any) -> dict[str, Any]:
        return self.inner.get(oid)

    async def now(self) -> datetime:
        return NOW

    async def update(self, oid: Any, **kwargs: Any) -> dict[str, Any]:
        return self.inner.update(oid, **kwargs)


async def test_both_drivers_carry_out_the_same_calls() -> None:
    expected = {"status": "pending", "data": 1, "at": NOW}
    assert run_sync(apply_update("id", "oid", plan), _Store()) == expected
    assert await run_async(apply_update("id", "oid", plan), _AsyncStore()) == expected


async def test_both_drivers_sleep_themselves_and_never_ask_the_store_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def napping() -> Procedure[dict[str, Any]]:
        yield Sleep(0.5)
        doc: dict[str, Any] = yield Call("get", ("oid",))
        return doc

    slept: list[tuple[str, float]] = []
    monkeypatch.setattr(time, "sleep", lambda s: slept.append(("time", s)))
    real_sleep = asyncio.sleep

    async def async_sleep(seconds: float) -> None:
        slept.append(("asyncio", seconds))
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", async_sleep)
    assert run_sync(napping(), _Store()) == {"status": "pending"}
    assert await run_async(napping(), _AsyncStore()) == {"status": "pending"}
    assert slept == [("time", 0.5), ("asyncio", 0.5)]


# -- wait ----------------------------------------------------------------------------------------

OID = ObjectId()
PENDING = {"_id": OID, "name": "x", "status": "pending"}
RUNNING = {"_id": OID, "name": "x", "status": "running"}


class Clock:
    """A monotonic clock that moves only when the procedure sleeps."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@pytest.mark.parametrize("final", ["completed", "failed", "cancelled"])
def test_wait_reads_until_the_job_has_finished_polling_ever_more_slowly(final: str) -> None:
    unfinished = [PENDING, RUNNING] * 4
    done = {**RUNNING, "status": final, "result": {"ok": True}}
    steps, job = script(wait_finished(str(OID), None, Clock()), [*unfinished, done])
    reads = [s for s in steps if isinstance(s, Call)]
    assert {(c.method, c.args) for c in reads} == {("get", (OID,))}
    assert len(reads) == 9
    pauses = [s.seconds for s in steps if isinstance(s, Sleep)]
    assert pauses == [FIRST_POLL * 2**n for n in range(5)] + [LONGEST_POLL] * 3
    assert job.id == OID and job.status is JobStatus(final) and job.result == {"ok": True}


def test_wait_on_a_finished_job_reads_once() -> None:
    steps, job = script(wait_finished(OID, 0, Clock()), [{**PENDING, "status": "completed"}])
    assert steps == [Call("get", (OID,))]
    assert job.status is JobStatus.COMPLETED


def test_wait_gives_up_at_its_deadline_without_sleeping_past_it() -> None:
    clock = Clock()
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        clock.sleep(seconds)

    with pytest.raises(TimeoutError, match=r"still running after 0\.05s"):
        script(wait_finished(OID, timedelta(milliseconds=50), clock), [RUNNING] * 100, sleep)
    assert pauses == pytest.approx([0.01, 0.02, 0.02])  # the last pause ends at the deadline
    assert clock.t == pytest.approx(100.05)


def test_wait_with_no_time_reads_once_then_times_out() -> None:
    with pytest.raises(TimeoutError, match="still pending after 0s"):
        script(wait_finished(OID, 0, Clock()), [PENDING])


def test_wait_for_a_missing_job_or_with_bad_input() -> None:
    with pytest.raises(JobNotFound):
        script(wait_finished(OID, None, Clock()), [None])
    for job_id, timeout, field in [
        ("nope", None, "job_id"),
        (OID, -1, "timeout"),
        (OID, "5", "timeout"),
    ]:
        with pytest.raises(ValidationError) as info:
            script(wait_finished(job_id, timeout, Clock()), [])  # no store call at all
        assert info.value.field == field


# -- retry_job -----------------------------------------------------------------------------------


def test_retry_makes_a_failed_job_pending_now_with_fresh_attempts() -> None:
    failed = {**PENDING, "status": "failed", "attempts": 3, "dedupeKey": "k"}
    after = {**failed, "status": "pending", "attempts": 0, "nextRunAt": NOW}
    steps, job = script(retry(str(OID)), [failed, NOW, True, after])
    assert [s.method for s in steps] == ["get", "now", "reserve_dedupe_key", "update"]
    assert steps[2].args == ("k", OID)
    assert steps[3].kwargs == {
        "expect_status": ["failed"],
        "set": {"status": "pending", "nextRunAt": NOW, "attempts": 0, "leaseExpiries": 0},
        "unset": ["expireAt"],
    }
    assert job.status is JobStatus.PENDING and job.attempts == 0 and job.next_run_at == NOW


def test_retry_refuses_an_active_job_and_writes_nothing() -> None:
    with pytest.raises(InvalidJobState, match="only failed or cancelled"):
        script(retry(OID), [PENDING, NOW])
    with pytest.raises(ValidationError):
        script(retry("nope"), [])


# -- purge ---------------------------------------------------------------------------------------


def test_purge_deletes_finished_jobs_older_than_a_duration_or_a_date() -> None:
    steps, deleted = script(purge_finished(timedelta(days=1)), [NOW, 7])
    assert steps == [
        Call("now"),
        Call("delete_finished", (NOW - timedelta(days=1), ["cancelled", "completed", "failed"])),
    ]
    assert deleted == 7
    cutoff = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    steps, _ = script(purge_finished(cutoff, [JobStatus.FAILED]), [NOW, 0])
    assert steps[1].args == (
        datetime(2025, 6, 1, 10, 0, 0, 123000, tzinfo=timezone.utc),
        ["failed"],
    )
    steps, _ = script(purge_finished(3600, ("cancelled",)), [NOW, 0])
    assert steps[1].args == (NOW - timedelta(hours=1), ["cancelled"])


@pytest.mark.parametrize(
    ("older_than", "statuses", "field"),
    [
        (0, ["pending"], "statuses"),
        (0, ["completed", "running"], "statuses"),
        (0, ["finished"], "status"),
        (-5, ["completed"], "older_than"),
        (datetime(2020, 1, 1), ["completed"], "older_than"),
        ("yesterday", ["completed"], "older_than"),
    ],
)
def test_purge_refuses_bad_input_and_deletes_nothing(
    older_than: Any, statuses: list[str], field: str
) -> None:
    steps: list[Any] = []
    with pytest.raises(ValidationError) as info:
        steps, _ = script(purge_finished(older_than, statuses), [NOW])
    assert info.value.field == field
    assert steps == []  # never reached the delete


# -- pause, resume, paused names -----------------------------------------------------------------


def test_pause_and_resume_validate_the_name_first() -> None:
    assert script(pause_name("report"), [True]) == ([Call("pause", ("report",))], True)
    assert script(resume_name("report"), [False]) == ([Call("resume", ("report",))], False)
    assert script(list_paused(), [["a", "b"]]) == ([Call("paused_names")], ["a", "b"])
    for bad in ("", "   ", 5, None, "x" * 500):
        for procedure in (pause_name, resume_name):
            with pytest.raises(ValidationError):
                script(procedure(bad), [])


# -- stats and the fleet -------------------------------------------------------------------------


def _registration(worker_id: str, names: list[str] | None) -> dict[str, Any]:
    return {"_id": worker_id, "schedulerId": "s", "names": names, "workers": 2, "startedAt": NOW}


def test_stats_combine_the_store_counts_the_paused_names_and_the_live_workers() -> None:
    raw = {
        "by_name": {"a": {"pending": 3}, "b": {"failed": 1}},
        "due": 3,
        "oldest_due": NOW - timedelta(minutes=2),
        "failed_since_hour": 1,
    }
    live = [_registration("w-1", ["a"])]
    steps, stats = script(read_stats(), [NOW, raw, live, ["b"], {"a": 2, "c": 1}])
    assert steps == [
        Call("now"),
        Call("stats", (NOW,)),
        Call("live_workers", (NOW - LIVE_FOR,)),
        Call("paused_names"),
        Call("due_by_name", (NOW,)),
    ]
    assert stats.at == NOW and stats.by_name == raw["by_name"]
    assert stats.due == 3 and stats.lag == timedelta(minutes=2)
    assert stats.failed_last_hour == 1 and stats.paused == ["b"]
    assert stats.unhandled == {"c": 1}
    _, catch_all = script(read_stats(), [NOW, raw, [_registration("w-2", None)], [], {"c": 1}])
    assert catch_all.unhandled == {}


def test_activity_reads_its_window_with_bounded_limits_and_finds_unhandled_due_jobs() -> None:
    raw = {
        "counts": [
            {"name": "a", "status": "pending", "n": 2},
            {"name": "c", "status": "completed", "n": 4},
        ],
        "due": {"a": 2, "c": 1},
        "oldest_due": NOW - timedelta(minutes=2),
    }
    live = [_registration("w-1", ["a"])]
    at = NOW + timedelta(seconds=30)
    steps, activity = script(read_activity(5), [at, raw, live, ["b"]])
    since = NOW - timedelta(minutes=4)  # five wall-clock minutes, the current one included
    assert steps == [
        Call("now"),
        Call("activity", (at, since, THROUGHPUT_READ_LIMIT, ACTIVITY_READ_LIMIT)),
        Call("live_workers", (at - LIVE_FOR,)),
        Call("paused_names"),
    ]
    assert (activity.at, activity.since, activity.minutes) == (at, since, 5)
    assert activity.by_name == {"a": {"pending": 2}, "c": {"completed": 4}}
    assert activity.due == 3 and activity.lag == timedelta(minutes=2, seconds=30)
    assert activity.paused == ["b"] and activity.unhandled == {"c": 1}
    assert activity.capped == frozenset()


@pytest.mark.parametrize("bad", [0, 1441, 2.5, "60", None, True])
def test_activity_refuses_a_bad_window_before_any_call(bad: Any) -> None:
    with pytest.raises(ValidationError) as info:
        script(read_activity(bad), [])
    assert info.value.field == "minutes"


def test_live_workers_are_the_registrations_seen_lately() -> None:
    steps, workers = script(
        list_live_workers(), [NOW, [_registration("w-1", None), _registration("w-2", ["a"])]]
    )
    assert steps == [Call("now"), Call("live_workers", (NOW - LIVE_FOR,))]
    assert [(w.id, w.names, w.workers) for w in workers] == [("w-1", None, 2), ("w-2", ("a",), 2)]


def test_settling_a_batch_of_dependencies_costs_the_same_round_trips() -> None:
    """Dependencies that finished together are settled with one close, one read of their
    dependants and one settled mark, whatever their number."""
    from mongo_job_scheduler._procedures import settle_dependants

    for count in (1, 50):
        ended = [{"_id": f"d{i}", "status": "completed", "name": "part"} for i in range(count)]
        pairs = [("fan-in", f"d{i}") for i in range(count)]
        calls, cancelled = script(
            settle_dependants(ended),
            [pairs, [{"_id": "fan-in", "status": "waiting"}], False, None, None],
        )
        assert [c.method for c in calls] == [
            "close_dependencies",
            "get_many",
            "has_open_dependencies",
            "release_waiting",
            "dependants_settled",
        ]
        assert cancelled == []


def test_a_failed_dependency_in_a_batch_cancels_the_dependant() -> None:
    from mongo_job_scheduler._procedures import settle_dependants

    ended = [
        {"_id": "ok", "status": "completed", "name": "a"},
        {"_id": "bad", "status": "failed", "name": "b"},
    ]
    calls, cancelled = script(
        settle_dependants(ended),
        [
            [("j", "ok"), ("j", "bad")],
            [{"_id": "j", "status": "waiting"}],
            {"_id": "j", "status": "cancelled"},
            None,
        ],
    )
    assert [c.method for c in calls] == [
        "close_dependencies",
        "get_many",
        "cancel_waiting",
        "dependants_settled",
    ]
    assert "'b'" in calls[2].args[1]["lastError"]
    assert cancelled == [{"_id": "j", "status": "cancelled"}]


DOOMED = ObjectId()


def test_delete_removes_a_job_that_is_not_running_in_one_call() -> None:
    from mongo_job_scheduler._procedures import DELETABLE, delete_job

    calls, result = script(delete_job(str(DOOMED)), [{"_id": DOOMED, "status": "failed"}])
    assert calls == [Call("delete", (DOOMED, DELETABLE))]
    assert "running" not in DELETABLE
    assert result == (True, [])


def test_delete_of_a_missing_job_says_so_and_a_running_one_is_refused() -> None:
    from mongo_job_scheduler._procedures import delete_job

    calls, result = script(delete_job(DOOMED), [None, None])
    assert [c.method for c in calls] == ["delete", "get"]
    assert result == (False, [])
    with pytest.raises(InvalidJobState, match=r"running.*cancel it first"):
        script(delete_job(DOOMED), [None, {"_id": DOOMED, "status": "running"}])
    with pytest.raises(ValidationError):
        script(delete_job("nope"), [])


def test_delete_tries_again_when_the_job_changed_between_its_delete_and_its_read() -> None:
    from mongo_job_scheduler._procedures import delete_job

    pending = {"_id": DOOMED, "status": "pending"}
    calls, result = script(delete_job(DOOMED), [None, pending, pending])
    assert [c.method for c in calls] == ["delete", "get", "delete"]
    assert result == (True, [])
    with pytest.raises(InvalidJobState, match="kept changing"):
        script(delete_job(DOOMED), [None, pending] * UPDATE_ATTEMPTS)


def test_deleting_a_job_others_wait_for_settles_them_as_if_it_was_cancelled() -> None:
    from mongo_job_scheduler._procedures import delete_job

    doc = {"_id": DOOMED, "status": "pending", "name": "part", "dependants": "open"}
    calls, (deleted, cancelled) = script(
        delete_job(DOOMED),
        [
            doc,
            [("j", DOOMED)],
            [{"_id": "j", "status": "waiting"}],
            {"_id": "j", "status": "cancelled"},
            None,
        ],
    )
    assert [c.method for c in calls] == [
        "delete",
        "close_dependencies",
        "get_many",
        "cancel_waiting",
        "dependants_settled",
    ]
    assert calls[3].args[1]["lastError"] == (
        f"dependency {DOOMED} ('part') was deleted, so this job will not run"
    )
    assert deleted and cancelled == [{"_id": "j", "status": "cancelled"}]


def test_deleting_a_completed_job_with_unsettled_dependants_releases_them() -> None:
    from mongo_job_scheduler._procedures import delete_job

    doc = {"_id": DOOMED, "status": "completed", "name": "part", "dependants": "open"}
    calls, result = script(
        delete_job(DOOMED),
        [doc, [("j", DOOMED)], [{"_id": "j", "status": "waiting"}], False, {}, None],
    )
    assert [c.method for c in calls][-2:] == ["release_waiting", "dependants_settled"]
    assert result == (True, [])
