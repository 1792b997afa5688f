"""Option and argument values of the commands: click callbacks that parse their shape, and
:func:`check_offline`, which puts them through the library's own rules before any connection.
Either way a bad value is a usage error (exit 2)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import click

from .._errors import ValidationError
from .._format import parse_data_value
from ..scheduler import Scheduler
from ..stores import InMemoryJobStore
from ._connection import usage_error

__all__ = [
    "check_job_id",
    "check_job_name",
    "check_offline",
    "data_filters",
    "older_than",
    "older_than_cutoff",
    "sort_spec",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def check_offline(
    call: Callable[[Scheduler], Coroutine[Any, Any, object]], params: Mapping[str, str]
) -> None:
    """A usage error if the library refuses the values that ``call`` passes to the scheduler
    it is given (one on an empty in-memory store: nothing connects), on the parameter that
    ``params`` maps the refusal's field to (``data`` for ``data.x``)."""
    try:
        asyncio.run(call(Scheduler(InMemoryJobStore())))
    except ValidationError as exc:
        raise usage_error(exc.reason, params.get(exc.field.split(".")[0])) from None


def check_job_id(job_id: str) -> None:
    """A usage error on the argument ``job_id`` unless it is a job id."""

    async def look_up(scheduler: Scheduler) -> None:
        await scheduler.get_job(job_id)

    check_offline(look_up, {"job_id": "job_id"})


def check_job_name(name: str) -> None:
    """A usage error on the argument ``name`` unless it is a job name."""

    async def look_up(scheduler: Scheduler) -> None:
        await scheduler.get_jobs(name=name, limit=1)

    check_offline(look_up, {"name": "name"})


def data_filters(
    ctx: click.Context, param: click.Parameter, items: tuple[str, ...]
) -> dict[str, Any] | None:
    """``KEY=VALUE`` pairs (a click callback) as a ``get_jobs(data=...)`` mapping: the JSON
    value when VALUE parses as JSON, else the string; ``None`` for no pair."""
    data: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", ctx=ctx, param=param)
        try:
            data[key] = parse_data_value(raw)
        except ValidationError as exc:
            raise click.BadParameter(exc.reason, ctx=ctx, param=param) from None
    return data or None


def sort_spec(
    ctx: click.Context, param: click.Parameter, text: str | None
) -> tuple[str, str] | None:
    """``FIELD[:asc|desc]`` (a click callback; snake_case field names too) as
    ``(field, direction)``."""
    if text is None:
        return None
    field, _, direction = text.partition(":")
    parts = field.strip().split("_")
    field = parts[0] + "".join(part[:1].upper() + part[1:] for part in parts[1:])
    return field, (direction.strip().lower() or "asc")


def older_than(ctx: click.Context, param: click.Parameter, text: str) -> timedelta | datetime:
    """A duration back from now (a click callback: ``30s``, ``30m``, ``12h``, ``7d``, ``2w``)
    as a ``timedelta``, or an ISO 8601 date/time (UTC unless it carries an offset) as an aware
    UTC ``datetime``."""
    match = _DURATION.match(text)
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
        try:
            delta = timedelta(seconds=seconds)
            datetime.now(timezone.utc) - delta
        except OverflowError:
            raise click.BadParameter(
                f"{text!r} reaches too far back", ctx=ctx, param=param
            ) from None
        return delta
    raw = text.strip()
    if raw[-1:] in ("Z", "z"):
        raw = raw[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise click.BadParameter(
            f"expected a duration (30m, 12h, 7d) or an ISO date/time (2026-01-01T00:00:00Z), "
            f"got {text!r}",
            ctx=ctx,
            param=param,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def older_than_cutoff(value: timedelta | datetime, now: datetime) -> datetime:
    """The instant an ``--older-than`` value (see :func:`older_than`) names, given ``now``."""
    if isinstance(value, datetime):
        return value
    try:
        return now - value
    except OverflowError:
        return datetime.min.replace(tzinfo=timezone.utc)
