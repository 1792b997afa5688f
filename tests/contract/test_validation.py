"""Validation: every option is validated before anything is written. Table-driven.

Every case must raise a ``ValidationError`` (a ``ValueError``) that names the offending field,
and leave the store exactly as it was: no job, no dedupe registration, an updated job unchanged.
Store-touching cases run over both stores; ``Scheduler(...)`` options need no store.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import Code, DBRef, Decimal128, MinKey, ObjectId, Regex, Timestamp

from mongo_job_scheduler import (
    ConfigurationError,
    InMemoryJobStore,
    JobStore,
    MongoJobStore,
    Scheduler,
    ValidationError,
)

NAN = math.nan
INF = math.inf
NAIVE = datetime(2030, 1, 1, 12, 0)
AWARE = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
BIG = "x" * (16 * 1024 * 1024)


def nested(levels: int, container: str = "dict") -> Any:
    """A value nested ``levels`` containers deep."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value} if container == "dict" else [value]
    return value


def cyclic() -> dict[str, Any]:
    """A mapping that contains itself."""
    value: dict[str, Any] = {}
    value["self"] = value
    return value


DEEP = nested(1500)
DEEP_LIST = nested(1500, "list")
DEEP_91 = nested(91)
LONG_PATH = ".".join(["a"] * 2000)


def case(target: str, kwargs: dict[str, Any], field: str, id: str) -> Any:
    return pytest.param(target, kwargs, field, id=f"{target}-{id}")


CASES = [
    # -- schedule: name ------------------------------------------------------------------------
    case("schedule", {"name": ""}, "name", "empty-name"),
    case("schedule", {"name": "   "}, "name", "blank-name"),
    case("schedule", {"name": 123}, "name", "int-name"),
    case("schedule", {"name": None}, "name", "none-name"),
    case("schedule", {"name": "n" * 201}, "name", "long-name"),
    case("schedule", {"name": {"$ne": 1}}, "name", "operator-name"),
    case("schedule", {"name": "t\x1b]0;owned\x07\x1b[2J"}, "name", "escape-in-name"),
    case("schedule", {"name": "two\nlines"}, "name", "newline-in-name"),
    case("schedule", {"name": "tab\there"}, "name", "tab-in-name"),
    case("schedule", {"name": "c1\x9b2J"}, "name", "c1-control-in-name"),
    case("schedule", {"name": "del\x7f"}, "name", "del-in-name"),
    case("schedule", {"name": "report\u202egnp.exe"}, "name", "bidi-override-in-name"),
    case("schedule", {"name": "para\u2029graph"}, "name", "separator-in-name"),
    # -- schedule: data ------------------------------------------------------------------------
    case("schedule", {"data": {"$set": {"a": 1}}}, "data", "dollar-key"),
    case("schedule", {"data": {"a": {"$gt": 1}}}, "data", "nested-dollar-key"),
    case("schedule", {"data": {"a": [{"$where": "1"}]}}, "data", "dollar-key-in-list"),
    case("schedule", {"data": {1, 2}}, "data", "set"),
    case("schedule", {"data": {"o": object()}}, "data", "object"),
    case("schedule", {"data": {"x": NAN}}, "data", "nan"),
    case("schedule", {"data": {"x": [1.0, INF]}}, "data", "inf"),
    case("schedule", {"data": {"blob": BIG}}, "data", "over-16mb"),
    case("schedule", {"data": {"big": 2**64}}, "data", "int-over-64-bits"),
    case("schedule", {"data": DEEP}, "data", "nested-1500-levels"),
    case("schedule", {"data": DEEP_LIST}, "data", "lists-nested-1500-levels"),
    case("schedule", {"data": DEEP_91}, "data", "nested-91-levels"),
    case("schedule", {"data": cyclic()}, "data", "cyclic"),
    # -- schedule: when ------------------------------------------------------------------------
    case("schedule", {"run_at": NAIVE}, "run_at", "naive-run-at"),
    case("schedule", {"run_at": "2030-01-01T00:00:00Z"}, "run_at", "string-run-at"),
    case("schedule", {"run_at": 1_900_000_000}, "run_at", "number-run-at"),
    case("schedule", {"run_at": AWARE, "delay": 5}, "run_at", "run-at-and-delay"),
    case("schedule", {"delay": -1}, "delay", "negative-delay"),
    case("schedule", {"delay": NAN}, "delay", "nan-delay"),
    case("schedule", {"delay": INF}, "delay", "inf-delay"),
    case("schedule", {"delay": "5s"}, "delay", "string-delay"),
    case("schedule", {"delay": timedelta(seconds=-3)}, "delay", "negative-timedelta-delay"),
    case("schedule", {"delay": 1e12}, "delay", "delay-beyond-datetime"),
    # -- schedule: priority, concurrency, durations --------------------------------------------
    case("schedule", {"priority": 0}, "priority", "priority-0"),
    case("schedule", {"priority": 11}, "priority", "priority-11"),
    case("schedule", {"priority": 1.5}, "priority", "float-priority"),
    case("schedule", {"priority": "high"}, "priority", "string-priority"),
    case("schedule", {"priority": True}, "priority", "bool-priority"),
    case("schedule", {"concurrency": 0}, "concurrency", "concurrency-0"),
    case("schedule", {"concurrency": -1}, "concurrency", "negative-concurrency"),
    case("schedule", {"concurrency": 1.5}, "concurrency", "float-concurrency"),
    case("schedule", {"concurrency": True}, "concurrency", "bool-concurrency"),
    case("schedule", {"timeout": 0}, "timeout", "zero-timeout"),
    case("schedule", {"timeout": -5}, "timeout", "negative-timeout"),
    case("schedule", {"timeout": NAN}, "timeout", "nan-timeout"),
    case("schedule", {"max_execution": 0}, "max_execution", "zero-max-execution"),
    case("schedule", {"max_execution": "1h"}, "max_execution", "string-max-execution"),
    # -- schedule: retry -----------------------------------------------------------------------
    case("schedule", {"retry": -1}, "retry", "negative-retry"),
    case("schedule", {"retry": "3"}, "retry", "string-retry"),
    case("schedule", {"retry": 2.5}, "retry", "float-retry"),
    case("schedule", {"retry": {"maxAttempts": 3, "tries": 1}}, "retry", "retry-unknown-key"),
    case("schedule", {"retry": {"delay": 1}}, "retry.maxAttempts", "retry-no-max"),
    case("schedule", {"retry": {"maxAttempts": 0}}, "retry.maxAttempts", "retry-max-0"),
    case("schedule", {"retry": {"maxAttempts": 3, "delay": -5}}, "retry.delay", "retry-neg-delay"),
    case("schedule", {"retry": {"maxAttempts": 3, "delay": NAN}}, "retry.delay", "retry-nan"),
    case("schedule", {"retry": {"maxAttempts": 3, "backoff": "cubic"}}, "retry.backoff", "backoff"),
    case("schedule", {"retry": {"maxAttempts": 3, "jitter": "y"}}, "retry.jitter", "jitter"),
    case("schedule", {"retry": {"maxAttempts": 3, "maxDelay": -1}}, "retry.maxDelay", "max-delay"),
    # -- schedule: repeat ----------------------------------------------------------------------
    case("schedule", {"repeat": {"cron": "bad cron"}}, "repeat.cron", "bad-cron"),
    case("schedule", {"repeat": {"cron": "60 * * * *"}}, "repeat.cron", "cron-out-of-range"),
    case("schedule", {"repeat": {"cron": "* * * * * * *"}}, "repeat.cron", "cron-7-fields"),
    case(
        "schedule",
        {"repeat": {"cron": "* * * * *", "timezone": "Mars/Olympus"}},
        "repeat.timezone",
        "bad-zone",
    ),
    case("schedule", {"repeat": {"every": 0.05}}, "repeat.every", "every-below-100ms"),
    case("schedule", {"repeat": {"every": 0}}, "repeat.every", "every-0"),
    case("schedule", {"repeat": {"every": -1}}, "repeat.every", "negative-every"),
    case("schedule", {"repeat": {"every": NAN}}, "repeat.every", "nan-every"),
    case("schedule", {"repeat": {"every": INF}}, "repeat.every", "inf-every"),
    case("schedule", {"repeat": {"every": "60"}}, "repeat.every", "string-every"),
    case("schedule", {"repeat": {}}, "repeat", "empty-repeat"),
    case("schedule", {"repeat": {"every": 60, "cron": "* * * * *"}}, "repeat", "both"),
    case("schedule", {"repeat": {"every": 60, "at": 1}}, "repeat", "repeat-unknown-key"),
    case("schedule", {"repeat": "every 5 minutes"}, "repeat", "string-repeat"),
    case("schedule", {"repeat": {"every": 60, "misfire": "x"}}, "repeat.misfire", "misfire"),
    case(
        "schedule",
        {"repeat": {"every": 60, "catchUpLimit": 0}},
        "repeat.catchUpLimit",
        "catch-up-0",
    ),
    # -- schedule: dedupe ----------------------------------------------------------------------
    case("schedule", {"dedupe_key": ""}, "dedupe_key", "empty-key"),
    case("schedule", {"dedupe_key": 123}, "dedupe_key", "int-key"),
    case("schedule", {"dedupe_key": "k" * 600}, "dedupe_key", "long-key"),
    case("schedule", {"dedupe_key": "k\x1b[2J"}, "dedupe_key", "escape-in-key"),
    case("schedule", {"dedupe_key": "k\r\nx"}, "dedupe_key", "newline-in-key"),
    case("schedule", {"dedupe_key": "k", "dedupe": "never"}, "dedupe", "bad-scope"),
    case(
        "schedule", {"dedupe_key": "k", "priority": 99}, "priority", "dedupe-key-not-taken-on-error"
    ),
    # -- schedule_bulk -------------------------------------------------------------------------
    case("bulk", {"items": "abc"}, "items", "string-items"),
    case("bulk", {"items": {"name": "x"}}, "items", "mapping-items"),
    case("bulk", {"items": ["x"]}, "items[0]", "non-mapping-item"),
    case("bulk", {"items": [{"name": "a"}, {"nme": "b"}]}, "items[1]", "unknown-item-key"),
    case("bulk", {"items": [{"name": "a"}, {"data": {}}]}, "items[1].name", "missing-name"),
    case(
        "bulk",
        {"items": [{"name": "a"}, {"name": "b", "priority": 0}]},
        "items[1].priority",
        "one-bad-item",
    ),
    case(
        "bulk",
        {"items": [{"name": "a", "dedupe_key": "k"}, {"name": "b", "repeat": {"cron": "x"}}]},
        "items[1].repeat.cron",
        "bad-item-after-dedupe-item",
    ),
    case("bulk", {"items": [{"name": "a"}, {"name": "b\x07"}]}, "items[1].name", "bel-item-name"),
    case("bulk", {"items": [{"name": "a"}, {"name": "b", "data": DEEP}]}, "items[1].data", "deep"),
    case(
        "bulk",
        {"items": [{"name": "a"}] * 5 + [{"name": "b", "data": {"$x": 1}}]},
        "items[5].data",
        "last-item-bad",
    ),
    # -- update_job (on an existing job, which must stay unchanged) ----------------------------
    case("update", {"priority": 0}, "priority", "priority"),
    case("update", {"run_at": NAIVE}, "run_at", "naive-run-at"),
    case("update", {"run_at": None}, "run_at", "none-run-at"),
    case("update", {"repeat": {"cron": "bad"}}, "repeat.cron", "bad-cron"),
    case("update", {"repeat": {"every": 0.01}}, "repeat.every", "tiny-every"),
    case("update", {"retry": {"maxAttempts": 2, "x": 1}}, "retry", "retry-unknown-key"),
    case("update", {"data": {"$x": 1}}, "data", "dollar-data"),
    case("update", {"data": {"s": {1}}}, "data", "set-data"),
    case("update", {"data": DEEP}, "data", "nested-1500-levels"),
    case("update", {"concurrency": 0}, "concurrency", "concurrency"),
    case("update", {"timeout": -1}, "timeout", "timeout"),
    case("update", {"max_execution": INF}, "max_execution", "inf-max-execution"),
    case("update", {"data": {"ok": 1}, "priority": 0}, "priority", "valid-and-invalid"),
    case("update", {}, "update_job", "nothing"),
    case("update", {"job_id": "zzz"}, "job_id", "bad-id"),
    case("update", {"job_id": 42}, "job_id", "int-id"),
    # -- get_jobs ------------------------------------------------------------------------------
    case("get_jobs", {"name": {"$ne": 1}}, "name", "operator-name"),
    case("get_jobs", {"name": ""}, "name", "empty-name"),
    case("get_jobs", {"name": "x\x1b[2J"}, "name", "escape-in-name"),
    case("get_jobs", {"status": "bogus"}, "status", "unknown-status"),
    case("get_jobs", {"status": []}, "status", "empty-status"),
    case("get_jobs", {"status": {"$ne": "x"}}, "status", "operator-status"),
    case("get_jobs", {"data": {"x": {"$ne": 1}}}, "data", "operator-value"),
    case("get_jobs", {"data": {"$where": "1"}}, "data", "where"),
    case("get_jobs", {"data": "x"}, "data", "string-data"),
    case("get_jobs", {"data": {"secret": re.compile("^tok_A")}}, "data.secret", "pattern"),
    case("get_jobs", {"data": {"secret": Regex("^tok_A")}}, "data.secret", "bson-regex"),
    case("get_jobs", {"data": {"f": Code("return true")}}, "data.f", "code"),
    case("get_jobs", {"data": {"f": ["a", re.compile("a")]}}, "data.f", "pattern-in-list"),
    case("get_jobs", {"data": {"f": {"g": Regex("a")}}}, "data.f", "regex-in-document"),
    case("get_jobs", {"data": {"f": MinKey()}}, "data.f", "min-key"),
    case("get_jobs", {"data": {"f": Timestamp(0, 1)}}, "data.f", "timestamp"),
    case("get_jobs", {"data": {"f": DBRef("c", 1)}}, "data.f", "dbref"),
    case("get_jobs", {"data": {"f": [{"$regex": "^a"}]}}, "data.f", "operator-in-list"),
    case("get_jobs", {"data": {"": 1}}, "data", "empty-key"),
    case("get_jobs", {"data": {"a..b": 1}}, "data", "empty-path-part"),
    case("get_jobs", {"data": {LONG_PATH: 1}}, "data", "key-of-2000-parts"),
    case("get_jobs", {"data": {".".join(["a"] * 91): 1}}, "data", "key-of-91-parts"),
    case("get_jobs", {"data": {"k" * 1025: 1}}, "data", "key-over-1024-characters"),
    case("get_jobs", {"data": {"k": DEEP_LIST}}, "data.k", "value-nested-1500-levels"),
    case("get_jobs", {"data": {"k": cyclic()}}, "data.k", "cyclic-value"),
    case("get_jobs", {"sort": ("data.x", "asc")}, "sort", "sort-field"),
    case("get_jobs", {"sort": ("createdAt", "up")}, "sort", "sort-direction"),
    case("get_jobs", {"sort": ("createdAt",)}, "sort", "sort-shape"),
    case("get_jobs", {"limit": 0}, "limit", "limit-0"),
    case("get_jobs", {"limit": 10_001}, "limit", "limit-too-big"),
    case("get_jobs", {"limit": "10"}, "limit", "string-limit"),
    case("get_jobs", {"skip": -1}, "skip", "negative-skip"),
    case("get_jobs", {"skip": 1.5}, "skip", "float-skip"),
    case("get_jobs", {"fields": "name"}, "fields", "fields-string"),
    case("get_jobs", {"fields": []}, "fields", "fields-empty"),
    case("get_jobs", {"fields": ["name", 1]}, "fields", "fields-not-strings"),
    case("get_jobs", {"fields": ["$where"]}, "fields", "fields-operator"),
    case("get_jobs", {"fields": ["data.secret"]}, "fields", "fields-dotted"),
    case("get_jobs", {"fields": ["f"] * 65}, "fields", "fields-too-many"),
    case("get_jobs", {"max_value_size": 100}, "max_value_size", "max-value-size-no-fields"),
    case("get_jobs", {"fields": ["data"], "max_value_size": 0}, "max_value_size", "size-0"),
    case("get_jobs", {"fields": ["data"], "max_value_size": True}, "max_value_size", "size-bool"),
    # -- ids -----------------------------------------------------------------------------------
    case("get_job", {"job_id": "xyz"}, "job_id", "short"),
    case("get_job", {"job_id": "g" * 24}, "job_id", "not-hex"),
    case("cancel", {"job_id": "xyz"}, "job_id", "short"),
    case("cancel", {"job_id": None}, "job_id", "none"),
]


async def snapshot(store: JobStore) -> list[Any]:
    """Everything the store holds: jobs, plus the dedupe registry for MongoDB."""
    if isinstance(store, MongoJobStore):
        jobs = await store.jobs.find({}).sort("_id", 1).to_list()
        registry = await store.database[f"{store.collection_name}_dedupe"].find({}).to_list()
        return [jobs, registry]
    jobs = [dict(j.document) for j in await Scheduler(store).get_jobs(limit=10_000)]
    return [jobs, sorted(getattr(store, "_dedupe", {}))]


async def run(scheduler: Scheduler, target: str, kwargs: dict[str, Any], existing: Any) -> Any:
    kwargs = dict(kwargs)
    if target == "schedule":
        name = kwargs.pop("name", "job")
        return await scheduler.schedule(name, **kwargs)
    if target == "bulk":
        return await scheduler.schedule_bulk(kwargs["items"])
    if target == "update":
        job_id = kwargs.pop("job_id", existing)
        return await scheduler.update_job(job_id, **kwargs)
    if target == "get_jobs":
        return await scheduler.get_jobs(**kwargs)
    if target == "get_job":
        return await scheduler.get_job(kwargs["job_id"])
    if target == "cancel":
        return await scheduler.cancel(kwargs["job_id"])
    raise AssertionError(target)


@pytest.mark.parametrize(("target", "kwargs", "field"), CASES)
async def test_invalid_input_is_rejected_and_nothing_changes(
    store: JobStore, target: str, kwargs: dict[str, Any], field: str
) -> None:
    scheduler = Scheduler(store)
    existing = None
    if target == "update":
        job = await scheduler.schedule(
            "existing",
            {"v": 1},
            retry=2,
            dedupe_key="existing",
            run_at=datetime.now(timezone.utc) + timedelta(hours=1),
        )
        existing = job.id
    if isinstance(store, MongoJobStore):
        await store.setup()
    before = await snapshot(store)
    with pytest.raises(ValidationError) as info:
        await run(scheduler, target, kwargs, existing)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.field == field, str(error)
    assert str(error).startswith(f"{field}:")
    assert await snapshot(store) == before


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 40


async def test_valid_counterparts_are_accepted(store: JobStore) -> None:
    """Edge values on the valid side of each limit are accepted (the table is not rejecting
    everything)."""
    scheduler = Scheduler(store)
    ok = [
        await scheduler.schedule("n" * 200),
        await scheduler.schedule("unicode: café ✓ 日本 \u200d"),
        await scheduler.schedule("p", priority=1),
        await scheduler.schedule("p", priority=10),
        await scheduler.schedule("every", repeat={"every": 0.1}),
        await scheduler.schedule("cron6", repeat={"cron": "*/5 * * * * *"}),
        await scheduler.schedule("zone", repeat={"cron": "@daily", "timezone": "Asia/Kolkata"}),
        await scheduler.schedule("delay0", delay=0),
        await scheduler.schedule("aware", run_at=AWARE),
        await scheduler.schedule("retry0", retry=0),
        await scheduler.schedule("key", dedupe_key="k" * 512, dedupe="forever"),
        await scheduler.schedule("data", {"nested": {"list": [1, "a", None, 2.5]}, "dotted": 1}),
        await scheduler.schedule("big", {"blob": "x" * (8 * 1024 * 1024)}),
        await scheduler.schedule("deep", nested(90)),
    ]
    assert len({job.id for job in ok}) == len(ok)
    assert len(await scheduler.get_jobs(limit=100)) == len(ok)
    assert await scheduler.get_jobs(status=["pending"], data={"nested.list": 1}) != []
    plain = {
        "s": "x",
        "i": 1,
        "f": 2.5,
        "n": None,
        "b": True,
        "t": AWARE,
        "o": ObjectId(),
        "d": Decimal128("1.5"),
        "raw": b"\x00",
        "list": [1, "a", [None]],
        "doc": {"k": {"v": [1]}},
    }
    assert await scheduler.get_jobs(data=plain) == []
    assert await scheduler.get_jobs(data={".".join(["a"] * 90): 1}) != []
    assert await scheduler.get_jobs(data={"k" * 1024: 1}) == []


# -- Scheduler(...) options and task() registration -------------------------------------------

OPTION_CASES = [
    pytest.param({"workers": 0}, "workers", id="workers-0"),
    pytest.param({"workers": -1}, "workers", id="workers-negative"),
    pytest.param({"workers": "2"}, "workers", id="workers-string"),
    pytest.param({"workers": True}, "workers", id="workers-bool"),
    pytest.param({"workers": 1.5}, "workers", id="workers-float"),
    pytest.param({"poll_interval": 0}, "poll_interval", id="poll-0"),
    pytest.param({"poll_interval": -1}, "poll_interval", id="poll-negative"),
    pytest.param({"poll_interval": NAN}, "poll_interval", id="poll-nan"),
    pytest.param({"poll_interval": INF}, "poll_interval", id="poll-inf"),
    pytest.param({"poll_interval": "fast"}, "poll_interval", id="poll-string"),
    pytest.param({"lock_timeout": 0}, "lock_timeout", id="lock-0"),
    pytest.param({"lock_timeout": timedelta(seconds=-1)}, "lock_timeout", id="lock-negative"),
    pytest.param({"default_timezone": "Nowhere/Zone"}, "default_timezone", id="zone"),
    pytest.param({"default_timezone": ""}, "default_timezone", id="empty-zone"),
    pytest.param(
        {"lock_timeout": 5, "heartbeat_interval": 5}, "heartbeat_interval", id="heartbeat-ge-lock"
    ),
    pytest.param({"heartbeat_interval": 0}, "heartbeat_interval", id="heartbeat-0"),
    pytest.param({"max_lease_expiries": 0}, "max_lease_expiries", id="lease-expiries-0"),
    pytest.param({"max_execution": -1}, "max_execution", id="max-execution-negative"),
    pytest.param({"id": ""}, "id", id="empty-id"),
    pytest.param({"id": 7}, "id", id="int-id"),
    pytest.param({"id": "w\x1b[2J"}, "id", id="escape-in-id"),
    pytest.param({"handler": 42}, "handler", id="handler-not-callable"),
    pytest.param({"store": "mongodb://localhost"}, "store", id="store-string"),
]


@pytest.mark.parametrize(("options", "field"), OPTION_CASES)
def test_invalid_scheduler_options(options: dict[str, Any], field: str) -> None:
    options = dict(options)
    store = options.pop("store", InMemoryJobStore())
    with pytest.raises(ConfigurationError) as info:
        Scheduler(store, **options)
    assert isinstance(info.value, ValidationError)
    assert isinstance(info.value, ValueError)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("name", "options", "field"),
    [
        pytest.param("", {}, "name", id="empty-name"),
        pytest.param(5, {}, "name", id="int-name"),
        pytest.param("t\x1b[31m", {}, "name", id="escape-in-name"),
        pytest.param("t", {"retry": {"maxAttempts": 2, "x": 1}}, "retry", id="retry"),
        pytest.param("t", {"retry": -2}, "retry", id="negative-retry"),
        pytest.param("t", {"timeout": 0}, "timeout", id="timeout"),
        pytest.param("t", {"backoff": 5}, "backoff", id="backoff-not-callable"),
    ],
)
def test_invalid_task_registration(name: Any, options: dict[str, Any], field: str) -> None:
    scheduler = Scheduler(InMemoryJobStore())
    with pytest.raises(ValidationError) as info:
        scheduler.task(name, **options)
    assert info.value.field == field


def test_unknown_event_name_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Scheduler(InMemoryJobStore()).on("job:exploded", lambda job: None)


async def test_validation_happens_before_the_store_is_touched() -> None:
    """An invalid call never reaches the store, so it fails the same way without a server."""

    class Untouchable(InMemoryJobStore):
        async def insert(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("insert must not be called")

        async def update(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("update must not be called")

    scheduler = Scheduler(Untouchable())
    with pytest.raises(ValidationError):
        await scheduler.schedule("x", priority=0)
    with pytest.raises(ValidationError):
        await scheduler.schedule_bulk([{"name": "a"}, {"name": "b", "retry": "x"}])
    with pytest.raises(ValidationError):
        await scheduler.update_job(ObjectId(), priority=0)
