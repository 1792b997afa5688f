"""OpenTelemetry spans around job runs (optional extra ``otel``).

A thin layer over the scheduler's events, using only ``opentelemetry-api``: with no SDK
configured every call is a no-op. ::

    from mongo_job_scheduler.tracing import instrument_tracing

    tracing = instrument_tracing(scheduler)    # one "job.run" span per run

Each run gets a root span named ``job.run`` (kind ``CONSUMER``) that starts at ``job:start`` and
ends at the run's outcome (``job:success``/``job:complete``, ``job:retry``, ``job:fail``,
``job:cancel``). An async handler runs with that span as the current span, so spans it opens are
its children; a sync handler can use ``trace.use_span(tracing.span_for(job))``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextvars import Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "mongo_job_scheduler.tracing needs opentelemetry-api; install the 'otel' extra: "
        "pip install 'mongo-job-scheduler[otel]'"
    ) from exc

from .job import Job, StopReason

if TYPE_CHECKING:
    from .scheduler import Scheduler

__all__ = ["SPAN_NAME", "SchedulerTracing", "instrument_tracing"]

SPAN_NAME = "job.run"

SWEEP_INTERVAL = 0.5
"""How often (seconds) open spans are checked for runs let go without an outcome event."""


@dataclass
class _Run:
    span: Span
    job: Job
    token: Token[otel_context.Context] | None  # from context.attach (the span made current)
    stop_seen: bool = False


@dataclass
class SchedulerTracing:
    """The tracing of one instrumented scheduler; :meth:`close` stops it."""

    scheduler: Scheduler
    tracer: Tracer
    _runs: dict[tuple[str, int], _Run] = field(default_factory=dict, repr=False)
    _listeners: list[tuple[str, Callable[..., None]]] = field(default_factory=list, repr=False)
    _last_success: tuple[str, int] | None = field(default=None, repr=False)
    _sweeper: asyncio.Task[None] | None = field(default=None, repr=False)

    def _attach(self) -> None:
        handlers: dict[str, Callable[..., None]] = {
            "job:start": self._on_start,
            "job:success": self._on_success,
            "job:complete": self._on_complete,
            "job:retry": self._on_retry,
            "job:fail": self._on_fail,
            "job:cancel": self._on_cancel,
            "job:stalled": self._on_stalled,
            "scheduler:stop": self._on_scheduler_stop,
        }
        for event, handler in handlers.items():
            self.scheduler.on(event, handler)
            self._listeners.append((event, handler))

    def close(self) -> None:
        """Stop listening to the scheduler; spans still open end now."""
        for event, handler in self._listeners:
            self.scheduler.off(event, handler)
        self._listeners.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._end_all("interrupted")

    def span_for(self, job: Job) -> Span:
        """The open span of ``job``'s current run (an invalid, no-op span if there is none):
        for a sync handler, ``with trace.use_span(tracing.span_for(job), end_on_exit=False):``
        parents the spans it opens."""
        run = self._find(job)
        return trace.INVALID_SPAN if run is None else run.span

    # -- event listeners --------------------------------------------------------------------

    def _on_start(self, job: Job) -> None:
        key = (str(job.id), job.token)
        for other in [k for k in self._runs if k[0] == key[0]]:
            self._end(other, "lease_lost", error="a newer run of the job started")
        span = self.tracer.start_span(
            SPAN_NAME,
            context=otel_context.Context(),  # a root span: not a child of whoever started us
            kind=SpanKind.CONSUMER,
            attributes={
                "job.id": key[0],
                "job.name": job.name,
                "job.attempts": job.attempts,
                "job.token": job.token,
            },
        )
        # Listeners run in the task that runs the job, so the handler task created next copies
        # this context: spans an async handler opens become children of this one.
        token = otel_context.attach(trace.set_span_in_context(span))
        self._runs[key] = _Run(span, job, token)
        self._ensure_sweeper()

    def _on_success(self, job: Job) -> None:
        self._finish(job, "success")
        self._last_success = (str(job.id), job.token)

    def _on_complete(self, job: Job) -> None:
        if self._last_success == (str(job.id), job.token):
            self._last_success = None
            return
        self._finish(job, "success")

    def _on_retry(self, job: Job) -> None:
        run = self._find(job)
        if run is not None and run.span.is_recording():
            # The retry event carries the job as written, not the exception: record what the
            # job stored about it, with the semantic-convention attribute names.
            run.span.add_event(
                "exception",
                {
                    "exception.type": job.last_error_type or "Exception",
                    "exception.message": job.last_error or "",
                },
            )
        self._finish(job, "retry", error=_describe(job.last_error_type, job.last_error))

    def _on_fail(self, job: Job, error: BaseException | None = None) -> None:
        run = self._find(job)
        if run is not None and error is not None:
            run.span.record_exception(error)
        described = (
            _describe(type(error).__name__, str(error))
            if error is not None
            else _describe(job.last_error_type, job.last_error)
        )
        self._finish(job, "fail", error=described)

    def _on_cancel(self, job: Job) -> None:
        for key in [k for k in self._runs if k[0] == str(job.id)]:
            self._end(key, "cancel")

    def _on_stalled(self, job: Job) -> None:
        run = self._find(job)
        if run is not None:
            run.span.add_event("job.stalled")

    def _on_scheduler_stop(self) -> None:
        self._end_all("interrupted")

    # -- spans ------------------------------------------------------------------------------

    def _find(self, job: Job) -> _Run | None:
        key = (str(job.id), job.token)
        run = self._runs.get(key)
        if run is None:
            run = next((r for k, r in self._runs.items() if k[0] == key[0]), None)
        return run

    def _finish(self, job: Job, outcome: str, *, error: str | None = None) -> None:
        key = (str(job.id), job.token)
        if key not in self._runs:
            key = next((k for k in self._runs if k[0] == key[0]), key)
        self._end(key, outcome, error=error)

    def _end(
        self,
        key: tuple[str, int],
        outcome: str,
        *,
        error: str | None = None,
    ) -> None:
        run = self._runs.pop(key, None)
        if run is None:
            return
        span = run.span
        span.set_attribute("job.outcome", outcome)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()
        if run.token is not None and trace.get_current_span() is span:
            # Ending in the task that made the span current: restore that task's context.
            with contextlib.suppress(Exception):
                otel_context.detach(run.token)

    def _end_all(self, outcome: str) -> None:
        for key in list(self._runs):
            self._end(key, outcome)

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            with contextlib.suppress(RuntimeError):
                self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """End spans of runs the worker let go of without an outcome event (cancelled by
        another process, lease lost, shutdown), at the second sweep that sees it."""
        while self._runs:
            await asyncio.sleep(SWEEP_INTERVAL)
            for key, run in list(self._runs.items()):
                reason = run.job.stop_reason
                if reason not in (StopReason.CANCELLED, StopReason.LEASE_LOST, StopReason.SHUTDOWN):
                    continue
                if not run.stop_seen:
                    run.stop_seen = True
                elif reason is StopReason.LEASE_LOST:
                    self._end(key, "lease_lost", error="lease lost")
                elif reason is StopReason.CANCELLED:
                    self._end(key, "cancel")
                else:
                    self._end(key, "interrupted")


def _describe(kind: str | None, message: str | None) -> str:
    if kind and message:
        return f"{kind}: {message}"
    return kind or message or "job failed"


def instrument_tracing(scheduler: Scheduler, tracer: Tracer | None = None) -> SchedulerTracing:
    """Open a ``job.run`` span per run of ``scheduler``'s jobs, with attributes ``job.id``,
    ``job.name``, ``job.attempts`` and ``job.token`` (and ``job.outcome`` when it ends); status
    ``ERROR`` with the exception recorded when the run fails, is retried or times out.
    ``tracer`` defaults to the global tracer provider's (a no-op without an SDK)."""
    from . import __version__

    chosen: Any = tracer if tracer is not None else trace.get_tracer(__name__, __version__)
    tracing = SchedulerTracing(scheduler, chosen)
    tracing._attach()
    return tracing
