"""The database server's clock, estimated from the local clock plus a measured offset.

Leases and due checks follow the server's clock: the authoritative checks run on the
server with ``$$NOW``; this estimate serves the queries that choose candidates and the times a
producer writes (``createdAt``, an immediate ``nextRunAt``), so a worker or producer whose clock
is minutes off behaves as if it were right.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from ._durations import as_aware_utc

REFRESH_EVERY = 30.0
"""Seconds between two measurements of the offset."""

_JITTER = timedelta(seconds=1)
"""Backward steps smaller than this are measurement noise, not clock changes."""

TRUST_FOR = 300.0
"""Seconds for which the offset of a measurement with a short round trip is kept over later
measurements with longer round trips (a measurement is off by up to half its round trip, and
round trips grow on a loaded machine)."""
DRIFT = 2e-5
"""How fast (seconds per second) the error bound of a kept measurement is taken to grow with
its age: the two clocks may drift apart a little between measurements."""


class ServerClock:
    """Local time corrected by the last measured offset to the server's clock."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self.measured_at: float | None = None
        self._last: datetime | None = None
        self._error = 0.0  # seconds: the error bound of the offset kept
        self._kept_at = 0.0  # time.monotonic() of the measurement kept

    @property
    def stale(self) -> bool:
        """Whether the offset should be measured again."""
        return self.measured_at is None or time.monotonic() - self.measured_at > REFRESH_EVERY

    def record(self, sent: datetime, hello: dict[str, Any], received: datetime) -> None:
        """Update the offset from a ``hello`` reply (its ``localTime``) and the local send and
        receive times around it (the server read its clock about half-way, so the offset is
        off by up to half the round trip, plus the reply's millisecond precision).

        A measurement replaces the offset kept unless its error bound is larger than the kept
        one's (grown by ``DRIFT`` with its age) while the kept one is younger than
        ``TRUST_FOR`` and both agree within their bounds: on a loaded machine, one slow round
        trip does not spoil a good estimate, and a real clock change is still followed."""
        server = hello.get("localTime")
        if not isinstance(server, datetime):
            return
        now = time.monotonic()
        error = max((received - sent).total_seconds(), 0.0) / 2 + 0.0005
        offset = as_aware_utc(server) - (sent + (received - sent) / 2)
        self.measured_at = now
        if self._kept_at:
            age = now - self._kept_at
            kept = self._error + DRIFT * age
            apart = abs((offset - self.offset).total_seconds())
            if error > kept and age < TRUST_FOR and apart <= error + kept:
                return
        self.offset = offset
        self._error = error
        self._kept_at = now

    def now(self) -> datetime:
        """The estimated server time, aware UTC, millisecond precision. It does not step
        back by the jitter of a new offset measurement (under a second), so jobs scheduled
        one after another are due in that order; a real clock step is followed."""
        now = datetime.now(timezone.utc) + self.offset
        now = now.replace(microsecond=(now.microsecond // 1000) * 1000)
        if self._last is not None and self._last - _JITTER < now < self._last:
            return self._last
        self._last = now
        return now
