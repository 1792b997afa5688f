"""One execution of a claimed job, and running its handler: async handlers in the execution's
own task, plain functions in a thread, with a timeout and a way to be stopped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .._errors import JobTimeout
from ..job import Job, RunContext, StopReason
from ..stores.base import Claimed, Fence
from ..tasks import TaskSpec

__all__ = ["Execution", "Stopped", "run_handler", "uncancel"]


@dataclass
class Execution:
    """One run of a claimed job on this worker."""

    fence: Fence
    claimed: Claimed
    context: RunContext
    job: Job
    started: float = field(default_factory=time.monotonic)
    lease_deadline: float = 0.0
    """When (``time.monotonic()``) the lease may run out without a renewal: counted from
    before the claim or the last successful renewal was sent."""
    stalled: bool = False
    """Past ``max_execution``: its lease is no longer renewed."""
    task: asyncio.Task[None] | None = None
    handler_task: asyncio.Future[Any] | None = None
    """What to cancel to stop the handler while it runs: the executor future of a sync
    handler, the execution's own task (``task``) for an async one."""
    cancels: int = 0
    """How many times ``task`` was cancelled to stop its async handler."""
    busy: bool = True
    """Counts against ``workers`` until its handler has returned (the outcome write may still
    be in flight: the next claim overlaps it)."""

    def request_stop(self, reason: StopReason) -> None:
        """Tell the handler to stop (its job sees ``stop_requested``) and interrupt what can
        be interrupted: an async handler is cancelled; a thread only sees the flag."""
        self.context.request_stop(reason)
        if self.handler_task is not None:
            if self.handler_task is self.task:
                self.cancels += 1  # taken back once the handler is over (uncancel)
            self.handler_task.cancel()


class Stopped(Exception):
    """The scheduler stopped the handler (cancel, lost lease, shutdown)."""

    def __init__(self, reason: StopReason) -> None:
        self.reason = reason
        super().__init__(reason.value)


async def run_handler(
    execution: Execution,
    spec: TaskSpec,
    timeout: timedelta | None,
    threads: ThreadPoolExecutor,
    on_timeout: Callable[[Execution], None],
) -> Any:
    """Run the handler and return its result; raise ``JobTimeout`` if it overran
    (``on_timeout`` is called when the time is up), :class:`Stopped` if the scheduler stopped
    it, and whatever the handler raised otherwise. An async handler runs in the execution's
    own task, which is cancelled to stop it (only while the handler runs: ``handler_task`` is
    set for exactly that span); for a sync handler the wait for its thread ends and the
    thread's late result is ignored."""
    context = execution.context
    loop = asyncio.get_running_loop()
    timer = None
    if timeout is not None:
        timer = loop.call_later(timeout.total_seconds(), on_timeout, execution)
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
                uncancel(execution)
        else:
            execution.handler_task = loop.run_in_executor(threads, spec.handler, execution.job)
            result = await execution.handler_task
    except asyncio.CancelledError:
        if context.stop_reason is None:  # the handler cancelled itself: a failed attempt
            raise RuntimeError("handler was cancelled") from None
        cancelled, result = True, None
    except Exception as exc:
        if context.stop_reason is None:
            raise
        if context.stop_reason is StopReason.TIMEOUT:
            raise timeout_error(timeout) from exc
        raise Stopped(context.stop_reason) from None
    finally:
        if timer is not None:
            timer.cancel()
    reason = context.stop_reason
    if reason is None or (reason is StopReason.TIMEOUT and not cancelled):
        return result  # finished (a timeout firing just after the end does not count)
    if reason is StopReason.TIMEOUT:
        raise timeout_error(timeout)
    raise Stopped(reason)


def uncancel(execution: Execution) -> None:
    """Take back the cancellations that stopped an async handler in the execution's own task,
    so ``asyncio.timeout`` and task groups used later in the task (the outcome write) see no
    stale cancellation request (Python 3.11+ counts them; 3.10 keeps no count)."""
    task = execution.task
    take_back = getattr(task, "uncancel", None)
    while execution.cancels and take_back is not None:
        execution.cancels -= 1
        take_back()
    execution.cancels = 0


def timeout_error(timeout: timedelta | None) -> JobTimeout:
    """The error of a run that exceeded its ``timeout``."""
    seconds = timeout.total_seconds() if timeout is not None else 0
    return JobTimeout(f"handler exceeded its timeout of {seconds:g}s")
