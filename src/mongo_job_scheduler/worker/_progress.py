"""Progress that handlers report: the latest value per job, written together at most every
PROGRESS_EVERY seconds, and folded into the run's outcome if still unwritten."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ..stores.base import Fence, JobStore
from ._running import Execution

__all__ = ["PROGRESS_EVERY", "ProgressReports"]

PROGRESS_EVERY = 0.25
"""Seconds between two writes of the progress handlers report (coalesced per job)."""

ErrorReporter = Callable[[BaseException, str], None]


class ProgressReports:
    """Coalesces progress reports of a worker's executions into few writes."""

    def __init__(
        self, store: JobStore, executions: dict[Any, Execution], report: ErrorReporter
    ) -> None:
        self.store = store
        self.executions = executions
        self.report_error = report
        self._latest: dict[Any, dict[str, Any]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def start(self) -> None:
        """Bind to the running event loop (reports from handler threads are passed to it)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def report(self, job_id: Any, percent: float, message: str | None) -> None:
        """A handler reported progress (maybe from its thread): keep the latest per job."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(self.report, job_id, percent, message)
            return
        execution = self.executions.get(job_id)
        if execution is None or execution.context.stop_reason is not None:
            return
        self._latest[job_id] = {
            "percent": percent,
            "message": message,
            "updatedAt": datetime.now(timezone.utc),
        }
        if self._timer is None:
            self._timer = loop.call_later(PROGRESS_EVERY, self._flush)

    def take(self, job_id: Any) -> dict[str, Any] | None:
        """The job's latest unwritten progress (removed: its outcome write carries it)."""
        return self._latest.pop(job_id, None)

    async def close(self) -> None:
        """Drop what is unwritten (every execution has ended) and wait for writes in flight."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    def _flush(self) -> None:
        self._timer = None
        items = [
            (execution.fence, progress)
            for job_id, progress in self._latest.items()
            if (execution := self.executions.get(job_id)) is not None
        ]
        self._latest.clear()
        if items:
            task = asyncio.create_task(self._write(items), name="mjs-progress")
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _write(self, items: list[tuple[Fence, dict[str, Any]]]) -> None:
        try:
            await self.store.record_progress(items)
        except Exception as exc:
            self.report_error(exc, "progress not recorded")
