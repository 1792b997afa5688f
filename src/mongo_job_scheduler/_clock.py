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


class ServerClock:
    """Local time corrected by the last measured offset to the server's clock."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self.measured_at: float | None = None
        self._last: datetime | None = None

    @property
    def stale(self) -> bool:
        """Whether the offset should be measured again."""
        return self.measured_at is None or time.monotonic() - self.measured_at > REFRESH_EVERY

    def record(self, sent: datetime, hello: dict[str, Any], received: datetime) -> None:
        """Update the offset from a ``hello`` reply (its ``localTime``) and the local send and
        receive times around it (the server read its clock about half-way)."""
        server = hello.get("localTime")
        if not isinstance(server, datetime):
            return
        midpoint = sent + (received - sent) / 2
        self.offset = as_aware_utc(server) - midpoint
        self.measured_at = time.monotonic()

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
