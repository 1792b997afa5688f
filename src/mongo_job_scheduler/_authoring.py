"""Jobs written from outside Python: the HTTP API's bodies, the dashboard's forms and the
``jobs add`` command, turned into arguments of the public ``Scheduler`` API.

Bodies have the stored document's shape: camelCase names and durations in milliseconds
(``delayMs``, ``timeoutMs``, ``repeat.every``, ``retry.delay``, ``rateLimit.periodMs``) and
instants as ISO 8601 strings with an offset. They become ``schedule()`` / ``update_job()``
arguments that say their unit: a ``timedelta`` for a top-level duration (its number checked by
the library's own millisecond rule, :func:`~._durations.to_millis`) and the dict forms' ``…Ms``
keys for ``repeat`` and ``retry``, so every other rule and message is the Python API's. A
refusal is reported on the body's own field name (:func:`body_field`).

Also the values operators type (durations such as ``90s`` or ``1h30m``, local date/times in a
time zone, JSON), and :func:`schedule_reporting`, which says whether each job was created or
was an existing job holding the dedupe key.
"""

from __future__ import annotations

import json
import math
import re
import weakref
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._durations import MAX_DURATION, to_millis
from ._errors import ValidationError
from .job import Job
from .scheduler import Scheduler

__all__ = [
    "CREATE_FIELDS",
    "UPDATE_FIELDS",
    "body_field",
    "bulk_arguments",
    "duration_text",
    "local_instant",
    "parse_duration",
    "parse_json",
    "schedule_arguments",
    "schedule_reporting",
    "time_zone",
    "update_arguments",
]

CREATE_FIELDS = {
    "name": "name",
    "data": "data",
    "runAt": "run_at",
    "delayMs": "delay",
    "repeat": "repeat",
    "retry": "retry",
    "priority": "priority",
    "concurrency": "concurrency",
    "dedupeKey": "dedupe_key",
    "dedupeScope": "dedupe",
    "dedupeWindowMs": "dedupe_window",
    "timeoutMs": "timeout",
    "maxExecutionMs": "max_execution",
    "rateLimit": "rate_limit",
    "dependsOn": "depends_on",
    "runOnFailure": "run_on_failure",
}
"""The fields a new job's body may have, and the ``schedule()`` argument each one is."""

UPDATE_FIELDS = (
    "data",
    "runAt",
    "repeat",
    "retry",
    "priority",
    "concurrency",
    "timeoutMs",
    "maxExecutionMs",
)
"""The fields a change's body may have (``update_job()`` arguments; ``null`` clears an
optional one)."""

_MILLISECONDS = {
    "delayMs": True,
    "timeoutMs": False,
    "maxExecutionMs": False,
    "dedupeWindowMs": False,
}
"""Top-level millisecond fields, and whether each may be zero."""

_NESTED = {
    "repeat": {
        "cron": "cron",
        "every": "everyMs",
        "timezone": "timezone",
        "misfire": "misfire",
        "catchUpLimit": "catchUpLimit",
    },
    "retry": {
        "maxAttempts": "maxAttempts",
        "delay": "delayMs",
        "backoff": "backoff",
        "maxDelay": "maxDelayMs",
        "jitter": "jitter",
    },
    "rateLimit": {"limit": "limit", "periodMs": "periodMs"},
}
"""The keys of the objects a body may hold (the stored ones), and the dict-form key each is
given to the Python API under: the stored durations are milliseconds."""

_PYTHON_FIELDS = {python: body for body, python in CREATE_FIELDS.items()} | {
    "update_job": "body",
    "job": "body",
    "items": "jobs",
}
_PYTHON_KEYS = {
    f"{python_parent}.{python}": f"{parent}.{body}"
    for parent, python_parent in (("repeat", "repeat"), ("retry", "retry"))
    for body, python in _NESTED[parent].items()
} | {"rate_limit.period": "rateLimit.periodMs", "rate_limit.periodMs": "rateLimit.periodMs"}
_FIELD_PATH = re.compile(r"^(items\[\d+\]\.)?([A-Za-z_]+)(\[\d+\])?(\.[A-Za-z]+)?(.*)$", re.S)

MAX_BULK = 1000
"""The most jobs one bulk body may hold."""


# -- bodies ------------------------------------------------------------------------------------


def body_field(python_field: str) -> str:
    """The body's name of a field a ``ValidationError`` of the Python API names:
    ``run_at`` → ``runAt``, ``repeat.everyMs`` → ``repeat.every``, ``items[2].timeout`` →
    ``jobs[2].timeoutMs``, ``depends_on[1]`` → ``dependsOn[1]``."""
    match = _FIELD_PATH.match(python_field)
    if match is None:
        return python_field
    item, top, index, key, rest = match.groups()
    prefix = f"jobs{item[len('items') :]}" if item else ""
    nested = f"{top}{key}" if key else None
    if nested is not None and nested in _PYTHON_KEYS:
        return prefix + _PYTHON_KEYS[nested] + (index or "") + rest
    return prefix + _PYTHON_FIELDS.get(top, top) + (index or "") + (key or "") + rest


def _object(field: str, value: Any) -> Any:
    """A ``repeat``, ``retry`` or ``rateLimit`` value with its keys renamed for the Python API
    (anything but an object is handed on for the Python API to judge)."""
    if not isinstance(value, Mapping):
        return value
    keys = _NESTED[field]
    unknown = sorted(str(key) for key in value if key not in keys)
    if unknown:
        raise ValidationError(field, f"unknown key(s) {unknown}; allowed: {sorted(keys)}")
    return {keys[key]: item for key, item in value.items()}


def _milliseconds(field: str, value: Any, *, allow_zero: bool) -> timedelta:
    """A millisecond field as a ``timedelta`` (checked by the library's millisecond rule)."""
    to_millis(field, value, allow_zero=allow_zero)
    return timedelta(milliseconds=float(value))


def _argument(field: str, value: Any) -> Any:
    """One body field's value as its Python argument."""
    if field in _NESTED:
        return _object(field, value)
    if field in _MILLISECONDS:
        return _milliseconds(field, value, allow_zero=_MILLISECONDS[field])
    if field == "runAt":
        return parse_instant(field, value)
    return value


def _fields_of(body: Any, allowed: Sequence[str], what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ValidationError("body", f"expected a JSON object {what}")
    unknown = sorted(str(key) for key in body if key not in allowed)
    if unknown:
        raise ValidationError("body", f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    return body


def schedule_arguments(body: Any) -> dict[str, Any]:
    """A new job's body as ``schedule()`` keyword arguments (``null`` fields are left out)."""
    fields = _fields_of(body, list(CREATE_FIELDS), "describing a job")
    if "name" not in fields:
        raise ValidationError("name", "is required")
    return {
        CREATE_FIELDS[field]: _argument(field, value)
        for field, value in fields.items()
        if value is not None or field in ("name", "data")
    }


def bulk_arguments(body: Any) -> list[dict[str, Any]]:
    """A bulk body (``{"jobs": [job, ...]}``) as ``schedule_bulk()`` items."""
    fields = _fields_of(body, ["jobs"], 'with a "jobs" list')
    jobs = fields.get("jobs")
    if not isinstance(jobs, list):
        raise ValidationError("jobs", "expected a list of jobs")
    if len(jobs) > MAX_BULK:
        raise ValidationError("jobs", f"at most {MAX_BULK} jobs per call, got {len(jobs)}")
    items = []
    for index, job in enumerate(jobs):
        try:
            items.append(schedule_arguments(job))
        except ValidationError as exc:
            raise ValidationError(f"jobs[{index}].{exc.field}", exc.reason) from None
    return items


def update_arguments(body: Any) -> dict[str, Any]:
    """A change's body as ``update_job()`` keyword arguments (``null`` clears a field)."""
    fields = _fields_of(body, UPDATE_FIELDS, "of fields to change")
    return {
        CREATE_FIELDS[field]: None if value is None else _argument(field, value)
        for field, value in fields.items()
    }


# -- what operators type ---------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)\s*", re.IGNORECASE)
_UNITS = {
    "ms": 0.001,
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
}


def parse_duration(field: str, text: str) -> timedelta:
    """A duration as operators type it: a number with a unit, or several (``500ms``, ``90s``,
    ``5m``, ``1h30m``, ``2d``, ``1w``; ``min`` and ``sec`` also). A bare number is refused:
    its unit would be a guess."""
    raw = text.strip()
    parts = list(_DURATION_PART.finditer(raw))
    if not raw or "".join(part.group(0) for part in parts) != raw:
        if re.fullmatch(r"\d+(?:\.\d+)?", raw):
            hint = f"give a unit: {raw}s, {raw}m or {raw}ms"
        else:
            hint = f"expected a duration such as 500ms, 90s, 5m, 1h30m or 2d, got {text!r}"
        raise ValidationError(field, hint)
    seconds = 0.0
    for part in parts:
        unit = part.group(2).lower()
        if unit not in _UNITS:
            raise ValidationError(
                field, f"unknown unit {part.group(2)!r}; one of {', '.join(_UNITS)}"
            )
        seconds += float(part.group(1)) * _UNITS[unit]
    if not math.isfinite(seconds) or seconds > MAX_DURATION.total_seconds():
        raise ValidationError(field, f"must be at most 100 years, got {text!r}")
    return timedelta(seconds=seconds)


def duration_text(delta: timedelta) -> str:
    """A duration as :func:`parse_duration` reads it back: ``1h30m``, ``1m30s``, ``250ms``."""
    left = round(delta.total_seconds() * 1000)
    parts = []
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if left >= size:
            count, left = divmod(left, size)
            parts.append(f"{count}{unit}")
    if left >= 1000:
        count, left = divmod(left, 1000)
        parts.append(f"{count}s")
    if left or not parts:
        parts.append(f"{left}ms")
    return "".join(parts)


def time_zone(field: str, name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Paris``, ``UTC``)."""
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(field, f"unknown time zone {name!r}") from None


def _iso(field: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValidationError(
            field, f"expected an ISO 8601 date-time string, got {type(value).__name__}"
        )
    raw = value.strip()
    if raw[-1:] in ("Z", "z"):
        raw = raw[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError(
            field,
            f"expected an ISO 8601 date-time such as 2026-01-01T09:00:00Z, got {value!r}",
        ) from None


def parse_instant(field: str, value: Any) -> datetime:
    """An ISO 8601 date-time with an offset (``2026-01-01T09:00:00Z``, ``...+01:00``)."""
    when = _iso(field, value)
    if when.utcoffset() is None:
        raise ValidationError(
            field,
            f"{value!r} has no offset; add one, such as 2026-01-01T09:00:00Z or +01:00",
        )
    return when


def local_instant(field: str, value: str, zone: ZoneInfo) -> datetime:
    """A date-time as typed: with an offset it is that instant, without one it is the wall
    clock time in ``zone``."""
    when = _iso(field, value)
    return when if when.utcoffset() is not None else when.replace(tzinfo=zone)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_json(field: str, text: str | bytes) -> Any:
    """The JSON value of ``text`` (``NaN`` and ``Infinity`` are not JSON)."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValidationError(field, "nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise ValidationError(field, f"not valid JSON: {exc}") from None


# -- created or found ------------------------------------------------------------------------------

_CREATED: ContextVar[set[Any] | None] = ContextVar("mongo_job_scheduler_created", default=None)
_LISTENED: weakref.WeakSet[Scheduler] = weakref.WeakSet()


def _note_created(job: Job) -> None:
    created = _CREATED.get()
    if created is not None:
        created.add(job.id)


async def schedule_reporting(
    scheduler: Scheduler, items: Sequence[Mapping[str, Any]], *, bulk: bool = False
) -> list[tuple[Job, bool]]:
    """Schedule each item (``schedule()`` arguments; with ``bulk``, one ``schedule_bulk()``
    call, whose refusals name ``items[i]``) and say, per item, whether it created its job
    (``False``: the job is an existing one that holds the dedupe key, or the item repeats an
    earlier item's key). Tells by the ``job:created`` events of this call only."""
    if scheduler not in _LISTENED:
        scheduler.on("job:created", _note_created)
        _LISTENED.add(scheduler)
    created: set[Any] = set()
    reset = _CREATED.set(created)
    try:
        if bulk:
            jobs = await scheduler.schedule_bulk(items)
        else:
            jobs = [await scheduler.schedule(**item) for item in items]
    finally:
        _CREATED.reset(reset)
    seen: set[Any] = set()
    reported = []
    for job in jobs:
        reported.append((job, job.id in created and job.id not in seen))
        seen.add(job.id)
    return reported
