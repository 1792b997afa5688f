"""Procedures shared by the asyncio and the blocking scheduler, driven with scripted store
results (no database): the calls they ask for, in order, and how they end."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import pytest

from mongo_job_scheduler import InvalidJobState, JobNotFound
from mongo_job_scheduler._procedures import Call, Procedure, apply_update, run_async, run_sync
from mongo_job_scheduler._updates import UPDATE_ATTEMPTS, UpdatePlan

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def plan(current: Mapping[str, Any], now: datetime, *, key: str | None = None) -> UpdatePlan:
    return UpdatePlan(str(current["status"]), {"data": 1, "at": now}, ["expireAt"], key)


def script(procedure: Procedure[Any], answers: list[Any]) -> tuple[list[Call], Any]:
    """Feed ``answers`` to ``procedure`` one per call; the calls it made and its result."""
    calls: list[Call] = []
    result: Any = None
    feed = iter(answers)
    while True:
        try:
            call = procedure.send(result)
        except StopIteration as done:
            return calls, done.value
        calls.append(call)
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
