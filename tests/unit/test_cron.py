"""Unit tests for cron parsing and next-firing computation, including DST rules."""

from __future__ import annotations

import functools
import itertools
import time
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim, CronSimError
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from mongo_job_scheduler._cron import CronError, CronExpression

UTC = timezone.utc
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def offset_at(instant: datetime, tz: ZoneInfo) -> timedelta:
    """UTC offset of ``tz`` at the aware ``instant``."""
    offset = instant.astimezone(tz).utcoffset()
    assert offset is not None
    return offset


def run(expr: str, start: datetime, zone: str, count: int) -> list[datetime]:
    """``count`` successive firings after ``start``."""
    parsed = CronExpression.parse(expr)
    tz = ZoneInfo(zone)
    out: list[datetime] = []
    for _ in range(count):
        start = parsed.next_after(start, tz)
        out.append(start)
    return out


# ---------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------


def test_five_fields_default_seconds_to_zero() -> None:
    expr = CronExpression.parse("* * * * *")
    assert not expr.has_seconds
    assert expr.seconds == (0,)
    assert expr.minutes == tuple(range(60))
    assert expr.hours == tuple(range(24))
    assert expr.days_of_month == tuple(range(1, 32))
    assert expr.months == tuple(range(1, 13))
    assert expr.days_of_week == tuple(range(7))
    assert expr.source == "* * * * *"


def test_six_fields_put_seconds_first() -> None:
    expr = CronExpression.parse("*/10 5 4 3 2 1")
    assert expr.has_seconds
    assert expr.seconds == (0, 10, 20, 30, 40, 50)
    assert (expr.minutes, expr.hours, expr.days_of_month) == ((5,), (4,), (3,))
    assert (expr.months, expr.days_of_week) == ((2,), (1,))


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("7", (7,)),
        ("07", (7,)),
        ("1,2,10-12", (1, 2, 10, 11, 12)),
        ("*/15", (0, 15, 30, 45)),
        ("5-20/5", (5, 10, 15, 20)),
        ("50/5", (50, 55)),
        ("0-59/30,7", (0, 7, 30)),
        ("3,3,1-3", (1, 2, 3)),
        ("*,5", tuple(range(60))),
        ("*/61", (0,)),
    ],
)
def test_minute_field_syntax(field: str, values: tuple[int, ...]) -> None:
    assert CronExpression.parse(f"{field} * * * *").minutes == values


def test_month_names_case_insensitive() -> None:
    assert CronExpression.parse("0 0 1 jan,Mar,DEC *").months == (1, 3, 12)
    assert CronExpression.parse("0 0 1 FEB-apr *").months == (2, 3, 4)
    assert CronExpression.parse("0 0 1 JUN/3 *").months == (6, 9, 12)


def test_weekday_names_and_sunday_as_seven() -> None:
    assert CronExpression.parse("0 0 * * MON-FRI").days_of_week == (1, 2, 3, 4, 5)
    assert CronExpression.parse("0 0 * * sun,Sat").days_of_week == (0, 6)
    assert CronExpression.parse("0 0 * * 7").days_of_week == (0,)
    assert CronExpression.parse("0 0 * * 0,7").days_of_week == (0,)
    assert CronExpression.parse("0 0 * * 5-7").days_of_week == (0, 5, 6)
    # `a/n` runs up to 7 (Sunday), as in cron-parser.
    assert CronExpression.parse("0 0 * * 1/2").days_of_week == (0, 1, 3, 5)
    assert not CronExpression.parse("0 0 * * 0-7").day_of_week_restricted


def test_question_mark_means_star_in_day_fields() -> None:
    expr = CronExpression.parse("0 0 ? * ?")
    assert expr == CronExpression(
        source="0 0 ? * ?",
        has_seconds=False,
        seconds=(0,),
        minutes=(0,),
        hours=(0,),
        days_of_month=tuple(range(1, 32)),
        months=tuple(range(1, 13)),
        days_of_week=tuple(range(7)),
        day_of_week_restricted=False,
    )
    assert not any(expr.day_of_month_restricted_in(n) for n in (28, 29, 30, 31))
    assert not expr.day_of_week_restricted


def test_last_day_and_last_and_nth_weekday() -> None:
    expr = CronExpression.parse("0 0 L * *")
    assert expr.last_day_of_month and expr.days_of_month == ()
    assert CronExpression.parse("0 0 1,L * *").days_of_month == (1,)
    assert CronExpression.parse("0 0 * * 5L").last_weekdays == frozenset({5})
    assert CronExpression.parse("0 0 * * 7L").last_weekdays == frozenset({0})
    assert CronExpression.parse("0 0 * * 1#2").nth_weekdays == frozenset({(1, 2)})
    assert CronExpression.parse("0 0 * * fri#5,MON#1").nth_weekdays == frozenset({(5, 5), (1, 1)})


@pytest.mark.parametrize(
    ("macro", "equivalent"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
        ("  @Hourly ", "0 * * * *"),
    ],
)
def test_macros(macro: str, equivalent: str) -> None:
    parsed = CronExpression.parse(macro)
    expected = CronExpression.parse(equivalent)
    assert parsed.source == macro
    assert {**vars(parsed), "source": ""} == {**vars(expected), "source": ""}


def test_whitespace_is_flexible_and_source_is_kept() -> None:
    expr = CronExpression.parse("  0\t 0  *  * *\n")
    assert expr.source == "  0\t 0  *  * *\n"
    assert expr.minutes == (0,) and expr.hours == (0,)


def test_parse_results_are_equal_and_hashable() -> None:
    a = CronExpression.parse("*/5 * * * *")
    b = CronExpression.parse("*/5 * * * *")
    assert a == b and hash(a) == hash(b)
    assert a != CronExpression.parse("*/6 * * * *")


@pytest.mark.parametrize(
    ("expr", "fixed"),
    [
        ("30 2 * * *", True),
        ("* 1 * * *", True),
        ("0 */2 * * *", True),
        ("0 0-22 * * *", True),
        ("* * * * *", False),
        ("0 * * * *", False),
        ("*/15 * * * *", False),
        ("0 */1 * * *", False),
        ("0 0-23 * * *", False),
        ("0 0 * * * *", False),
        ("0 0 0 * * *", True),
        ("@hourly", False),
        ("@daily", True),
    ],
)
def test_fixed_hour_classification(expr: str, fixed: bool) -> None:
    assert CronExpression.parse(expr).fixed_hour is fixed


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "cron minute field: value 61 out of range 0-59"),
        ("* 24 * * *", "cron hour field: value 24 out of range 0-23"),
        ("* * 0 * *", "cron day-of-month field: value 0 out of range 1-31"),
        ("* * 32 * *", "cron day-of-month field: value 32 out of range 1-31"),
        ("* * * 13 *", "cron month field: value 13 out of range 1-12"),
        ("* * * 0 *", "cron month field: value 0 out of range 1-12"),
        ("* * * * 8", "cron day-of-week field: value 8 out of range 0-7"),
        ("60 * * * * *", "cron second field: value 60 out of range 0-59"),
        ("5-1 * * * *", "cron minute field: range '5-1' is reversed"),
        ("0 0 * * FRI-MON", "cron day-of-week field: range 'FRI-MON' is reversed"),
        ("*/0 * * * *", "cron minute field: step must be a positive integer, got 0"),
        ("*/-1 * * * *", "cron minute field: step must be a positive integer, got '-1'"),
        ("*/ * * * *", "cron minute field: step must be a positive integer, got ''"),
        ("1/2/3 * * * *", "cron minute field: step must be a positive integer"),
        ("1,,2 * * * *", "cron minute field: empty list item"),
        ("1, * * * *", "cron minute field: empty list item"),
        (",1 * * * *", "cron minute field: empty list item"),
        ("-1 * * * *", "cron minute field: missing value in '-1'"),
        ("1- * * * *", "cron minute field: missing value in '1-'"),
        ("1-2-3 * * * *", "cron minute field: invalid value '2-3'"),
        ("*-5 * * * *", "cron minute field: invalid value '*'"),
        ("1.5 * * * *", "cron minute field: invalid value '1.5'"),
        ("H * * * *", "cron minute field: invalid value 'H'"),
        ("\u0661 * * * *", "cron minute field: invalid value"),
        ("0 0 15W * *", "cron day-of-month field: invalid value '15W'"),
        ("0 0 W * *", "cron day-of-month field: invalid value 'W'"),
        ("0 0 LW * *", "cron day-of-month field: unsupported value 'LW'"),
        ("0 0 L-2 * *", "cron day-of-month field: unsupported value 'L-2'"),
        ("0 0 * * 1W", "cron day-of-week field: invalid value '1W'"),
        ("0 0 * * L", "cron day-of-week field: 'L' needs a weekday"),
        ("0 0 * * 8L", "cron day-of-week field: value 8 out of range 0-7"),
        ("0 0 * * 1#6", "cron day-of-week field: occurrence in '1#6' must be 1-5"),
        ("0 0 * * 1#0", "cron day-of-week field: occurrence in '1#0' must be 1-5"),
        ("0 0 * * 1#", "cron day-of-week field: occurrence in '1#' must be 1-5"),
        ("0 0 * * #2", "cron day-of-week field: missing value in '#2'"),
        ("0 0 1#2 * *", "cron day-of-month field: invalid value '1#2'"),
        ("0 0 * MON *", "cron month field: invalid value 'MON'"),
        ("0 0 * JAN-FOO *", "cron month field: invalid value 'FOO'"),
        ("0 0 * * JAN", "cron day-of-week field: invalid value 'JAN'"),
        ("? * * * *", "cron minute field: '?' is only allowed in day-of-month and day-of-week"),
        ("0 0 1,? * *", "cron day-of-month field: '?' is only allowed as the whole field"),
        ("0 0 * * ?/2", "cron day-of-week field: '?' is only allowed as the whole field"),
        ("* * * *", "must have 5 or 6 fields, got 4"),
        ("* * * * * * *", "must have 5 or 6 fields, got 7"),
        ("*", "must have 5 or 6 fields, got 1"),
        ("", "cron expression is empty"),
        ("   ", "cron expression is empty"),
        ("@reboot", "unsupported cron macro '@reboot'"),
        ("@daily 5", "unsupported cron macro"),
        ("@", "unsupported cron macro"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("0 0 30,31 FEB *", "never fires"),
    ],
)
def test_parse_errors_name_the_problem(expr: str, message: str) -> None:
    with pytest.raises(CronError) as info:
        CronExpression.parse(expr)
    assert isinstance(info.value, ValueError)
    assert message in str(info.value)


@pytest.mark.parametrize("value", [None, 5, b"* * * * *", ["*"] * 5])
def test_parse_rejects_non_strings(value: object) -> None:
    with pytest.raises(CronError, match="must be a string"):
        CronExpression.parse(value)  # type: ignore[arg-type]


def test_rare_but_possible_expressions_are_accepted() -> None:
    # Feb 29 exists in leap years; a 5th Monday of February only when Feb 29 is a Monday;
    # both restricted day fields combine with OR, so 31 Feb OR any Monday fires.
    for expr in ("0 0 29 2 *", "0 0 * 2 1#5", "0 0 31 2 1", "0 0 L 2 *", "0 0 * 2 1L"):
        CronExpression.parse(expr)


def test_matches_local() -> None:
    expr = CronExpression.parse("30 2 * * MON-FRI")
    assert expr.matches_local(datetime(2023, 3, 13, 2, 30))  # Monday
    assert not expr.matches_local(datetime(2023, 3, 12, 2, 30))  # Sunday
    assert not expr.matches_local(datetime(2023, 3, 13, 2, 30, 1))
    assert not expr.matches_local(datetime(2023, 3, 13, 2, 30, 0, 1))
    assert CronExpression.parse("15 30 2 * * *").matches_local(datetime(2023, 3, 13, 2, 30, 15))


# ---------------------------------------------------------------------------------
# Day-of-month and day-of-week: which fields are restricted, how they combine
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    ["0-6", "SUN-SAT", "1-6,0", "0-6/1", "MON-SAT,SUN", "0,1-6", "1-6,7", "sun,mon-sat", "1-5"],
)
def test_day_of_week_naming_each_day_once_is_restricted(field: str) -> None:
    assert CronExpression.parse(f"0 0 13 * {field}").day_of_week_restricted


@pytest.mark.parametrize(
    "field", ["*", "?", "*/1", "0-7", "1-7", "0-7/1", "1-7/1", "0-6,7", "SUN-SAT,7", "7,0-6"]
)
def test_day_of_week_naming_zero_and_seven_is_unrestricted(field: str) -> None:
    # A range that includes 7 names Sunday as 0 too.
    assert not CronExpression.parse(f"0 0 13 * {field}").day_of_week_restricted


@pytest.mark.parametrize("field", ["5L", "1#2", "7L", "0,7L"])
def test_last_and_nth_weekdays_are_restricted(field: str) -> None:
    assert CronExpression.parse(f"0 0 13 * {field}").day_of_week_restricted


@pytest.mark.parametrize(
    ("field", "unrestricted_in"),
    [
        ("*", {28, 29, 30, 31}),
        ("?", {28, 29, 30, 31}),
        ("*/1", {28, 29, 30, 31}),
        ("1-31", {28, 29, 30, 31}),
        ("1-15,16-31", {28, 29, 30, 31}),
        ("1-30,L", {28, 29, 30, 31}),
        ("1-30", {28, 29, 30}),
        ("1-29,L", {28, 29, 30}),
        # February counts as 29 days in every year; L names its 29th.
        ("1-29", {28, 29}),
        ("1-28,L", {28, 29}),
        ("1-28", set()),
        ("2-31", set()),
        ("2-30,L", set()),
        ("*/2", set()),
        ("L", set()),
    ],
)
def test_day_of_month_is_unrestricted_in_months_it_covers(
    field: str, unrestricted_in: set[int]
) -> None:
    expr = CronExpression.parse(f"0 0 {field} * 1")
    for ndays in (28, 29, 30, 31):
        assert expr.day_of_month_restricted_in(ndays) == (ndays not in unrestricted_in), ndays


def days(expr: str, start: datetime, count: int) -> list[int]:
    """Days of the month of ``count`` successive UTC firings after ``start``."""
    return [fire.day for fire in run(expr, start, "UTC", count)]


@pytest.mark.parametrize("dow", ["0-6", "SUN-SAT", "1-6,0", "0-6/1", "0,1-6", "1-6,7"])
def test_restricted_day_of_month_or_every_weekday_fires_every_day(dow: str) -> None:
    assert days(f"0 0 13 * {dow}", utc(2024, 1, 1), 10) == list(range(2, 12))


@pytest.mark.parametrize("dow", ["*", "?", "0-7", "1-7", "*/1", "0-6,7"])
def test_unrestricted_day_of_week_leaves_day_of_month_alone(dow: str) -> None:
    assert days(f"0 0 13 * {dow}", utc(2024, 1, 1), 3) == [13, 13, 13]


def test_day_of_month_naming_every_day_of_the_month_leaves_day_of_week_alone() -> None:
    # Mondays only in April (30 days); days 1-30 or Mondays in May (31 days).
    assert days("0 0 1-30 * 1", utc(2024, 4, 1), 4) == [8, 15, 22, 29]
    assert days("0 0 1-30 * 1", utc(2024, 4, 29), 3) == [1, 2, 3]
    assert run("0 0 1-30 * 1", utc(2024, 5, 29), "UTC", 3) == [
        utc(2024, 5, 30),
        utc(2024, 6, 3),
        utc(2024, 6, 10),
    ]
    # February counts 29 days in every year: 1-28 stays restricted, 1-29 does not.
    assert days("0 0 1-28 * 1", utc(2023, 2, 26), 3) == [27, 28, 1]
    assert days("0 0 1-29 * 1", utc(2023, 2, 1), 3) == [6, 13, 20]


def test_nth_weekday_with_restricted_day_of_month_adds_its_day() -> None:
    # The 1st of each month, and the second Friday (cron-parser drops the 1st).
    assert run("0 0 1 * 5#2", utc(2024, 1, 1), "UTC", 4) == [
        utc(2024, 1, 12),
        utc(2024, 2, 1),
        utc(2024, 2, 9),
        utc(2024, 3, 1),
    ]


def test_repeated_weekdays_count_once() -> None:
    # cron-parser counts eight entries in each and treats the fields as unrestricted.
    assert days("0 0 * * 1-5,1-3", utc(2024, 1, 5), 3) == [8, 9, 10]
    assert days("0 0 13 * 0-6,0", utc(2024, 1, 1), 3) == [2, 3, 4]


def test_stepped_weekday_range_up_to_seven_keeps_its_steps() -> None:
    # 2-7/2 is Tuesday, Thursday, Saturday: 7 is not on the step (cron-parser adds Sunday).
    assert CronExpression.parse("0 0 * * 2-7/2").days_of_week == (2, 4, 6)
    assert CronExpression.parse("0 0 * * 6/2").days_of_week == (6,)
    assert CronExpression.parse("0 0 * * 1-7/2").days_of_week == (0, 1, 3, 5)


# ---------------------------------------------------------------------------------
# Node cron-parser vectors and basic next_after behaviour
# ---------------------------------------------------------------------------------

BASE = utc(2023, 1, 1, 12)


@pytest.mark.parametrize(
    ("expr", "zone", "expected"),
    [
        ("0 15 * * *", "UTC", utc(2023, 1, 1, 15)),
        ("0 15 * * *", "Asia/Tokyo", utc(2023, 1, 2, 6)),
        ("0 15 * * *", "America/New_York", utc(2023, 1, 1, 20)),
        ("0 * * * *", "UTC", utc(2023, 1, 1, 13)),
        ("0 8 * * *", "America/New_York", utc(2023, 1, 1, 13)),
        ("0 8 * * *", "Europe/London", utc(2023, 1, 2, 8)),
    ],
)
def test_node_vectors(expr: str, zone: str, expected: datetime) -> None:
    result = CronExpression.parse(expr).next_after(BASE, ZoneInfo(zone))
    assert result == expected
    assert result.tzinfo is UTC


def test_result_is_utc_with_whole_seconds() -> None:
    every_second = CronExpression.parse("*/1 * * * * *")
    utc_zone = ZoneInfo("UTC")
    assert every_second.next_after(BASE, utc_zone) == utc(2023, 1, 1, 12, 0, 1)
    half = BASE.replace(microsecond=500_000)
    result = every_second.next_after(half, utc_zone)
    assert result == utc(2023, 1, 1, 12, 0, 1) and result.microsecond == 0
    minutely = CronExpression.parse("* * * * *")
    assert minutely.next_after(half, utc_zone) == utc(2023, 1, 1, 12, 1)
    assert minutely.next_after(BASE - SECOND, utc_zone) == BASE


def test_after_in_any_offset_is_the_same_instant() -> None:
    expr = CronExpression.parse("0 9 * * *")
    tz = ZoneInfo("Europe/Berlin")
    plus_five = BASE.astimezone(timezone(timedelta(hours=5)))
    assert expr.next_after(plus_five, tz) == expr.next_after(BASE, tz) == utc(2023, 1, 2, 8)
    assert expr.next_after(BASE.astimezone(ZoneInfo("Asia/Tokyo")), tz) == utc(2023, 1, 2, 8)


def test_naive_after_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CronExpression.parse("* * * * *").next_after(datetime(2023, 1, 1), ZoneInfo("UTC"))


@pytest.mark.parametrize(
    ("expr", "start", "expected"),
    [
        # Both day fields restricted: Friday OR the 13th (Vixie / cron-parser rule).
        (
            "0 0 13 * 5",
            utc(2023, 1, 2),
            [utc(2023, 1, d) for d in (6, 13, 20, 27)] + [utc(2023, 2, d) for d in (3, 10, 13, 17)],
        ),
        # Only day-of-week restricted: Fridays only.
        ("0 0 * * 5", utc(2023, 1, 2), [utc(2023, 1, 6), utc(2023, 1, 13), utc(2023, 1, 20)]),
        # `*/1` covers every day, so it counts as unrestricted (cron-parser): Fridays only.
        ("0 0 */1 * 5", utc(2023, 1, 2), [utc(2023, 1, 6), utc(2023, 1, 13)]),
        # Only day-of-month restricted.
        ("0 0 13 * *", utc(2023, 1, 2), [utc(2023, 1, 13), utc(2023, 2, 13)]),
        ("0 0 13 * ?", utc(2023, 1, 2), [utc(2023, 1, 13), utc(2023, 2, 13)]),
        # Last day of the month, leap and common years.
        ("0 0 L * *", utc(2024, 2, 10), [utc(2024, 2, 29), utc(2024, 3, 31), utc(2024, 4, 30)]),
        ("0 0 L 2 *", utc(2023, 1, 10), [utc(2023, 2, 28), utc(2024, 2, 29), utc(2025, 2, 28)]),
        # Last Friday: Jan 31 2023 is a Tuesday.
        ("0 0 * * 5L", utc(2023, 1, 1), [utc(2023, 1, 27), utc(2023, 2, 24), utc(2023, 3, 31)]),
        # Aug 31 2023 is a Thursday, so the last Friday is the 25th.
        ("0 0 * * FRIL", utc(2023, 8, 1), [utc(2023, 8, 25), utc(2023, 9, 29)]),
        # Second Monday: Jan 2 2023 and Feb 6 2023 are first Mondays.
        ("0 0 * * 1#2", utc(2023, 1, 1), [utc(2023, 1, 9), utc(2023, 2, 13), utc(2023, 3, 13)]),
        # Fifth Monday: only in months with five of them.
        ("0 0 * * MON#5", utc(2023, 1, 1), [utc(2023, 1, 30), utc(2023, 5, 29), utc(2023, 7, 31)]),
        # Last day OR any Monday.
        ("0 0 L * 1", utc(2023, 1, 24), [utc(2023, 1, 30), utc(2023, 1, 31), utc(2023, 2, 6)]),
        # Feb 29: 2100 is not a leap year, so 2096 is followed by 2104.
        ("0 0 29 2 *", utc(2096, 3, 1), [utc(2104, 2, 29), utc(2108, 2, 29)]),
        # Feb 29 on a Monday: 2016, then 2044 (28 years later).
        ("0 0 * 2 1#5", utc(2016, 2, 1), [utc(2016, 2, 29), utc(2044, 2, 29)]),
        ("@yearly", utc(2023, 1, 1), [utc(2024, 1, 1), utc(2025, 1, 1)]),
        ("@monthly", utc(2023, 1, 31), [utc(2023, 2, 1), utc(2023, 3, 1)]),
        ("@weekly", utc(2023, 1, 1), [utc(2023, 1, 8), utc(2023, 1, 15)]),
        ("0 0 1 JAN-MAR *", utc(2023, 2, 15), [utc(2023, 3, 1), utc(2024, 1, 1)]),
        ("30 59 23 31 12 *", utc(2023, 6, 1), [utc(2023, 12, 31, 23, 59, 30)]),
    ],
)
def test_calendar_vectors_utc(expr: str, start: datetime, expected: list[datetime]) -> None:
    assert run(expr, start, "UTC", len(expected)) == expected


def test_feb_29_monday_vectors_are_mondays() -> None:
    assert date(2016, 2, 29).weekday() == 0 and date(2044, 2, 29).weekday() == 0


def test_no_firing_before_year_9999_raises() -> None:
    with pytest.raises(CronError, match="no firing time"):
        CronExpression.parse("0 0 * 2 1#5").next_after(utc(9990, 1, 1), ZoneInfo("UTC"))
    with pytest.raises(CronError, match="no firing time"):
        CronExpression.parse("@yearly").next_after(utc(9999, 6, 1), ZoneInfo("UTC"))
    last = CronExpression.parse("59 23 31 12 *").next_after(utc(9999, 6, 1), ZoneInfo("UTC"))
    assert last == utc(9999, 12, 31, 23, 59)


def test_yearly_is_fast() -> None:
    expr = CronExpression.parse("0 0 1 1 *")
    tz = ZoneInfo("America/New_York")
    start = time.perf_counter()
    t = BASE
    for _ in range(200):
        t = expr.next_after(t, tz)
    elapsed = (time.perf_counter() - start) / 200
    assert t == utc(2223, 1, 1, 5)
    assert elapsed < 0.0005, elapsed


# ---------------------------------------------------------------------------------
# DST vectors (hand-computed from the 2023 rules of each zone)
# ---------------------------------------------------------------------------------

DST_VECTORS = [
    # America/New_York. Spring: 2023-03-12 02:00 EST -> 03:00 EDT at 07:00Z (02:xx never
    # exists). Fall: 2023-11-05 02:00 EDT -> 01:00 EST at 06:00Z (01:xx occurs twice).
    pytest.param(
        "America/New_York",
        "30 2 * * *",
        utc(2023, 3, 11, 12),
        # 02:30 does not exist on Mar 12: fire at the end of the gap (03:00 EDT).
        [utc(2023, 3, 12, 7), utc(2023, 3, 13, 6, 30)],
        id="new_york-fixed-gap",
    ),
    pytest.param(
        "America/New_York",
        "*/15 2 * * *",
        utc(2023, 3, 11, 12),
        # Four nonexistent matches in one gap: one firing; then 02:00-02:45 EDT on Mar 13.
        [utc(2023, 3, 12, 7), utc(2023, 3, 13, 6), utc(2023, 3, 13, 6, 15)],
        id="new_york-fixed-gap-several",
    ),
    pytest.param(
        "America/New_York",
        "0 2,3 * * *",
        utc(2023, 3, 11, 12),
        # 02:00 (gap) and the real 03:00 EDT are the same instant: fired once.
        [utc(2023, 3, 12, 7), utc(2023, 3, 13, 6), utc(2023, 3, 13, 7)],
        id="new_york-gap-and-real-same-instant",
    ),
    pytest.param(
        "America/New_York",
        "30 1 * * *",
        utc(2023, 11, 4, 12),
        # 01:30 EDT (05:30Z) only, not 01:30 EST (06:30Z); then 01:30 EST on Nov 6.
        [utc(2023, 11, 5, 5, 30), utc(2023, 11, 6, 6, 30)],
        id="new_york-fixed-overlap",
    ),
    pytest.param(
        "America/New_York",
        "*/30 1 * * *",
        utc(2023, 11, 4, 12),
        # 01:00 and 01:30 EDT only.
        [utc(2023, 11, 5, 5), utc(2023, 11, 5, 5, 30), utc(2023, 11, 6, 6)],
        id="new_york-fixed-overlap-several",
    ),
    pytest.param(
        "America/New_York",
        "0 * * * *",
        utc(2023, 3, 12, 4, 30),
        # 00:00 EST, 01:00 EST, (02:00 skipped) 03:00 EDT, 04:00 EDT: one real hour apart.
        [utc(2023, 3, 12, 5), utc(2023, 3, 12, 6), utc(2023, 3, 12, 7), utc(2023, 3, 12, 8)],
        id="new_york-hourly-spring",
    ),
    pytest.param(
        "America/New_York",
        "0 * * * *",
        utc(2023, 11, 5, 3, 30),
        # 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST, 03:00 EST.
        [utc(2023, 11, 5, h) for h in (4, 5, 6, 7, 8)],
        id="new_york-hourly-fall",
    ),
    pytest.param(
        "America/New_York",
        "*/15 * * * *",
        utc(2023, 11, 5, 5, 30),
        # 01:45 EDT, 01:00 EST, 01:15 EST ...
        [utc(2023, 11, 5, 5, 45), utc(2023, 11, 5, 6), utc(2023, 11, 5, 6, 15)],
        id="new_york-quarter-hour-fall",
    ),
    pytest.param(
        "America/New_York",
        "*/20 * * * * *",
        utc(2023, 11, 5, 5, 59, 20),
        # 01:59:40 EDT, then 01:00:00 EST (06:00:00Z).
        [utc(2023, 11, 5, 5, 59, 40), utc(2023, 11, 5, 6), utc(2023, 11, 5, 6, 0, 20)],
        id="new_york-seconds-fall",
    ),
    pytest.param(
        "America/New_York",
        "*/20 * * * * *",
        utc(2023, 3, 12, 6, 59, 20),
        # 01:59:40 EST, then 03:00:00 EDT (07:00:00Z).
        [utc(2023, 3, 12, 6, 59, 40), utc(2023, 3, 12, 7), utc(2023, 3, 12, 7, 0, 20)],
        id="new_york-seconds-spring",
    ),
    pytest.param(
        "America/New_York",
        "15 */15 2 * * *",
        utc(2023, 3, 11, 12),
        # 02:00:15 ... 02:45:15 do not exist: one firing at 07:00:00Z; then Mar 13 EDT.
        [utc(2023, 3, 12, 7), utc(2023, 3, 13, 6, 0, 15)],
        id="new_york-seconds-fixed-gap",
    ),
    # Europe/London. Spring: 2023-03-26 01:00 GMT -> 02:00 BST at 01:00Z.
    # Fall: 2023-10-29 02:00 BST -> 01:00 GMT at 01:00Z (01:xx twice).
    pytest.param(
        "Europe/London",
        "30 1 * * *",
        utc(2023, 3, 25, 12),
        [utc(2023, 3, 26, 1), utc(2023, 3, 27, 0, 30)],
        id="london-fixed-gap",
    ),
    pytest.param(
        "Europe/London",
        "30 1 * * *",
        utc(2023, 10, 28, 12),
        # 01:30 BST (00:30Z) only; then 01:30 GMT on Oct 30.
        [utc(2023, 10, 29, 0, 30), utc(2023, 10, 30, 1, 30)],
        id="london-fixed-overlap",
    ),
    pytest.param(
        "Europe/London",
        "0 * * * *",
        utc(2023, 3, 25, 23, 30),
        # 00:00 GMT, (01:00 skipped) 02:00 BST, 03:00 BST.
        [utc(2023, 3, 26, 0), utc(2023, 3, 26, 1), utc(2023, 3, 26, 2)],
        id="london-hourly-spring",
    ),
    pytest.param(
        "Europe/London",
        "0 * * * *",
        utc(2023, 10, 28, 22, 30),
        # 00:00 BST, 01:00 BST, 01:00 GMT, 02:00 GMT.
        [utc(2023, 10, 28, 23), utc(2023, 10, 29, 0), utc(2023, 10, 29, 1), utc(2023, 10, 29, 2)],
        id="london-hourly-fall",
    ),
    # Europe/Berlin. Spring: 2023-03-26 02:00 CET -> 03:00 CEST at 01:00Z.
    # Fall: 2023-10-29 03:00 CEST -> 02:00 CET at 01:00Z (02:xx twice).
    pytest.param(
        "Europe/Berlin",
        "30 2 * * *",
        utc(2023, 3, 25, 12),
        [utc(2023, 3, 26, 1), utc(2023, 3, 27, 0, 30)],
        id="berlin-fixed-gap",
    ),
    pytest.param(
        "Europe/Berlin",
        "30 2 * * *",
        utc(2023, 10, 28, 12),
        # 02:30 CEST (00:30Z) only; then 02:30 CET on Oct 30.
        [utc(2023, 10, 29, 0, 30), utc(2023, 10, 30, 1, 30)],
        id="berlin-fixed-overlap",
    ),
    pytest.param(
        "Europe/Berlin",
        "0 * * * *",
        utc(2023, 3, 25, 23, 30),
        # 01:00 CET, (02:00 skipped) 03:00 CEST, 04:00 CEST.
        [utc(2023, 3, 26, 0), utc(2023, 3, 26, 1), utc(2023, 3, 26, 2)],
        id="berlin-hourly-spring",
    ),
    pytest.param(
        "Europe/Berlin",
        "0 * * * *",
        utc(2023, 10, 28, 23, 30),
        # 02:00 CEST, 02:00 CET, 03:00 CET.
        [utc(2023, 10, 29, 0), utc(2023, 10, 29, 1), utc(2023, 10, 29, 2)],
        id="berlin-hourly-fall",
    ),
    # Australia/Sydney (southern hemisphere). Fall: 2023-04-02 03:00 AEDT -> 02:00 AEST
    # at 2023-04-01T16:00Z (02:xx twice). Spring: 2023-10-01 02:00 AEST -> 03:00 AEDT at
    # 2023-09-30T16:00Z.
    pytest.param(
        "Australia/Sydney",
        "30 2 * * *",
        utc(2023, 9, 30),
        # Oct 1 02:30 does not exist: 03:00 AEDT; then Oct 2 02:30 AEDT (+11).
        [utc(2023, 9, 30, 16), utc(2023, 10, 1, 15, 30)],
        id="sydney-fixed-gap",
    ),
    pytest.param(
        "Australia/Sydney",
        "30 2 * * *",
        utc(2023, 4, 1),
        # Apr 2 02:30 AEDT (15:30Z) only; then Apr 3 02:30 AEST (+10).
        [utc(2023, 4, 1, 15, 30), utc(2023, 4, 2, 16, 30)],
        id="sydney-fixed-overlap",
    ),
    pytest.param(
        "Australia/Sydney",
        "0 * * * *",
        utc(2023, 4, 1, 14, 30),
        # 02:00 AEDT, 02:00 AEST, 03:00 AEST.
        [utc(2023, 4, 1, 15), utc(2023, 4, 1, 16), utc(2023, 4, 1, 17)],
        id="sydney-hourly-fall",
    ),
    pytest.param(
        "Australia/Sydney",
        "0 * * * *",
        utc(2023, 9, 30, 14, 30),
        # 01:00 AEST, (02:00 skipped) 03:00 AEDT, 04:00 AEDT.
        [utc(2023, 9, 30, 15), utc(2023, 9, 30, 16), utc(2023, 9, 30, 17)],
        id="sydney-hourly-spring",
    ),
    # Asia/Kolkata: +05:30 all year, no DST.
    pytest.param(
        "Asia/Kolkata",
        "30 2 * * *",
        utc(2023, 3, 11),
        [utc(2023, 3, 11, 21), utc(2023, 3, 12, 21)],
        id="kolkata-daily",
    ),
    pytest.param(
        "Asia/Kolkata",
        "0 * * * *",
        utc(2023, 3, 12, 4),
        [utc(2023, 3, 12, 4, 30), utc(2023, 3, 12, 5, 30)],
        id="kolkata-hourly",
    ),
    # Australia/Lord_Howe: 30-minute shift. Fall: 2023-04-02 02:00 (+11) -> 01:30 (+10:30)
    # at 2023-04-01T15:00Z (01:30-01:59 twice). Spring: 2023-10-01 02:00 (+10:30) ->
    # 02:30 (+11) at 2023-09-30T15:30Z (02:00-02:29 never exists).
    pytest.param(
        "Australia/Lord_Howe",
        "15 2 * * *",
        utc(2023, 9, 30),
        # Oct 1 02:15 does not exist: 02:30 (+11); then Oct 2 02:15 (+11).
        [utc(2023, 9, 30, 15, 30), utc(2023, 10, 1, 15, 15)],
        id="lord_howe-fixed-gap",
    ),
    pytest.param(
        "Australia/Lord_Howe",
        "45 1 * * *",
        utc(2023, 4, 1),
        # Apr 2 01:45 (+11) only; then Apr 3 01:45 (+10:30).
        [utc(2023, 4, 1, 14, 45), utc(2023, 4, 2, 15, 15)],
        id="lord_howe-fixed-overlap",
    ),
    pytest.param(
        "Australia/Lord_Howe",
        "0 * * * *",
        utc(2023, 4, 1, 13, 30),
        # 01:00 (+11), 02:00 (+10:30), 03:00: the repeated half hour holds no :00.
        [utc(2023, 4, 1, 14), utc(2023, 4, 1, 15, 30), utc(2023, 4, 1, 16, 30)],
        id="lord_howe-hourly-fall",
    ),
    pytest.param(
        "Australia/Lord_Howe",
        "0,30 * * * *",
        utc(2023, 4, 1, 13, 30),
        # 01:00 (+11), 01:30 (+11), 01:30 (+10:30), 02:00, 02:30: every 30 real minutes.
        [utc(2023, 4, 1, 14) + timedelta(minutes=30 * i) for i in range(5)],
        id="lord_howe-half-hourly-fall",
    ),
    pytest.param(
        "Australia/Lord_Howe",
        "0 * * * *",
        utc(2023, 9, 30, 13),
        # 00:00 (+10:30), 01:00, (02:00 skipped) 03:00 (+11).
        [utc(2023, 9, 30, 13, 30), utc(2023, 9, 30, 14, 30), utc(2023, 9, 30, 16)],
        id="lord_howe-hourly-spring",
    ),
    pytest.param(
        "Australia/Lord_Howe",
        "*/15 * * * *",
        utc(2023, 9, 30, 15),
        # 01:45 (+10:30), then 02:30 (+11) at the same real quarter hour.
        [utc(2023, 9, 30, 15, 15), utc(2023, 9, 30, 15, 30), utc(2023, 9, 30, 15, 45)],
        id="lord_howe-quarter-hour-spring",
    ),
    # America/Santiago: transitions at midnight. Fall: 2023-04-02 00:00 (-03) ->
    # 2023-04-01 23:00 (-04) at 03:00Z (23:xx on Apr 1 twice). Spring: 2023-09-03 00:00
    # (-04) -> 01:00 (-03) at 04:00Z (00:xx on Sep 3, a Sunday, never exists).
    pytest.param(
        "America/Santiago",
        "0 0 * * *",
        utc(2023, 9, 2, 12),
        # Midnight of Sep 3 does not exist: 01:00 (-03); then Sep 4 00:00 (-03).
        [utc(2023, 9, 3, 4), utc(2023, 9, 4, 3)],
        id="santiago-midnight-gap",
    ),
    pytest.param(
        "America/Santiago",
        "0 0 * * SUN",
        utc(2023, 9, 1),
        [utc(2023, 9, 3, 4), utc(2023, 9, 10, 3)],
        id="santiago-sunday-midnight-gap",
    ),
    pytest.param(
        "America/Santiago",
        "30 23 * * *",
        utc(2023, 4, 1, 12),
        # Apr 1 23:30 (-03) only; then Apr 2 23:30 (-04).
        [utc(2023, 4, 2, 2, 30), utc(2023, 4, 3, 3, 30)],
        id="santiago-fixed-overlap",
    ),
    pytest.param(
        "America/Santiago",
        "0 * * * *",
        utc(2023, 4, 2, 0, 30),
        # 22:00 (-03), 23:00 (-03), 23:00 (-04), 00:00 (-04).
        [utc(2023, 4, 2, h) for h in (1, 2, 3, 4)],
        id="santiago-hourly-fall",
    ),
    pytest.param(
        "America/Santiago",
        "0 * * * *",
        utc(2023, 9, 3, 1, 30),
        # 22:00 (-04), 23:00 (-04), (00:00 skipped) 01:00 (-03), 02:00 (-03).
        [utc(2023, 9, 3, h) for h in (2, 3, 4, 5)],
        id="santiago-hourly-spring",
    ),
    # America/Havana. Spring: 2023-03-12 00:00 (-05) -> 01:00 (-04) at 05:00Z.
    # Fall: 2023-11-05 01:00 (-04) -> 00:00 (-05) at 05:00Z (00:xx twice).
    pytest.param(
        "America/Havana",
        "0 0 * * *",
        utc(2023, 3, 11, 12),
        [utc(2023, 3, 12, 5), utc(2023, 3, 13, 4)],
        id="havana-midnight-gap",
    ),
    pytest.param(
        "America/Havana",
        "30 0 * * *",
        utc(2023, 11, 4, 12),
        # Nov 5 00:30 (-04) only; then Nov 6 00:30 (-05).
        [utc(2023, 11, 5, 4, 30), utc(2023, 11, 6, 5, 30)],
        id="havana-fixed-overlap",
    ),
    pytest.param(
        "America/Havana",
        "0 * * * *",
        utc(2023, 11, 5, 2, 30),
        # 23:00 (-04), 00:00 (-04), 00:00 (-05), 01:00 (-05).
        [utc(2023, 11, 5, h) for h in (3, 4, 5, 6)],
        id="havana-hourly-fall",
    ),
]


@pytest.mark.parametrize(("zone", "expr", "start", "expected"), DST_VECTORS)
def test_dst_vectors(zone: str, expr: str, start: datetime, expected: list[datetime]) -> None:
    assert run(expr, start, zone, len(expected)) == expected


# (zone, spring-forward instant, fall-back instant) in 2023.
TRANSITIONS_2023 = [
    ("America/New_York", utc(2023, 3, 12, 7), utc(2023, 11, 5, 6)),
    ("Europe/London", utc(2023, 3, 26, 1), utc(2023, 10, 29, 1)),
    ("Europe/Berlin", utc(2023, 3, 26, 1), utc(2023, 10, 29, 1)),
    ("Australia/Sydney", utc(2023, 9, 30, 16), utc(2023, 4, 1, 16)),
    ("Australia/Lord_Howe", utc(2023, 9, 30, 15, 30), utc(2023, 4, 1, 15)),
    ("America/Santiago", utc(2023, 9, 3, 4), utc(2023, 4, 2, 3)),
    ("America/Havana", utc(2023, 3, 12, 5), utc(2023, 11, 5, 5)),
    ("Asia/Kolkata", utc(2023, 3, 12), utc(2023, 11, 5)),  # no DST: plain instants
]


def test_transition_table_matches_tzdata() -> None:
    for zone, spring, fall in TRANSITIONS_2023:
        tz = ZoneInfo(zone)
        if zone == "Asia/Kolkata":
            continue
        assert offset_at(spring - SECOND, tz) < offset_at(spring, tz)
        assert offset_at(fall - SECOND, tz) > offset_at(fall, tz)


@pytest.mark.parametrize(
    ("expr", "step"),
    [
        ("* * * * *", timedelta(minutes=1)),
        ("*/15 * * * *", timedelta(minutes=15)),
        ("*/10 * * * * *", timedelta(seconds=10)),
    ],
)
@pytest.mark.parametrize(("zone", "spring", "fall"), TRANSITIONS_2023)
def test_wildcard_hour_has_no_gap_and_no_double(
    zone: str, spring: datetime, fall: datetime, expr: str, step: timedelta
) -> None:
    # Over +-2h (+-3 min for seconds) around each transition, firings are exactly one
    # step apart in real time.
    span = timedelta(minutes=3) if step < MINUTE else timedelta(hours=2)
    for transition in (spring, fall):
        start = transition - span
        results = run(expr, start, zone, int(2 * span / step))
        assert results[0] == start + step
        assert all(b - a == step for a, b in itertools.pairwise(results))
        assert results[-1] == transition + span


# ---------------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------------

ZONES = [
    "UTC",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/New_York",
    "America/Los_Angeles",
    "America/St_Johns",
    "America/Sao_Paulo",
    "America/Santiago",
    "America/Havana",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Dublin",
    "Europe/Moscow",
    "Africa/Casablanca",
    "Asia/Beirut",
    "Asia/Tehran",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "Pacific/Apia",
    "Antarctica/Troll",
]


@functools.cache
def transitions(zone: str, year: int) -> tuple[datetime, ...]:
    """Offset changes of ``zone`` during ``year`` (found by daily probes and bisection)."""
    tz = ZoneInfo(zone)
    found: list[datetime] = []
    day = utc(year, 1, 1)
    offset = offset_at(day, tz)
    while day.year == year:
        following = day + timedelta(days=1)
        new_offset = offset_at(following, tz)
        if new_offset != offset:
            low, high = 0, 86400
            while high - low > 1:
                mid = (low + high) // 2
                if offset_at(day + timedelta(seconds=mid), tz) == new_offset:
                    high = mid
                else:
                    low = mid
            found.append(day + timedelta(seconds=high))
            offset = new_offset
        day = following
    return tuple(found)


@st.composite
def zone_and_instant(draw: st.DrawFn) -> tuple[str, datetime]:
    """A zone and an instant from 1995-2040, mostly within 2 hours of an offset change."""
    zone = draw(st.sampled_from(ZONES))
    year = draw(st.integers(1995, 2040))
    changes = transitions(zone, year)
    if changes and draw(st.integers(0, 3)) > 0:
        shift = draw(
            st.one_of(
                st.integers(-120, 120).map(lambda minutes: 60 * minutes),
                st.integers(-2 * 3600, 2 * 3600),
            )
        )
        after = draw(st.sampled_from(changes)) + timedelta(seconds=shift)
    else:
        after = utc(year, 1, 1) + timedelta(seconds=draw(st.integers(0, 365 * 86400)))
    if draw(st.integers(0, 3)) == 0:
        after += timedelta(microseconds=draw(st.integers(1, 999_999)))
    return zone, after


def reference_next(
    expr: CronExpression, after: datetime, tz: ZoneInfo, limit: datetime
) -> datetime | None:
    """Brute force over real UTC minutes (seconds for 6 fields) in (after, limit].

    A real instant fires if its wall time matches (fixed-hour: first occurrence only);
    an offset increase at an instant fires there for a fixed-hour expression if some
    skipped wall time matches.
    """
    step = SECOND if expr.has_seconds else MINUTE
    fixed_hour = len(expr.hours) != 24
    instant = after.replace(microsecond=0)
    if not expr.has_seconds:
        instant = instant.replace(second=0)
    instant += step
    previous_offset = offset_at(instant - step, tz)
    while instant <= limit:
        local = instant.astimezone(tz)
        offset = offset_at(instant, tz)
        if expr.matches_local(local) and (not fixed_hour or local.fold == 0):
            return instant
        if fixed_hour and offset > previous_offset:
            wall = instant.replace(tzinfo=None) + previous_offset
            while wall < instant.replace(tzinfo=None) + offset:
                if expr.matches_local(wall):
                    return instant
                wall += step
        previous_offset = offset
        instant += step
    return None


def assert_fires(expr: CronExpression, instant: datetime, tz: ZoneInfo) -> None:
    """``instant`` is a firing: a matching wall time, or the end of a matching gap."""
    assert instant.tzinfo is UTC and instant.microsecond == 0
    local = instant.astimezone(tz)
    if expr.matches_local(local):
        assert not expr.fixed_hour or local.fold == 0, (instant, local)
        return
    assert expr.fixed_hour, (instant, local)
    before = offset_at(instant - SECOND, tz)
    after = offset_at(instant, tz)
    assert after > before, (instant, local)
    step = SECOND if expr.has_seconds else MINUTE
    wall = instant.replace(tzinfo=None) + before
    matches = []
    while wall < instant.replace(tzinfo=None) + after:
        matches.append(expr.matches_local(wall))
        wall += step
    assert any(matches), (instant, local)


MINUTE_FIELDS = ["*", "0", "30", "*/15", "*/7", "5,35", "10-20", "59", "0-5/2", "45/5"]
WILDCARD_HOUR_FIELDS = ["*", "*/1", "0-23"]
FIXED_HOUR_FIELDS = ["0", "1", "2", "3", "23", "1-3", "*/2", "0,12", "22-23,0-1"]
SECOND_FIELDS = ["0", "*/20", "15,45", "59"]


@st.composite
def frequent_expressions(draw: st.DrawFn, seconds: bool = False) -> str:
    """Expressions firing at least daily on most days."""
    minute = draw(st.sampled_from(MINUTE_FIELDS))
    hour = draw(st.sampled_from(WILDCARD_HOUR_FIELDS) | st.sampled_from(FIXED_HOUR_FIELDS))
    dom = draw(st.sampled_from(["*", "*", "*", "L", "1-15"]))
    dow = draw(st.sampled_from(["*", "*", "*", "1-5", "SAT,SUN"]))
    expr = f"{minute} {hour} {dom} * {dow}"
    if seconds:
        expr = f"{draw(st.sampled_from(SECOND_FIELDS))} {expr}"
    return expr


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zone_and_instant(), frequent_expressions())
@example(("America/New_York", utc(2023, 11, 5, 5, 30)), "* * * * *")  # first 01:30
@example(("America/New_York", utc(2023, 11, 5, 5, 30)), "0 * * * *")  # next: second 01:00
@example(("America/New_York", utc(2023, 11, 5, 6, 30)), "* * * * *")  # second 01:30
@example(("America/New_York", utc(2023, 11, 5, 6, 30)), "*/15 1 * * *")
@example(("Australia/Lord_Howe", utc(2023, 9, 30, 15, 29)), "10-20 2 * * *")
def test_next_after_equals_brute_force(case: tuple[str, datetime], text: str) -> None:
    zone, after = case
    tz = ZoneInfo(zone)
    expr = CronExpression.parse(text)
    result = expr.next_after(after, tz)
    assert result > after
    assert_fires(expr, result, tz)
    limit = min(result, after + timedelta(hours=27))
    expected = reference_next(expr, after, tz, limit)
    if expected is None:
        assert result > limit
    else:
        assert result == expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zone_and_instant(), frequent_expressions(seconds=True))
def test_seconds_next_after_equals_brute_force(case: tuple[str, datetime], text: str) -> None:
    zone, after = case
    tz = ZoneInfo(zone)
    expr = CronExpression.parse(text)
    result = expr.next_after(after, tz)
    assert result > after
    assert_fires(expr, result, tz)
    limit = min(result, after + timedelta(minutes=70))
    expected = reference_next(expr, after, tz, limit)
    if expected is None:
        assert result > limit
    else:
        assert result == expected


def stepped(low: int, high: int) -> st.SearchStrategy[str]:
    """``*/n``, ``a-b/n`` or ``a/n`` within [low, high]."""
    step = st.integers(1, high - low + 2)
    # a < b: cronsim reads a one-value range `a-a/n` as `a/n`.
    bounds = st.tuples(st.integers(low, high - 1), st.integers(1, high - low)).map(
        lambda t: (t[0], min(high, t[0] + t[1]))
    )
    return st.one_of(
        step.map(lambda n: f"*/{n}"),
        st.tuples(bounds, step).map(lambda t: f"{t[0][0]}-{t[0][1]}/{t[1]}"),
        st.tuples(st.integers(low, high), step).map(lambda t: f"{t[0]}/{t[1]}"),
    )


def cron_field(
    low: int, high: int, extra: st.SearchStrategy[str] | None = None
) -> st.SearchStrategy[str]:
    """A random field of the common grammar (no ``?``: cronsim does not know it)."""
    items: list[st.SearchStrategy[str]] = [
        st.integers(low, high).map(str),
        st.tuples(st.integers(low, high), st.integers(low, high)).map(
            lambda t: f"{min(t)}-{max(t)}"
        ),
        stepped(low, high),
    ]
    if extra is not None:
        items.append(extra)
    item = st.one_of(*items)
    return st.one_of(st.just("*"), st.lists(item, min_size=1, max_size=3).map(",".join))


WEEKDAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


@st.composite
def random_expressions(draw: st.DrawFn) -> str:
    weekday_extra = st.one_of(
        st.sampled_from(WEEKDAY_NAMES),
        st.integers(0, 7).map(lambda d: f"{d}L"),
        st.tuples(st.integers(0, 7), st.integers(1, 5)).map(lambda t: f"{t[0]}#{t[1]}"),
    )
    fields = [
        draw(cron_field(0, 59)),
        draw(cron_field(0, 23)),
        draw(cron_field(1, 31, st.just("L"))),
        draw(cron_field(1, 12, st.sampled_from(MONTH_NAMES))),
        draw(cron_field(0, 7, weekday_extra)),
    ]
    if draw(st.booleans()):
        fields.insert(0, draw(cron_field(0, 59)))
    return " ".join(fields)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    random_expressions(),
    st.sampled_from(["UTC", "Asia/Tokyo", "Asia/Kolkata"]),
    st.datetimes(datetime(1995, 1, 1), datetime(2040, 12, 31)),
)
def test_agrees_with_cronsim_without_dst(text: str, zone: str, start: datetime) -> None:
    try:
        expr = CronExpression.parse(text)
    except CronError:
        # Only "never fires" may be rejected from this grammar.
        with pytest.raises(CronError, match="never fires"):
            CronExpression.parse(text)
        return
    parts = text.split()[-5:]
    cronsim_or = not (parts[2].startswith("*") or parts[4].startswith("*"))
    ours_or = {
        expr.day_of_week_restricted and expr.day_of_month_restricted_in(ndays)
        for ndays in (28, 29, 30, 31)
    }
    assume(ours_or == {cronsim_or})
    tz = ZoneInfo(zone)
    after = start.replace(tzinfo=tz)
    try:
        oracle = CronSim(text, after)
        expected = [next(oracle).astimezone(UTC) for _ in range(5)]
    except (CronSimError, StopIteration):
        assume(False)
        return
    t = after
    for want in expected:
        t = expr.next_after(t, tz)
        assert t == want


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zone_and_instant(), st.one_of(random_expressions(), frequent_expressions()))
def test_iteration_strictly_increases(case: tuple[str, datetime], text: str) -> None:
    zone, after = case
    tz = ZoneInfo(zone)
    try:
        expr = CronExpression.parse(text)
    except CronError:
        assume(False)
        return
    t = after
    for _ in range(50):
        try:
            following = expr.next_after(t, tz)
        except CronError:  # only past year 9999
            assert t.year > 9000
            return
        assert following > t
        assert_fires(expr, following, tz)
        if not expr.has_seconds:
            assert following.second == 0
        t = following
