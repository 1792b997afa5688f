"""Units: every duration of the Python API is a ``timedelta`` or a number of seconds, and is
stored in milliseconds (the format the Node library shares).

- Keyword arguments (``delay=``, ``timeout=``, ``max_execution=``, ``dedupe_window=``, the
  ``Scheduler`` options, ``task(timeout=)``) and the typed objects (``Repeat``, ``Retry``,
  ``RateLimit``) take seconds or a ``timedelta``, with no guard: a large number is that many
  seconds.
- The dict forms of ``repeat``, ``retry`` and ``rate_limit`` take seconds or a ``timedelta``
  under ``every``, ``delay``, ``maxDelay`` and ``period``, and milliseconds only under
  ``everyMs``, ``delayMs``, ``maxDelayMs`` and ``periodMs``. Both keys of one duration at once
  are refused, and so is a number of seconds that is a whole multiple of 1,000 (from 1,000 up):
  probably milliseconds.

Each accepted form is checked on the stored document (through ``schedule``, ``schedule_bulk``
and ``update_job`` of both APIs, over both stores); options that are never stored are checked
on the validated configuration, and by their stored effect where they have one (the lease in
``lockUntil``, the retention in ``expireAt``). Each refusal must raise a ``ValidationError``
naming the field, with a message naming the unit and the other way to say it, and write nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, NamedTuple

import pytest

from mongo_job_scheduler import (
    ConfigurationError,
    InMemoryJobStore,
    Job,
    JobStore,
    RateLimit,
    Repeat,
    Retry,
    Scheduler,
    ValidationError,
    sync,
)
from tests.contract.helpers import make, running, stored, wait_doc
from tests.contract.test_validation import run as run_async
from tests.contract.test_validation import snapshot
from tests.contract.test_validation_sync import _run_sync
from tests.contract.test_validation_sync import _snapshot as sync_snapshot

HOUR = timedelta(hours=1)
FIVE: Any = 5
SIXTY: Any = 60
THOUSAND: Any = 1000
"""Plain numbers of seconds for the typed objects (typed as ``timedelta``, they take seconds)."""
UPDATABLE = {"repeat", "retry", "timeout", "max_execution"}
"""The ``schedule`` arguments ``update_job`` takes too."""
TASK_OPTIONS = {"retry", "timeout", "rate_limit"}
"""The ``schedule`` arguments ``task()`` takes too."""


# -- accepted forms and the milliseconds they store ---------------------------------------------


class Accepted(NamedTuple):
    id: str
    kwargs: dict[str, Any]
    path: str
    """Where the duration is stored (``delay``: how long after its creation the job is due)."""
    millis: int


ok = Accepted


ACCEPTED = [
    # -- keyword arguments: seconds or timedelta, never guarded ----------------------------------
    ok("delay-seconds", {"delay": 90}, "delay", 90_000),
    ok("delay-timedelta", {"delay": timedelta(minutes=1, seconds=30)}, "delay", 90_000),
    ok("delay-thousands-of-seconds", {"delay": 3000}, "delay", 3_000_000),
    ok("timeout-seconds", {"timeout": 30}, "timeoutMs", 30_000),
    ok("timeout-fraction", {"timeout": 0.25}, "timeoutMs", 250),
    ok("timeout-timedelta", {"timeout": timedelta(seconds=30)}, "timeoutMs", 30_000),
    ok("timeout-thousands-of-seconds", {"timeout": 1000}, "timeoutMs", 1_000_000),
    ok("max-execution-seconds", {"max_execution": 90}, "maxExecutionMs", 90_000),
    ok("max-execution-timedelta", {"max_execution": HOUR}, "maxExecutionMs", 3_600_000),
    ok("max-execution-thousands", {"max_execution": 2000}, "maxExecutionMs", 2_000_000),
    ok(
        "dedupe-window-seconds",
        {"dedupe_key": "k1", "dedupe_window": 600},
        "dedupeWindowMs",
        600_000,
    ),
    ok(
        "dedupe-window-timedelta",
        {"dedupe_key": "k2", "dedupe_window": timedelta(minutes=10)},
        "dedupeWindowMs",
        600_000,
    ),
    # -- repeat -----------------------------------------------------------------------------------
    ok("every-seconds", {"repeat": {"every": 60}}, "repeat.every", 60_000),
    ok("every-fraction", {"repeat": {"every": 0.25}}, "repeat.every", 250),
    ok("every-not-a-whole-thousand", {"repeat": {"every": 1500}}, "repeat.every", 1_500_000),
    ok("every-timedelta", {"repeat": {"every": timedelta(minutes=1)}}, "repeat.every", 60_000),
    ok(
        "every-timedelta-of-1000-s",
        {"repeat": {"every": timedelta(seconds=1000)}},
        "repeat.every",
        1_000_000,
    ),
    ok("everyMs", {"repeat": {"everyMs": 60_000}}, "repeat.every", 60_000),
    ok("everyMs-of-1000-s", {"repeat": {"everyMs": 1_000_000}}, "repeat.every", 1_000_000),
    ok("typed-every-seconds", {"repeat": Repeat(every=SIXTY)}, "repeat.every", 60_000),
    ok("typed-every-thousands", {"repeat": Repeat(every=THOUSAND)}, "repeat.every", 1_000_000),
    ok("typed-every-timedelta", {"repeat": Repeat(every=HOUR)}, "repeat.every", 3_600_000),
    # -- retry ------------------------------------------------------------------------------------
    ok("delay-key-seconds", {"retry": {"maxAttempts": 3, "delay": 5}}, "retry.delay", 5000),
    ok("delay-key-fraction", {"retry": {"maxAttempts": 3, "delay": 0.5}}, "retry.delay", 500),
    ok(
        "delay-key-timedelta",
        {"retry": {"maxAttempts": 3, "delay": timedelta(seconds=5)}},
        "retry.delay",
        5000,
    ),
    ok("delayMs", {"retry": {"maxAttempts": 3, "delayMs": 5000}}, "retry.delay", 5000),
    ok("maxDelay-seconds", {"retry": {"maxAttempts": 3, "maxDelay": 60}}, "retry.maxDelay", 60_000),
    ok(
        "maxDelay-timedelta",
        {"retry": {"maxAttempts": 3, "maxDelay": timedelta(minutes=1)}},
        "retry.maxDelay",
        60_000,
    ),
    ok("maxDelayMs", {"retry": {"maxAttempts": 3, "maxDelayMs": 60_000}}, "retry.maxDelay", 60_000),
    ok("typed-delay-seconds", {"retry": Retry(3, delay=FIVE)}, "retry.delay", 5000),
    ok("typed-delay-timedelta", {"retry": Retry(3, timedelta(seconds=5))}, "retry.delay", 5000),
    ok("typed-max-delay-seconds", {"retry": Retry(3, max_delay=SIXTY)}, "retry.maxDelay", 60_000),
    ok(
        "typed-max-delay-timedelta",
        {"retry": Retry(3, max_delay=timedelta(minutes=1))},
        "retry.maxDelay",
        60_000,
    ),
    # -- rate_limit -------------------------------------------------------------------------------
    ok("period-seconds", {"rate_limit": {"limit": 10, "period": 60}}, "rateLimit.periodMs", 60_000),
    ok("period-fraction", {"rate_limit": {"limit": 10, "period": 0.5}}, "rateLimit.periodMs", 500),
    ok(
        "period-timedelta",
        {"rate_limit": {"limit": 10, "period": timedelta(minutes=1)}},
        "rateLimit.periodMs",
        60_000,
    ),
    ok("periodMs", {"rate_limit": {"limit": 10, "periodMs": 60_000}}, "rateLimit.periodMs", 60_000),
    ok("typed-period-seconds", {"rate_limit": RateLimit(10, SIXTY)}, "rateLimit.periodMs", 60_000),
    ok(
        "typed-period-timedelta",
        {"rate_limit": RateLimit(10, HOUR)},
        "rateLimit.periodMs",
        3_600_000,
    ),
]


def applies(target: str, kwargs: dict[str, Any]) -> bool:
    """Whether ``target`` takes these arguments (``update_job`` and ``task()`` take some)."""
    if target == "update":
        return set(kwargs) <= UPDATABLE
    if target == "task":
        return set(kwargs) <= TASK_OPTIONS
    return True


def stored_millis(doc: dict[str, Any], path: str) -> Any:
    if path == "delay":
        return round((doc["nextRunAt"] - doc["createdAt"]) / timedelta(milliseconds=1))
    value: Any = doc
    for part in path.split("."):
        value = value[part]
    return value


def call(kwargs: dict[str, Any], target: str) -> tuple[str, dict[str, Any]]:
    """The ``(target, kwargs)`` of ``test_validation.run`` that passes ``kwargs`` to
    ``target`` (in a bulk, as the one item)."""
    if target == "bulk":
        return "bulk", {"items": [{"name": "job", **kwargs}]}
    return target, kwargs


def first(result: Job | list[Job]) -> Job:
    return result[0] if isinstance(result, list) else result


PRODUCERS = ["schedule", "bulk", "update"]


def accepted_calls(target: str) -> Iterator[tuple[Accepted, str, dict[str, Any]]]:
    """Each case of ``ACCEPTED`` that ``target`` takes, with the call to make."""
    for case in ACCEPTED:
        if applies(target, case.kwargs):
            yield case, *call(case.kwargs, target)


def mismatch(case: Accepted, doc: dict[str, Any] | None) -> list[str]:
    assert doc is not None
    got = stored_millis(doc, case.path)
    return [] if got == case.millis else [f"{case.id}: stored {got}, expected {case.millis}"]


@pytest.mark.parametrize("target", PRODUCERS)
async def test_each_duration_form_is_stored_in_milliseconds(store: JobStore, target: str) -> None:
    scheduler = Scheduler(store)
    existing = (await scheduler.schedule("existing", retry=2, delay=HOUR)).id
    wrong = []
    for case, name, kwargs in accepted_calls(target):
        job = first(await run_async(scheduler, name, kwargs, existing))
        wrong += mismatch(case, await store.get(job.id))
    assert wrong == []


@pytest.mark.parametrize("target", PRODUCERS)
def test_each_duration_form_is_stored_in_milliseconds_by_the_sync_facade(
    sync_db: Any, target: str
) -> None:
    scheduler = sync.Scheduler(sync.MongoJobStore(sync_db))
    existing = scheduler.schedule("existing", retry=2, delay=HOUR).id
    wrong = []
    for case, name, kwargs in accepted_calls(target):
        job = first(_run_sync(scheduler, name, kwargs, existing))
        wrong += mismatch(case, scheduler.store.get(job.id))
    assert wrong == []


def test_every_duration_argument_and_key_has_accepted_forms() -> None:
    """The table covers every duration argument and dict key, in each of its forms."""
    given = {
        (kind, key)
        for case in ACCEPTED
        for kind, value in case.kwargs.items()
        for key in (value if isinstance(value, dict) else [type(value).__name__])
    }
    assert given >= {
        ("delay", "int"),
        ("delay", "timedelta"),
        ("timeout", "float"),
        ("timeout", "timedelta"),
        ("max_execution", "int"),
        ("max_execution", "timedelta"),
        ("dedupe_window", "int"),
        ("dedupe_window", "timedelta"),
        ("repeat", "every"),
        ("repeat", "everyMs"),
        ("repeat", "Repeat"),
        ("retry", "delay"),
        ("retry", "delayMs"),
        ("retry", "maxDelay"),
        ("retry", "maxDelayMs"),
        ("retry", "Retry"),
        ("rate_limit", "period"),
        ("rate_limit", "periodMs"),
        ("rate_limit", "RateLimit"),
    }


# -- refusals -----------------------------------------------------------------------------------


class Refused(NamedTuple):
    id: str
    kwargs: dict[str, Any]
    field: str
    says: tuple[str, ...]
    """Texts the message must contain."""


def bad(id: str, kwargs: dict[str, Any], field: str, *says: str) -> Refused:
    return Refused(id, kwargs, field, says)


AMBIGUOUS_EVERY = (
    "repeat.every: 60000 seconds (16 h 40 min) looks like milliseconds; give seconds (every=60),"
    " a timedelta, or milliseconds under everyMs"
)

REFUSED = [
    # -- a whole multiple of 1,000 seconds in a dict form: probably milliseconds ------------------
    bad("every-60000", {"repeat": {"every": 60_000}}, "repeat.every", AMBIGUOUS_EVERY),
    bad("every-1000", {"repeat": {"every": 1000}}, "repeat.every", "(every=1)", "everyMs"),
    bad("every-float", {"repeat": {"every": 300_000.0}}, "repeat.every", "(every=300)"),
    bad(
        "delay-5000",
        {"retry": {"maxAttempts": 3, "delay": 5000}},
        "retry.delay",
        "5000 seconds (1 h 23 min) looks like milliseconds",
        "(delay=5)",
        "delayMs",
    ),
    bad(
        "max-delay-60000",
        {"retry": {"maxAttempts": 3, "maxDelay": 60_000}},
        "retry.maxDelay",
        "looks like milliseconds",
        "(maxDelay=60)",
        "maxDelayMs",
    ),
    bad(
        "period-60000",
        {"rate_limit": {"limit": 10, "period": 60_000}},
        "rate_limit.period",
        "looks like milliseconds",
        "(period=60)",
        "periodMs",
    ),
    # -- both keys of one duration -----------------------------------------------------------------
    bad(
        "every-both",
        {"repeat": {"every": 60, "everyMs": 60_000}},
        "repeat.every",
        "repeat.everyMs",
        "not both",
    ),
    bad(
        "delay-both",
        {"retry": {"maxAttempts": 3, "delay": 5, "delayMs": 5000}},
        "retry.delay",
        "retry.delayMs",
        "not both",
    ),
    bad(
        "max-delay-both",
        {"retry": {"maxAttempts": 3, "maxDelay": 60, "maxDelayMs": 60_000}},
        "retry.maxDelay",
        "retry.maxDelayMs",
        "not both",
    ),
    bad(
        "period-both",
        {"rate_limit": {"limit": 10, "period": 60, "periodMs": 60_000}},
        "rate_limit.period",
        "rate_limit.periodMs",
        "not both",
    ),
    # -- bad types: seconds keys want a timedelta or seconds, Ms keys a number ---------------------
    bad(
        "every-string",
        {"repeat": {"every": "60"}},
        "repeat.every",
        "timedelta or a number of seconds",
    ),
    bad("every-bool", {"repeat": {"every": True}}, "repeat.every", "number of seconds"),
    bad("everyMs-string", {"repeat": {"everyMs": "60000"}}, "repeat.everyMs", "milliseconds"),
    bad(
        "everyMs-timedelta",
        {"repeat": {"everyMs": timedelta(minutes=1)}},
        "repeat.everyMs",
        "number of milliseconds, got timedelta",
    ),
    bad("everyMs-too-short", {"repeat": {"everyMs": 50}}, "repeat.everyMs", "at least 100 ms"),
    bad("every-too-short", {"repeat": {"every": 0.05}}, "repeat.every", "at least 100 ms"),
    bad(
        "delay-string",
        {"retry": {"maxAttempts": 3, "delay": "5s"}},
        "retry.delay",
        "number of seconds",
    ),
    bad(
        "delay-negative-timedelta",
        {"retry": {"maxAttempts": 3, "delay": timedelta(seconds=-5)}},
        "retry.delay",
        ">= 0",
    ),
    bad(
        "delayMs-timedelta",
        {"retry": {"maxAttempts": 3, "delayMs": timedelta(seconds=5)}},
        "retry.delayMs",
        "number of milliseconds",
    ),
    bad(
        "maxDelayMs-negative",
        {"retry": {"maxAttempts": 3, "maxDelayMs": -1}},
        "retry.maxDelayMs",
        ">= 0",
    ),
    bad(
        "period-string",
        {"rate_limit": {"limit": 1, "period": "1m"}},
        "rate_limit.period",
        "seconds",
    ),
    bad(
        "periodMs-timedelta",
        {"rate_limit": {"limit": 1, "periodMs": timedelta(minutes=1)}},
        "rate_limit.periodMs",
        "number of milliseconds",
    ),
    bad("period-missing", {"rate_limit": {"limit": 1}}, "rate_limit.period", "periodMs"),
    bad("delay-kwarg-string", {"delay": "5s"}, "delay", "number of seconds"),
    bad("timeout-string", {"timeout": "30"}, "timeout", "number of seconds"),
    bad("max-execution-list", {"max_execution": [90]}, "max_execution", "number of seconds"),
    bad(
        "dedupe-window-string",
        {"dedupe_key": "k", "dedupe_window": "10m"},
        "dedupe_window",
        "number of seconds",
    ),
]


def refused_calls(target: str) -> Iterator[tuple[Refused, str, Any, str]]:
    """Each case of ``REFUSED`` that ``target`` takes, with the call to make and the field the
    error must name: a bulk's bad item is its second one, after a valid one that must not be
    written either."""
    for case in REFUSED:
        if not applies(target, case.kwargs):
            continue
        if target == "bulk":
            items = [{"name": "fine"}, {"name": "job", **case.kwargs}]
            yield case, "bulk", {"items": items}, f"items[1].{case.field}"
        else:
            yield case, target, case.kwargs, case.field


def problems(
    case: Refused, field: str, error: ValidationError | None, unchanged: bool
) -> list[str]:
    """What is wrong with the outcome of a refused call (nothing when ``error`` names
    ``field``, says each of ``case.says`` and nothing was written)."""
    out = [] if unchanged else [f"{case.id}: wrote something"]
    if error is None:
        return [*out, f"{case.id}: accepted"]
    if error.field != field or not str(error).startswith(f"{field}: "):
        return [*out, f"{case.id}: names {error.field!r}: {error}"]
    missing = [text for text in case.says if text not in str(error)]
    return [*out, f"{case.id}: does not say {missing}: {error}"] if missing else out


@pytest.mark.parametrize("target", [*PRODUCERS, "task"])
async def test_refusals_name_the_field_and_write_nothing(store: JobStore, target: str) -> None:
    scheduler = Scheduler(store)
    existing = (await scheduler.schedule("existing", retry=2, delay=HOUR)).id
    before = await snapshot(store)
    wrong = []
    for case, name, kwargs, field in refused_calls(target):
        error = None
        try:
            if name == "task":
                scheduler.task("job", **kwargs)
            else:
                await run_async(scheduler, name, kwargs, existing)
        except ValidationError as exc:
            error = exc
        unchanged = await snapshot(store) == before and scheduler.handled_names() == []
        wrong += problems(case, field, error, unchanged)
    assert wrong == []


@pytest.mark.parametrize("target", PRODUCERS)
def test_refusals_name_the_field_and_write_nothing_in_the_sync_facade(
    sync_db: Any, target: str
) -> None:
    scheduler = sync.Scheduler(sync.MongoJobStore(sync_db))
    existing = scheduler.schedule("existing", retry=2, delay=HOUR).id
    before = sync_snapshot(sync_db, "scheduler_jobs")
    wrong = []
    for case, name, kwargs, field in refused_calls(target):
        error = None
        try:
            _run_sync(scheduler, name, kwargs, existing)
        except ValidationError as exc:
            error = exc
        wrong += problems(case, field, error, sync_snapshot(sync_db, "scheduler_jobs") == before)
    assert wrong == []


def test_the_typed_objects_take_seconds_without_the_guard() -> None:
    """Only dict forms can carry milliseconds, so only they refuse whole thousands."""
    assert Repeat(every=60_000).every == timedelta(seconds=60_000)  # type: ignore[arg-type]
    assert Retry(2, delay=5000).delay == timedelta(seconds=5000)  # type: ignore[arg-type]
    assert RateLimit(1, 60_000).period == timedelta(seconds=60_000)  # type: ignore[arg-type]
    assert Repeat.parse({"everyMs": 60_000}) == Repeat(every=timedelta(minutes=1))
    assert Retry.parse({"maxAttempts": 2, "delayMs": 5000}) == Retry(2, timedelta(seconds=5))
    assert RateLimit.parse({"limit": 1, "periodMs": 60_000}) == RateLimit(1, timedelta(minutes=1))


# -- task() options -----------------------------------------------------------------------------

TASK_FORMS = [
    pytest.param({"timeout": 30}, {"timeout": timedelta(seconds=30)}, id="timeout-seconds"),
    pytest.param(
        {"timeout": timedelta(seconds=30)}, {"timeout": timedelta(seconds=30)}, id="timeout-td"
    ),
    pytest.param({"timeout": 2000}, {"timeout": timedelta(seconds=2000)}, id="timeout-unguarded"),
    pytest.param(
        {"retry": {"maxAttempts": 2, "delay": 5, "maxDelay": 60}},
        {"retry": {"maxAttempts": 2, "delay": 5000, "maxDelay": 60_000}},
        id="retry-seconds",
    ),
    pytest.param(
        {"retry": {"maxAttempts": 2, "delayMs": 5000, "maxDelayMs": 60_000}},
        {"retry": {"maxAttempts": 2, "delay": 5000, "maxDelay": 60_000}},
        id="retry-ms-keys",
    ),
    pytest.param(
        {"retry": {"maxAttempts": 2, "delay": timedelta(seconds=5)}},
        {"retry": {"maxAttempts": 2, "delay": 5000}},
        id="retry-timedelta",
    ),
    pytest.param(
        {"rate_limit": {"limit": 3, "period": 60}},
        {"rate_limit": {"limit": 3, "periodMs": 60_000}},
        id="rate-limit-seconds",
    ),
    pytest.param(
        {"rate_limit": {"limit": 3, "periodMs": 60_000}},
        {"rate_limit": {"limit": 3, "periodMs": 60_000}},
        id="rate-limit-ms-key",
    ),
    pytest.param(
        {"rate_limit": RateLimit(3, timedelta(minutes=1))},
        {"rate_limit": {"limit": 3, "periodMs": 60_000}},
        id="rate-limit-typed",
    ),
]


@pytest.mark.parametrize(("options", "expected"), TASK_FORMS)
def test_task_options_read_seconds_and_ms_keys(
    options: dict[str, Any], expected: dict[str, Any]
) -> None:
    scheduler = Scheduler(InMemoryJobStore())
    scheduler.task("job", **options)(lambda job: None)
    spec = scheduler._tasks.resolve("job")
    assert spec is not None
    got = {
        "timeout": spec.timeout,
        "retry": None if spec.retry is None else spec.retry.to_document(),
        "rate_limit": None if spec.rate_limit is None else spec.rate_limit.to_document(),
    }
    assert {key: got[key] for key in expected} == expected


async def test_a_task_retry_delay_in_seconds_is_stored_as_the_due_time(store: JobStore) -> None:
    """The task's ``delay`` of 3600 is an hour: the failed job is due an hour after it ran."""

    def fail(job: Job) -> None:
        raise RuntimeError("later")

    scheduler = make(store)
    scheduler.task("job", retry={"maxAttempts": 2, "delay": 3600})(fail)
    async with running(scheduler):
        job = await scheduler.schedule("job")
        doc = await wait_doc(store, job.id, lambda d: d["attempts"] == 1)
    wait = doc["nextRunAt"] - doc["lastRunAt"]
    assert HOUR <= wait < HOUR + timedelta(seconds=10), wait


# -- Scheduler(...) options ---------------------------------------------------------------------

OPTION_FORMS = [
    pytest.param("poll_interval", 2, timedelta(seconds=2), 2.0, id="poll-interval"),
    pytest.param("lock_timeout", 3000, timedelta(seconds=3000), 3000.0, id="lock-timeout"),
    pytest.param("heartbeat_interval", 1.5, timedelta(seconds=1.5), 1.5, id="heartbeat"),
    pytest.param("max_execution", 90, timedelta(seconds=90), timedelta(seconds=90), id="max-exec"),
    pytest.param(
        "retention",
        {"completed": 86_400, "failed": 1000},
        {"completed": timedelta(days=1), "failed": timedelta(seconds=1000)},
        {"completed": timedelta(days=1), "failed": timedelta(seconds=1000)},
        id="retention",
    ),
]


@pytest.mark.parametrize(("option", "seconds", "as_timedelta", "expected"), OPTION_FORMS)
def test_scheduler_options_take_seconds_or_a_timedelta(
    option: str, seconds: Any, as_timedelta: Any, expected: Any
) -> None:
    for value in (seconds, as_timedelta):
        scheduler = Scheduler(InMemoryJobStore(), **{option: value})
        got = getattr(scheduler, option)
        assert (dict(got) if option == "retention" else got) == expected, value


@pytest.mark.parametrize(
    ("options", "field"),
    [
        pytest.param({"poll_interval": "2"}, "poll_interval", id="poll-string"),
        pytest.param({"lock_timeout": [600]}, "lock_timeout", id="lock-list"),
        pytest.param({"heartbeat_interval": "5s"}, "heartbeat_interval", id="heartbeat-string"),
        pytest.param({"max_execution": "1h"}, "max_execution", id="max-execution-string"),
        pytest.param({"retention": {"failed": "7d"}}, "retention.failed", id="retention-string"),
    ],
)
def test_scheduler_options_refuse_other_types(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Scheduler(InMemoryJobStore(), **options)
    assert info.value.field == field
    assert "timedelta or a number of seconds" in str(info.value)


async def test_lock_timeout_in_seconds_is_the_stored_lease(store: JobStore) -> None:
    captured: list[dict[str, Any]] = []
    scheduler = make(store, lambda job: captured.append(dict(job.document)), lock_timeout=45)
    async with running(scheduler):
        await scheduler.wait((await scheduler.schedule("job")).id, timeout=10)
    [doc] = captured
    assert doc["lockUntil"] - doc["lockedAt"] == timedelta(milliseconds=45_000)


async def test_retention_in_seconds_is_the_stored_expiry(store: JobStore) -> None:
    scheduler = make(store, lambda job: None, retention={"completed": 3 * 86_400})
    async with running(scheduler):
        job = await scheduler.wait((await scheduler.schedule("job")).id, timeout=10)
    doc = await stored(store, job.id)
    kept = doc["expireAt"] - doc["updatedAt"]
    assert abs(kept - timedelta(days=3)) < timedelta(seconds=1), kept
