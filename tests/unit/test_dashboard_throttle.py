"""The dashboard's failure throttle: a burst of wrong tokens, then one more try every few
seconds, per client address."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")

from mongo_job_scheduler.dashboard._throttle import (
    MAX_CLIENTS,
    FailureThrottle,
    client_key,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_try_per_interval() -> None:
    clock = Clock()
    throttle = FailureThrottle(10, clock)  # one try earned back every 6 s
    for _ in range(10):
        assert throttle.wait("a") == 0
        throttle.failed("a")
    assert throttle.wait("a") == 6
    assert throttle.wait("b") == 0  # another client is not held up
    clock.now += 5.5
    assert throttle.wait("a") == 1
    clock.now += 0.5
    assert throttle.wait("a") == 0
    throttle.failed("a")
    assert throttle.wait("a") == 6
    clock.now += 3600  # a quiet hour gives the whole burst back, no more
    for _ in range(10):
        assert throttle.wait("a") == 0
        throttle.failed("a")
    assert throttle.wait("a") > 0


def test_the_followed_clients_are_bounded() -> None:
    throttle = FailureThrottle(1, Clock())
    for n in range(MAX_CLIENTS + 5):
        throttle.failed(f"c{n}")
    assert len(throttle._buckets) == MAX_CLIENTS
    assert throttle.wait("c0") == 0  # the quietest were dropped
    assert throttle.wait(f"c{MAX_CLIENTS + 4}") > 0


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        (None, "unknown"),
        ("testclient", "testclient"),
    ],
)
def test_clients_are_told_apart_by_address_and_ipv6_network(host: str | None, key: str) -> None:
    assert client_key(host) == key
