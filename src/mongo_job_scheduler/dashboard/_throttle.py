"""How fast one client may get the token wrong: a few failures in a row, then one every few
seconds (a token bucket per client address)."""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from .._errors import ConfigurationError

__all__ = ["FailureThrottle", "check_failures_per_minute", "client_key"]

MAX_CLIENTS = 10_000
"""How many client addresses the throttle follows at once (the longest quiet ones are dropped
first, and a dropped address starts again with a full allowance)."""


def client_key(host: str | None) -> str:
    """The key of a client address: an IPv4 address itself, an IPv6 address's /64 network (one
    host usually holds a whole /64), anything else as given."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class FailureThrottle:
    """Each client may fail ``per_minute`` times in a row; after that one failure more every
    ``60 / per_minute`` seconds. While a client has no failure left, :meth:`wait` says how many
    seconds until it has one, and its token is not checked at all."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, key: str) -> float:
        """The failures ``key`` has left now."""
        entry = self._buckets.get(key)
        if entry is None:
            return self.capacity
        left, at = entry
        return min(self.capacity, left + (self._clock() - at) * self.refill_per_second)

    def wait(self, key: str) -> int:
        """Whole seconds until ``key`` may try a token again (0: it may now)."""
        missing = 1.0 - self._level(key)
        return 0 if missing <= 0 else max(1, math.ceil(missing / self.refill_per_second))

    def failed(self, key: str) -> None:
        """Count a wrong token from ``key``."""
        left = self._level(key) - 1.0
        self._buckets[key] = (left, self._clock())
        self._buckets.move_to_end(key)
        while len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)


def check_failures_per_minute(value: object) -> int:
    """``value`` if it can be a throttle's ``per_minute`` (1 to 10,000); else
    :class:`ConfigurationError` (``failures_per_minute``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError("failures_per_minute", "must be a positive integer")
    if not 1 <= value <= 10_000:
        raise ConfigurationError("failures_per_minute", "must be from 1 to 10,000")
    return value
