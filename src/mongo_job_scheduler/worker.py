"""The worker: claims due jobs, runs their handlers, renews leases, and records outcomes.

The worker only talks to a :class:`~mongo_job_scheduler.stores.base.JobStore`; what a run's
outcome means for the job (retry, next slot, failure) is decided here with the pure functions
of :mod:`.retry` and :mod:`.repeat`, then written with one fenced store call.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ._config import SchedulerConfig
from ._dedupe import released_on_finish
from ._documents import validate_bson_value
from ._errors import JobTimeout, LeaseLost, PoisonJob, ValidationError
from .events import EventEmitter
from .job import Job, RunContext, StopReason
from .repeat import Repeat
from .stores.base import (
    LOCK_FIELDS,
    Claimed,
    ClaimState,
    Fence,
    Finish,
    JobStore,
)
from .tasks import TaskRegistry, TaskSpec

__all__ = ["Worker"]

logger = logging.getLogger("mongo_job_scheduler")

BATCH_WAIT = 0.005
"""Seconds a busy worker waits for more free places before claiming a small batch."""
PROGRESS_EVERY = 0.25
"""Seconds between two writes of the progress handlers report (coalesced per job)."""
WATCH_PAUSE_AFTER = 0.5
"""Seconds of full claims after which a busy worker stops following change notifications."""
MAX_WAKE_AHEAD = 3600.0
"""Jobs due further ahead than this (and than one poll) are left to polling."""
MAX_WAKE_TIMES = 10_000
WAKE_RECHECK = 0.05
"""Seconds after a wake-up for a due job at which the worker claims once more: the job's due
time and the worker's estimate of the server clock come from estimates that may differ by a
few milliseconds, so the first claim may find the job not quite due yet on the server."""
MAX_ERROR_LENGTH = 4_000
MAX_TRACE_LENGTH = 16_000


@dataclass
class _Execution:
    fence: Fence
    claimed: Claimed
    context: RunContext
    job: Job
    started: float = field(default_factory=time.monotonic)
    lease_deadline: float = 0.0
    stalled: bool = False
    task: asyncio.Task[None] | None = None
    handler_task: asyncio.Future[Any] | None = None
    """What to cancel to stop the handler while it runs: the executor future of a sync
    handler, the execution's own task (``task``) for an async one."""
    cancels: int = 0
    """How many times ``task`` was cancelled to stop its async handler."""
    busy: bool = True
    """Counts against ``workers`` until its handler has returned (the outcome write may still
    be in flight: the next claim overlaps it)."""


def _describe(exc: BaseException) -> tuple[str, str, str]:
    message = str(exc) or type(exc).__name__
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return message[:MAX_ERROR_LENGTH], type(exc).__name__, trace[-MAX_TRACE_LENGTH:]


class Worker:
    """Runs up to ``config.workers`` jobs at once for one scheduler instance."""

    def __init__(
        self,
        store: JobStore,
        config: SchedulerConfig,
        owner: str,
        tasks: TaskRegistry,
        events: EventEmitter,
    ) -> None:
        self.store = store
        self.config = config
        self.owner = owner
        self.resolve = tasks.resolve
        self.claimable_names = tasks.claimable_names
        self.rate_limits = tasks.rate_limits
        self.events = events
        self.executions: dict[Any, _Execution] = {}
        self._stopping = False
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._claim_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._watch_supported = True
        self._busy_since: float | None = None
        self._wake_times: list[float] = []  # heap of loop times at which a job becomes due
        self._wake_timer: asyncio.TimerHandle | None = None
        self._recheck_timer: asyncio.TimerHandle | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._guard_task: asyncio.Task[None] | None = None
        self._acks = _Acks(self)
        self._claim_state = ClaimState()
        self._busy = 0  # executions whose handler has not returned yet
        self._progress: dict[Any, dict[str, Any]] = {}
        self._progress_timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop
        self._loop_thread = 0
        self._threads = ThreadPoolExecutor(
            max_workers=max(2, config.workers * 2), thread_name_prefix="mjs-handler"
        )

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._claim_task = asyncio.create_task(self._claim_loop(), name="mjs-claim")
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name="mjs-heartbeat")
        self._guard_task = asyncio.create_task(self._lease_guard_loop(), name="mjs-lease-guard")
        self._set_watching(True)
        self.events.emit("worker:start", self.owner)

    def wake(self) -> None:
        """A job may have become due now: poll at once."""
        self._wake.set()

    def wake_in(self, seconds: float) -> None:
        """A job becomes due in ``seconds``: poll then (sooner than the next idle poll), and
        once more ``WAKE_RECHECK`` later in case the server's clock is a little behind."""
        if seconds <= 0.001:
            self.wake()
            self._recheck_soon()
            return
        if seconds >= self.config.poll_interval and seconds > MAX_WAKE_AHEAD:
            return  # polling finds it in time; keep the heap small
        if len(self._wake_times) >= MAX_WAKE_TIMES - 1:
            return
        at = asyncio.get_running_loop().time() + seconds
        heapq.heappush(self._wake_times, at)
        if self.config.poll_interval > WAKE_RECHECK:
            heapq.heappush(self._wake_times, at + WAKE_RECHECK)
        self._arm_wake_timer()

    def _recheck_soon(self) -> None:
        """Wake once more about ``WAKE_RECHECK`` from now. One timer serves a burst of
        immediate wake-ups (a bulk insert notifies once per job): it is moved only when it
        would fire less than half of ``WAKE_RECHECK`` after this wake-up."""
        if self.config.poll_interval <= WAKE_RECHECK or self._stopping:
            return
        loop = asyncio.get_running_loop()
        timer = self._recheck_timer
        if timer is not None and not timer.cancelled():
            if timer.when() >= loop.time() + WAKE_RECHECK / 2:
                return
            timer.cancel()
        self._recheck_timer = loop.call_later(WAKE_RECHECK, self._on_recheck)

    def _on_recheck(self) -> None:
        self._recheck_timer = None
        self.wake()

    def _arm_wake_timer(self) -> None:
        if not self._wake_times or self._stopping:
            return
        loop = asyncio.get_running_loop()
        first = self._wake_times[0]
        if self._wake_timer is not None:
            if self._wake_timer.when() <= first:
                return
            self._wake_timer.cancel()
        self._wake_timer = loop.call_at(first, self._on_wake_timer)

    def _on_wake_timer(self) -> None:
        self._wake_timer = None
        now = asyncio.get_running_loop().time()
        while self._wake_times and self._wake_times[0] <= now + 0.001:
            heapq.heappop(self._wake_times)
        self.wake()
        self._arm_wake_timer()

    def _set_watching(self, on: bool) -> None:
        """Follow the store's notifications only while idle: a busy worker claims again as
        soon as a slot frees, and not watching spares the server the change stream's work."""
        if on and self._watch_supported and not self._stopping:
            if self._watch_task is None or self._watch_task.done():
                self._watch_task = asyncio.create_task(self._watch(), name="mjs-watch")
        elif not on and self._watch_task is not None:
            self._watch_task.cancel()
            self._watch_task = None

    def _note_claim(self, claimed: int, wanted: int, lost_races: bool) -> None:
        """Watch for new jobs when a claim came back short because the queue is drained
        (idle); stop watching after WATCH_PAUSE_AFTER seconds of claims that came back full,
        or short only because other workers took jobs first (busy)."""
        if claimed < wanted and not lost_races:
            self._busy_since = None
            self._set_watching(True)
            return
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since = now
        elif now - self._busy_since > WATCH_PAUSE_AFTER:
            self._set_watching(False)

    async def _watch(self) -> None:
        """Follow the store's notifications of jobs becoming pending (change streams on
        MongoDB replica sets); without them, workers rely on polling."""
        try:
            supported = await self.store.watch(self.wake_in, self.wake)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._worker_error(exc, "change notifications stopped; relying on polling")
            return
        if not supported:
            self._watch_supported = False

    async def stop(self, graceful: bool, timeout: float) -> None:
        """Stop claiming; let running jobs finish for ``timeout`` seconds if ``graceful``, then
        stop their handlers and give their jobs back so other workers take them at once."""
        self._stopping = True
        self._wake.set()
        self._slot_freed.set()
        if self._claim_task is not None:
            await asyncio.gather(self._claim_task, return_exceptions=True)
        tasks = [e.task for e in self.executions.values() if e.task is not None]
        if graceful and tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for execution in list(self.executions.values()):
            self._request_stop(execution, StopReason.SHUTDOWN)
        tasks = [e.task for e in self.executions.values() if e.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        for task in (self._heartbeat_task, self._guard_task, self._watch_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for timer in (self._wake_timer, self._recheck_timer):
            if timer is not None:
                timer.cancel()
        if self._progress_timer is not None:  # every execution has ended: nothing to report
            self._progress_timer.cancel()
            self._progress_timer = None
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.events.emit("worker:stop", self.owner)

    def request_stop(self, job_id: Any, reason: StopReason) -> bool:
        """Ask the local execution of ``job_id`` (if any) to stop."""
        execution = self.executions.get(job_id)
        if execution is None:
            return False
        self._request_stop(execution, reason)
        return True

    def _request_stop(self, execution: _Execution, reason: StopReason) -> None:
        execution.context.request_stop(reason)
        if execution.handler_task is not None:
            if execution.handler_task is execution.task:
                execution.cancels += 1  # taken back once the handler is over (_uncancel)
            execution.handler_task.cancel()

    # -- claiming ---------------------------------------------------------------------------

    async def _sleep(self, seconds: float, event: asyncio.Event) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=seconds)

    async def _claim_loop(self) -> None:
        backoff = 0.1
        while not self._stopping:
            self._slot_freed.clear()
            free = self.config.workers - self._busy
            if free <= 0:
                await self._slot_freed.wait()
                continue
            if free < self.config.workers // 2 and not self._wake.is_set():
                # A few places just freed while most workers are busy: wait a moment for
                # more to free so the next claim takes a batch, not a job at a time.
                await self._sleep(BATCH_WAIT, self._wake)
                free = self.config.workers - self._busy
            self._wake.clear()
            sent = time.monotonic()  # the server starts each lease after this instant
            try:
                result = await self.store.claim(
                    self.owner,
                    free,
                    self.config.lease,
                    self.config.max_lease_expiries,
                    self.claimable_names(),
                    self.rate_limits(),
                    state=self._claim_state,
                )
            except Exception as exc:
                self._worker_error(exc, "claim failed; retrying")
                await self._sleep(backoff, self._wake if not self._stopping else asyncio.Event())
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            claimed, lost_races = result.jobs, result.lost_races
            self._note_claim(len(claimed), free, lost_races)
            for item in claimed:
                if self._stopping:  # stopped while claiming: give the job straight back
                    await self._give_back(item)
                else:
                    self._launch(item, sent)
            # Sleep only when nothing was claimed: a short claim may have lost races to other
            # workers while more jobs are due, so claim again at once (it comes back empty
            # when the queue is really drained).
            if not claimed and not lost_races and not self._stopping:
                if not self._watch_supported:
                    await self._look_ahead()
                # Polls start one poll interval apart (the claim's round trip is part of the
                # interval), so a job that becomes due waits at most one interval plus a
                # round trip even without change notifications.
                elapsed = time.monotonic() - sent
                await self._sleep(max(self.config.poll_interval - elapsed, 0.0), self._wake)

    async def _look_ahead(self) -> None:
        """Without change notifications, an idle worker asks after each empty claim when the
        next job becomes due before the next poll, and arms a timer for that instant."""
        try:
            seconds = await self.store.next_due(
                self.claimable_names(), timedelta(seconds=self.config.poll_interval)
            )
        except Exception as exc:
            self._worker_error(exc, "look-ahead for the next due job failed; polling")
            return
        if seconds is not None:
            self.wake_in(seconds)

    async def _give_back(self, claimed: Claimed) -> None:
        doc = claimed.document
        fence = Fence(doc["_id"], self.owner, claimed.token, self._slot_name(doc))
        try:
            await self.store.release(fence)
        except Exception as exc:
            self._worker_error(exc, "could not release a job claimed during stop")

    @staticmethod
    def _slot_name(doc: dict[str, Any]) -> str | None:
        limit = doc.get("concurrency")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1:
            return str(doc["name"])
        return None

    def _launch(self, claimed: Claimed, sent: float) -> None:
        """Run a claimed job; ``sent`` is when the claim was sent (``time.monotonic()``): the
        lease the server granted runs at least ``lease`` from then."""
        doc = claimed.document
        fence = Fence(doc["_id"], self.owner, claimed.token, self._slot_name(doc))
        context = RunContext(claimed.token, self.owner, fence.job_id, self._report_progress)
        execution = _Execution(fence, claimed, context, Job.from_document(doc, context))
        execution.lease_deadline = sent + self.config.lease.total_seconds()
        previous = self.executions.get(fence.job_id)
        if previous is not None:
            # This worker took its own job over (an earlier run stalled and its lease expired):
            # that run lost the lease, exactly as if another owner had taken the job.
            self._request_stop(previous, StopReason.LEASE_LOST)
        self.executions[fence.job_id] = execution
        self._busy += 1
        execution.task = asyncio.create_task(
            self._execute(execution), name=f"mjs-job-{fence.job_id}"
        )

    async def _expiry(self, status: str) -> dict[str, Any]:
        """The ``expireAt`` field that retention gives a job finishing ``status``, if any."""
        keep = self.config.retention.get(status)
        if keep is None:
            return {}
        return {"expireAt": await self.store.now() + keep}

    def _report_progress(self, job_id: Any, percent: float, message: str | None) -> None:
        """A handler reported progress (maybe from its thread): keep the latest per job and
        write them together at most every PROGRESS_EVERY seconds."""
        if threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._report_progress, job_id, percent, message)
            return
        execution = self.executions.get(job_id)
        if execution is None or execution.context.stop_reason is not None:
            return
        self._progress[job_id] = {
            "percent": percent,
            "message": message,
            "updatedAt": datetime.now(timezone.utc),
        }
        if self._progress_timer is None:
            self._progress_timer = self._loop.call_later(PROGRESS_EVERY, self._flush_progress)

    def _flush_progress(self) -> None:
        self._progress_timer = None
        items = [
            (execution.fence, progress)
            for job_id, progress in self._progress.items()
            if (execution := self.executions.get(job_id)) is not None
        ]
        self._progress.clear()
        if items:
            task = asyncio.create_task(self._write_progress(items), name="mjs-progress")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _write_progress(self, items: list[tuple[Fence, dict[str, Any]]]) -> None:
        try:
            await self.store.record_progress(items)
        except Exception as exc:
            self._worker_error(exc, "progress not recorded")

    async def _wake_for(self, written: _Written) -> None:
        """Poll when a job this worker just rescheduled becomes due (its next slot)."""
        due = written.document.get("nextRunAt")
        if written.document.get("status") == "pending" and isinstance(due, datetime):
            self.wake_in((due - await self.store.now()).total_seconds())

    def _emit(self, event: str, written: _Written, *extra: Any) -> None:
        """Emit a job event with the job as written (built only if someone listens)."""
        if self.events.listening(event):
            self.events.emit(event, written.job, *extra)

    def _worker_error(self, exc: BaseException, message: str) -> None:
        logger.warning("%s: %s", message, exc, extra={"owner": self.owner})
        self.events.emit("worker:error", exc)

    # -- heartbeats -------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            await self._heartbeat()

    async def _lease_guard_loop(self) -> None:
        """Stop a handler as soon as its lease may have run out without a renewal (the
        database unreachable, a renewal stuck in server selection): by then another worker may
        claim the job, and two live owners must never run it. The deadlines are local and
        conservative (counted from before the claim or renewal was sent). Stalled executions
        (past ``max_execution``) keep their documented behaviour and are left alone."""
        lease = self.config.lease.total_seconds()
        longest = max(min(self.config.heartbeat_interval, lease / 4), 0.001)
        while True:
            now = time.monotonic()
            wait = longest
            for execution in list(self.executions.values()):
                if execution.context.stop_reason is not None or execution.stalled:
                    continue
                if now >= execution.lease_deadline:
                    self._request_stop(execution, StopReason.LEASE_LOST)
                else:
                    wait = min(wait, execution.lease_deadline - now)
            await asyncio.sleep(max(wait, 0.001))

    async def _heartbeat(self) -> None:
        now = time.monotonic()
        fences: list[Fence] = []
        stalled: list[_Execution] = []
        for execution in list(self.executions.values()):
            if execution.context.stop_reason is not None:
                continue
            limit = execution.job.max_execution or self.config.max_execution
            if limit is not None and now - execution.started > limit.total_seconds():
                if not execution.stalled:
                    execution.stalled = True
                    logger.warning(
                        "job %s exceeded max_execution; no longer renewing its lease",
                        execution.fence.job_id,
                        extra={
                            "job_id": str(execution.fence.job_id),
                            "job_name": execution.job.name,
                        },
                    )
                    self.events.emit("job:stalled", execution.job)
                stalled.append(execution)
                continue
            if now > execution.lease_deadline:
                self._request_stop(execution, StopReason.LEASE_LOST)
                continue
            fences.append(execution.fence)
        for execution in stalled:
            await self._check_owned(execution)
        if not fences:
            return
        try:
            lost = await self.store.renew(fences, self.config.lease)
        except Exception as exc:
            self._worker_error(exc, "lease renewal failed; retrying at the next heartbeat")
            return
        renewed_until = now + self.config.lease.total_seconds()
        for fence in fences:
            running = self.executions.get(fence.job_id)
            if running is None:
                continue
            if fence.job_id in lost:
                await self._lost(running)
            else:
                running.lease_deadline = renewed_until

    async def _check_owned(self, execution: _Execution) -> None:
        """A stalled execution is no longer renewed, but it still learns when another owner
        took its job over (or it was cancelled), so there are never two live owners."""
        fence = execution.fence
        try:
            current = await self.store.get(fence.job_id)
        except Exception as exc:
            self._worker_error(exc, "could not check a stalled job's lease")
            return
        if (
            current is None
            or current.get("status") != "running"
            or current.get("lockedBy") != fence.owner
            or current.get("lockVersion") != fence.token
        ):
            cancelled = current is not None and current.get("status") == "cancelled"
            reason = StopReason.CANCELLED if cancelled else StopReason.LEASE_LOST
            self._request_stop(execution, reason)

    async def _lost(self, execution: _Execution) -> None:
        reason = StopReason.LEASE_LOST
        with contextlib.suppress(Exception):
            current = await self.store.get(execution.fence.job_id)
            if current is not None and current.get("status") == "cancelled":
                reason = StopReason.CANCELLED
        self._request_stop(execution, reason)

    # -- running ----------------------------------------------------------------------------

    async def _execute(self, execution: _Execution) -> None:
        try:
            await self._execute_inner(execution)
        except Exception as exc:  # never let one job kill the worker
            self._worker_error(exc, f"unexpected error while running job {execution.fence.job_id}")
        finally:
            self._not_busy(execution)
            if self.executions.get(execution.fence.job_id) is execution:
                del self.executions[execution.fence.job_id]
            self._slot_freed.set()

    def _not_busy(self, execution: _Execution) -> None:
        """The execution's handler is over: its place in ``workers`` is free for the next claim."""
        if execution.busy:
            execution.busy = False
            self._busy -= 1
            self._slot_freed.set()

    async def _execute_inner(self, execution: _Execution) -> None:
        doc = execution.claimed.document
        job = execution.job
        if execution.claimed.poisoned:
            error = PoisonJob(
                f"lease expired {doc.get('leaseExpiries')} times without the job finishing "
                f"(limit {self.config.max_lease_expiries}); its handler probably crashes or "
                "hangs its worker"
            )
            await self._record_failure(execution, error, final=True)
            return
        repeat = job.repeat  # parsed once, with the Job view of the claimed document
        if doc.get("repeat") and repeat is None:
            await self._record_failure(
                execution,
                ValueError(f"invalid repeat {doc.get('repeat')!r}"),
                final=True,
                drop_repeat=True,
            )
            return
        slot: datetime | None = None
        caught_up = False
        if repeat is not None:
            slot = doc.get("lastScheduledAt") or doc.get("nextRunAt")
            if int(doc.get("attempts") or 0) == 0 and slot is not None:
                plan = repeat.plan(
                    slot,
                    await self.store.now(),
                    caught_up_in_a_row=int(doc.get("missedRuns") or 0),
                    default_timezone=self.config.default_timezone,
                )
                if not plan.run:
                    await self._write(
                        execution,
                        Finish(
                            set={
                                "status": "pending",
                                "nextRunAt": plan.slot,
                                "lastScheduledAt": plan.slot,
                                "missedRuns": 0,
                            }
                        ),
                    )
                    return
                slot, caught_up = plan.slot, plan.caught_up
        spec = self.resolve(job.name)
        if spec is None:
            await self._record_failure(
                execution, LookupError(f"no handler registered for job name {job.name!r}")
            )
            return
        self.events.emit("job:start", job)
        timeout = spec.timeout or job.timeout
        try:
            result = await self._run_handler(execution, spec, timeout)
            if execution.fence.slot_name is None:  # a concurrency slot frees with the outcome
                self._not_busy(execution)
        except _Stopped as stopped:
            await self._stopped(execution, stopped.reason)
            return
        except Exception as exc:
            await self._record_failure(execution, exc, spec=spec, repeat=repeat, slot=slot)
            return
        try:
            validate_bson_value("result", result)
            if result is not None:
                validate_bson_value("job", {**execution.claimed.document, "result": result})
        except ValidationError as exc:
            unstorable = TypeError(f"the handler's return value cannot be stored: {exc.reason}")
            await self._record_failure(execution, unstorable, spec=spec, repeat=repeat, slot=slot)
            return
        await self._record_success(execution, result, repeat, slot, caught_up)

    async def _run_handler(
        self, execution: _Execution, spec: TaskSpec, timeout: timedelta | None
    ) -> Any:
        """Run the handler; raise ``JobTimeout`` if it overran, ``_Stopped`` if the scheduler
        stopped it. An async handler runs in the execution's own task, which is cancelled to
        stop it (only while the handler runs: ``handler_task`` is set for exactly that span);
        for a sync handler the wait for its thread ends and the thread's late result is
        ignored."""
        context = execution.context
        loop = asyncio.get_running_loop()
        timer = None
        if timeout is not None:
            timer = loop.call_later(
                timeout.total_seconds(), self._request_stop, execution, StopReason.TIMEOUT
            )
        cancelled = False
        try:
            if context.stop_reason is not None:  # stop requested before the handler started
                cancelled, result = True, None
            elif spec.is_async:
                execution.handler_task = asyncio.current_task()
                try:
                    result = await spec.handler(execution.job)
                finally:
                    execution.handler_task = None
                    _uncancel(execution)
            else:
                execution.handler_task = loop.run_in_executor(
                    self._threads, spec.handler, execution.job
                )
                result = await execution.handler_task
        except asyncio.CancelledError:
            if context.stop_reason is None:  # the handler cancelled itself: a failed attempt
                raise RuntimeError("handler was cancelled") from None
            cancelled, result = True, None
        except Exception as exc:
            if context.stop_reason is None:
                raise
            if context.stop_reason is StopReason.TIMEOUT:
                raise _timeout_error(timeout) from exc
            raise _Stopped(context.stop_reason) from None
        finally:
            if timer is not None:
                timer.cancel()
        reason = context.stop_reason
        if reason is None or (reason is StopReason.TIMEOUT and not cancelled):
            return result  # finished (a timeout firing just after the end does not count)
        if reason is StopReason.TIMEOUT:
            raise _timeout_error(timeout)
        raise _Stopped(reason)

    async def _stopped(self, execution: _Execution, reason: StopReason) -> None:
        if reason is StopReason.SHUTDOWN:
            try:
                await self._retrying(
                    lambda: self.store.release(execution.fence), execution, "pending"
                )
            except Exception as exc:
                self._worker_error(exc, "could not release a job at shutdown")
            return
        # Cancelled or lease lost: the job is no longer ours; write nothing but free the slot
        # (unless a newer run of the job on this worker holds it: same job, same owner).
        newer = self.executions.get(execution.fence.job_id)
        if newer is None or newer is execution:
            with contextlib.suppress(Exception):
                await self.store.free_slot(execution.fence)
        if reason is StopReason.LEASE_LOST:
            self._worker_error(
                LeaseLost(
                    f"lost the lease of job {execution.fence.job_id}; its handler was stopped"
                ),
                "lease lost",
            )

    # -- outcomes ---------------------------------------------------------------------------

    async def _record_success(
        self,
        execution: _Execution,
        result: Any,
        repeat: Repeat | None,
        slot: datetime | None,
        caught_up: bool,
    ) -> None:
        doc = execution.claimed.document
        if repeat is not None and slot is not None:
            finish = self._next_occurrence(
                doc, repeat, slot, caught_up=caught_up, extra={"result": result}
            )
            after = await self._write_repeating(execution, finish, slot, caught_up)
            if after is not None:
                await self._wake_for(after)
                self._emit("job:complete", after)
            return
        finish = Finish(
            set={
                "status": "completed",
                "leaseExpiries": 0,
                "result": result,
                **await self._expiry("completed"),
            },
            release_dedupe_key=released_on_finish(doc),
        )
        after = await self._write(execution, finish)
        if after is not None:
            self._emit("job:success", after)
            self._emit("job:complete", after)

    def _next_occurrence(
        self,
        doc: dict[str, Any],
        repeat: Repeat,
        slot: datetime,
        *,
        caught_up: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> Finish:
        following = repeat.next_after(slot, self.config.default_timezone)
        fields = {
            "status": "pending",
            "nextRunAt": following,
            "lastScheduledAt": following,
            "attempts": 0,
            "leaseExpiries": 0,
            "missedRuns": int(doc.get("missedRuns") or 0) + 1 if caught_up else 0,
        }
        fields.update(extra or {})
        return Finish(set=fields, expect={"repeat": doc.get("repeat")})

    async def _write_repeating(
        self, execution: _Execution, finish: Finish, slot: datetime, caught_up: bool
    ) -> _Written | None:
        """Write the next occurrence; if ``update_job`` changed the schedule meanwhile, compute
        it again from the new schedule (the change applies from the next occurrence)."""
        for _ in range(5):
            after = await self._write(execution, finish, quiet=True)
            if after is not None:
                return after
            if execution.context.stop_reason in (StopReason.CANCELLED, StopReason.LEASE_LOST):
                return None  # the stop was known before the write: _write handled it
            current = await self.store.get(execution.fence.job_id)
            if current is not None and current.get("status") == "cancelled":
                # Cancelled elsewhere as this run ended: nothing to write, and no lost lease.
                await self._stopped(execution, StopReason.CANCELLED)
                return None
            if (
                current is None
                or current.get("status") != "running"
                or current.get("lockedBy") != execution.fence.owner
                or current.get("lockVersion") != execution.fence.token
            ):
                break
            repeat = Repeat.from_document(current.get("repeat"))
            extra = {
                k: v
                for k, v in finish.set.items()
                if k in ("lastError", "lastErrorType", "lastErrorTrace", "result", "progress")
            }
            if repeat is None:  # the schedule was removed: this run was the last one
                finish = Finish(set={"status": "completed", **extra}, expect={"repeat": None})
            else:
                finish = self._next_occurrence(
                    current, repeat, slot, caught_up=caught_up, extra=extra
                )
        self._worker_error(
            LeaseLost(f"job {execution.fence.job_id} changed owner before its outcome was written"),
            "outcome not written",
        )
        return None

    async def _record_failure(
        self,
        execution: _Execution,
        exc: BaseException,
        *,
        spec: TaskSpec | None = None,
        repeat: Repeat | None = None,
        slot: datetime | None = None,
        final: bool = False,
        drop_repeat: bool = False,
    ) -> None:
        doc = execution.claimed.document
        message, kind, trace = _describe(exc)
        attempts = int(doc.get("attempts") or 0) + 1
        error_fields = {"lastError": message, "lastErrorType": kind, "lastErrorTrace": trace}
        retry = (
            spec.retry if spec is not None and spec.retry is not None else None
        ) or execution.job.retry
        now = await self.store.now()
        if not final and retry is not None and retry.allows_another(attempts):
            if spec is not None and spec.backoff is not None:
                wait = spec.backoff(attempts)
                delay = wait if isinstance(wait, timedelta) else timedelta(seconds=float(wait))
            else:
                delay = retry.delay_for(attempts)
            due = now + max(delay, timedelta(0))
            if repeat is not None and slot is not None:
                due = min(due, repeat.next_after(slot, self.config.default_timezone))
            fields: dict[str, Any] = {
                "status": "pending",
                "nextRunAt": due,
                "attempts": attempts,
                **error_fields,
            }
            if slot is not None:
                fields["lastScheduledAt"] = slot
            after = await self._write(execution, Finish(set=fields))
            if after is not None:
                self.wake_in((due - now).total_seconds())
                self._emit("job:retry", after)
            return
        if repeat is None and not drop_repeat:
            repeat = execution.job.repeat
            slot = slot or doc.get("lastScheduledAt") or doc.get("nextRunAt")
        if repeat is not None and slot is not None and not drop_repeat:
            finish = self._next_occurrence(doc, repeat, slot, extra=error_fields)
            after = await self._write_repeating(execution, finish, slot, False)
        else:
            finish = Finish(
                set={
                    "status": "failed",
                    "attempts": attempts,
                    **error_fields,
                    **await self._expiry("failed"),
                },
                release_dedupe_key=released_on_finish(doc),
            )
            after = await self._write(execution, finish)
        if after is not None:
            logger.warning(
                "job %s (%s) failed: %s",
                execution.fence.job_id,
                doc.get("name"),
                message,
                extra={"job_id": str(execution.fence.job_id), "job_name": doc.get("name")},
            )
            self._emit("job:fail", after, exc)

    async def _write(
        self, execution: _Execution, finish: Finish, *, quiet: bool = False
    ) -> _Written | None:
        """Apply a fenced outcome write, retrying transient database errors; returns the job as
        written, or ``None`` if this worker no longer owned it (nothing was written)."""
        if execution.context.stop_reason in (StopReason.CANCELLED, StopReason.LEASE_LOST):
            await self._stopped(execution, execution.context.stop_reason)
            return None
        progress = self._progress.pop(execution.fence.job_id, None)
        if progress is not None:
            finish.set.setdefault("progress", progress)
        applied = await self._acks.submit(execution, finish)
        if not applied:
            if not quiet:
                if await self._cancelled_meanwhile(execution):
                    # Cancelled elsewhere as this run ended: nothing to write, and no lost lease.
                    await self._stopped(execution, StopReason.CANCELLED)
                else:
                    self._worker_error(
                        LeaseLost(
                            f"job {execution.fence.job_id} is no longer owned by this worker "
                            "(its lease expired and another worker took it over, or it was "
                            "changed meanwhile); its outcome was not written"
                        ),
                        "outcome not written",
                    )
            return None
        return _Written(execution.claimed.document, finish)

    async def _cancelled_meanwhile(self, execution: _Execution) -> bool:
        """Whether the job whose outcome write was just refused is now cancelled (read once;
        a failed read counts as not cancelled)."""
        try:
            current = await self.store.get(execution.fence.job_id)
        except Exception:
            return False
        return current is not None and current.get("status") == "cancelled"

    async def _retrying(
        self,
        write: Callable[[], Awaitable[bool]],
        execution: _Execution,
        expected_status: str | None,
    ) -> bool:
        """Run a fenced write, retrying transient errors until the lease runs out. After a
        retry, a refused write counts as applied if the document shows this write's outcome
        (an earlier try may have been applied before its reply was lost)."""
        delay = 0.05
        failed_once = False
        while True:
            try:
                applied = await write()
            except Exception as exc:
                if not self.store.is_transient(exc) or time.monotonic() > execution.lease_deadline:
                    raise
                failed_once = True
                self._worker_error(exc, "write failed; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if applied or not failed_once:
                return applied
            current = await self.store.get(execution.fence.job_id)
            return bool(
                current is not None
                and current.get("lockVersion") == execution.fence.token
                and current.get("lockedBy") is None
                and current.get("status") == expected_status
            )


class _Written:
    """A job document as an outcome write left it (the claimed document with the outcome
    applied); the document and the ``Job`` view are built on demand."""

    __slots__ = ("_claimed", "_document", "_finish", "_job")

    def __init__(self, claimed: dict[str, Any], finish: Finish) -> None:
        self._claimed = claimed
        self._finish = finish
        self._document: dict[str, Any] | None = None
        self._job: Job | None = None

    @property
    def document(self) -> dict[str, Any]:
        if self._document is None:
            doc = {k: v for k, v in self._claimed.items() if k not in LOCK_FIELDS}
            for key in self._finish.unset:
                doc.pop(key, None)
            doc.update(self._finish.set)
            self._document = doc
        return self._document

    @property
    def job(self) -> Job:
        if self._job is None:
            self._job = Job.from_document(self.document)
        return self._job


class _Acks:
    """Outcome writes, batched: those that arrive while a write is in flight (or in the same
    turn of the event loop) go to the store together in one ``finish_many``. Each caller still
    waits for its own result, so nothing is acknowledged before its handler finished."""

    MAX_BATCH = 500

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.pending: list[tuple[_Execution, Finish, asyncio.Future[bool]]] = []
        self.flusher: asyncio.Task[None] | None = None

    async def submit(self, execution: _Execution, finish: Finish) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.pending.append((execution, finish, future))
        if self.flusher is None:
            self.flusher = asyncio.create_task(self._flush(), name="mjs-acks")
        return await future

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # let the completions of this loop turn join the batch
            while self.pending:
                batch = self.pending[: self.MAX_BATCH]
                del self.pending[: self.MAX_BATCH]
                try:
                    results = await self._write(batch)
                except Exception as exc:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), applied in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(applied)
        finally:
            self.flusher = None

    async def _write(
        self, batch: list[tuple[_Execution, Finish, asyncio.Future[bool]]]
    ) -> list[bool]:
        """Retry transient errors until the earliest lease in the batch runs out (the store
        counts items applied by an earlier try whose reply was lost as applied)."""
        items = [(execution.fence, finish) for execution, finish, _ in batch]
        deadline = min(execution.lease_deadline for execution, _, _ in batch)
        delay = 0.05
        while True:
            try:
                return await self.worker.store.finish_many(items)
            except Exception as exc:
                if not self.worker.store.is_transient(exc) or time.monotonic() > deadline:
                    raise
                self.worker._worker_error(exc, "write failed; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


class _Stopped(Exception):
    def __init__(self, reason: StopReason) -> None:
        self.reason = reason
        super().__init__(reason.value)


def _uncancel(execution: _Execution) -> None:
    """Take back the cancellations that stopped an async handler in the execution's own task,
    so ``asyncio.timeout`` and task groups used later in the task (the outcome write) see no
    stale cancellation request (Python 3.11+ counts them; 3.10 keeps no count)."""
    task = execution.task
    uncancel = getattr(task, "uncancel", None)
    while execution.cancels and uncancel is not None:
        execution.cancels -= 1
        uncancel()
    execution.cancels = 0


def _timeout_error(timeout: timedelta | None) -> JobTimeout:
    seconds = timeout.total_seconds() if timeout is not None else 0
    return JobTimeout(f"handler exceeded its timeout of {seconds:g}s")
