"""One execution of a claimed job, and running its handler: async handlers in the execution's
own task, plain functions in a thread, ``executor="process"`` handlers in a child process, with
a timeout and a way to be stopped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .._errors import JobTimeout
from ..job import Job, RunContext, StopReason
from ..stores.base import Claimed, Fence
from ..tasks import TaskSpec

__all__ = ["Execution", "OffLoop", "Stopped", "run_handler", "uncancel"]


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
    """What to cancel to stop the handler while it runs: the execution's own task (``task``)
    for an async handler, else the future of its thread or of its child process (cancelling
    that one stops the child)."""
    cancels: int = 0
    """How many times ``task`` was cancelled to stop its async handler."""
    busy: bool = True
    """Counts against ``workers`` until its handler has returned (the outcome write may still
    be in flight: the next claim overlaps it)."""

    def request_stop(self, reason: StopReason) -> None:
        """Tell the handler to stop (its job sees ``stop_requested``) and interrupt what can
        be interrupted: an async handler is cancelled, a child process is stopped; a thread
        only sees the flag."""
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


OffLoop = Callable[[Execution, TaskSpec], "asyncio.Future[Any]"]
"""Starts a handler that does not run on the event loop (in a thread or a child process)."""


async def run_handler(
    execution: Execution,
    spec: TaskSpec,
    timeout: timedelta | None,
    off_loop: OffLoop,
    on_timeout: Callable[[Execution], None],
) -> Any:
    """Run the handler and return its result; raise ``JobTimeout`` if it overran
    (``on_timeout`` is called when the time is up), :class:`Stopped` if the scheduler stopped
    it, and whatever the handler raised otherwise. An async handler runs in the execution's
    own task, which is cancelled to stop it (only while the handler runs: ``handler_task`` is
    set for exactly that span); any other is started by ``off_loop``, and cancelling its
    future ends the wait (a thread's late result is ignored; a child process is stopped)."""
    context = execution.context
    loop = asyncio.get_running_loop()
    timer = None
    if timeout is not None:
        timer = loop.call_later(timeout.total_seconds(), on_timeout, execution)
    cancelled = False
    try:
        if context.stop_reason is not None:  # stop requested before the handler started
            cancelled, result = True, None
        elif spec.on_loop:
            execution.handler_task = asyncio.current_task()
            try:
                result = await spec.handler(execution.job)
            finally:
                execution.handler_task = None
                uncancel(execution)
        else:
            execution.handler_task = off_loop(execution, spec)
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
