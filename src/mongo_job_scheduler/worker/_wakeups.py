"""When an idle worker claims again: at once when woken, at timers for jobs due soon, on the
store's change notifications, and otherwise after its poll interval, or after the longer
``SAFETY_POLL`` while the notifications are healthy."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from ..stores.base import Announced, JobStore

__all__ = ["Wakeups"]

WATCH_PAUSE_AFTER = 0.5
"""Seconds of full claims after which a busy worker stops following change notifications."""
MAX_WAKE_AHEAD = 3600.0
"""Jobs due further ahead than this (and than one poll) are left to polling."""
MAX_WAKE_TIMES = 10_000
"""At most this many armed wake-up times per worker (later ones are left to polling)."""
WAKE_RECHECK = 0.05
"""Seconds after a claim that lost the last due jobs at which the worker claims once more: the
server may have refused a job that the worker's estimate of its clock took for due, by a few
milliseconds."""
TIMER_LATE = 0.002
"""Seconds a timer fires after the due time it was armed for, so that by the worker's clock
estimate the job is due when the claim reads it (a loop timer may fire a little early)."""
SPREAD_PER_PEER = 0.002
"""Seconds by which a notification's claims are spread per other live worker: each idle
worker waits a random time up to this times the other workers (at most ``MAX_SPREAD``) before
the claim a notification (or the timer it armed) causes, so the first claim of a fleet's
workers reaches the server alone rather than with every other worker's, and starts the job
about as soon as a lone worker would. A worker's own writes wake it without delay."""
MAX_SPREAD = 0.2
"""Seconds: the longest spread, whatever the size of the fleet."""

SAFETY_POLL = 30.0
"""Seconds between the claims of an idle worker (or ``poll_interval``, if longer) while the
store's change notifications are healthy and its last claim held nothing back: a check for
what no notification announces (see :attr:`~..stores.base.ClaimResult.held_back`)."""

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
        self.healthy = False
        """The store's notifications are open and arrive promptly (``watch``'s ``health``)."""
        self.held_back = False
        """The last claim said due jobs may wait that no notification will announce."""
        self._ahead_until = 0.0  # time.monotonic() up to which the last look-ahead looked
        self._ahead_at: float | None = None  # the instant it armed a timer for, if any
        self._health_reported = _takes_health(store.watch)
        self._peers = 0  # other live workers on the store, as last counted
        self._spread_wake: asyncio.TimerHandle | None = None
        self._announced: list[Announced | None] = []  # due now, per notification (at most 2)

    @property
    def notified(self) -> bool:
        """Whether the store pushes notifications (otherwise the worker relies on polling)."""
        return self._watch_supported

    def idle_interval(self) -> float:
        """Seconds between two claims of an idle worker: ``poll_interval``, or ``SAFETY_POLL``
        (if longer) while notifications are healthy and the last claim held nothing back."""
        if self.healthy and not self.held_back:
            return max(self.poll_interval, SAFETY_POLL)
        return self.poll_interval

    def wake(self) -> None:
        """A job may have become due now: claim at once."""
        self.event.set()

    def wake_in(self, seconds: float, spread: bool = False) -> None:
        """A job becomes due in ``seconds`` (≤ 0: it is due) by the store's clock estimate:
        claim then, sooner than the next idle poll. ``spread``: the news came to every idle
        worker of the fleet (a notification), so claim a random moment later (see
        ``SPREAD_PER_PEER``)."""
        delay = self._spread() if spread else 0.0
        if seconds <= 0 and not delay:
            self.wake()
            return
        if seconds >= self.poll_interval and seconds > MAX_WAKE_AHEAD:
            return  # polling finds it in time; keep the heap small
        loop = asyncio.get_running_loop()
        if seconds <= 0:
            # One pending spread wake-up serves a burst of notifications.
            if self._spread_wake is None or self._spread_wake.when() > loop.time() + delay:
                if self._spread_wake is not None:
                    self._spread_wake.cancel()
                self._spread_wake = loop.call_later(delay, self._on_spread_wake)
            return
        if len(self._times) >= MAX_WAKE_TIMES:
            return
        heapq.heappush(self._times, loop.time() + seconds + TIMER_LATE + delay)
        self._arm_timer()

    def set_fleet_size(self, live: int) -> None:
        """How many workers are live on the store, this one included (counted by the fleet
        registration every minute)."""
        self._peers = max(live - 1, 0)

    def _spread(self) -> float:
        spread = min(SPREAD_PER_PEER * self._peers, MAX_SPREAD)
        return random.uniform(0.0, spread) if spread > 0 else 0.0

    def _notified(self, seconds: float, announced: Announced | None = None) -> None:
        if seconds <= 0 and len(self._announced) < 2:
            self._announced.append(announced)
        self.wake_in(seconds, spread=True)

    def take_announced(self) -> Announced | None:
        """The job announced due by the only notification of a due job since the last call
        (the next claim's), if there was exactly one and it was announced; else ``None``."""
        heard, self._announced = self._announced, []
        return heard[0] if len(heard) == 1 else None

    def _on_spread_wake(self) -> None:
        self._spread_wake = None
        self.wake()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or until woken."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout=seconds)

    async def look_ahead(self, names: Sequence[str] | None, until: float, since: datetime) -> None:
        """After an empty claim, an idle worker that will sleep until ``until``
        (``time.monotonic()``) asks when the next job becomes claimable before then (and two
        idle intervals beyond), and arms a timer for that instant: a job stored long before
        its due time, which no notification will announce again, starts on time.

        While notifications are healthy, the answer stays good until its window ends or its
        timer fires (jobs written since are announced), so the claims that notifications
        cause do not look again; without them, every empty claim looks. ``since`` is the
        store's clock from just before the claim: a job that became claimable after the claim
        looked is reported at once."""
        now = time.monotonic()
        if (
            self.healthy
            and until <= self._ahead_until
            and (self._ahead_at is None or now < self._ahead_at)
        ):
            return
        within = max(until - now, 0.0) + 2 * self.idle_interval()
        try:
            seconds = await self.store.next_due(names, timedelta(seconds=within), since)
        except Exception as exc:
            self._ahead_until = 0.0
            self.report(exc, "look-ahead for the next due job failed; polling")
            return
        self._ahead_until = now + within
        self._ahead_at = None if seconds is None else now + seconds
        if seconds is not None:
            self.wake_in(seconds, spread=True)  # every idle worker of the fleet sees it

    def note_claim(self, claimed: int, wanted: int, lost_races: bool, held_back: bool) -> None:
        """Remember whether the claim held jobs back (see ``idle_interval``). Follow
        notifications again when a claim came back short because the queue is drained (idle);
        stop after WATCH_PAUSE_AFTER seconds of claims that came back full, or short only
        because other workers took jobs first (busy): a busy worker claims again as soon as a
        place frees, and not watching spares the server the change stream's work."""
        self.held_back = held_back
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
            self._on_health(False)

    async def close(self) -> None:
        """Stop the timers and the notifications."""
        self.closed = True
        for timer in (self._timer, self._recheck, self._spread_wake):
            if timer is not None:
                timer.cancel()
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)

    async def _watch(self) -> None:
        try:
            if self._health_reported:
                watching = self.store.watch(self._notified, self._on_ready, health=self._on_health)
            else:  # a store written before ``health``: never trusted, the worker polls
                watching = self.store.watch(self._notified, self._on_ready)
            supported = await watching
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._on_health(False)
            self.report(exc, "change notifications stopped; relying on polling")
            return
        self._on_health(False)
        if not supported:
            self._watch_supported = False

    def _on_ready(self) -> None:
        """Notifications (re)started: changes made before may have been missed, so claim now,
        and look ahead again after that claim."""
        self._ahead_until = 0.0
        self.wake()

    def _on_health(self, healthy: bool) -> None:
        """Notifications became healthy (idle claims may be rare again), or not: claim now,
        look ahead again, and poll every ``poll_interval`` until they are healthy again."""
        if healthy == self.healthy:
            return
        self.healthy = healthy
        if not healthy:
            self._ahead_until = 0.0
            if not self.closed:
                self.wake()

    def recheck_soon(self) -> None:
        """Claim once more about ``WAKE_RECHECK`` from now (after a claim that lost the last
        due jobs). One timer serves a burst of such claims: it is moved only when it would
        fire less than half of ``WAKE_RECHECK`` from now. Not needed when the worker polls at
        least that often."""
        if self.idle_interval() <= WAKE_RECHECK or self.closed:
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
        while self._times and self._times[0] <= now + 0.001:  # (TIMER_LATE covers it)
            heapq.heappop(self._times)
        self.wake()
        self._arm_timer()


def _takes_health(watch: Callable[..., object]) -> bool:
    """Whether a store's ``watch`` takes the ``health`` callback (stores written against the
    contract before it do not: their notifications are followed, never trusted)."""
    try:
        parameters = inspect.signature(watch).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "health" or p.kind is p.VAR_KEYWORD for p in parameters)
