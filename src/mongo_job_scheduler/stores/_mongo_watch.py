"""The change stream behind :meth:`MongoJobStore.watch`: one per process and jobs collection,
shared by every worker watching it, with a watchdog that tells the workers when the stream
stops answering so they poll until it is healthy again.

A feed is keyed by the event loop, the ``AsyncMongoClient``, the database and the collection:
every ``MongoJobStore`` on that client and collection joins the same stream, however many
schedulers a process runs. The first watcher opens it and the last one to leave closes it.

After handing out an event, the stream waits ``REARM_DELAY`` before its next getMore, so
that right after a job is created the fleet's claims of it reach the server before every
process's next getMore does.

Health: each getMore waits at most ``WATCH_AWAIT`` seconds on the server (``maxAwaitTimeMS``)
and then returns, with events or without. The feed is *healthy* from the moment a stream
opens (or, after a stall, from its first answered getMore) until a getMore fails or fails to
return within ``STALL_AFTER`` seconds; watchers hear each change through ``health(bool)``.
A stalled or failed stream is reopened from its resume token, with waits that start at 0.1 s
and double up to 5 s. Through ``mongos`` (a sharded cluster) the feed is never healthy: a shard
without writes holds back every shard's events until its periodic no-op write (10 s by
default), so the workers keep polling there.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from .._clock import ServerClock
from . import _mongo_common as q
from .base import Announced

__all__ = ["REARM_DELAY", "STALL_AFTER", "WATCH_AWAIT", "watch_pending"]

logger = logging.getLogger("mongo_job_scheduler")

WATCH_AWAIT = 20.0
"""Seconds each getMore of the change stream waits on the server for an event
(``maxAwaitTimeMS``). An idle stream costs the server one getMore per this interval: with 50
idle processes, 5 s kept about 0.6% of a core of ``mongod`` busier than 20 s, while a longer
wait only delays the detection of a silent stall (``STALL_AFTER``), which stays below the
workers' 30 s safety poll."""
STALL_AFTER = WATCH_AWAIT + 5.0
"""Seconds without an answer from the server (to the stream's opening or to a getMore) after
which the stream counts as stalled: watchers are told it is unhealthy and it is reopened."""
REARM_DELAY = 0.03
"""Seconds between handing out an event and asking the server for the next ones (events
that arrive meanwhile come together with the next getMore). An event reaches every idle
process at once: with 50 processes on two cores, their getMores sent at once delayed the
first claim of a job created due now (p50 36 ms against 21 ms with this wait, together with
claiming an announced job by its id)."""
CLOSE_WAIT = 5.0
"""Seconds the last watcher to leave waits for the stream to close on the server."""

Doc = dict[str, Any]


class _Watcher:
    """One ``watch`` call: its callbacks, its store's clock, and the future it waits on."""

    def __init__(
        self,
        clock: ServerClock,
        notify: Callable[..., None],
        ready: Callable[[], None] | None,
        health: Callable[[bool], None] | None,
    ) -> None:
        self.clock = clock
        self.notify = notify
        self.ready = ready
        self.health = health
        self.takes_announced = _takes_two(notify)
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def changed(self, due: datetime | None, announced: Announced | None = None) -> None:
        seconds = 0.0 if due is None else (due - self.clock.now()).total_seconds()
        if announced is not None and seconds <= 0 and self.takes_announced:
            self.notify(seconds, announced)
        else:
            self.notify(seconds)

    def opened(self) -> None:
        if self.ready is not None:
            self.ready()

    def healthy(self, ok: bool) -> None:
        if self.health is not None:
            self.health(ok)


_Key = tuple[int, int, str, str]
_FEEDS: dict[_Key, _Feed] = {}


def _key(jobs: AsyncCollection[Doc]) -> _Key:
    loop = asyncio.get_running_loop()
    return (id(loop), id(jobs.database.client), jobs.database.name, jobs.name)


class _Feed:
    """One change stream of ``PENDING_CHANGES`` on a jobs collection, fanned out to every
    watcher of the collection in this process."""

    def __init__(self, jobs: AsyncCollection[Doc], key: _Key) -> None:
        self.jobs = jobs
        self.key = key
        self.watchers: list[_Watcher] = []
        self.healthy = False
        self._open = False
        self._suspect = False  # the last stream stalled: healthy only once a getMore answers
        self._token: Any = None
        self._sharded: bool | None = None  # through mongos: events may come late
        self._task: asyncio.Task[None] | None = None
        self._last_sign = 0.0  # loop time of the server's last answer (or of a request sent)
        self._watchdog: asyncio.TimerHandle | None = None

    # -- watchers ---------------------------------------------------------------------------

    def join(self, watcher: _Watcher) -> None:
        self.watchers.append(watcher)
        if self._open:
            # Changes made before this watcher joined were not sent to it: one claim covers them.
            watcher.opened()
        if self.healthy:
            watcher.healthy(True)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="mjs-change-stream")

    async def leave(self, watcher: _Watcher) -> None:
        if watcher in self.watchers:
            self.watchers.remove(watcher)
        if self.watchers or self._task is None:
            return
        if _FEEDS.get(self.key) is self:
            del _FEEDS[self.key]
        task, self._task = self._task, None
        self._stop_watchdog()
        task.cancel()
        await asyncio.wait({task}, timeout=CLOSE_WAIT)

    def _finish(self, supported: bool | None, error: BaseException | None = None) -> None:
        """End every watch call: ``False`` (no change streams here) or ``error``."""
        if _FEEDS.get(self.key) is self:
            del _FEEDS[self.key]
        self._stop_watchdog()
        for watcher in self.watchers:
            if watcher.done.done():
                continue
            if error is not None:
                watcher.done.set_exception(error)
            else:
                watcher.done.set_result(bool(supported))

    # -- health -----------------------------------------------------------------------------

    def _set_healthy(self, ok: bool) -> None:
        ok = ok and self._sharded is False
        if ok == self.healthy:
            return
        self.healthy = ok
        for watcher in list(self.watchers):
            watcher.healthy(ok)

    def _sign_of_life(self) -> None:
        """The server answered (or a request was just sent): the watchdog counts from now."""
        loop = asyncio.get_running_loop()
        self._last_sign = loop.time()
        if self._watchdog is None:
            self._watchdog = loop.call_at(self._last_sign + STALL_AFTER, self._check)

    def _check(self) -> None:
        self._watchdog = None
        loop = asyncio.get_running_loop()
        silent = loop.time() - self._last_sign
        if silent < STALL_AFTER:
            self._watchdog = loop.call_at(self._last_sign + STALL_AFTER, self._check)
            return
        # No answer for STALL_AFTER: whatever the stream's task is stuck on, the watchers
        # poll from now on (the task reopens the stream when its wait times out).
        self._suspect = True
        self._set_healthy(False)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    # -- the stream -------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        try:
            while True:
                try:
                    await self._follow()
                    backoff = 0.1  # the stream ended by itself (invalidated): reopen now
                except OperationFailure as exc:
                    if exc.code in q.NO_CHANGE_STREAMS:
                        logger.info("no change streams on this server; workers poll for due jobs")
                        self._finish(False)
                        return
                    if exc.code in q.RESUME_TOKEN_LOST:
                        self._token = None
                    logger.debug("change stream failed; reopening: %s", exc)
                except asyncio.TimeoutError:
                    self._suspect = True
                    logger.warning(
                        "change stream: no answer from the server for %.0f s; reopening it "
                        "(idle workers poll every poll_interval until it answers again)",
                        STALL_AFTER,
                    )
                except PyMongoError as exc:
                    logger.debug("change stream failed; reopening: %r", exc)
                self._open = False
                self._set_healthy(False)
                self._stop_watchdog()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # not a driver error: every watcher reports it
            self._finish(None, exc)

    async def _follow(self) -> None:
        """Open the stream (from the last resume token) and hand its events out until it
        fails, stalls or is invalidated."""
        self._sign_of_life()
        if self._sharded is None:
            hello = await asyncio.wait_for(
                self.jobs.database.client.admin.command("hello"), STALL_AFTER
            )
            self._sharded = hello.get("msg") == "isdbgrid"
        stream: AsyncChangeStream[Doc] = await asyncio.wait_for(
            self.jobs.watch(
                q.PENDING_CHANGES,
                resume_after=self._token,
                max_await_time_ms=int(WATCH_AWAIT * 1000),
            ),
            STALL_AFTER,
        )
        try:
            # Resume from the stream's start even before any event, so a job that becomes
            # pending while the stream is reopened is not missed.
            self._token = stream.resume_token
            self._sign_of_life()
            self._open = True
            if not self._suspect:
                self._set_healthy(True)
            for watcher in list(self.watchers):
                watcher.opened()
            rearm_after = 0.0
            while stream.alive:
                change = await asyncio.wait_for(stream.try_next(), STALL_AFTER)
                self._token = stream.resume_token
                self._sign_of_life()
                self._suspect = False
                self._set_healthy(True)
                if change is not None:
                    due = q.due_time_of_change(change)
                    announced = q.announced_of_change(change)
                    for watcher in list(self.watchers):
                        watcher.changed(due, announced)
                    loop = asyncio.get_running_loop()
                    if loop.time() >= rearm_after:  # once per batch of events
                        await asyncio.sleep(REARM_DELAY)
                        rearm_after = loop.time() + REARM_DELAY
        finally:
            self._open = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stream.close(), CLOSE_WAIT)


async def watch_pending(
    jobs: AsyncCollection[Doc],
    clock: ServerClock,
    notify: Callable[..., None],
    ready: Callable[[], None] | None,
    health: Callable[[bool], None] | None,
) -> bool:
    """Follow this process's change stream of jobs becoming pending on ``jobs`` until
    cancelled (see :meth:`MongoJobStore.watch`); ``False`` at once without change streams."""
    key = _key(jobs)
    feed = _FEEDS.get(key)
    if feed is None:
        feed = _FEEDS[key] = _Feed(jobs, key)
    watcher = _Watcher(clock, notify, ready, health)
    feed.join(watcher)
    try:
        return await watcher.done
    finally:
        await feed.leave(watcher)


def _takes_two(notify: Callable[..., None]) -> bool:
    """Whether ``notify`` accepts a second argument (the announced job)."""
    try:
        inspect.signature(notify).bind(0.0, None)
    except (TypeError, ValueError):  # one argument only, or no signature to inspect
        return False
    return True
