"""The server-clock estimate keeps the measurement with the shortest round trip (its error
bound is smallest) over later ones with longer round trips, unless the clocks really moved
apart or the kept one is old."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from mongo_job_scheduler import _clock
from mongo_job_scheduler._clock import TRUST_FOR, ServerClock

BASE = datetime(2030, 1, 1, tzinfo=timezone.utc)


def sample(clock: ServerClock, offset_ms: float, rtt_ms: float) -> None:
    """A hello sent at BASE and answered after ``rtt_ms``, the server reading its clock
    half-way, ``offset_ms`` ahead of the local clock."""
    sent = BASE
    received = sent + timedelta(milliseconds=rtt_ms)
    server = sent + timedelta(milliseconds=rtt_ms / 2 + offset_ms)
    clock.record(sent, {"localTime": server}, received)


def ms(delta: timedelta) -> float:
    return delta.total_seconds() * 1000


def test_a_slow_round_trip_does_not_replace_a_fast_one_it_agrees_with() -> None:
    clock = ServerClock()
    sample(clock, offset_ms=3.0, rtt_ms=1.0)
    sample(clock, offset_ms=40.0, rtt_ms=120.0)  # off by 37 ms, within its 60 ms bound
    assert ms(clock.offset) == pytest.approx(3.0)
    assert not clock.stale  # it was measured: the next measurement is not due yet


def test_a_faster_round_trip_replaces_the_kept_one() -> None:
    clock = ServerClock()
    sample(clock, offset_ms=30.0, rtt_ms=80.0)
    sample(clock, offset_ms=2.0, rtt_ms=2.0)
    assert ms(clock.offset) == pytest.approx(2.0)


def test_a_real_clock_change_is_followed_even_through_a_slow_round_trip() -> None:
    clock = ServerClock()
    sample(clock, offset_ms=0.0, rtt_ms=1.0)
    sample(clock, offset_ms=5_000.0, rtt_ms=100.0)  # 5 s apart: beyond both bounds
    assert ms(clock.offset) == pytest.approx(5_000.0)


def test_an_old_measurement_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ServerClock()
    sample(clock, offset_ms=3.0, rtt_ms=1.0)
    later = time.monotonic() + TRUST_FOR + 1
    monkeypatch.setattr(_clock.time, "monotonic", lambda: later)
    sample(clock, offset_ms=40.0, rtt_ms=120.0)
    assert ms(clock.offset) == pytest.approx(40.0)
