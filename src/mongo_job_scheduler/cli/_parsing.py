"""Parsers of the job commands' option values; a value the user must fix raises
:class:`~mongo_job_scheduler.cli.CliError`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from .._format import parse_data_value
from ._connection import CliError

__all__ = ["parse_data_filters", "parse_older_than", "parse_sort"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_data_filters(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a ``get_jobs(data=...)`` mapping; a value that parses as JSON is
    that JSON value, any other value is a string."""
    data: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CliError(f"--data expects KEY=VALUE, got {item!r}")
        data[key] = parse_data_value(raw)
    return data


def parse_sort(text: str) -> tuple[str, str]:
    """``FIELD[:asc|desc]`` (snake_case field names are accepted too) as ``(field, direction)``."""
    field, _, direction = text.partition(":")
    parts = field.strip().split("_")
    field = parts[0] + "".join(part[:1].upper() + part[1:] for part in parts[1:])
    return field, (direction.strip().lower() or "asc")


def parse_older_than(text: str, now: datetime) -> datetime:
    """A duration back from ``now`` (``30s``, ``30m``, ``12h``, ``7d``, ``2w``) or an ISO 8601
    date/time (UTC unless it carries an offset) as an aware UTC datetime."""
    match = _DURATION.match(text)
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise CliError(f"--older-than {text!r} reaches too far back") from None
    raw = text.strip()
    if raw[-1:] in ("Z", "z"):
        raw = raw[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise CliError(
            f"--older-than expects a duration (30m, 12h, 7d) or an ISO date/time "
            f"(2026-01-01T00:00:00Z), got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)
