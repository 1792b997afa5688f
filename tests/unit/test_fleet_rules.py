"""The fleet's upkeep rules: when a worker writes its registration, and in which rounds it
sweeps for unsettled dependants."""

from __future__ import annotations

import random

import pytest

from mongo_job_scheduler.fleet import (
    LIVE_FOR,
    REGISTER_EVERY,
    SWEEPERS_PER_ROUND,
    registration_due,
    sweeps_this_round,
)

IDLE = (("a", "b"), 0)


def test_the_first_registration_is_always_written() -> None:
    assert registration_due(0.0, 1e12, None, IDLE)


def test_an_unchanged_registration_waits_for_its_tick() -> None:
    assert not registration_due(100.0, 120.0, IDLE, IDLE)
    assert registration_due(120.0, 120.0, IDLE, IDLE)
    assert registration_due(130.0, 120.0, IDLE, IDLE)


@pytest.mark.parametrize("shown", [(("a", "b"), 3), (("a",), 0), (None, 0)])
def test_a_changed_registration_is_written_at_once(
    shown: tuple[tuple[str, ...] | None, int],
) -> None:
    assert registration_due(100.0, 120.0, IDLE, shown)


def test_a_live_worker_registers_at_least_twice_within_live_for() -> None:
    assert LIVE_FOR.total_seconds() >= 2 * REGISTER_EVERY


@pytest.mark.parametrize("live", [0, 1, 2, SWEEPERS_PER_ROUND, SWEEPERS_PER_ROUND + 3])
def test_a_small_fleet_sweeps_in_every_round(live: int) -> None:
    assert all(sweeps_this_round(r, offset, live) for r in range(20) for offset in (0, 7, 1 << 29))


@pytest.mark.parametrize("live", [50, 100, 500])
def test_a_large_fleet_sweeps_about_sweepers_per_round_times_per_round(live: int) -> None:
    rng = random.Random(live)
    offsets = [rng.randrange(1 << 30) for _ in range(live)]
    rounds = 2_000
    counts = [sum(sweeps_this_round(r, o, live) for o in offsets) for r in range(rounds)]
    mean = sum(counts) / rounds
    assert SWEEPERS_PER_ROUND * 0.7 <= mean <= SWEEPERS_PER_ROUND * 1.5
    # A round without a sweep is rare (its dependants wait one more round).
    assert sum(c == 0 for c in counts) / rounds < 0.05


def test_each_worker_of_a_large_fleet_sweeps_in_a_fixed_share_of_rounds() -> None:
    live = 40
    every = live // SWEEPERS_PER_ROUND
    swept = [r for r in range(100) if sweeps_this_round(r, 3, live)]
    assert swept == list(range(every - 3, 100, every))
