"""Pure tests of repeating schedules: parsing, next slots, the fixed grid,
missed slots and misfire plans."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mongo_job_scheduler import Repeat, RunPlan, ValidationError

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def at(**kwargs: float) -> datetime:
    return T0 + timedelta(**kwargs)


# -- parse -------------------------------------------------------------------------------------


def test_parse_every_is_seconds_and_stored_in_milliseconds() -> None:
    rep = Repeat.parse({"every": 300})
    assert rep.every == timedelta(minutes=5)
    assert rep.cron is None
    assert rep.to_document() == {"every": 300_000}
    assert Repeat.from_document(rep.to_document()) == rep


def test_parse_every_ms_is_milliseconds() -> None:
    assert Repeat.parse({"everyMs": 300_000}) == Repeat.parse({"every": 300})
    assert Repeat.parse({"everyMs": 100}).every == timedelta(milliseconds=100)
    assert Repeat.parse({"everyMs": 150.4}).to_document() == {"every": 150}


def test_parse_refuses_whole_thousands_of_seconds_as_probably_milliseconds() -> None:
    with pytest.raises(ValidationError) as info:
        Repeat.parse({"every": 60_000})
    assert str(info.value) == (
        "repeat.every: 60000 seconds (16 h 40 min) looks like milliseconds; give seconds"
        " (every=60), a timedelta, or milliseconds under everyMs"
    )
    # Not a whole multiple of 1,000, or a timedelta: seconds, as given.
    assert Repeat.parse({"every": 1500}).every == timedelta(seconds=1500)
    assert Repeat.parse({"every": 999}).every == timedelta(seconds=999)
    assert Repeat.parse({"every": timedelta(seconds=1000)}).every == timedelta(seconds=1000)
    # The typed constructor takes seconds, never milliseconds: no guard there.
    assert Repeat(every=1000).every == timedelta(seconds=1000)  # type: ignore[arg-type]


def test_parse_every_accepts_a_timedelta() -> None:
    assert Repeat.parse({"every": timedelta(seconds=2)}).every == timedelta(seconds=2)


def test_constructor_every_takes_seconds() -> None:
    assert Repeat(every=1.5).every == timedelta(milliseconds=1500)  # type: ignore[arg-type]


def test_parse_cron_with_zone_and_policies_round_trips() -> None:
    value = {
        "cron": "0 9 * * *",
        "timezone": "Asia/Kolkata",
        "misfire": "all",
        "catchUpLimit": 5,
    }
    rep = Repeat.parse(value)
    assert (rep.cron, rep.timezone, rep.misfire, rep.catch_up_limit) == (
        "0 9 * * *",
        "Asia/Kolkata",
        "all",
        5,
    )
    assert rep.to_document() == value
    assert Repeat.parse(rep.to_document()) == rep


def test_defaults_are_not_stored() -> None:
    assert Repeat.parse({"cron": "@hourly"}).to_document() == {"cron": "@hourly"}
    rep = Repeat.parse({"every": 1, "misfire": "once", "catchUpLimit": 100})
    assert rep.to_document() == {"every": 1000}


def test_parse_returns_repeat_instances_as_is() -> None:
    rep = Repeat(cron="* * * * *")
    assert Repeat.parse(rep) is rep


def test_minimum_interval_is_100_ms() -> None:
    assert Repeat.parse({"every": 0.1}).every == timedelta(milliseconds=100)
    assert Repeat.parse({"everyMs": 100}).every == timedelta(milliseconds=100)
    with pytest.raises(ValidationError):
        Repeat.parse({"every": 0.099})
    with pytest.raises(ValidationError):
        Repeat.parse({"everyMs": 99})


def test_odd_millisecond_intervals_are_stored_exactly() -> None:
    # 262.143 s * 1000 is 262142.999... in floating point; the stored value must not lose 1 ms.
    assert Repeat(every=timedelta(milliseconds=262_143)).to_document() == {"every": 262_143}


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({}, "repeat"),
        ({"cron": "* * * * *", "every": 1}, "repeat"),
        ({"cron": "* * * * *", "everyMs": 1000}, "repeat"),
        ({"every": 1, "interval": 5}, "repeat"),
        ({"cron": "* * * * *", "tz": "UTC"}, "repeat"),
        ("*/5 * * * *", "repeat"),
        (5000, "repeat"),
        (None, "repeat"),
        ({"every": 0}, "repeat.every"),
        ({"every": -1}, "repeat.every"),
        ({"every": 0.05}, "repeat.every"),
        ({"every": 1000}, "repeat.every"),
        ({"every": 60_000.0}, "repeat.every"),
        ({"every": 1, "everyMs": 1000}, "repeat.every"),
        ({"everyMs": 50}, "repeat.everyMs"),
        ({"everyMs": -1000}, "repeat.everyMs"),
        ({"everyMs": "1000"}, "repeat.everyMs"),
        ({"everyMs": timedelta(seconds=1)}, "repeat.everyMs"),
        ({"everyMs": math.nan}, "repeat.everyMs"),
        ({"every": math.nan}, "repeat.every"),
        ({"every": math.inf}, "repeat.every"),
        ({"every": 1e20}, "repeat.every"),
        ({"every": "10"}, "repeat.every"),
        ({"every": True}, "repeat.every"),
        ({"every": timedelta(milliseconds=10)}, "repeat.every"),
        ({"every": timedelta(seconds=-5)}, "repeat.every"),
        ({"cron": "not a cron"}, "repeat.cron"),
        ({"cron": "61 * * * *"}, "repeat.cron"),
        ({"cron": "* * * *"}, "repeat.cron"),
        ({"cron": "0 0 30 2 *"}, "repeat.cron"),
        ({"cron": "@reboot"}, "repeat.cron"),
        ({"cron": 5}, "repeat.cron"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "repeat.timezone"),
        ({"cron": "* * * * *", "timezone": ""}, "repeat.timezone"),
        ({"cron": "* * * * *", "timezone": 3}, "repeat.timezone"),
        ({"every": 1, "misfire": "sometimes"}, "repeat.misfire"),
        ({"every": 1, "catchUpLimit": 0}, "repeat.catchUpLimit"),
        ({"every": 1, "catchUpLimit": 2.5}, "repeat.catchUpLimit"),
        ({"every": 1, "catchUpLimit": True}, "repeat.catchUpLimit"),
    ],
)
def test_parse_rejects(value: object, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Repeat.parse(value)
    assert info.value.field == field


def test_from_document_is_lenient() -> None:
    assert Repeat.from_document(None) is None
    assert Repeat.from_document({}) is None
    assert Repeat.from_document({"cron": "bad"}) is None
    # Node documents may carry nulls and extra keys; their ``every`` is milliseconds.
    assert Repeat.from_document({"every": 5000, "cron": None, "extra": 1}) == Repeat.parse(
        {"every": 5}
    )
    assert Repeat.from_document({"every": 60_000}) == Repeat(every=timedelta(minutes=1))
    # Only stored keys are read: a stored ``everyMs`` is not part of the format.
    assert Repeat.from_document({"everyMs": 5000}) is None


# -- next_after --------------------------------------------------------------------------------


def test_interval_next_after_adds_the_interval() -> None:
    rep = Repeat.parse({"every": 2.5})
    assert rep.next_after(T0) == at(seconds=2.5)


def test_next_after_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError):
        Repeat.parse({"every": 1}).next_after(datetime(2024, 1, 1))


def test_next_after_returns_utc() -> None:
    paris = T0.astimezone(ZoneInfo("Europe/Paris"))
    nxt = Repeat.parse({"cron": "0 * * * *"}).next_after(paris)
    assert nxt.utcoffset() == timedelta(0)
    assert nxt == at(hours=1)


def test_cron_is_strictly_after() -> None:
    rep = Repeat.parse({"cron": "0 12 * * *"})
    assert rep.next_after(T0) == at(days=1)
    assert rep.next_after(T0 - timedelta(microseconds=1)) == T0


def test_cron_in_a_zone() -> None:
    rep = Repeat.parse({"cron": "0 9 * * *", "timezone": "Asia/Kolkata"})
    # 09:00 IST is 03:30 UTC.
    assert rep.next_after(T0) == datetime(2024, 5, 2, 3, 30, tzinfo=UTC)


def test_cron_zone_defaults_to_the_scheduler_default_then_utc() -> None:
    rep = Repeat.parse({"cron": "0 9 * * *"})
    assert rep.next_after(T0) == datetime(2024, 5, 2, 9, 0, tzinfo=UTC)
    assert rep.next_after(T0, "America/New_York") == datetime(2024, 5, 1, 13, 0, tzinfo=UTC)
    own = Repeat.parse({"cron": "0 9 * * *", "timezone": "Asia/Tokyo"})
    assert own.next_after(T0, "America/New_York") == datetime(2024, 5, 2, 0, 0, tzinfo=UTC)


def test_six_field_cron_has_seconds() -> None:
    rep = Repeat.parse({"cron": "*/15 * * * * *"})
    assert rep.next_after(at(seconds=1)) == at(seconds=15)
    assert rep.next_after(at(seconds=15)) == at(seconds=30)
    every_second = Repeat.parse({"cron": "* * * * * *"})
    assert every_second.next_after(at(milliseconds=400)) == at(seconds=1)


def test_macros() -> None:
    assert Repeat.parse({"cron": "@hourly"}).next_after(at(minutes=1)) == at(hours=1)
    assert Repeat.parse({"cron": "@daily"}).next_after(T0) == datetime(2024, 5, 2, tzinfo=UTC)


def test_spring_forward_fires_once_after_the_gap() -> None:
    # 02:30 does not exist in Paris on 2024-03-31 (02:00 -> 03:00): fire at 03:00 CEST.
    rep = Repeat.parse({"cron": "30 2 * * *", "timezone": "Europe/Paris"})
    first = rep.next_after(datetime(2024, 3, 30, 12, tzinfo=UTC))
    assert first == datetime(2024, 3, 31, 1, 0, tzinfo=UTC)
    assert rep.next_after(first) == datetime(2024, 4, 1, 0, 30, tzinfo=UTC)


def test_fall_back_fires_once_at_the_first_occurrence() -> None:
    # 02:30 occurs twice in Paris on 2024-10-27: fire at the first one (00:30 UTC) only.
    rep = Repeat.parse({"cron": "30 2 * * *", "timezone": "Europe/Paris"})
    first = rep.next_after(datetime(2024, 10, 26, 12, tzinfo=UTC))
    assert first == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)
    assert rep.next_after(first) == datetime(2024, 10, 28, 1, 30, tzinfo=UTC)


def test_first_slot_is_the_first_after_now() -> None:
    assert Repeat.parse({"every": 60}).first_slot(T0) == at(minutes=1)
    assert Repeat.parse({"cron": "*/5 * * * *"}).first_slot(at(minutes=1)) == at(minutes=5)
    assert Repeat.parse({"cron": "*/5 * * * *"}).first_slot(T0) == at(minutes=5)


# -- latest_at_or_before -----------------------------------------------------------------------


def test_latest_at_or_before_interval() -> None:
    rep = Repeat.parse({"every": 10})
    assert rep.latest_at_or_before(T0, at(seconds=35)) == at(seconds=30)
    assert rep.latest_at_or_before(T0, at(seconds=30)) == at(seconds=30)
    assert rep.latest_at_or_before(T0, at(seconds=9)) == T0
    assert rep.latest_at_or_before(T0, T0 - timedelta(hours=1)) == T0


def test_latest_at_or_before_cron() -> None:
    rep = Repeat.parse({"cron": "0 * * * *"})
    assert rep.latest_at_or_before(T0, at(hours=5, minutes=59)) == at(hours=5)
    assert rep.latest_at_or_before(T0, at(hours=5)) == at(hours=5)
    assert rep.latest_at_or_before(T0, at(minutes=59)) == T0


def test_latest_at_or_before_cron_far_behind() -> None:
    rep = Repeat.parse({"cron": "*/10 * * * * *"})
    now = at(days=40, seconds=7)
    assert rep.latest_at_or_before(T0, now) == at(days=40)


# -- plan --------------------------------------------------------------------------------------

EVERY = timedelta(minutes=1)


def interval(misfire: str = "once", limit: int = 100) -> Repeat:
    return Repeat.parse({"every": 60, "misfire": misfire, "catchUpLimit": limit})


@pytest.mark.parametrize("misfire", ["once", "skip", "all"])
def test_plan_on_time_runs_its_slot(misfire: str) -> None:
    rep = interval(misfire)
    assert rep.plan(T0, at(seconds=1)) == RunPlan(run=True, slot=T0)
    assert rep.plan(T0, at(seconds=59, milliseconds=999)) == RunPlan(run=True, slot=T0)


def test_plan_once_runs_the_latest_missed_slot() -> None:
    plan = interval("once").plan(T0, at(minutes=10, seconds=30))
    assert plan == RunPlan(run=True, slot=at(minutes=10))


def test_plan_skip_runs_nothing_and_waits_for_the_next_future_slot() -> None:
    plan = interval("skip").plan(T0, at(minutes=10, seconds=30))
    assert plan == RunPlan(run=False, slot=at(minutes=11))


def test_plan_skip_when_exactly_on_a_later_slot() -> None:
    plan = interval("skip").plan(T0, at(minutes=10))
    assert not plan.run
    assert plan.slot == at(minutes=11)


def test_plan_all_runs_the_oldest_missed_slot_first() -> None:
    plan = interval("all", 3).plan(T0, at(minutes=10, seconds=30))
    assert plan == RunPlan(run=True, slot=T0, caught_up=True)


def test_plan_all_walks_missed_slots_up_to_the_cap_then_acts_as_once() -> None:
    rep = interval("all", 3)
    now = at(minutes=10, seconds=30)
    slot, in_a_row, ran = T0, 0, []
    for _ in range(20):
        plan = rep.plan(slot, now, caught_up_in_a_row=in_a_row)
        assert plan.run
        ran.append(plan.slot)
        in_a_row = in_a_row + 1 if plan.caught_up else 0
        slot = rep.next_after(plan.slot)
        if slot > now:
            break
    assert ran == [T0, at(minutes=1), at(minutes=2), at(minutes=10)]
    assert slot == at(minutes=11)


def test_plan_all_without_reaching_the_cap_runs_every_missed_slot() -> None:
    rep = interval("all", 100)
    now = at(minutes=10, seconds=30)
    slot, in_a_row, ran = T0, 0, []
    while slot <= now:
        plan = rep.plan(slot, now, caught_up_in_a_row=in_a_row)
        ran.append(plan.slot)
        in_a_row = in_a_row + 1 if plan.caught_up else 0
        slot = rep.next_after(plan.slot)
    assert ran == [at(minutes=k) for k in range(11)]


def test_plan_cron_once() -> None:
    rep = Repeat.parse({"cron": "0 * * * *"})
    assert rep.plan(T0, at(hours=3, minutes=5)) == RunPlan(run=True, slot=at(hours=3))


def test_plan_cron_skip_uses_the_zone() -> None:
    rep = Repeat.parse({"cron": "0 9 * * *", "timezone": "Asia/Kolkata", "misfire": "skip"})
    slot = datetime(2024, 5, 1, 3, 30, tzinfo=UTC)
    plan = rep.plan(slot, datetime(2024, 5, 4, 4, 0, tzinfo=UTC))
    assert plan == RunPlan(run=False, slot=datetime(2024, 5, 5, 3, 30, tzinfo=UTC))


# -- properties --------------------------------------------------------------------------------

intervals = st.integers(100, 10**9).map(lambda ms: Repeat.parse({"everyMs": ms}))
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=(d.microsecond // 1000) * 1000))
crons = st.sampled_from(
    ["* * * * *", "*/7 * * * *", "0 9 * * 1-5", "*/10 * * * * *", "30 2 * * *", "@hourly"]
)
zones = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"])


@given(intervals, instants, st.integers(0, 10**12))
def test_interval_latest_slot_is_on_the_grid_and_the_last_one(
    rep: Repeat, slot: datetime, offset_ms: int
) -> None:
    assert rep.every is not None
    now = slot + timedelta(milliseconds=offset_ms)
    latest = rep.latest_at_or_before(slot, now)
    assert slot <= latest <= now
    assert (latest - slot) % rep.every == timedelta(0)
    assert rep.next_after(latest) > now


@settings(max_examples=60, deadline=None)
@given(crons, zones, instants, st.integers(0, 3 * 86_400_000))
def test_cron_latest_slot_is_a_slot_and_the_last_one(
    expr: str, zone: str, start: datetime, offset_ms: int
) -> None:
    rep = Repeat.parse({"cron": expr, "timezone": zone})
    slot = rep.next_after(start)
    now = slot + timedelta(milliseconds=offset_ms)
    latest = rep.latest_at_or_before(slot, now)
    assert slot <= latest <= now
    assert rep.next_after(latest) > now
    # latest is a real slot: the slot before it leads to it.
    if latest != slot:
        assert rep.next_after(latest - timedelta(microseconds=1)) == latest


@given(intervals, instants, st.integers(0, 10**11), st.sampled_from(["once", "skip", "all"]))
def test_plan_properties(rep: Repeat, slot: datetime, offset_ms: int, misfire: str) -> None:
    assert rep.every is not None
    rep = dataclasses.replace(rep, misfire=misfire, catch_up_limit=3)  # type: ignore[arg-type]
    now = slot + timedelta(milliseconds=offset_ms)
    plan = rep.plan(slot, now)
    on_time = rep.next_after(slot) > now
    # Whatever happens, the chosen slot stays on the grid of the first slot.
    assert (plan.slot - slot) % rep.every == timedelta(0)
    if on_time:
        assert plan == RunPlan(run=True, slot=slot)
    elif misfire == "skip":
        assert not plan.run
        assert now < plan.slot <= now + rep.every
    elif misfire == "all":
        assert plan == RunPlan(run=True, slot=slot, caught_up=True)
    else:
        assert plan.run
        assert plan.slot <= now < rep.next_after(plan.slot)


@given(intervals, instants, st.integers(1, 50))
def test_interval_grid_never_drifts(rep: Repeat, first: datetime, runs: int) -> None:
    assert rep.every is not None
    slot = first
    for _ in range(runs):
        slot = rep.next_after(slot)
    assert slot == first + runs * rep.every


@settings(max_examples=50, deadline=None)
@given(crons, zones, instants)
def test_cron_slots_strictly_increase(expr: str, zone: str, start: datetime) -> None:
    rep = Repeat.parse({"cron": expr, "timezone": zone})
    previous = start
    for _ in range(5):
        nxt = rep.next_after(previous)
        assert nxt > previous
        assert nxt.utcoffset() == timedelta(0)
        previous = nxt
