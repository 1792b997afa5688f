"""When an idle worker claims again: at once when woken, at timers for jobs due soon, on the
store's change notifications, and otherwise after its poll interval."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

from ..stores.base import JobStore

__all__ = ["Wakeups"]

WATCH_PAUSE_AFTER = 0.5
"""Seconds of full claims after which a busy worker stops following change notifications."""
MAX_WAKE_AHEAD = 3600.0
"""Jobs due further ahead than this (and than one poll) are left to polling."""
MAX_WAKE_TIMES = 10_000
"""At most this many armed wake-up times per worker (later ones are left to polling)."""
WAKE_RECHECK = 0.05
"""Seconds after a wake-up for a due job at which the worker claims once more: the job's due
time and the worker's estimate of the server clock come from estimates that may differ by a
few milliseconds, so the first claim may find the job not quite due yet on the server."""

ErrorReporter = Callable[[BaseException, str], None]


class Wakeups:
    """The worker's alarm clock: ``event`` is set whenever the claim loop should claim now."""

    def __init__(self, store: JobStore, poll_interval: float, report: ErrorReporter) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.report = report
        self.event = asyncio.Event()
        self.closed = False
        self._times: list[float] = []  # heap of loop times at which a job becomes due
        self._timer: asyncio.TimerHandle | None = None
        self._recheck: asyncio.TimerHandle | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._watch_supported = True
        self._busy_since: float | None = None

    @property
    def notified(self) -> bool:
        """Whether the store pushes notifications (otherwise the worker relies on polling)."""
        return self._watch_supported

    def wake(self) -> None:
        """A job may have become due now: claim at once."""
        self.event.set()

    def wake_in(self, seconds: float) -> None:
        """A job becomes due in ``seconds``: claim then (sooner than the next idle poll), and
        once more ``WAKE_RECHECK`` later in case the server's clock is a little behind."""
        if seconds <= 0.001:
            self.wake()
            self._recheck_soon()
            return
        if seconds >= self.poll_interval and seconds > MAX_WAKE_AHEAD:
            return  # polling finds it in time; keep the heap small
        if len(self._times) >= MAX_WAKE_TIMES - 1:
            return
        at = asyncio.get_running_loop().time() + seconds
        heapq.heappush(self._times, at)
        if self.poll_interval > WAKE_RECHECK:
            heapq.heappush(self._times, at + WAKE_RECHECK)
        self._arm_timer()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or until woken."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout=seconds)

    async def look_ahead(self, names: Sequence[str] | None) -> None:
        """Without change notifications, an idle worker asks after each empty claim when the
        next job becomes due before the next poll, and arms a timer for that instant."""
        try:
            seconds = await self.store.next_due(names, timedelta(seconds=self.poll_interval))
        except Exception as exc:
            self.report(exc, "look-ahead for the next due job failed; polling")
            return
        if seconds is not None:
            self.wake_in(seconds)

    def note_claim(self, claimed: int, wanted: int, lost_races: bool) -> None:
        """Follow notifications again when a claim came back short because the queue is
        drained (idle); stop after WATCH_PAUSE_AFTER seconds of claims that came back full, or
        short only because other workers took jobs first (busy): a busy worker claims again as
        soon as a place frees, and not watching spares the server the change stream's work."""
        if claimed < wanted and not lost_races:
            self._busy_since = None
            self.set_watching(True)
            return
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since = now
        elif now - self._busy_since > WATCH_PAUSE_AFTER:
            self.set_watching(False)

    def set_watching(self, on: bool) -> None:
        """Start or stop following the store's notifications."""
        if on and self._watch_supported and not self.closed:
            if self._watch_task is None or self._watch_task.done():
                self._watch_task = asyncio.create_task(self._watch(), name="mjs-watch")
        elif not on and self._watch_task is not None:
            self._watch_task.cancel()
            self._watch_task = None

    async def close(self) -> None:
        """Stop the timers and the notifications."""
        self.closed = True
        for timer in (self._timer, self._recheck):
            if timer is not None:
                timer.cancel()
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)

    async def _watch(self) -> None:
        try:
            supported = await self.store.watch(self.wake_in, self.wake)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.report(exc, "change notifications stopped; relying on polling")
            return
        if not supported:
            self._watch_supported = False

    def _recheck_soon(self) -> None:
        """Wake once more about ``WAKE_RECHECK`` from now. One timer serves a burst of
        immediate wake-ups (a bulk insert notifies once per job): it is moved only when it
        would fire less than half of ``WAKE_RECHECK`` after this wake-up."""
        if self.poll_interval <= WAKE_RECHECK or self.closed:
            return
        loop = asyncio.get_running_loop()
        timer = self._recheck
        if timer is not None and not timer.cancelled():
            if timer.when() >= loop.time() + WAKE_RECHECK / 2:
                return
            timer.cancel()
        self._recheck = loop.call_later(WAKE_RECHECK, self._on_recheck)

    def _on_recheck(self) -> None:
        self._recheck = None
        self.wake()

    def _arm_timer(self) -> None:
        if not self._times or self.closed:
            return
        first = self._times[0]
        if self._timer is not None:
            if self._timer.when() <= first:
                return
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(first, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        while self._times and self._times[0] <= now + 0.001:
            heapq.heappop(self._times)
        self.wake()
        self._arm_timer()
