"""Acknowledging runs: outcome writes batched into few store calls, transient errors retried
while the lease lasts, and the carrying out of the plans that :mod:`.._outcomes` decides
(write, then events, wake-ups and logs; or, for a stopped run, release or free its slot)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from .. import _history, _outcomes
from .._errors import LeaseLost
from .._procedures import run_async, settle_dependants
from .._workflows import DEPENDANTS_OPEN, FINISHED
from ..events import EventEmitter
from ..job import Job, StopReason
from ..stores.base import LOCK_FIELDS, Finish, JobStore, Ownership, ownership_of
from ._logs import log_outcome
from ._progress import ProgressReports
from ._running import Execution
from ._wakeups import Wakeups

__all__ = ["Acks", "Outcomes", "retry_transient"]


T = TypeVar("T")
ErrorReporter = Callable[[BaseException, str], None]

SETTLE_GRACE = timedelta(seconds=5)
"""A finished job whose dependants are not settled this long after its end is settled by the
sweep (sooner would race the process that is settling them)."""
SWEEP_BATCH = 100
"""Unsettled jobs settled per sweep."""
SCHEDULE_CHANGE_TRIES = 5
"""How often a repeating job's next occurrence is computed again when its schedule keeps
changing under the run."""


async def retry_transient(
    store: JobStore, write: Callable[[], Awaitable[T]], deadline: float, report: ErrorReporter
) -> T:
    """Run ``write``, trying again after errors the store calls transient until ``deadline``
    (``time.monotonic()``; the lease's end: after it the job may be someone else's). The
    store's fenced writes are safe to repeat: a try applied before its reply was lost counts
    as applied."""
    delay = 0.05
    while True:
        try:
            return await write()
        except Exception as exc:
            if not store.is_transient(exc) or time.monotonic() > deadline:
                raise
            report(exc, "write failed; retrying")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


class Acks:
    """Outcome writes, batched: those that arrive while a write is in flight (or in the same
    turn of the event loop) go to the store together in one ``finish_many``. Each caller still
    waits for its own result, so nothing is acknowledged before its handler finished."""

    MAX_BATCH = 500

    def __init__(self, store: JobStore, report: ErrorReporter) -> None:
        self.store = store
        self.report = report
        self.pending: list[tuple[Execution, Finish, asyncio.Future[bool]]] = []
        self.flusher: asyncio.Task[None] | None = None

    async def submit(self, execution: Execution, finish: Finish) -> bool:
        """Write ``finish`` for ``execution``; whether it was applied (the fence held)."""
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
                items = [(execution.fence, finish) for execution, finish, _ in batch]
                deadline = min(execution.lease_deadline for execution, _, _ in batch)
                try:
                    results = await retry_transient(
                        self.store,
                        functools.partial(self.store.finish_many, items),
                        deadline,
                        self.report,
                    )
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


class Written:
    """A job document as an outcome write left it (the claimed document with the outcome
    applied, its ``history`` entry ended at ``ended_at``, the store's clock as the write was
    acknowledged); the document and the ``Job`` view are built on demand."""

    __slots__ = ("_claimed", "_document", "_ended_at", "_finish", "_job")

    def __init__(self, claimed: dict[str, Any], finish: Finish, ended_at: datetime) -> None:
        self._claimed = claimed
        self._finish = finish
        self._ended_at = ended_at
        self._document: dict[str, Any] | None = None
        self._job: Job | None = None

    @property
    def finish(self) -> Finish:
        """The outcome that was written."""
        return self._finish

    @property
    def document(self) -> dict[str, Any]:
        if self._document is None:
            doc = {k: v for k, v in self._claimed.items() if k not in LOCK_FIELDS}
            for key in self._finish.unset:
                doc.pop(key, None)
            doc.update(self._finish.set)
            ending = self._finish.attempt
            if ending is not None:
                new = _history.entry(self._claimed, ending, self._ended_at)
                doc["history"] = _history.appended(self._claimed.get("history"), new)
            self._document = doc
        return self._document

    @property
    def job(self) -> Job:
        if self._job is None:
            self._job = Job.from_document(self.document)
        return self._job


class Outcomes:
    """Carries out the plans of a worker's executions."""

    def __init__(
        self,
        store: JobStore,
        policy: _outcomes.Policy,
        executions: dict[Any, Execution],
        progress: ProgressReports,
        wakeups: Wakeups,
        events: EventEmitter,
        report: ErrorReporter,
    ) -> None:
        self.store = store
        self.policy = policy
        self.executions = executions
        self.progress = progress
        self.wakeups = wakeups
        self.events = events
        self.report = report
        self.acks = Acks(store, report)
        self._to_settle: list[dict[str, Any]] = []
        self._settling = 0  # finished jobs in the batch being settled now
        self._settler: asyncio.Task[None] | None = None

    @property
    def settling(self) -> int:
        """Finished jobs whose dependants are queued for settling or being settled."""
        return len(self._to_settle) + self._settling

    async def carry_out(self, execution: Execution, plan: _outcomes.Plan) -> None:
        """Write the plan's outcome (computed again if a repeating job's schedule changed
        meanwhile), then wake for the job's next due time, log and emit its events."""
        if plan.start is not None:
            written = await self._write_next_occurrence(execution, plan)
        else:
            written = await self._write(execution, plan.finish)
        if written is None:
            return
        written_set = written.finish.set
        if written_set.get("status") == "pending" and written_set.get("nextRunAt") is not None:
            due = written_set["nextRunAt"] - self.store.clock()
            self.wakeups.wake_in(due.total_seconds())
        log_outcome(execution, plan, written_set)
        for event in plan.events:
            if self.events.listening(event):
                extra = (plan.error,) if event == "job:fail" else ()
                self.events.emit(event, written.job, *extra)
        status = written_set.get("status")
        if status in FINISHED and execution.claimed.document.get("dependants") == DEPENDANTS_OPEN:
            ended = {"_id": execution.fence.job_id, "status": status, "name": execution.job.name}
            self._to_settle.append(ended)
            if self._settler is None:
                self._settler = asyncio.create_task(self._settle_queued(), name="mjs-settle")

    async def _settle_queued(self) -> None:
        """Settle the dependants of the jobs that finished, those of one loop turn (or that
        finished while a batch was being settled) together."""
        try:
            await asyncio.sleep(0)
            while self._to_settle:
                batch = self._to_settle[: Acks.MAX_BATCH]
                del self._to_settle[: Acks.MAX_BATCH]
                self._settling = len(batch)
                try:
                    await self.settle(batch)
                finally:
                    self._settling = 0
        finally:
            self._settler = None

    async def settle(self, dependencies: Sequence[Mapping[str, Any]]) -> None:
        """Release or cancel the jobs that wait for jobs that just finished (cancelled ones
        emit ``job:cancel``); on an error, the sweep of unsettled jobs does it later."""
        try:
            cancelled = await run_async(settle_dependants(dependencies), self.store)
        except Exception as exc:
            self.report(exc, f"could not settle the dependants of {len(dependencies)} job(s)")
            return
        for doc in cancelled:
            self.events.emit("job:cancel", Job.from_document(doc))

    async def sweep(self) -> None:
        """Settle the dependants of jobs that finished at least SETTLE_GRACE ago without it
        (their process died first, or a Node worker finished them)."""
        before = self.store.clock() - SETTLE_GRACE
        unsettled = await self.store.unsettled(before, SWEEP_BATCH)
        if unsettled:
            await self.settle(unsettled)

    async def close(self) -> None:
        """Finish settling what is queued (the worker is stopping)."""
        if self._settler is not None:
            await asyncio.gather(self._settler, return_exceptions=True)

    async def stopped(self, execution: Execution, reason: StopReason) -> None:
        """A stopped run: give the job back at shutdown; otherwise it is no longer this
        worker's, so only its concurrency slot is freed (unless a newer run of the same job
        on this worker holds it), and a lost lease is reported."""
        plan = _outcomes.after_stop(reason)
        if plan.release:
            try:
                await retry_transient(
                    self.store,
                    functools.partial(self.store.release, execution.fence),
                    execution.lease_deadline,
                    self.report,
                )
            except Exception as exc:
                self.report(exc, "could not release a job at shutdown")
            return
        newer = self.executions.get(execution.fence.job_id)
        if plan.free_slot and (newer is None or newer is execution):
            with contextlib.suppress(Exception):
                await self.store.free_slot(execution.fence)
        if plan.lease_lost:
            lost = LeaseLost(
                f"lost the lease of job {execution.fence.job_id}; its handler was stopped"
            )
            self.report(lost, "lease lost")

    async def _write(
        self, execution: Execution, finish: Finish, *, quiet: bool = False
    ) -> Written | None:
        """Apply a fenced outcome write; the job as written, or ``None`` if this worker no
        longer owned it (nothing was written; reported unless ``quiet``)."""
        reason = execution.context.stop_reason
        if reason in (StopReason.CANCELLED, StopReason.LEASE_LOST):
            assert reason is not None
            await self.stopped(execution, reason)
            return None
        progress = self.progress.take(execution.fence.job_id)
        if progress is not None:
            finish.set.setdefault("progress", progress)
        if await self.acks.submit(execution, finish):
            return Written(execution.claimed.document, finish, self.store.clock())
        if not quiet:
            await self._refused(execution)
        return None

    async def _refused(self, execution: Execution) -> None:
        """An outcome write was refused: a cancel elsewhere as the run ended is a cancel
        (nothing to write, no lost lease); anything else is reported."""
        with contextlib.suppress(Exception):
            if await self.store.ownership(execution.fence) is Ownership.CANCELLED:
                await self.stopped(execution, StopReason.CANCELLED)
                return
        error = LeaseLost(
            f"job {execution.fence.job_id} is no longer owned by this worker (its lease "
            "expired and another worker took it over, or it was changed meanwhile); its "
            "outcome was not written"
        )
        self.report(error, "outcome not written")

    async def _write_next_occurrence(
        self, execution: Execution, plan: _outcomes.Plan
    ) -> Written | None:
        """Write a repeating job's next occurrence; if ``update_job`` changed the schedule
        meanwhile, compute it again from the new schedule (the change applies from the next
        occurrence)."""
        for _ in range(SCHEDULE_CHANGE_TRIES):
            written = await self._write(execution, plan.finish, quiet=True)
            if written is not None:
                return written
            if execution.context.stop_reason in (StopReason.CANCELLED, StopReason.LEASE_LOST):
                return None  # the stop was known before the write: _write handled it
            current = await self.store.get(execution.fence.job_id)
            owner = ownership_of(current, execution.fence)
            if owner is Ownership.CANCELLED:  # cancelled elsewhere as this run ended
                await self.stopped(execution, StopReason.CANCELLED)
                return None
            if current is None or owner is not Ownership.OWNED:
                break
            plan = _outcomes.after_schedule_change(Job.from_document(current), plan, self.policy)
        error = LeaseLost(
            f"job {execution.fence.job_id} changed owner before its outcome was written"
        )
        self.report(error, "outcome not written")
        return None
