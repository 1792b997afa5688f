"""The worker: claims due jobs, runs their handlers and acknowledges the outcomes.

It only talks to a :class:`~mongo_job_scheduler.stores.base.JobStore`. What a run's outcome
means for the job is decided by the pure functions of :mod:`.._outcomes`; this module runs the
claim loop and each execution, and hands the decisions to the helpers that carry them out:
:class:`~._wakeups.Wakeups` (when to claim), :class:`~._leases.LeaseKeeper` (renewals, stalls,
the lease guard), :class:`~._acks.Outcomes` (writes, events) and
:class:`~._progress.ProgressReports`; handlers with ``executor="process"`` run in the
worker's :class:`~._processes.ProcessPool`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from .. import _outcomes
from .._config import SchedulerConfig
from .._errors import HandlerCrashed
from ..events import EventEmitter
from ..job import RunContext, StopReason
from ..stores.base import Announced, Claimed, ClaimState, Fence, JobStore
from ..tasks import TaskRegistry, TaskSpec
from ._acks import Outcomes
from ._leases import LeaseKeeper
from ._logs import log_start
from ._processes import ProcessPool
from ._progress import ProgressReports
from ._registration import Registration
from ._running import Execution, Stopped, run_handler
from ._wakeups import Wakeups

__all__ = ["Worker"]

logger = logging.getLogger("mongo_job_scheduler")

BATCH_WAIT = 0.005
"""Seconds a busy worker waits for more free places before claiming a small batch."""
STOP_WAIT = 30.0
"""Seconds a stop waits for stopped handlers to hand their jobs back."""


class Worker:
    """Runs up to ``config.workers`` jobs at once for one scheduler instance; ``owner`` is its
    id in ``lockedBy``."""

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
        self.tasks = tasks
        self.events = events
        self.executions: dict[Any, Execution] = {}
        self.policy = _outcomes.Policy(
            config.default_timezone, config.max_lease_expiries, config.retention
        )
        self.wakeups = Wakeups(store, config.poll_interval, self._report)
        self.leases = LeaseKeeper(store, config, self.executions, events, self._report)
        self.progress = ProgressReports(store, self.executions, self._report)
        self.outcomes = Outcomes(
            store, self.policy, self.executions, self.progress, self.wakeups, events, self._report
        )
        self.registration = Registration(
            store,
            owner,
            config.id,
            config.workers,
            tasks,
            self.executions,
            self._report,
            sweep=self.outcomes.sweep,
            on_fleet=self.wakeups.set_fleet_size,
        )
        self._claim_state = ClaimState()
        self._stopping = False
        self._slot_freed = asyncio.Event()
        self._claim_task: asyncio.Task[None] | None = None
        self._busy = 0  # executions whose handler has not returned yet
        self._threads = ThreadPoolExecutor(
            max_workers=max(2, config.workers * 2), thread_name_prefix="mjs-handler"
        )
        self.processes = ProcessPool(
            config.process_pool,
            config.max_tasks_per_child,
            config.max_memory_per_child,
            self.progress.report,
            self._report,
            tasks.process_modules,
        )

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start claiming, renewing and following notifications (on the running loop)."""
        self.progress.start()
        if self.tasks.process_modules():  # children started ahead of need
            self.processes.warm(self.config.workers)
        self._claim_task = asyncio.create_task(self._claim_loop(), name="mjs-claim")
        self.leases.start()
        self.registration.start()
        self.wakeups.set_watching(True)
        self.tasks.changed = self.wakeups.wake  # new handlers: claim with the new names now
        self.events.emit("worker:start", self.owner)

    def wake(self) -> None:
        """A job may have become due now: claim at once."""
        self.wakeups.wake()

    def wake_in(self, seconds: float) -> None:
        """A job becomes due in ``seconds``: claim then."""
        self.wakeups.wake_in(seconds)

    @property
    def in_progress(self) -> int:
        """Jobs claimed here and not yet done with: running, having their outcome written
        and announced, or finished with their dependants being settled."""
        return len(self.executions) + self.outcomes.settling

    def request_stop(self, job_id: Any, reason: StopReason) -> bool:
        """Ask the local execution of ``job_id`` (if any) to stop."""
        execution = self.executions.get(job_id)
        if execution is None:
            return False
        execution.request_stop(reason)
        return True

    async def stop(self, graceful: bool, timeout: float) -> None:
        """Stop claiming; let running jobs finish for ``timeout`` seconds if ``graceful``, then
        stop their handlers and give their jobs back so other workers take them at once."""
        self._stopping = True
        self.processes.warm(0)  # no new jobs: children that end are not replaced
        if self.tasks.changed == self.wakeups.wake:
            self.tasks.changed = None
        self.wakeups.wake()
        self._slot_freed.set()
        if self._claim_task is not None:
            await asyncio.gather(self._claim_task, return_exceptions=True)
        tasks = [e.task for e in self.executions.values() if e.task is not None]
        if graceful and tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for execution in list(self.executions.values()):
            execution.request_stop(StopReason.SHUTDOWN)
        tasks = [e.task for e in self.executions.values() if e.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT)
        await self.leases.close()
        await self.outcomes.close()
        await self.registration.close()
        await self.wakeups.close()
        await self.progress.close()  # every execution has ended: nothing left to report
        await self.processes.close()
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.events.emit("worker:stop", self.owner)

    # -- claiming ---------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        backoff = 0.1
        while not self._stopping:
            self._slot_freed.clear()
            free = self.config.workers - self._busy
            if free <= 0:
                await self._slot_freed.wait()
                continue
            if free < self.config.workers // 2 and not self.wakeups.event.is_set():
                # A few places just freed while most workers are busy: wait a moment for
                # more to free so the next claim takes a batch, not a job at a time.
                await self.wakeups.sleep(BATCH_WAIT)
                free = self.config.workers - self._busy
            self.wakeups.event.clear()
            sent = time.monotonic()  # the server starts each lease after this instant
            as_of = self.store.clock()  # what became claimable after this, the claim may miss
            announced = self.wakeups.take_announced()
            idle = free == self.config.workers
            if announced is not None and idle and await self._claim_announced(announced, sent):
                continue  # then claim as usual for whatever else is due
            try:
                result = await self.store.claim(
                    self.owner,
                    free,
                    self.config.lease,
                    self.config.max_lease_expiries,
                    self.tasks.claimable_names(),
                    self.tasks.rate_limits(),
                    state=self._claim_state,
                )
            except Exception as exc:
                self._report(exc, "claim failed; retrying")
                if not self._stopping:
                    await self.wakeups.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            await self._take(result.jobs, sent)
            # Sleep only when nothing was claimed: a short claim may have lost races to other
            # workers while more jobs are due, so claim again at once (it comes back empty
            # when the queue is really drained). Races lost for the last due jobs (a drained
            # queue) say nothing more is due: other workers took them, or the server refused
            # a job not quite due yet by its clock, which a claim a moment later takes.
            more = result.lost_races and not result.drained
            if result.lost_races and result.drained:
                self.wakeups.recheck_soon()
            self.wakeups.note_claim(len(result.jobs), free, more, result.held_back)
            if not result.jobs and not more and not self._stopping:
                await self._idle(sent, as_of)

    async def _claim_announced(self, announced: Announced, sent: float) -> bool:
        """An idle worker told of exactly one new job due now takes it by its id in one round
        trip (not after reading the queue); whether it did. On a miss (another worker took
        it, or it is not claimable alone) the usual claim follows."""
        try:
            claimed = await self.store.claim_announced(
                self.owner,
                announced,
                self.config.lease,
                self.config.max_lease_expiries,
                self.tasks.claimable_names(),
                self.tasks.rate_limits(),
            )
        except Exception as exc:
            if not self.store.is_transient(exc):
                self._report(exc, "claim of an announced job failed; claiming as usual")
            return False
        if claimed is None:
            return False
        await self._take([claimed], sent)
        return True

    async def _take(self, claimed: list[Claimed], sent: float) -> None:
        """Run what a claim took, or give it straight back if the worker stopped meanwhile,
        or if the claim's answer came so late (a failover, a stuck server selection) that the
        lease it granted may have run out already: such a run would be stopped at once by the
        lease guard and leave its job locked until the lease ends; handed back, the job is due
        again at once."""
        late = bool(claimed) and time.monotonic() >= sent + self.config.lease.total_seconds()
        if late and not self._stopping:
            logger.warning(
                "a claim took %.1f s to answer, longer than the lease (%.1f s): handing its "
                "%d job(s) back",
                time.monotonic() - sent,
                self.config.lease.total_seconds(),
                len(claimed),
            )
        for item in claimed:
            if self._stopping or late:
                await self._give_back(item)
            else:
                self._launch(item, sent)

    async def _idle(self, sent: float, as_of: datetime) -> None:
        """Wait after a claim that found nothing: until woken, or until the next poll. Polls
        start one idle interval apart (the claim's round trip is part of the interval):
        ``poll_interval``, or the longer safety poll while change notifications are healthy
        (they wake the worker for every job that becomes pending). A timer is armed for a job
        that becomes claimable before the next poll (the look-ahead)."""
        until = sent + self.wakeups.idle_interval()
        await self.wakeups.look_ahead(self.tasks.claimable_names(), until, as_of)
        await self.wakeups.sleep(max(until - time.monotonic(), 0.0))

    async def _give_back(self, claimed: Claimed) -> None:
        try:
            await self.store.release(self._fence(claimed, claimed.token))
        except Exception as exc:
            self._report(exc, "could not hand a claimed job back")

    def _fence(self, claimed: Claimed, token: int) -> Fence:
        return Fence(claimed.job_id, self.owner, token, claimed.slot_name)

    def _launch(self, claimed: Claimed, sent: float) -> None:
        """Run a claimed job; ``sent`` is when the claim was sent (``time.monotonic()``): the
        lease the server granted runs at least ``lease`` from then."""
        token = claimed.token
        fence = self._fence(claimed, token)
        context = RunContext(token, self.owner, fence.job_id, self.progress.report)
        execution = Execution(fence, claimed, context, claimed.job(context))
        execution.lease_deadline = sent + self.config.lease.total_seconds()
        previous = self.executions.get(fence.job_id)
        if previous is not None:
            # This worker took its own job over (an earlier run stalled and its lease expired):
            # that run lost the lease, exactly as if another owner had taken the job.
            previous.request_stop(StopReason.LEASE_LOST)
        self.executions[fence.job_id] = execution
        self._busy += 1
        execution.task = asyncio.create_task(
            self._execute(execution), name=f"mjs-job-{fence.job_id}"
        )

    # -- running ----------------------------------------------------------------------------

    async def _execute(self, execution: Execution) -> None:
        try:
            await self._run(execution)
        except Exception as exc:  # never let one job kill the worker
            self._report(exc, f"unexpected error while running job {execution.fence.job_id}")
        finally:
            self._not_busy(execution)
            if self.executions.get(execution.fence.job_id) is execution:
                del self.executions[execution.fence.job_id]
            self._slot_freed.set()

    def _not_busy(self, execution: Execution) -> None:
        """The execution's handler is over: its place in ``workers`` is free for the next claim."""
        if execution.busy:
            execution.busy = False
            self._busy -= 1
            self._slot_freed.set()

    async def _run(self, execution: Execution) -> None:
        """One execution: decide whether to run, run the handler, decide and carry out what
        its outcome means for the job."""
        job = execution.job
        decided = _outcomes.before_run(
            job,
            poisoned=execution.claimed.poisoned,
            now=self.store.clock,
            policy=self.policy,
        )
        if isinstance(decided, _outcomes.Plan):
            await self.outcomes.carry_out(execution, decided)
            return
        spec = self.tasks.resolve(job.name)
        if spec is None:
            missing = LookupError(f"no handler registered for job name {job.name!r}")
            await self._fail(execution, missing, None)
            return
        self.events.emit("job:start", job)
        log_start(job)
        try:
            result = await run_handler(
                execution, spec, spec.timeout or job.timeout, self._off_loop, self._time_out
            )
            if execution.fence.slot_name is None:  # a concurrency slot frees with the outcome
                self._not_busy(execution)
        except Stopped as stopped:
            await self.outcomes.stopped(execution, stopped.reason)
            return
        except Exception as exc:
            await self._fail(execution, exc, decided)
            return
        unstorable = _outcomes.unstorable_result(job, result)
        if unstorable is not None:
            await self._fail(execution, unstorable, decided)
            return
        plan = _outcomes.after_success(
            job, result, decided, now=self.store.clock, policy=self.policy
        )
        await self.outcomes.carry_out(execution, plan)

    def _off_loop(self, execution: Execution, spec: TaskSpec) -> asyncio.Future[Any]:
        """Start a handler that does not run on the loop: in a child process or a thread."""
        if spec.target is not None:
            claimed = execution.claimed
            return self.processes.run(spec.target, claimed.document, execution.context)
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._threads, spec.handler, execution.job)

    async def _fail(
        self, execution: Execution, error: BaseException, start: _outcomes.Start | None
    ) -> None:
        crashed = isinstance(error, HandlerCrashed)  # the handler's process died
        decide = _outcomes.after_crash if crashed else _outcomes.after_failure
        plan = decide(
            execution.job,
            error,
            start,
            task=self.tasks.resolve(execution.job.name),
            now=self.store.clock,
            policy=self.policy,
        )
        await self.outcomes.carry_out(execution, plan)

    def _time_out(self, execution: Execution) -> None:
        execution.request_stop(StopReason.TIMEOUT)

    def _report(self, exc: BaseException, message: str) -> None:
        logger.warning("%s: %s", message, exc, extra={"owner": self.owner})
        self.events.emit("worker:error", exc)
