"""Periodic jobs declared in code (``@scheduler.periodic``): what a declaration stores, and
what must change in a stored job to match it (pure, no I/O).

A declaration is kept as exactly one active job fleet-wide: each scheduler that starts with the
declaration schedules it under the dedupe key ``periodic:<name>`` with the ``"forever"`` scope,
so processes starting at once create one job between them; a stored job that differs from the
declaration (its schedule, data or options changed in code) is updated in place, keeping its
id; one that matches is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ._documents import NewJob, build_new_job
from ._durations import Duration
from ._errors import ValidationError
from .repeat import Misfire, Repeat
from .retry import Retry

__all__ = ["KEY_PREFIX", "Declaration", "declare", "periodic_key", "update_for"]

KEY_PREFIX = "periodic:"
"""Dedupe keys of declared periodic jobs start with this."""

COMPARED = (
    ("repeat", "repeat"),
    ("data", "data"),
    ("retry", "retry"),
    ("priority", "priority"),
    ("concurrency", "concurrency"),
    ("maxExecutionMs", "max_execution"),
    ("timeoutMs", "timeout"),
)
"""Stored fields a declaration sets, with the ``update_job`` argument that changes each."""


def periodic_key(name: str) -> str:
    """The dedupe key of the periodic job declared as ``name``."""
    return KEY_PREFIX + name


@dataclass(frozen=True)
class Declaration:
    """One ``@scheduler.periodic`` declaration: its schedule, data and stored options."""

    name: str
    repeat: Repeat
    data: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)
    """``schedule`` options stored on the job: retry, priority, concurrency, max_execution,
    timeout."""

    def new_job(self, now: datetime, default_timezone: str) -> NewJob:
        """The job to create if none exists yet (first run at the first slot after ``now``)."""
        return build_new_job(
            self.name,
            self.data,
            now=now,
            default_timezone=default_timezone,
            repeat=self.repeat,
            dedupe_key=periodic_key(self.name),
            dedupe="forever",
            **self.options,
        )


def declare(
    name: str,
    *,
    cron: str | None,
    every: Duration | None,
    timezone_name: str | None,
    misfire: Misfire,
    catch_up_limit: int,
    data: Any,
    retry: int | Mapping[str, Any] | Retry | None,
    priority: int,
    concurrency: int | None,
    max_execution: Duration | None,
    timeout: Duration | None,
) -> Declaration:
    """Validate a declaration (``ValidationError`` names the bad argument); exactly one of
    ``cron`` and ``every`` is given."""
    if (cron is None) == (every is None):
        raise ValidationError("periodic", "give cron= or every=, not both and not neither")
    if every is not None and timezone_name is not None:
        raise ValidationError("timezone", "applies to cron schedules only")
    repeat = Repeat(
        cron=cron,
        every=None if every is None else _as_timedelta(every),
        timezone=timezone_name,
        misfire=misfire,
        catch_up_limit=catch_up_limit,
    )
    options = {
        "retry": retry,
        "priority": priority,
        "concurrency": concurrency,
        "max_execution": max_execution,
        "timeout": timeout,
    }
    declaration = Declaration(name, repeat, data, options)
    declaration.new_job(datetime.now(timezone.utc), "UTC")  # validates every field
    return declaration


def update_for(
    declaration: Declaration, stored: Mapping[str, Any], default_timezone: str
) -> dict[str, Any]:
    """The ``update_job`` arguments that bring the stored job in line with the declaration
    (empty when it matches: a restart with the same declaration writes nothing)."""
    wanted = declaration.new_job(datetime.now(timezone.utc), default_timezone).document
    changes: dict[str, Any] = {}
    for key, argument in COMPARED:
        if wanted.get(key) == stored.get(key):
            continue
        if argument == "repeat":
            changes["repeat"] = Repeat.from_document(wanted["repeat"])
        elif argument in ("max_execution", "timeout"):
            ms = wanted.get(key)
            changes[argument] = None if ms is None else timedelta(milliseconds=ms)
        elif argument == "retry":
            changes["retry"] = Retry.from_document(wanted.get("retry"))
        else:
            changes[argument] = wanted.get(key)
    return changes


def _as_timedelta(value: Duration) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError("every", f"expected seconds or a timedelta, got {value!r}")
    return timedelta(seconds=value)
