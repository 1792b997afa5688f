"""Cron expressions: parsing, and the next firing instant in a time zone.

Syntax (compatible with Node's ``cron-parser`` 4.9 where it matters)
--------------------------------------------------------------------
Five fields ``minute hour day-of-month month day-of-week``, or six fields with
``second`` first. Each field is ``*`` or a comma list of items; an item is a number,
a range ``a-b``, or a stepped ``*/n``, ``a-b/n`` or ``a/n`` (``a`` up to the field's
maximum). Ranges: second and minute 0-59, hour 0-23, day-of-month 1-31, month 1-12
(or ``JAN``-``DEC``), day-of-week 0-7 (or ``SUN``-``SAT``; 0 and 7 are both Sunday,
so ``a/n`` there runs up to 7). Names are case-insensitive. ``?`` means ``*`` and is
accepted only as the whole day-of-month or day-of-week field. Day-of-month also
accepts ``L`` (the month's last day); day-of-week also accepts ``nL`` (the month's
last weekday ``n``, e.g. ``5L`` is the last Friday) and ``n#k`` (the ``k``-th weekday
``n``, ``k`` in 1-5, e.g. ``1#2`` is the second Monday). Macros: ``@yearly``,
``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``, ``@hourly``.
Anything else (``@reboot``, ``W``, ``H``, a wrong field count, values out of range,
reversed ranges, zero steps, empty items, ...) raises :class:`CronError`, as does
an expression that can never fire, such as ``0 0 30 2 *``.

Day-of-month and day-of-week combine as in Vixie cron and ``cron-parser``: when both
are restricted, a day matches if *either* matches; when either is unrestricted, the
other alone decides. Which fields count as unrestricted follows ``cron-parser``, which
goes by how many values a field names rather than by whether it is ``*``:

- Day-of-week is unrestricted when it names all eight values 0-7, Sunday both as 0 and
  as 7, where a range that includes 7 names 0 as well: ``*``, ``?``, ``*/1``, ``0-7``,
  ``1-7``, ``0-6,7``. A field that names each day once, with one number for Sunday, is
  restricted: ``0-6``, ``SUN-SAT``, ``1-6,0``, ``0-6/1``, ``1-6,7``. ``nL`` and ``n#k``
  items name no plain weekday.
- Day-of-month is unrestricted *in a given month* when it names every day that month
  can have, counting February as 29 days in every year; ``L`` names the last of them
  (the 29th for February). ``*``, ``?``, ``*/1`` and ``1-31`` are unrestricted in every
  month, ``1-30`` in 30-day months and February, ``1-29`` and ``1-28,L`` in February
  only. So ``0 0 1-30 * 1`` fires on Mondays only in April, and on days 1-30 and every
  Monday in May.

So ``0 0 13 * 0-6`` fires every day (the 13th, or any day of the week), while
``0 0 13 * *`` and ``0 0 13 * 0-7`` fire on the 13th only. An ``n#k`` item matches its
own day only: with a restricted day-of-month, ``0 0 1 * 5#2`` fires on the 1st and on
the second Friday. (``docs/interop.md`` lists where ``cron-parser`` differs: it counts
repeated values, and filters the day-of-month days of ``n#k`` by week.)

Time zones and daylight-saving time
-----------------------------------
Fields are matched against the wall-clock time in the given zone. An expression is
*fixed-hour* when its hour field does not cover all 24 hours (``30 2 * * *``,
``* 1 * * *``), otherwise *wildcard-hour* (``* * * * *``, ``0 * * * *``,
``*/15 * * * *``).

1. Spring forward (wall-clock times that do not exist): a fixed-hour expression
   with a matching nonexistent time fires once, at the first instant after the gap
   (the transition instant, rounded up to a whole minute, or a whole second for
   six-field expressions); however many nonexistent times match in one gap, and even
   if a real match falls on the same instant, that is a single firing. A
   wildcard-hour expression skips nonexistent times.
2. Fall back (wall-clock times that occur twice): a fixed-hour expression fires only
   at the first occurrence; a wildcard-hour expression fires at both occurrences.
3. Successive calls ``t = next_after(t, tz)`` give strictly increasing instants.

These rules hold for every zone, including shifts that are not one hour
(``Australia/Lord_Howe``) and transitions at midnight (``America/Santiago``,
``America/Havana``). Results are whole seconds (whole minutes for five-field
expressions, unless the zone's offset itself has seconds, as in some historical
local mean times).
"""

from __future__ import annotations

import calendar
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

__all__ = ["CronError", "CronExpression"]

_UTC: Final = timezone.utc
_ONE_SECOND: Final = timedelta(seconds=1)
_ONE_MINUTE: Final = timedelta(minutes=1)
# Distance ahead of the start instant at which a coming fall-back transition is looked
# for: larger than any backward shift in the tz database (23 h, Kwajalein 1969), and
# small enough that it never spans two transitions of modern zones.
_PROBE_AHEAD: Final = timedelta(hours=26)
# Any expression that fires at all fires within one 400-year Gregorian cycle.
_SEARCH_YEARS: Final = 400
_MAX_YEAR: Final = 9999

_MONTH_NAMES: Final[Mapping[str, int]] = {
    name.upper(): number for number, name in enumerate(calendar.month_abbr) if name
}
_WEEKDAY_NAMES: Final[Mapping[str, int]] = {
    "SUN": 0,
    "MON": 1,
    "TUE": 2,
    "WED": 3,
    "THU": 4,
    "FRI": 5,
    "SAT": 6,
}
_MACROS: Final[Mapping[str, str]] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DAYS_IN_MONTH: Final = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class CronError(ValueError):
    """A cron expression is malformed, can never fire, or has no next firing time."""


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: Mapping[str, int] = field(default_factory=dict)


_SECOND_SPEC: Final = _FieldSpec("second", 0, 59)
_MINUTE_SPEC: Final = _FieldSpec("minute", 0, 59)
_HOUR_SPEC: Final = _FieldSpec("hour", 0, 23)
_DOM_SPEC: Final = _FieldSpec("day-of-month", 1, 31)
_MONTH_SPEC: Final = _FieldSpec("month", 1, 12, _MONTH_NAMES)
_DOW_SPEC: Final = _FieldSpec("day-of-week", 0, 7, _WEEKDAY_NAMES)


@dataclass
class _Field:
    values: set[int] = field(default_factory=set)
    last_day: bool = False
    last_weekdays: set[int] = field(default_factory=set)
    nth_weekdays: set[tuple[int, int]] = field(default_factory=set)


@dataclass(frozen=True)
class CronExpression:
    """A parsed cron expression; build one with :meth:`parse`.

    ``source`` is the text as given. The value tuples are sorted and free of
    duplicates; weekdays run 0 (Sunday) to 6. ``last_day_of_month`` is ``L`` in
    day-of-month, ``last_weekdays`` holds the ``n`` of ``nL`` items and
    ``nth_weekdays`` the ``(n, k)`` of ``n#k`` items. ``day_of_week_restricted`` is
    false when day-of-week names all of 0-7 (see the module docstring).
    """

    source: str
    has_seconds: bool
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: tuple[int, ...]
    months: tuple[int, ...]
    days_of_week: tuple[int, ...]
    last_day_of_month: bool = False
    last_weekdays: frozenset[int] = frozenset()
    nth_weekdays: frozenset[tuple[int, int]] = frozenset()
    day_of_week_restricted: bool = True

    @classmethod
    def parse(cls, expr: str) -> CronExpression:
        """Parse ``expr``; raise :class:`CronError` naming the bad field or problem."""
        if not isinstance(expr, str):
            raise CronError(f"cron expression must be a string, not {type(expr).__name__}")
        return _parse(expr)

    @property
    def fixed_hour(self) -> bool:
        """Whether the hour field leaves out some hour (see the module's DST rules)."""
        return len(self.hours) != 24

    def day_of_month_restricted_in(self, ndays: int) -> bool:
        """Whether day-of-month leaves out a day of an ``ndays``-day month.

        February counts as 29 days in every year, and ``L`` names the month's last day.
        """
        ndays = max(ndays, 29)
        named = bisect_left(self.days_of_month, ndays + 1)
        if self.last_day_of_month and (named == 0 or self.days_of_month[named - 1] != ndays):
            named += 1
        return named < ndays

    def matches_local(self, local: datetime) -> bool:
        """Whether wall-clock time ``local`` (tzinfo ignored) is one of the expression's times."""
        if local.microsecond or local.second not in self.seconds:
            return False
        if local.minute not in self.minutes or local.hour not in self.hours:
            return False
        if local.month not in self.months:
            return False
        ndays = calendar.monthrange(local.year, local.month)[1]
        weekday = (local.weekday() + 1) % 7
        return self._day_matches(local.day, weekday, ndays)

    def next_after(self, after: datetime, tz: ZoneInfo) -> datetime:
        """The earliest firing instant in zone ``tz`` strictly after ``after``, in UTC.

        ``after`` must be timezone-aware (``ValueError`` otherwise). The result is an
        aware ``datetime`` in ``datetime.timezone.utc`` with microsecond 0, following
        the daylight-saving rules in the module docstring. Raises :class:`CronError`
        if there is no firing time before the end of year 9999.
        """
        if not isinstance(after, datetime):
            raise TypeError(f"after must be a datetime, not {type(after).__name__}")
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError("after must be a timezone-aware datetime")
        try:
            result = self._next_instant(after.astimezone(_UTC).replace(tzinfo=None), tz)
        except OverflowError:
            result = None
        if result is None:
            raise CronError(
                f"cron expression {self.source!r} has no firing time after {after.isoformat()}"
            )
        return result.replace(tzinfo=_UTC)

    # -- calendar search over wall-clock times ------------------------------------

    def _day_matches(self, day: int, weekday: int, ndays: int) -> bool:
        """Whether day ``day`` (cron weekday ``weekday``) of an ``ndays``-day month matches."""
        dom = day in self.days_of_month or (self.last_day_of_month and day == ndays)
        dow = (
            weekday in self.days_of_week
            or (weekday in self.last_weekdays and day + 7 > ndays)
            or (weekday, (day + 6) // 7) in self.nth_weekdays
        )
        if self.day_of_week_restricted and self.day_of_month_restricted_in(ndays):
            return dom or dow
        return dom and dow

    def _first_day(self, year: int, month: int, day: int) -> int | None:
        """The first matching day of the month on or after ``day``, if any."""
        first_weekday, ndays = calendar.monthrange(year, month)
        if day > ndays:
            return None
        if not self.day_of_week_restricted:
            index = bisect_left(self.days_of_month, day)
            found = self.days_of_month[index] if index < len(self.days_of_month) else None
            if found is not None and found > ndays:
                found = None
            if self.last_day_of_month and (found is None or found > ndays):
                found = ndays
            return found
        for candidate in range(day, ndays + 1):
            if self._day_matches(candidate, (first_weekday + candidate) % 7, ndays):
                return candidate
        return None

    def _next_local(self, start: datetime) -> datetime | None:
        """The first matching wall-clock time at or after naive ``start``, within 400 years."""
        if start.microsecond:
            start = start.replace(microsecond=0) + _ONE_SECOND
        year, month, day = start.year, start.month, start.day
        hour, minute, second = start.hour, start.minute, start.second
        last_year = min(year + _SEARCH_YEARS, _MAX_YEAR)
        months, hours, minutes, seconds = self.months, self.hours, self.minutes, self.seconds
        while year <= last_year:
            index = bisect_left(months, month)
            if index == len(months):
                year, month, day, hour, minute, second = year + 1, months[0], 1, 0, 0, 0
                continue
            if months[index] != month:
                month, day, hour, minute, second = months[index], 1, 0, 0, 0
            found = self._first_day(year, month, day)
            if found is None:
                month, day, hour, minute, second = month + 1, 1, 0, 0, 0
                continue
            if found != day:
                day, hour, minute, second = found, 0, 0, 0
            index = bisect_left(hours, hour)
            if index == len(hours):
                day, hour, minute, second = day + 1, 0, 0, 0
                continue
            if hours[index] != hour:
                hour, minute, second = hours[index], 0, 0
            index = bisect_left(minutes, minute)
            if index == len(minutes):
                hour, minute, second = hour + 1, 0, 0
                continue
            if minutes[index] != minute:
                minute, second = minutes[index], 0
            index = bisect_left(seconds, second)
            if index == len(seconds):
                minute, second = minute + 1, 0
                continue
            return datetime(year, month, day, hour, minute, seconds[index])
        return None

    def _can_fire(self) -> bool:
        """Whether some day of some allowed month ever matches."""
        for month in self.months:
            for ndays in (28, 29) if month == 2 else (_DAYS_IN_MONTH[month],):
                for first_weekday in range(7):
                    for day in range(1, ndays + 1):
                        if self._day_matches(day, (first_weekday + day - 1) % 7, ndays):
                            return True
        return False

    # -- mapping wall-clock times to instants --------------------------------------

    def _next_instant(self, after: datetime, tz: ZoneInfo) -> datetime | None:
        """Earliest firing instant (naive UTC) strictly after naive-UTC ``after``."""
        wall = after.replace(tzinfo=_UTC).astimezone(tz).replace(tzinfo=None, fold=0)
        first, second = _instants(wall, tz)
        # Wall-clock window [start, end) whose second occurrences may hold the answer:
        # set when `after` is inside, or about a day or less before, a fall-back repetition.
        repeat: tuple[datetime, datetime] | None = None
        if first < second and after == second:
            # `after` is the second occurrence of a repeated wall-clock time.
            change = _transition(first, second, tz)
            earlier_offset = wall - first
            search_start = change + earlier_offset
            repeat = (wall, search_start)
        else:
            search_start = wall
            offset = wall - after
            try:
                ahead = _offset_at(after + _PROBE_AHEAD, tz)
            except OverflowError:
                ahead = offset
            if ahead < offset:
                change = _transition(after, after + _PROBE_AHEAD, tz)
                repeat = (change + _offset_at(change, tz), change + offset)
        best = self._first_occurrence(search_start, after, tz)
        if repeat is not None and not self.fixed_hour:
            again = self._second_occurrence(repeat[0], repeat[1], after, tz)
            if again is not None and (best is None or again < best):
                best = again
        return best

    def _first_occurrence(self, start: datetime, after: datetime, tz: ZoneInfo) -> datetime | None:
        """Earliest firing after ``after`` among first occurrences and gap firings.

        Only wall-clock times from ``start`` on are considered.
        """
        granularity = _ONE_SECOND if self.has_seconds else _ONE_MINUTE
        best: datetime | None = None
        candidate = self._next_local(start)
        while candidate is not None:
            first, second = _instants(candidate, tz)
            if first <= second:
                if first > after:
                    return first if best is None or first < best else best
                candidate = self._next_local(candidate + _ONE_SECOND)
                continue
            # Nonexistent wall-clock time: the gap ends at `change`.
            change = _transition(second, first, tz)
            if self.fixed_hour and change > after:
                fire = _ceil(change, granularity)
                if best is None or fire < best:
                    best = fire
                if fire == change:
                    return best
            candidate = self._next_local(change + (candidate - second))
        return best

    def _second_occurrence(
        self, start: datetime, end: datetime, after: datetime, tz: ZoneInfo
    ) -> datetime | None:
        """Earliest second occurrence after ``after`` of a matching wall time in [start, end)."""
        candidate = self._next_local(start)
        while candidate is not None and candidate < end:
            first, second = _instants(candidate, tz)
            if first < second and second > after:
                return second
            candidate = self._next_local(candidate + _ONE_SECOND)
        return None


def _offset(local: datetime) -> timedelta:
    """UTC offset of an aware datetime."""
    offset = local.utcoffset()
    if offset is None:
        raise ValueError("time zone gave no UTC offset")
    return offset


def _offset_at(instant: datetime, tz: ZoneInfo) -> timedelta:
    """UTC offset of ``tz`` at the naive-UTC ``instant``."""
    return _offset(instant.replace(tzinfo=_UTC).astimezone(tz))


def _instants(wall: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Naive-UTC instants of naive wall time ``wall`` read with fold 0 and fold 1.

    Equal for an ordinary time, increasing for a repeated one, decreasing for a
    nonexistent one.
    """
    return (
        wall - _offset(wall.replace(tzinfo=tz, fold=0)),
        wall - _offset(wall.replace(tzinfo=tz, fold=1)),
    )


def _transition(low: datetime, high: datetime, tz: ZoneInfo) -> datetime:
    """The whole-second instant in (low, high] where ``tz`` switches to its offset at ``high``."""
    base = low.replace(microsecond=0)
    target = _offset_at(high, tz)
    span = high - base
    lo, hi = 0, span.days * 86400 + span.seconds + (1 if span.microseconds else 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_at(base + timedelta(seconds=mid), tz) == target:
            hi = mid
        else:
            lo = mid
    return base + timedelta(seconds=hi)


def _ceil(instant: datetime, granularity: timedelta) -> datetime:
    """``instant`` rounded up to a whole minute or second."""
    if granularity == _ONE_MINUTE:
        if instant.second or instant.microsecond:
            return instant.replace(second=0, microsecond=0) + _ONE_MINUTE
        return instant
    if instant.microsecond:
        return instant.replace(microsecond=0) + _ONE_SECOND
    return instant


def _field_error(spec: _FieldSpec, problem: str, source: str) -> CronError:
    return CronError(f"cron {spec.name} field: {problem} (in {source!r})")


def _value(text: str, item: str, spec: _FieldSpec, source: str) -> int:
    """One value of a field: a number or a name."""
    if not text:
        raise _field_error(spec, f"missing value in {item!r}", source)
    named = spec.names.get(text.upper())
    if named is not None:
        return named
    if not (text.isascii() and text.isdigit()):
        raise _field_error(spec, f"invalid value {text!r}", source)
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise _field_error(spec, f"value {value} out of range {spec.low}-{spec.high}", source)
    return value


def _range_item(item: str, spec: _FieldSpec, source: str) -> range:
    """The values of a ``*``, ``a``, ``a-b`` item, optionally stepped with ``/n``."""
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not (step_text.isascii() and step_text.isdigit()):
            raise _field_error(spec, f"step must be a positive integer, got {step_text!r}", source)
        step = int(step_text)
        if step == 0:
            raise _field_error(spec, "step must be a positive integer, got 0", source)
    if base == "*":
        start, end = spec.low, spec.high
    elif "-" in base:
        low_text, _, high_text = base.partition("-")
        start = _value(low_text, item, spec, source)
        end = _value(high_text, item, spec, source)
        if start > end:
            raise _field_error(spec, f"range {base!r} is reversed ({start} > {end})", source)
    else:
        start = _value(base, item, spec, source)
        end = spec.high if slash else start
    return range(start, end + 1, step)


def _parse_field(text: str, spec: _FieldSpec, source: str) -> _Field:
    """One field's values and special day items."""
    result = _Field()
    day_field = spec is _DOM_SPEC or spec is _DOW_SPEC
    if text == "?" and day_field:
        result.values.update(range(spec.low, spec.high + 1))
        return result
    for item in text.split(","):
        if not item:
            raise _field_error(spec, "empty list item", source)
        upper = item.upper()
        if "?" in item:
            where = "as the whole field" if day_field else "in day-of-month and day-of-week"
            raise _field_error(spec, f"'?' is only allowed {where}", source)
        if spec is _DOM_SPEC and "L" in upper:
            if upper != "L":
                raise _field_error(spec, f"unsupported value {item!r} (only 'L' alone)", source)
            result.last_day = True
        elif spec is _DOW_SPEC and "#" in item:
            day_text, _, nth_text = item.partition("#")
            weekday = _value(day_text, item, spec, source) % 7
            if not (nth_text.isascii() and nth_text.isdigit() and 1 <= int(nth_text) <= 5):
                raise _field_error(spec, f"occurrence in {item!r} must be 1-5", source)
            result.nth_weekdays.add((weekday, int(nth_text)))
        elif spec is _DOW_SPEC and upper.endswith("L"):
            if upper == "L":
                raise _field_error(spec, "'L' needs a weekday before it, e.g. '5L'", source)
            result.last_weekdays.add(_value(item[:-1], item, spec, source) % 7)
        else:
            values = _range_item(item, spec, source)
            result.values.update(values)
            if spec is _DOW_SPEC and 7 in values and not item.isdigit():
                result.values.add(0)  # a range up to 7 names Sunday as 0 too
    return result


@lru_cache(maxsize=512)
def _parse(expr: str) -> CronExpression:
    """Parse a string cron expression (memoised: results are immutable)."""
    text = expr.strip()
    if not text:
        raise CronError("cron expression is empty")
    if text.startswith("@"):
        macro = _MACROS.get(text.lower())
        if macro is None:
            known = ", ".join(sorted(_MACROS))
            raise CronError(f"unsupported cron macro {text!r}; expected one of {known}")
        text = macro
    parts = text.split()
    if len(parts) not in (5, 6):
        raise CronError(f"cron expression must have 5 or 6 fields, got {len(parts)} (in {expr!r})")
    has_seconds = len(parts) == 6
    seconds = _parse_field(parts[0], _SECOND_SPEC, expr).values if has_seconds else {0}
    minute, hour, dom, month, dow = parts[-5:]
    days_of_month = _parse_field(dom, _DOM_SPEC, expr)
    days_of_week = _parse_field(dow, _DOW_SPEC, expr)
    parsed = CronExpression(
        source=expr,
        has_seconds=has_seconds,
        seconds=tuple(sorted(seconds)),
        minutes=tuple(sorted(_parse_field(minute, _MINUTE_SPEC, expr).values)),
        hours=tuple(sorted(_parse_field(hour, _HOUR_SPEC, expr).values)),
        days_of_month=tuple(sorted(days_of_month.values)),
        months=tuple(sorted(_parse_field(month, _MONTH_SPEC, expr).values)),
        days_of_week=tuple(sorted({value % 7 for value in days_of_week.values})),
        last_day_of_month=days_of_month.last_day,
        last_weekdays=frozenset(days_of_week.last_weekdays),
        nth_weekdays=frozenset(days_of_week.nth_weekdays),
        day_of_week_restricted=not days_of_week.values.issuperset(range(8)),
    )
    if not parsed._can_fire():
        raise CronError(f"cron expression never fires: no month has a matching day (in {expr!r})")
    return parsed
