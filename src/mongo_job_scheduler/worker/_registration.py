"""A running worker's upkeep every ``UPKEEP_EVERY`` seconds, at the wall-clock ticks every
process shares (see :mod:`._ticks`): its entry in the fleet view (registered at start, renewed
every ``REGISTER_EVERY`` seconds, or at the next round when the names it claims or the number
of jobs it runs changed; removed at stop), the sweep of finished jobs whose dependants were not
settled (by about ``SWEEPERS_PER_ROUND`` workers of the fleet in each round), and the warning,
at most once in a while per name, about due jobs that no live worker handles."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sized
from datetime import datetime

from .._version import __version__
from ..fleet import (
    LIVE_FOR,
    REGISTER_EVERY,
    WorkerInfo,
    registration_due,
    sweeps_this_round,
    unhandled,
)
from ..stores.base import JobStore
from ..tasks import TaskRegistry
from ._ticks import until_tick

__all__ = ["Registration"]

logger = logging.getLogger("mongo_job_scheduler")

ErrorReporter = Callable[[BaseException, str], None]

UNREGISTER_WITHIN = 2.0
"""Seconds a stopping worker spends at most removing its registration (the database may be
gone; a registration left behind stops counting as live after ``LIVE_FOR``)."""
UPKEEP_EVERY = 10.0
"""Seconds between two rounds of upkeep (the sweep of unsettled dependants when this worker's
turn; a registration when one is due), at the wall-clock ticks every process shares."""
REGISTER_SLACK = 0.5
"""A round this close before a registration's tick counts as on it (timers may fire early)."""
UNHANDLED_CHECK_EVERY = 60.0
"""Seconds between two looks for due jobs that no live worker handles (and two counts of the
live workers)."""
UNHANDLED_HEAD = 1_000
"""The look covers this many due jobs at the head of the queue (bounded work)."""
WARN_AGAIN_AFTER = 600.0
"""Seconds before the same unhandled name is warned about again."""


class Registration:
    """Keeps one worker's registration current while it runs."""

    def __init__(
        self,
        store: JobStore,
        owner: str,
        scheduler_id: str,
        workers: int,
        tasks: TaskRegistry,
        executions: Sized,
        report: ErrorReporter,
        sweep: Callable[[], Awaitable[None]] | None = None,
        on_fleet: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.on_fleet = on_fleet
        self.owner = owner
        self.tasks = tasks
        self.executions = executions
        self.report = report
        self.sweep = sweep
        self._fixed = {
            "schedulerId": scheduler_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "workers": workers,
            "version": __version__,
        }
        self._started: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._next_check = 0.0
        self._since = time.monotonic()
        self._warned: dict[str, float] = {}
        self._live = 1  # workers live on the store, as last counted (this one included)
        self._sweep_offset = random.randrange(1 << 30)
        self._written: tuple[tuple[str, ...] | None, int] | None = None

    def start(self) -> None:
        """Register now and keep the registration current."""
        self._task = asyncio.create_task(self._loop(), name="mjs-registration")

    async def close(self) -> None:
        """Stop renewing and remove the registration (best effort: a registration left
        behind stops counting as live after ``LIVE_FOR``)."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=UNREGISTER_WITHIN)
        try:
            await asyncio.wait_for(self.store.unregister_worker(self.owner), UNREGISTER_WITHIN)
        except Exception as exc:
            self.report(exc, "could not remove this worker from the fleet view")

    async def _loop(self) -> None:
        register_at = 0.0  # wall clock: now
        while not self._closing:
            try:
                moment = time.time()
                if registration_due(
                    moment + REGISTER_SLACK, register_at, self._written, self._shown()
                ):
                    await self.register()
                    # The next tick after this one, even when this round woke a moment early.
                    ahead = time.time() + REGISTER_SLACK
                    register_at = ahead + until_tick(REGISTER_EVERY, ahead)
                round_index = round(moment / UPKEEP_EVERY)
                if self.sweep is not None and sweeps_this_round(
                    round_index, self._sweep_offset, self._live
                ):
                    await self.sweep()
                if time.monotonic() >= self._next_check:
                    self._next_check = time.monotonic() + UNHANDLED_CHECK_EVERY
                    await self.count_fleet()
                    await self.warn_unhandled()
                elif time.monotonic() - self._since < UNHANDLED_CHECK_EVERY:
                    await self.count_fleet()  # a fleet starting together: count as it grows
            except Exception as exc:
                self.report(exc, "fleet registration failed; retrying")
            await asyncio.sleep(until_tick(min(UPKEEP_EVERY, REGISTER_EVERY)))

    def _shown(self) -> tuple[tuple[str, ...] | None, int]:
        """What a registration says that changes while the worker runs: the names it
        claims and how many jobs it runs."""
        names = self.tasks.claimable_names()
        return (None if names is None else tuple(names), len(self.executions))

    async def register(self) -> None:
        """Write this worker's registration (what it handles, how busy it is)."""
        if self._started is None:
            self._started = await self.store.now()
        shown = self._shown()
        names, running = shown
        await self.store.register_worker(
            self.owner,
            {
                **self._fixed,
                "names": None if names is None else list(names),
                "running": running,
                "startedAt": self._started,
            },
        )
        self._written = shown

    async def count_fleet(self) -> None:
        """Tell ``on_fleet`` how many workers are live on this store (this one included)."""
        now = await self.store.now()
        self._live = max(1, await self.store.live_worker_count(now - LIVE_FOR))
        if self.on_fleet is not None:
            self.on_fleet(self._live)

    async def warn_unhandled(self) -> None:
        """Log a WARNING for due jobs at the head of the queue whose name no live worker
        handles (each name at most every ``WARN_AGAIN_AFTER`` seconds)."""
        now = await self.store.now()
        due = await self.store.due_by_name(now, UNHANDLED_HEAD)
        if not due:
            return
        live = [WorkerInfo.from_document(d) for d in await self.store.live_workers(now - LIVE_FOR)]
        moment = time.monotonic()
        for name, count in unhandled(due, live).items():
            if moment - self._warned.get(name, -WARN_AGAIN_AFTER) < WARN_AGAIN_AFTER:
                continue
            self._warned[name] = moment
            logger.warning(
                "%d due job(s) named %r wait for a worker: no live worker handles that name "
                "(register a task for it, or a catch-all handler)",
                count,
                name,
                extra={"job_name": name, "due": count},
            )
