"""Repeating schedules: cron expressions and fixed intervals, and what to do with missed slots.

Everything here is pure: given a previous slot and "now", it says which slot comes next. The
worker and both stores use these functions; nothing here touches a database or a clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._cron import CronError, CronExpression
from ._durations import MAX_DURATION, MAX_INT64, duration_in
from ._errors import ValidationError

__all__ = ["MIN_INTERVAL", "Misfire", "Repeat", "RunPlan"]

Misfire = Literal["once", "skip", "all"]
"""What a repeating job does with slots missed while nothing ran.

* ``"once"`` (default): run once for all of them, then continue on the grid;
* ``"skip"``: run nothing for them and continue at the next future slot;
* ``"all"``: run each missed slot, oldest first, at most ``catch_up_limit`` in a row.
"""

MIN_INTERVAL = timedelta(milliseconds=100)
"""The smallest allowed ``every`` (the Node library's floor)."""

_MISFIRES = ("once", "skip", "all")
_STORED_KEYS = {"cron", "every", "timezone", "misfire", "catchUpLimit"}
_STORED_AS = {"every": "everyMs"}
"""Stored keys read under another name: the stored ``every`` is milliseconds."""
_KEYS = _STORED_KEYS | {"everyMs"}
_MAX_STEPS = 100_000


def _zone(name: str, field_name: str = "repeat.timezone") -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ValidationError(field_name, "expected an IANA time zone name such as 'Europe/Paris'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(field_name, f"unknown time zone {name!r}") from None


@dataclass(frozen=True)
class RunPlan:
    """The decision for a due occurrence of a repeating job (see :meth:`Repeat.plan`).

    ``run`` tells whether to run now; ``slot`` is the slot the run belongs to when ``run`` is
    true, or the next slot to wait for when it is false. ``caught_up`` tells that ``slot`` is an
    older missed slot run under ``misfire="all"``.
    """

    run: bool
    slot: datetime
    caught_up: bool = False


@dataclass(frozen=True)
class Repeat:
    """A repeating schedule: a cron expression or a fixed interval, never both.

    ``cron`` takes 5 fields, or 6 with seconds first, or a macro such as ``@hourly``; it is
    evaluated in ``timezone`` (an IANA name; default: the scheduler's ``default_timezone``, else
    UTC). ``every`` is a ``timedelta`` or a number of seconds, at least 100 ms; intervals sit on a
    fixed grid from the first slot and ignore time zones. See :data:`Misfire` for ``misfire``.

    Given as ``repeat={"every": 300}`` (seconds or a ``timedelta``; ``{"everyMs": 300000}``
    in milliseconds) or ``repeat={"cron": "0 9 * * *"}``.

    Stored form (the Node library's ``repeat`` field): ``{"cron": "0 9 * * *", "timezone":
    "Asia/Kolkata"}`` or ``{"every": 300000}`` (milliseconds), plus ``misfire`` and
    ``catchUpLimit`` when they differ from the defaults.
    """

    cron: str | None = None
    every: timedelta | None = None
    timezone: str | None = None
    misfire: Misfire = "once"
    catch_up_limit: int = 100
    _expr: CronExpression | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValidationError("repeat", "give exactly one of 'cron' or 'every'")
        if self.cron is not None:
            if not isinstance(self.cron, str):
                raise ValidationError(
                    "repeat.cron", f"expected a string, got {type(self.cron).__name__}"
                )
            try:
                object.__setattr__(self, "_expr", CronExpression.parse(self.cron))
            except CronError as exc:
                raise ValidationError("repeat.cron", str(exc)) from None
        if self.every is not None:
            every = self.every
            if isinstance(every, bool) or not isinstance(every, (timedelta, int, float)):
                raise ValidationError(
                    "repeat.every", f"expected a timedelta or seconds, got {type(every).__name__}"
                )
            seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
            if not math.isfinite(seconds):
                raise ValidationError("repeat.every", f"must be finite, got {every!r}")
            if seconds < MIN_INTERVAL.total_seconds():
                raise ValidationError("repeat.every", f"must be at least 100 ms, got {every!r}")
            if seconds > MAX_DURATION.total_seconds():
                raise ValidationError("repeat.every", f"must be at most 100 years, got {every!r}")
            object.__setattr__(self, "every", timedelta(milliseconds=round(seconds * 1000)))
        if self.timezone is not None:
            _zone(self.timezone)
        if self.misfire not in _MISFIRES:
            raise ValidationError("repeat.misfire", f"must be one of {', '.join(_MISFIRES)}")
        limit = self.catch_up_limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValidationError("repeat.catchUpLimit", f"must be an integer >= 1, got {limit!r}")
        if limit > MAX_INT64:
            raise ValidationError("repeat.catchUpLimit", f"at most {MAX_INT64} (64-bit)")

    # -- conversion -------------------------------------------------------------------------

    @classmethod
    def parse(cls, value: Any) -> Repeat:
        """Build a schedule from ``repeat=`` input: a ``Repeat`` or a mapping whose ``every``
        is a ``timedelta`` or seconds (``everyMs``: milliseconds; see :func:`duration_in` for
        the numbers refused as probably milliseconds). Unknown keys are an error."""
        if isinstance(value, Repeat):
            return value
        if not isinstance(value, Mapping):
            raise ValidationError(
                "repeat", f"expected a mapping or a Repeat, got {type(value).__name__}"
            )
        unknown = set(value) - _KEYS
        if unknown:
            raise ValidationError(
                "repeat", f"unknown key(s) {sorted(map(str, unknown))}; allowed: {sorted(_KEYS)}"
            )
        return cls(
            cron=value.get("cron"),
            every=duration_in(value, "repeat", "every", minimum=MIN_INTERVAL),
            timezone=value.get("timezone"),
            misfire=value.get("misfire", "once"),
            catch_up_limit=value.get("catchUpLimit", 100),
        )

    @classmethod
    def from_document(cls, value: Any) -> Repeat | None:
        """Read a stored ``repeat`` field (``every`` in milliseconds); ``None`` when it is
        absent or unusable."""
        if not value or not isinstance(value, Mapping):  # absent (None) costs one test
            return None
        known = {_STORED_AS.get(k, k): v for k, v in value.items() if k in _STORED_KEYS}
        try:
            return cls.parse({k: v for k, v in known.items() if v is not None})
        except ValidationError:
            return None

    def to_document(self) -> dict[str, Any]:
        """The stored (Node-compatible) form."""
        doc: dict[str, Any] = {}
        if self.cron is not None:
            doc["cron"] = self.cron
        if self.every is not None:
            doc["every"] = round(self.every / timedelta(milliseconds=1))
        if self.timezone is not None:
            doc["timezone"] = self.timezone
        if self.misfire != "once":
            doc["misfire"] = self.misfire
        if self.catch_up_limit != 100:
            doc["catchUpLimit"] = self.catch_up_limit
        return doc

    # -- maths ------------------------------------------------------------------------------

    @cached_property
    def _tz(self) -> ZoneInfo:
        return _zone(self.timezone or "UTC")

    def zone(self, default_timezone: str | None = None) -> ZoneInfo:
        """The zone cron slots are computed in: the job's, else ``default_timezone``, else UTC."""
        if self.timezone is not None:
            return self._tz
        return _zone(default_timezone or "UTC", "default_timezone")

    def next_after(self, after: datetime, default_timezone: str | None = None) -> datetime:
        """The first slot strictly after ``after`` (aware; returned in UTC)."""
        if after.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        after = after.astimezone(timezone.utc)
        if self.every is not None:
            return after + self.every
        assert self._expr is not None
        return self._expr.next_after(after, self.zone(default_timezone))

    def first_slot(self, now: datetime, default_timezone: str | None = None) -> datetime:
        """The first slot of a schedule created at ``now``: the first one after it."""
        return self.next_after(now, default_timezone)

    def latest_at_or_before(
        self, slot: datetime, now: datetime, default_timezone: str | None = None
    ) -> datetime:
        """The latest slot of the grid that starts at ``slot`` which is ``<= now``."""
        if now <= slot:
            return slot
        if self.every is not None:
            steps = (now - slot) // self.every
            return slot + steps * self.every
        window = timedelta(seconds=1)
        while True:
            start = max(slot, now - window)
            candidate = slot if start == slot else self.next_after(start, default_timezone)
            if start == slot or candidate <= now:
                latest = candidate
                for _ in range(_MAX_STEPS):
                    following = self.next_after(latest, default_timezone)
                    if following > now:
                        return latest
                    latest = following
                return latest
            window *= 2

    def plan(
        self,
        slot: datetime,
        now: datetime,
        *,
        caught_up_in_a_row: int = 0,
        default_timezone: str | None = None,
    ) -> RunPlan:
        """Decide what a due occurrence whose slot is ``slot`` does at ``now``.

        If no later slot has passed, the slot runs. Otherwise slots were missed and
        :data:`Misfire` decides: run the latest passed slot once (``"once"``), jump to the next
        future slot without running (``"skip"``), or run this old slot and come back for the
        next (``"all"``, at most ``catch_up_limit`` in a row, then as ``"once"``).
        """
        following = self.next_after(slot, default_timezone)
        if following > now:
            return RunPlan(run=True, slot=slot)
        if self.misfire == "all" and caught_up_in_a_row < self.catch_up_limit:
            return RunPlan(run=True, slot=slot, caught_up=True)
        latest = self.latest_at_or_before(following, now, default_timezone)
        if self.misfire == "skip":
            return RunPlan(run=False, slot=self.next_after(latest, default_timezone))
        return RunPlan(run=True, slot=latest)
