"""Event listeners: ``scheduler.on("job:success", fn)``.

Event names are the Node library's. A listener may be a plain function or a coroutine
function; a listener that raises is logged and never breaks the scheduler or skips the others.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["EVENTS", "EventEmitter"]

logger = logging.getLogger("mongo_job_scheduler")

EVENTS = frozenset(
    {
        "scheduler:start",
        "scheduler:stop",
        "scheduler:error",
        "worker:start",
        "worker:stop",
        "worker:error",
        "job:created",
        "job:start",
        "job:success",
        "job:fail",
        "job:retry",
        "job:complete",
        "job:cancel",
        "job:stalled",
    }
)

Listener = Callable[..., Any]


class EventEmitter:
    """Listeners by event name, called in registration order."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}
        self._pending: set[asyncio.Task[Any]] = set()

    def on(self, event: str, listener: Listener) -> None:
        """Call ``listener`` on each ``event``. Unknown event names are an error."""
        if event not in EVENTS:
            from ._errors import ValidationError

            raise ValidationError("event", f"unknown event {event!r}; one of {sorted(EVENTS)}")
        if not callable(listener):
            from ._errors import ValidationError

            raise ValidationError("listener", "must be callable")
        self._listeners.setdefault(event, []).append(listener)

    def off(self, event: str, listener: Listener) -> None:
        """Stop calling ``listener`` on ``event`` (no error if it was not registered)."""
        listeners = self._listeners.get(event, [])
        if listener in listeners:
            listeners.remove(listener)

    def listening(self, event: str) -> bool:
        """Whether anything listens to ``event`` (lets callers skip building payloads)."""
        return bool(self._listeners.get(event))

    def emit(self, event: str, *args: Any) -> None:
        """Call every listener of ``event`` with ``args``; coroutine results are scheduled."""
        for listener in list(self._listeners.get(event, ())):
            try:
                result = listener(*args)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._pending.add(task)
                    task.add_done_callback(self._done)
            except Exception as exc:
                self._report(event, exc)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._report("listener", task.exception())

    def _report(self, event: str, exc: BaseException | None) -> None:
        logger.error("event listener for %s raised", event, exc_info=exc, extra={"event": event})
        if event != "scheduler:error":
            for listener in list(self._listeners.get("scheduler:error", ())):
                try:
                    listener(exc)
                except Exception:
                    logger.exception("scheduler:error listener raised")
