"""Keeping the leases of running jobs: renewals at each heartbeat (all of a worker's leases in
one write), stalls past ``max_execution``, and a local guard that stops a handler whose lease
may have run out unrenewed, so two live owners never run one job."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from .._config import SchedulerConfig
from ..events import EventEmitter
from ..job import StopReason
from ..stores.base import JobStore, Ownership
from ._running import Execution
from ._ticks import until_tick

__all__ = ["LeaseKeeper"]

logger = logging.getLogger("mongo_job_scheduler")

ErrorReporter = Callable[[BaseException, str], None]


class LeaseKeeper:
    """Renews the leases of a worker's executions and stops those whose lease is gone."""

    def __init__(
        self,
        store: JobStore,
        config: SchedulerConfig,
        executions: dict[Any, Execution],
        events: EventEmitter,
        report: ErrorReporter,
    ) -> None:
        self.store = store
        self.config = config
        self.executions = executions
        self.events = events
        self.report = report
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the heartbeat and the lease guard."""
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="mjs-heartbeat"),
            asyncio.create_task(self._guard_loop(), name="mjs-lease-guard"),
        ]

    async def close(self) -> None:
        """Stop renewing and guarding."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _heartbeat_loop(self) -> None:
        """Renew at every wall-clock tick of ``heartbeat_interval`` (the same instants in
        every process: see :mod:`._ticks`); renewals stay at most one interval apart."""
        while True:
            await asyncio.sleep(until_tick(self.config.heartbeat_interval))
            await self.heartbeat()

    async def _guard_loop(self) -> None:
        """Stop a handler as soon as its lease may have run out without a renewal (the
        database unreachable, a renewal stuck in server selection): by then another worker may
        claim the job. The deadlines are local and conservative (counted from before the claim
        or renewal was sent). Stalled executions (past ``max_execution``) are left alone."""
        lease = self.config.lease.total_seconds()
        longest = max(min(self.config.heartbeat_interval, lease / 4), 0.001)
        while True:
            now = time.monotonic()
            wait = longest
            for execution in list(self.executions.values()):
                if execution.context.stop_reason is not None or execution.stalled:
                    continue
                if now >= execution.lease_deadline:
                    execution.request_stop(StopReason.LEASE_LOST)
                else:
                    wait = min(wait, execution.lease_deadline - now)
            await asyncio.sleep(max(wait, 0.001))

    async def heartbeat(self) -> None:
        """Renew every live lease in one write; stop the executions whose lease is lost."""
        now = time.monotonic()
        renewing: list[Execution] = []
        stalled: list[Execution] = []
        for execution in list(self.executions.values()):
            if execution.context.stop_reason is not None:
                continue
            limit = execution.job.max_execution or self.config.max_execution
            if limit is not None and now - execution.started > limit.total_seconds():
                self._stall(execution)
                stalled.append(execution)
            elif now > execution.lease_deadline:
                execution.request_stop(StopReason.LEASE_LOST)
            else:
                renewing.append(execution)
        for execution in stalled:
            await self._check_owned(execution)
        if not renewing:
            return
        try:
            lost = await self.store.renew([e.fence for e in renewing], self.config.lease)
        except Exception as exc:
            self.report(exc, "lease renewal failed; retrying at the next heartbeat")
            return
        renewed_until = now + self.config.lease.total_seconds()
        # The answer concerns the executions whose fences were sent, not whatever runs under
        # the same job id now: a newer run of the job (claimed again while the renewal was
        # held up) has a fence of its own.
        for execution in renewing:
            if self.executions.get(execution.fence.job_id) is not execution:
                continue  # over meanwhile
            if execution.fence.job_id in lost:
                await self._stop_lost(execution)
            else:
                execution.lease_deadline = renewed_until

    def _stall(self, execution: Execution) -> None:
        """An execution passed ``max_execution``: its lease is no longer renewed
        (``job:stalled``, once)."""
        if execution.stalled:
            return
        execution.stalled = True
        logger.warning(
            "job %s exceeded max_execution; no longer renewing its lease",
            execution.fence.job_id,
            extra={"job_id": str(execution.fence.job_id), "job_name": execution.job.name},
        )
        self.events.emit("job:stalled", execution.job)

    async def _check_owned(self, execution: Execution) -> None:
        """A stalled execution is no longer renewed, but it still learns when another owner
        took its job over (or it was cancelled), so there are never two live owners."""
        try:
            owner = await self.store.ownership(execution.fence)
        except Exception as exc:
            self.report(exc, "could not check a stalled job's lease")
            return
        if owner is not Ownership.OWNED:
            cancelled = owner is Ownership.CANCELLED
            execution.request_stop(StopReason.CANCELLED if cancelled else StopReason.LEASE_LOST)

    async def _stop_lost(self, execution: Execution) -> None:
        """The renewal said the lease is gone: stop the handler, telling it whether the job
        was cancelled or taken over."""
        reason = StopReason.LEASE_LOST
        with contextlib.suppress(Exception):
            if await self.store.ownership(execution.fence) is Ownership.CANCELLED:
                reason = StopReason.CANCELLED
        execution.request_stop(reason)
