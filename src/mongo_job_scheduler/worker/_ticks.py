"""Wall-clock ticks: the periodic writes of a worker (fleet registrations, lease renewals) go
out at multiples of their interval on the wall clock, the same instants in every process, so
a fleet's writes reach the server together. Each write wakes every change stream open on the
server (the streams of every idle worker) to read it: writes spread over time wake them once
per write, writes that arrive together wake them about once per batch."""

from __future__ import annotations

import time

__all__ = ["until_tick"]


def until_tick(every: float, now: float | None = None) -> float:
    """Seconds from ``now`` (``time.time()`` by default) to the next multiple of ``every``
    seconds since the epoch: in ``(0, every]``, a whole ``every`` when ``now`` is on a tick."""
    now = time.time() if now is None else now
    return every - now % every
