"""Bodies in the stored document's shape turned into ``schedule()`` / ``update_job()``
arguments, the names refusals are reported on, and the values operators type (on the in-memory
store: no database)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mongo_job_scheduler import InMemoryJobStore, Scheduler, ValidationError
from mongo_job_scheduler._authoring import (
    MAX_BULK,
    body_field,
    bulk_arguments,
    duration_text,
    local_instant,
    parse_duration,
    parse_instant,
    parse_json,
    schedule_arguments,
    schedule_reporting,
    update_arguments,
)


def test_durations_are_milliseconds_given_to_the_python_api_in_a_unit_it_names() -> None:
    arguments = schedule_arguments(
        {
            "name": "report",
            "data": {"n": 1},
            "delayMs": 1500,
            "timeoutMs": 60000,
            "maxExecutionMs": 120000,
            "dedupeKey": "r:1",
            "dedupeWindowMs": 3600000,
            "repeat": {"every": 60000, "misfire": "skip"},
            "retry": {"maxAttempts": 3, "delay": 1000, "maxDelay": 30000, "backoff": "linear"},
            "rateLimit": {"limit": 5, "periodMs": 1000},
            "priority": 2,
        }
    )
    assert arguments == {
        "name": "report",
        "data": {"n": 1},
        "delay": timedelta(milliseconds=1500),
        "timeout": timedelta(minutes=1),
        "max_execution": timedelta(minutes=2),
        "dedupe_key": "r:1",
        "dedupe_window": timedelta(hours=1),
        "repeat": {"everyMs": 60000, "misfire": "skip"},
        "retry": {"maxAttempts": 3, "delayMs": 1000, "maxDelayMs": 30000, "backoff": "linear"},
        "rate_limit": {"limit": 5, "periodMs": 1000},
        "priority": 2,
    }


async def test_the_stored_document_has_the_milliseconds_the_body_gave() -> None:
    scheduler = Scheduler(InMemoryJobStore())
    job = await scheduler.schedule(
        **schedule_arguments(
            {
                "name": "tick",
                "repeat": {"every": 60000},
                "retry": {"maxAttempts": 2, "delay": 1000},
                "timeoutMs": 2500,
            }
        )
    )
    document = job.document
    assert document["repeat"] == {"every": 60000}
    assert document["retry"] == {"maxAttempts": 2, "delay": 1000}
    assert document["timeoutMs"] == 2500


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"name": "x", "repeat": {"every": 50}}, "repeat.every", "must be at least 100 ms"),
        ({"name": "x", "retry": {"maxAttempts": 2, "delay": -1}}, "retry.delay", "must be >= 0"),
        ({"name": "x", "retry": {"delay": 5}}, "retry.maxAttempts", "is required"),
        ({"name": "x", "priority": 11}, "priority", "from 1 to 10"),
        ({"name": "x", "dedupeKey": ""}, "dedupeKey", "non-empty"),
        ({"name": "x", "rateLimit": {"limit": 0, "periodMs": 5}}, "rateLimit.limit", "positive"),
        ({"name": "x", "rateLimit": {"limit": 1}}, "rateLimit.periodMs", "is required"),
        ({"name": "x", "runAt": "2026-01-01T00:00:00Z", "delayMs": 5}, "runAt", "not both"),
        ({"name": "x", "dependsOn": ["nope"]}, "dependsOn[0]", "24 hex"),
        ({"name": "x", "runOnFailure": True}, "runOnFailure", "needs depends_on"),
        ({"name": "x", "dedupeScope": "always"}, "dedupeScope", "'active' or 'forever'"),
        ({"name": "", "data": 1}, "name", "must not be empty"),
        ({"name": None}, "name", "expected a string"),
        ({"name": "x", "data": {"$where": 1}}, "data", "must not start with '$'"),
        ({"name": "x", "repeat": {"cron": "61 * * * *"}}, "repeat.cron", ""),
    ],
)
async def test_refusals_name_the_body_field_with_the_python_message(
    body: dict[str, Any], field: str, reason: str
) -> None:
    scheduler = Scheduler(InMemoryJobStore())
    with pytest.raises(ValidationError) as info:
        await scheduler.schedule(**schedule_arguments(body))
    assert body_field(info.value.field) == field
    assert reason in info.value.reason
    assert await scheduler.get_jobs() == []


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"name": "x", "delayMs": "soon"}, "delayMs", "expected a number of milliseconds"),
        ({"name": "x", "timeoutMs": 0}, "timeoutMs", "must be > 0"),
        ({"name": "x", "maxExecutionMs": True}, "maxExecutionMs", "number of milliseconds"),
        ({"name": "x", "dedupeWindowMs": -5}, "dedupeWindowMs", "must be > 0"),
        ({"name": "x", "runAt": "tomorrow"}, "runAt", "ISO 8601"),
        ({"name": "x", "runAt": "2026-01-01T09:00:00"}, "runAt", "no offset"),
        ({"name": "x", "runAt": 1700000000}, "runAt", "got int"),
        ({"name": "x", "repeat": {"everyMs": 100}}, "repeat", "unknown key(s) ['everyMs']"),
        ({"name": "x", "rateLimit": {"limit": 1, "period": 60}}, "rateLimit", "['period']"),
        ({"name": "x", "colour": "red"}, "body", "unknown field(s) ['colour']"),
        ({"data": 1}, "name", "is required"),
        ([1, 2], "body", "expected a JSON object"),
    ],
)
def test_what_the_body_itself_gets_wrong_is_refused_before_the_python_api(
    body: Any, field: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as info:
        schedule_arguments(body)
    assert (info.value.field, reason in info.value.reason) == (field, True), info.value


def test_a_zero_delay_is_allowed_and_null_fields_are_left_out() -> None:
    assert schedule_arguments({"name": "x", "delayMs": 0, "repeat": None, "data": None}) == {
        "name": "x",
        "delay": timedelta(0),
        "data": None,
    }


def test_updates_take_null_to_clear_and_the_same_units() -> None:
    assert update_arguments(
        {
            "data": {"a": 1},
            "runAt": "2026-03-01T10:00:00+01:00",
            "repeat": None,
            "retry": {"maxAttempts": 4, "delay": 250},
            "priority": 1,
            "timeoutMs": None,
        }
    ) == {
        "data": {"a": 1},
        "run_at": datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc),
        "repeat": None,
        "retry": {"maxAttempts": 4, "delayMs": 250},
        "priority": 1,
        "timeout": None,
    }
    with pytest.raises(ValidationError, match=r"unknown field\(s\) \['name'\]"):
        update_arguments({"name": "renamed"})


async def test_an_empty_update_and_a_null_run_at_are_refused_by_the_python_api() -> None:
    scheduler = Scheduler(InMemoryJobStore())
    job = await scheduler.schedule("x", delay=60)
    for body, field in (({}, "body"), ({"runAt": None}, "runAt")):
        with pytest.raises(ValidationError) as info:
            await scheduler.update_job(job.id, **update_arguments(body))
        assert body_field(info.value.field) == field


async def test_bulk_refusals_name_the_item_in_the_body() -> None:
    scheduler = Scheduler(InMemoryJobStore())
    with pytest.raises(ValidationError) as info:
        bulk_arguments({"jobs": [{"name": "a"}, {"name": "b", "timeoutMs": -1}]})
    assert info.value.field == "jobs[1].timeoutMs"
    items = bulk_arguments({"jobs": [{"name": "a"}, {"name": "b", "repeat": {"every": 10}}]})
    with pytest.raises(ValidationError) as info:
        await scheduler.schedule_bulk(items)
    assert body_field(info.value.field) == "jobs[1].repeat.every"
    for body in ({"jobs": {}}, {"jobs": [{}] * (MAX_BULK + 1)}, {"items": []}):
        with pytest.raises(ValidationError):
            bulk_arguments(body)


@pytest.mark.parametrize(
    ("python", "body"),
    [
        ("run_at", "runAt"),
        ("delay", "delayMs"),
        ("timeout", "timeoutMs"),
        ("max_execution", "maxExecutionMs"),
        ("dedupe_key", "dedupeKey"),
        ("dedupe", "dedupeScope"),
        ("dedupe_window", "dedupeWindowMs"),
        ("depends_on[3]", "dependsOn[3]"),
        ("repeat.everyMs", "repeat.every"),
        ("repeat.timezone", "repeat.timezone"),
        ("retry.delayMs", "retry.delay"),
        ("retry.maxDelayMs", "retry.maxDelay"),
        ("rate_limit.period", "rateLimit.periodMs"),
        ("items[12].retry.delayMs", "jobs[12].retry.delay"),
        ("items[0].depends_on[2]", "jobs[0].dependsOn[2]"),
        ("update_job", "body"),
        ("data.a.b", "data.a.b"),
        ("status", "status"),
    ],
)
def test_body_field_names(python: str, body: str) -> None:
    assert body_field(python) == body


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("90s", 90),
        ("5m", 300),
        ("5 min", 300),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("1.5h", 5400),
        (" 10 sec ", 10),
    ],
)
def test_durations_operators_type(text: str, seconds: float) -> None:
    assert parse_duration("every", text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("milliseconds", "text"),
    [
        (0, "0ms"),
        (250, "250ms"),
        (90_000, "1m30s"),
        (5_400_000, "1h30m"),
        (1_209_600_500, "2w500ms"),
    ],
)
def test_durations_are_written_as_they_are_read(milliseconds: int, text: str) -> None:
    delta = timedelta(milliseconds=milliseconds)
    assert duration_text(delta) == text
    assert parse_duration("every", text) == delta


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("60", "give a unit: 60s, 60m or 60ms"),
        ("", "expected a duration"),
        ("5 parsecs", "unknown unit 'parsecs'"),
        ("m5", "expected a duration"),
        ("5m and 3s", "expected a duration"),
        ("200000w", "at most 100 years"),
    ],
)
def test_durations_that_are_refused(text: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_duration("every", text)
    assert info.value.field == "every" and reason in info.value.reason


def test_instants_have_an_offset_or_take_the_zone_given() -> None:
    assert parse_instant("runAt", "2026-01-01T09:00:00Z") == datetime(
        2026, 1, 1, 9, tzinfo=timezone.utc
    )
    paris = ZoneInfo("Europe/Paris")
    summer = local_instant("run_at", "2026-07-01T09:00", paris)
    assert summer.astimezone(timezone.utc) == datetime(2026, 7, 1, 7, tzinfo=timezone.utc)
    given = local_instant("run_at", "2026-07-01T09:00:00-04:00", paris)
    assert given.astimezone(timezone.utc) == datetime(2026, 7, 1, 13, tzinfo=timezone.utc)


def test_json_is_strict() -> None:
    assert parse_json("data", '{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    deep = "[" * 100_000 + "]" * 100_000
    for bad, reason in (
        ("NaN", "NaN is not a JSON value"),
        ("{", "not valid JSON"),
        (deep, "nested too deeply"),
    ):
        with pytest.raises(ValidationError) as info:
            parse_json("data", bad)
        assert info.value.field == "data" and reason in info.value.reason


async def test_schedule_reporting_tells_created_jobs_from_dedupe_holders() -> None:
    scheduler = Scheduler(InMemoryJobStore())
    held = await scheduler.schedule("mail", dedupe_key="k1")
    [(first, created)] = await schedule_reporting(scheduler, [{"name": "mail"}])
    assert created and first.id != held.id
    [(again, created)] = await schedule_reporting(scheduler, [{"name": "mail", "dedupe_key": "k1"}])
    assert again.id == held.id and not created
    reported = await schedule_reporting(
        scheduler,
        [
            {"name": "mail", "dedupe_key": "k2"},
            {"name": "mail", "dedupe_key": "k2"},
            {"name": "mail", "dedupe_key": "k1"},
        ],
        bulk=True,
    )
    assert [created for _, created in reported] == [True, False, False]
    assert reported[0][0].id == reported[1][0].id and reported[2][0].id == held.id
