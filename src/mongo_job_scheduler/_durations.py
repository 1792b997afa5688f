"""Parsing of durations and timestamps given by users (pure, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ._errors import ValidationError
from ._format import fmt_duration

Duration = timedelta | int | float
"""A duration: a ``timedelta`` or a number of seconds."""

MAX_DURATION = timedelta(days=36_500)
"""The longest accepted duration (100 years): longer ones overflow datetime arithmetic."""

MAX_INT64 = 2**63 - 1
"""The largest integer BSON stores: a larger count or limit cannot be written or queried."""


def to_seconds(field: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` (a ``timedelta`` or a number of seconds) as seconds, validated."""
    if isinstance(value, bool) or not isinstance(value, (timedelta, int, float)):
        raise ValidationError(
            field, f"expected a timedelta or a number of seconds, got {type(value).__name__}"
        )
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds):
        raise ValidationError(field, f"must be finite, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValidationError(field, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    if seconds > MAX_DURATION.total_seconds():
        raise ValidationError(field, f"must be at most 100 years, got {value!r}")
    return seconds


def to_millis(field: str, value: Any, *, allow_zero: bool = False) -> int:
    """Validate a duration given as a number of milliseconds (the stored unit) and return it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(
            field, f"expected a number of milliseconds, got {type(value).__name__}"
        )
    if not math.isfinite(value):
        raise ValidationError(field, f"must be finite, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValidationError(field, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    if value > MAX_DURATION.total_seconds() * 1000:
        raise ValidationError(field, f"must be at most 100 years, got {value!r}")
    return round(value)


def looks_like_millis(value: Any) -> bool:
    """Whether a number given as seconds in a dict form is probably milliseconds: a whole
    multiple of 1,000 from 1,000 up (``60000`` is 16 h 40 min as seconds, one minute as
    milliseconds), unless it is too long even as milliseconds (over 100 years: refused as too
    long instead). ``timedelta`` values and booleans never are."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    longest_ms = MAX_DURATION.total_seconds() * 1000
    return math.isfinite(value) and 1000 <= value <= longest_ms and value % 1000 == 0


def duration_in(
    mapping: Mapping[str, Any],
    prefix: str,
    key: str,
    *,
    allow_zero: bool = False,
    minimum: timedelta | None = None,
) -> timedelta | None:
    """Read the duration a dict form gives under ``key`` (a ``timedelta`` or a number of
    seconds) or under ``key + "Ms"`` (a number of milliseconds, the stored unit); ``None``
    when neither is given (a ``None`` value counts as not given).

    Both keys at once, a value of the wrong type, negative (zero unless ``allow_zero``),
    shorter than ``minimum`` or longer than 100 years, and a number of seconds that
    :func:`looks_like_millis` raise :class:`ValidationError` naming ``prefix.key`` (or
    ``prefix.keyMs``, the key given).
    """
    ms_key = f"{key}Ms"
    field, ms_field = f"{prefix}.{key}", f"{prefix}.{ms_key}"
    value, millis = mapping.get(key), mapping.get(ms_key)
    if value is not None and millis is not None:
        raise ValidationError(
            field,
            f"give {field} (seconds or a timedelta) or {ms_field} (milliseconds), not both",
        )
    if millis is not None:
        given, named = millis, ms_field
        out = timedelta(milliseconds=to_millis(ms_field, millis, allow_zero=allow_zero))
    elif value is None:
        return None
    elif looks_like_millis(value):
        whole = int(value)
        raise ValidationError(
            field,
            f"{whole} seconds ({fmt_duration(value)}) looks like milliseconds; give seconds "
            f"({key}={whole // 1000}), a timedelta, or milliseconds under {ms_key}",
        )
    else:
        given, named = value, field
        out = timedelta(seconds=to_seconds(field, value, allow_zero=allow_zero))
    if minimum is not None and out < minimum:
        raise ValidationError(named, f"must be at least {fmt_duration(minimum)}, got {given!r}")
    return out


def to_utc(field: str, value: Any) -> datetime:
    """Validate a timezone-aware ``datetime`` and return it in UTC, truncated to milliseconds.

    Naive datetimes are rejected: their meaning depends on the machine, and MongoDB stores
    instants. Use ``datetime.now(timezone.utc)`` or attach a ``ZoneInfo``.
    """
    if not isinstance(value, datetime):
        raise ValidationError(field, f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, "naive datetime: attach a time zone (e.g. timezone.utc)")
    out = value.astimezone(timezone.utc)
    return out.replace(microsecond=(out.microsecond // 1000) * 1000)


def as_aware_utc(value: datetime) -> datetime:
    """Interpret a datetime read from the store (naive means UTC) as an aware UTC datetime."""
    tz = value.tzinfo
    if tz is timezone.utc:  # what the store's codec options decode to
        return value
    if tz is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    """The local clock in UTC, millisecond precision (what MongoDB stores)."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=(now.microsecond // 1000) * 1000)
