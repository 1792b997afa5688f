"""The job as users see it: a typed, read-only view of one stored document."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from bson import ObjectId

from ._durations import as_aware_utc
from ._errors import InvalidJobState, ValidationError
from .repeat import Repeat
from .retry import Retry

__all__ = ["AttemptOutcome", "AttemptRecord", "Job", "JobStatus", "StopReason"]


class JobStatus(str, Enum):
    """A job's state, stored as the lower-case string (the Node library's values)."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    """Waits for the jobs it depends on (``depends_on``) before it becomes pending."""
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """Whether this is a terminal state (completed, failed or cancelled)."""
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


ACTIVE_STATUSES = (JobStatus.PENDING.value, JobStatus.RUNNING.value, JobStatus.WAITING.value)
FINISHED_STATUSES = (JobStatus.COMPLETED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value)


_STATUSES = {status.value: status for status in JobStatus}


class StopReason(str, Enum):
    """Why a running handler is asked to stop."""

    CANCELLED = "cancelled"
    LEASE_LOST = "lease_lost"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"


@dataclass(frozen=True)
class Progress:
    """The last progress a handler reported: ``percent`` (0 to 100) and an optional message."""

    percent: float
    message: str | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_document(cls, value: Any) -> Progress | None:
        if not isinstance(value, Mapping) or not isinstance(value.get("percent"), (int, float)):
            return None
        message = value.get("message")
        return cls(
            float(value["percent"]),
            message if isinstance(message, str) else None,
            _dt(value.get("updatedAt")),
        )


class AttemptOutcome(str, Enum):
    """How one attempt (one claim of a job) ended, as its :class:`AttemptRecord` says."""

    COMPLETED = "completed"
    """The handler returned (a one-off job completed, or a repeating run succeeded)."""
    RETRIED = "retried"
    """The handler failed and another attempt follows after ``retry_delay``."""
    FAILED = "failed"
    """The handler failed (or the job was failed as poison, or its schedule was unusable) and
    no attempt of this run follows: a one-off job failed, a repeating job moved on to its
    next slot."""
    TIMED_OUT = "timed_out"
    """The handler passed its timeout (a failure, ``JobTimeout``); another attempt follows
    when ``retry_delay`` is set."""
    LEASE_LOST = "lease_lost"
    """The lease ran out without an outcome (the worker died, hung or stalled) and another
    claim took the job over; ``ended_at`` is when the lease ran out."""
    CANCELLED = "cancelled"
    """The job was cancelled while the attempt ran."""
    STOPPED = "stopped"
    """The worker gave the job back without running it to an outcome (pending, due now,
    attempts unchanged): it was stopping, or the claim's answer came later than the lease
    lasts."""
    SKIPPED = "skipped"
    """A repeating job's missed slots were skipped under ``misfire="skip"``: no handler ran."""

    def __str__(self) -> str:
        return self.value


_OUTCOMES = {outcome.value: outcome for outcome in AttemptOutcome}


@dataclass(frozen=True)
class AttemptRecord:
    """One entry of :attr:`Job.history`: an attempt, from its claim to its end. Datetimes are
    aware UTC (the server's clock, for MongoDB). Fields the stored entry lacks are ``None``."""

    outcome: AttemptOutcome
    started_at: datetime | None
    """When the attempt was claimed (the job's ``lastRunAt`` then)."""
    ended_at: datetime | None
    duration: timedelta | None
    worker: str | None
    """The owner that ran it (``lockedBy``)."""
    token: int | None
    """Its fencing token (``lockVersion``)."""
    error: str | None = None
    """The failure's message (at most 500 characters)."""
    error_type: str | None = None
    """The failure's exception type name, e.g. ``ValueError`` or ``JobTimeout``."""
    retry_delay: timedelta | None = None
    """The wait before the next attempt, when one follows (retried and timed-out attempts)."""

    @property
    def retried(self) -> bool:
        """Whether another attempt follows this one after :attr:`retry_delay`."""
        return self.retry_delay is not None

    @classmethod
    def from_document(cls, value: Any) -> AttemptRecord | None:
        """The record of one stored ``history`` entry; ``None`` if it cannot be read (not a
        document, or an outcome this version does not know)."""
        if not isinstance(value, Mapping):
            return None
        stored = value.get("outcome")
        outcome = _OUTCOMES.get(stored) if isinstance(stored, str) else None
        if outcome is None:
            return None
        worker, token = value.get("lockedBy"), value.get("lockVersion")
        error, error_type = value.get("error"), value.get("errorType")
        return cls(
            outcome,
            _dt(value.get("startedAt")),
            _dt(value.get("endedAt")),
            _span(value.get("durationMs")),
            worker if isinstance(worker, str) else None,
            token if isinstance(token, int) and not isinstance(token, bool) else None,
            error if isinstance(error, str) else None,
            error_type if isinstance(error_type, str) else None,
            _span(value.get("retryDelayMs")),
        )


ProgressSink = Callable[[Any, float, "str | None"], None]


class RunContext:
    """What a running handler can observe about its own execution (one per attempt)."""

    def __init__(
        self,
        token: int,
        owner: str,
        job_id: Any = None,
        progress_sink: ProgressSink | None = None,
    ) -> None:
        self.token = token
        self.owner = owner
        self.job_id = job_id
        self.progress_sink = progress_sink
        self.stop_reason: StopReason | None = None
        self._event: threading.Event | None = None  # made when first asked for

    @property
    def stop_event(self) -> threading.Event:
        """Set once a stop is requested (safe to first ask for from a handler's thread)."""
        event = self._event
        if event is None:
            with _EVENT_LOCK:
                event = self._event
                if event is None:
                    event = threading.Event()
                    self._event = event
            # Published before reading stop_reason; request_stop writes stop_reason before
            # reading _event: whichever runs second sets the event.
            if self.stop_reason is not None:
                event.set()
        return event

    def request_stop(self, reason: StopReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        event = self._event
        if event is not None:
            event.set()


_EVENT_LOCK = threading.Lock()


def _dt(value: Any) -> datetime | None:
    return as_aware_utc(value) if isinstance(value, datetime) else None


def _ms(value: Any) -> timedelta | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return timedelta(milliseconds=value)
    return None


def _span(value: Any) -> timedelta | None:
    """A stored count of milliseconds (0 included) as a duration; ``None`` for anything else
    (negative, not a number, beyond ``timedelta``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        with contextlib.suppress(OverflowError, ValueError):
            return timedelta(milliseconds=value)
    return None


@dataclass(frozen=True)
class Job:
    """A read-only view of a stored job. Datetimes are timezone-aware UTC.

    Inside a handler, :attr:`token` is the fencing token of this execution (it grows with every
    claim, so downstream systems can reject writes from an older owner), and
    :attr:`stop_requested` / :attr:`stop_reason` tell whether the scheduler wants the handler to
    stop (cancelled, lease lost, timed out, shutting down). Async handlers are also cancelled;
    sync handlers should poll :attr:`stop_requested` or wait on :attr:`stop_event`.
    """

    id: ObjectId | str
    name: str
    data: Any
    status: JobStatus
    attempts: int
    priority: int
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_scheduled_at: datetime | None
    last_error: str | None
    last_error_type: str | None
    repeat: Repeat | None
    retry: Retry | None
    dedupe_key: str | None
    concurrency: int | None
    max_execution: timedelta | None
    timeout: timedelta | None
    locked_by: str | None
    lock_until: datetime | None
    lock_version: int
    lease_expiries: int
    missed_runs: int
    """Slots of a repeating job run late in a row under ``misfire="all"`` (0 otherwise)."""
    depends_on: tuple[Any, ...]
    """The ids of the jobs this one waits for (``depends_on``); empty for most jobs."""
    run_on_failure: bool
    """Whether it runs once its dependencies finished even if some failed or were
    cancelled (otherwise it is cancelled with them)."""
    created_at: datetime | None
    updated_at: datetime | None
    document: Mapping[str, Any] = field(repr=False, compare=False)
    _run: RunContext | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], run: RunContext | None = None) -> Job:
        """Build the view of a stored document (tolerant of documents written by Node)."""
        get = doc.get
        error = get("lastError")
        # Built without the dataclass __init__ (one frozen __setattr__ per field): this runs
        # for every claimed job. The fields are exactly the dataclass's, in its order.
        job = object.__new__(cls)
        job.__dict__.update(
            id=doc["_id"],
            name=get("name", ""),
            data=get("data"),
            status=_STATUSES.get(get("status", "pending"), JobStatus.PENDING),
            attempts=int(get("attempts") or 0),
            priority=int(get("priority") or 5),
            next_run_at=_dt(get("nextRunAt")),
            last_run_at=_dt(get("lastRunAt")),
            last_scheduled_at=_dt(get("lastScheduledAt")),
            last_error=error if isinstance(error, str) else None,
            last_error_type=get("lastErrorType"),
            repeat=Repeat.from_document(get("repeat")),
            retry=Retry.from_document(get("retry")),
            dedupe_key=get("dedupeKey"),
            concurrency=get("concurrency"),
            max_execution=_ms(get("maxExecutionMs")),
            timeout=_ms(get("timeoutMs")),
            locked_by=get("lockedBy"),
            lock_until=_dt(get("lockUntil")),
            lock_version=int(get("lockVersion") or 0),
            lease_expiries=int(get("leaseExpiries") or 0),
            missed_runs=int(get("missedRuns") or 0),
            depends_on=tuple(get("dependsOn") or ()),
            run_on_failure=get("runOnFailure") is True,
            created_at=_dt(get("createdAt")),
            updated_at=_dt(get("updatedAt")),
            document=dict(doc),
            _run=run,
        )
        return job

    # -- inside a handler -------------------------------------------------------------------

    @property
    def token(self) -> int:
        """The fencing token of this execution (the ``lockVersion`` written by the claim)."""
        return self._run.token if self._run is not None else self.lock_version

    @property
    def stop_requested(self) -> bool:
        """Whether the scheduler asked this execution to stop."""
        return self._run is not None and self._run.stop_reason is not None

    @property
    def stop_reason(self) -> StopReason | None:
        """Why the scheduler asked this execution to stop, or ``None``."""
        return self._run.stop_reason if self._run is not None else None

    @property
    def stop_event(self) -> threading.Event:
        """An event set when the scheduler asks this execution to stop (for sync handlers)."""
        if self._run is None:
            return threading.Event()
        return self._run.stop_event

    @property
    def result(self) -> Any:
        """What the handler of the last successful run returned (``None`` before that)."""
        return self.document.get("result")

    @property
    def history(self) -> tuple[AttemptRecord, ...]:
        """The job's last attempts, oldest first (at most 20: ``history`` in docs/schema.md);
        empty for a job that never ran, or whose attempts were all run by a Node worker."""
        stored = self.document.get("history")
        if not isinstance(stored, list):
            return ()
        records = (AttemptRecord.from_document(entry) for entry in stored)
        return tuple(record for record in records if record is not None)

    @property
    def progress(self) -> Progress | None:
        """The last progress the handler reported with :meth:`set_progress`, if any."""
        return Progress.from_document(self.document.get("progress"))

    def report_progress(self, percent: float, message: str | None = None) -> None:
        """Record progress from inside a handler (sync or async; safe from a handler's
        thread). Calls in a tight loop are coalesced: the latest value is written at most a
        few times a second, and with the run's outcome."""
        if isinstance(percent, bool) or not isinstance(percent, (int, float)):
            raise ValidationError("percent", f"expected a number, got {type(percent).__name__}")
        if not 0 <= percent <= 100:
            raise ValidationError("percent", f"must be between 0 and 100, got {percent!r}")
        if message is not None and (not isinstance(message, str) or len(message) > 1000):
            raise ValidationError("message", "must be a string of at most 1000 characters")
        if self._run is None or self._run.progress_sink is None:
            raise InvalidJobState("progress can only be reported by the job's running handler")
        self._run.progress_sink(self._run.job_id, float(percent), message)

    async def set_progress(self, percent: float, message: str | None = None) -> None:
        """Record progress from inside an async handler (see :meth:`report_progress`)."""
        self.report_progress(percent, message)

    @property
    def is_repeating(self) -> bool:
        """Whether the job has a cron or interval schedule."""
        return self.repeat is not None
