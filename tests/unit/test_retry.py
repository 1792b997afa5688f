"""Pure tests of retry policies: parsing, stored form and backoff maths."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mongo_job_scheduler import Retry, ValidationError

LONGEST = timedelta(days=36_500)
"""The longest wait the library computes (100 years): longer ones overflow datetimes."""

# -- delay_for: exact values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backoff", "expected_seconds"),
    [
        ("fixed", [2, 2, 2, 2, 2]),
        ("linear", [2, 4, 6, 8, 10]),
        ("exponential", [2, 4, 8, 16, 32]),
    ],
)
def test_delay_for_each_backoff(backoff: str, expected_seconds: list[int]) -> None:
    policy = Retry(max_attempts=6, delay=timedelta(seconds=2), backoff=backoff)  # type: ignore[arg-type]
    got = [policy.delay_for(n).total_seconds() for n in range(1, 6)]
    assert got == pytest.approx(expected_seconds)


def test_delay_for_caps_at_max_delay() -> None:
    policy = Retry(
        max_attempts=10,
        delay=timedelta(seconds=1),
        backoff="exponential",
        max_delay=timedelta(seconds=5),
    )
    got = [policy.delay_for(n).total_seconds() for n in range(1, 7)]
    assert got == pytest.approx([1, 2, 4, 5, 5, 5])


def test_delay_for_linear_cap() -> None:
    policy = Retry(5, timedelta(seconds=3), "linear", max_delay=timedelta(seconds=7))
    assert [policy.delay_for(n).total_seconds() for n in (1, 2, 3, 4)] == pytest.approx(
        [3, 6, 7, 7]
    )


def test_delay_for_zero_delay_is_zero_for_every_backoff() -> None:
    for backoff in ("fixed", "linear", "exponential"):
        policy = Retry(5, timedelta(0), backoff)  # type: ignore[arg-type]
        assert all(policy.delay_for(n) == timedelta(0) for n in range(1, 10))


def test_delay_for_huge_attempt_does_not_overflow_when_capped() -> None:
    policy = Retry(10**6, timedelta(seconds=1), "exponential", max_delay=timedelta(hours=1))
    assert policy.delay_for(10_000) == timedelta(hours=1)


def test_uncapped_exponential_stays_representable() -> None:
    # 1 s * 2**61 overflows timedelta; the wait is clamped to the longest accepted duration.
    policy = Retry(100, timedelta(seconds=1), "exponential")
    assert policy.delay_for(62) == LONGEST
    assert policy.delay_for(90) == LONGEST
    jittered = Retry(100, timedelta(seconds=1), "exponential", jitter=True)
    assert timedelta(0) <= jittered.delay_for(90, rng=random.Random(3)) <= LONGEST


def test_delay_for_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError):
        Retry(3, timedelta(seconds=1)).delay_for(0)


def test_jitter_uses_rng_and_stays_in_range() -> None:
    policy = Retry(5, timedelta(seconds=10), "fixed", jitter=True)
    rng = random.Random(1234)
    values = [policy.delay_for(1, rng=rng).total_seconds() for _ in range(200)]
    assert all(0 <= v <= 10 for v in values)
    # Full jitter spreads the waits over the whole range, not around the top.
    assert min(values) < 2 and max(values) > 8
    # Same seed, same draws: reproducible.
    again = [policy.delay_for(1, rng=random.Random(1234)).total_seconds() for _ in range(1)]
    assert again[0] == values[0]


def test_without_jitter_rng_is_ignored() -> None:
    policy = Retry(5, timedelta(seconds=10), "fixed")
    assert policy.delay_for(1, rng=random.Random(1)) == timedelta(seconds=10)


def test_allows_another_counts_total_executions() -> None:
    policy = Retry.parse(3)
    assert policy.allows_another(1)
    assert policy.allows_another(2)
    assert not policy.allows_another(3)
    assert not Retry.parse(1).allows_another(1)


# -- parse -------------------------------------------------------------------------------------


def test_parse_int_is_total_executions() -> None:
    policy = Retry.parse(4)
    assert policy.max_attempts == 4
    assert policy.delay == timedelta(0)
    assert policy.backoff == "fixed"


def test_parse_zero_means_a_single_execution() -> None:
    assert Retry.parse(0).max_attempts == 1


def test_parse_returns_retry_instances_as_is() -> None:
    policy = Retry(2, timedelta(seconds=1))
    assert Retry.parse(policy) is policy


@pytest.mark.parametrize(
    "given",
    [
        pytest.param({"delay": 1.5, "maxDelay": 60}, id="seconds"),
        pytest.param({"delay": timedelta(seconds=1.5), "maxDelay": timedelta(minutes=1)}, id="td"),
        pytest.param({"delayMs": 1500, "maxDelayMs": 60000}, id="milliseconds-under-ms-keys"),
    ],
)
def test_parse_mapping_durations(given: dict[str, object]) -> None:
    policy = Retry.parse({"maxAttempts": 5, "backoff": "exponential", "jitter": True, **given})
    assert policy == Retry(
        max_attempts=5,
        delay=timedelta(milliseconds=1500),
        backoff="exponential",
        max_delay=timedelta(seconds=60),
        jitter=True,
    )
    assert policy.to_document() == {
        "maxAttempts": 5,
        "delay": 1500,
        "backoff": "exponential",
        "maxDelay": 60000,
        "jitter": True,
    }


def test_parse_accepts_integral_float_max_attempts() -> None:
    assert Retry.parse({"maxAttempts": 3.0}).max_attempts == 3


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (-1, "retry"),
        (True, "retry"),
        ("3", "retry"),
        (3.5, "retry"),
        (None, "retry"),
        ([3], "retry"),
        ({"maxAttempts": 3, "tries": 1}, "retry"),
        ({"delay": 1}, "retry.maxAttempts"),
        ({"maxAttempts": 0}, "retry.maxAttempts"),
        ({"maxAttempts": -2}, "retry.maxAttempts"),
        ({"maxAttempts": 2.5}, "retry.maxAttempts"),
        ({"maxAttempts": "3"}, "retry.maxAttempts"),
        ({"maxAttempts": True}, "retry.maxAttempts"),
        ({"maxAttempts": 3, "delay": -1}, "retry.delay"),
        ({"maxAttempts": 3, "delay": math.nan}, "retry.delay"),
        ({"maxAttempts": 3, "delay": math.inf}, "retry.delay"),
        ({"maxAttempts": 3, "delay": "1s"}, "retry.delay"),
        ({"maxAttempts": 3, "delay": timedelta(seconds=-1)}, "retry.delay"),
        ({"maxAttempts": 3, "delay": 1000}, "retry.delay"),
        ({"maxAttempts": 3, "delay": 5000.0}, "retry.delay"),
        ({"maxAttempts": 3, "delay": 1, "delayMs": 1000}, "retry.delay"),
        ({"maxAttempts": 3, "delayMs": -1}, "retry.delayMs"),
        ({"maxAttempts": 3, "delayMs": "1000"}, "retry.delayMs"),
        ({"maxAttempts": 3, "delayMs": timedelta(seconds=1)}, "retry.delayMs"),
        ({"maxAttempts": 3, "maxDelay": 60_000}, "retry.maxDelay"),
        ({"maxAttempts": 3, "maxDelay": 60, "maxDelayMs": 60_000}, "retry.maxDelay"),
        ({"maxAttempts": 3, "maxDelayMs": math.nan}, "retry.maxDelayMs"),
        ({"maxAttempts": 3, "maxDelay": -1}, "retry.maxDelay"),
        ({"maxAttempts": 3, "maxDelay": math.inf}, "retry.maxDelay"),
        ({"maxAttempts": 3, "delay": 1e20}, "retry.delay"),
        ({"maxAttempts": 3, "maxDelay": 1e20}, "retry.maxDelay"),
        ({"maxAttempts": 3, "backoff": "quadratic"}, "retry.backoff"),
        ({"maxAttempts": 3, "jitter": "yes"}, "retry.jitter"),
        ({"maxAttempts": 3, "jitter": 1}, "retry.jitter"),
    ],
)
def test_parse_rejects(value: object, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Retry.parse(value)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_constructor_validates_too() -> None:
    with pytest.raises(ValidationError):
        Retry(max_attempts=0)
    with pytest.raises(ValidationError):
        Retry(max_attempts=2, delay=timedelta(seconds=-1))
    with pytest.raises(ValidationError):
        Retry(max_attempts=2, max_delay=timedelta(seconds=-1))
    # Seconds are accepted where a timedelta is expected.
    assert Retry(max_attempts=2, delay=1.5).delay == timedelta(seconds=1.5)  # type: ignore[arg-type]


# -- stored form -------------------------------------------------------------------------------


def test_to_document_is_node_compatible_milliseconds() -> None:
    policy = Retry(5, timedelta(seconds=1), "exponential", timedelta(minutes=1), jitter=True)
    assert policy.to_document() == {
        "maxAttempts": 5,
        "delay": 1000,
        "backoff": "exponential",
        "maxDelay": 60000,
        "jitter": True,
    }
    assert Retry.parse(3).to_document() == {"maxAttempts": 3, "delay": 0}


def test_from_document_is_lenient_with_node_documents() -> None:
    assert Retry.from_document(None) is None
    assert Retry.from_document(3) == Retry.parse(3)
    # A Node function delay is dropped by BSON; the rest of the policy survives.
    assert Retry.from_document({"maxAttempts": 4, "delay": None}) == Retry.parse(4)
    assert Retry.from_document({"delay": 500}) == Retry(1, timedelta(milliseconds=500))
    assert Retry.from_document({"maxAttempts": 2, "unknown": True}) == Retry.parse(2)
    assert Retry.from_document({"maxAttempts": -5}) is None
    assert Retry.from_document("nonsense") is None


# -- properties --------------------------------------------------------------------------------

policies = st.builds(
    Retry,
    max_attempts=st.integers(1, 50),
    delay=st.integers(0, 10**7).map(lambda ms: timedelta(milliseconds=ms)),
    backoff=st.sampled_from(["fixed", "linear", "exponential"]),
    max_delay=st.none() | st.integers(0, 10**8).map(lambda ms: timedelta(milliseconds=ms)),
    jitter=st.just(False),
)


@given(policies, st.integers(1, 200))
def test_delay_never_exceeds_cap_and_is_non_negative(policy: Retry, attempt: int) -> None:
    wait = policy.delay_for(attempt)
    assert wait >= timedelta(0)
    if policy.max_delay is not None:
        assert wait <= policy.max_delay


@given(policies, st.integers(1, 100))
def test_delays_never_shrink_with_attempts(policy: Retry, attempt: int) -> None:
    assert policy.delay_for(attempt + 1) >= policy.delay_for(attempt)


@given(policies, st.integers(1, 40))
def test_delay_matches_the_formula(policy: Retry, attempt: int) -> None:
    base = policy.delay.total_seconds()
    factor = {"fixed": 1, "linear": attempt, "exponential": 2 ** (attempt - 1)}[policy.backoff]
    expected = base * factor
    if policy.max_delay is not None:
        expected = min(expected, policy.max_delay.total_seconds())
    expected = min(expected, LONGEST.total_seconds())
    assert policy.delay_for(attempt).total_seconds() == pytest.approx(expected, rel=1e-9, abs=1e-6)


@settings(max_examples=200)
@given(policies, st.integers(1, 100), st.integers(0, 2**32 - 1))
def test_jitter_stays_within_zero_and_the_unjittered_delay(
    policy: Retry, attempt: int, seed: int
) -> None:
    jittered = Retry(
        policy.max_attempts, policy.delay, policy.backoff, policy.max_delay, jitter=True
    )
    ceiling = policy.delay_for(attempt)
    wait = jittered.delay_for(attempt, rng=random.Random(seed))
    assert timedelta(0) <= wait <= ceiling + timedelta(microseconds=1)


@given(policies)
def test_document_round_trip(policy: Retry) -> None:
    assert Retry.from_document(policy.to_document()) == policy
