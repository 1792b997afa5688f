"""What happens to a job around one of its executions: pure decisions, no I/O.

The worker claims a job, asks :func:`before_run` whether to run its handler at all (a poison
job is quarantined, a broken schedule fails, a repeating job that missed slots may skip to the
next one), runs the handler, and asks :func:`after_success` or :func:`after_failure` (a timeout
is a failure with :class:`JobTimeout`; the death of a handler's process is
:func:`after_crash`) what to write. Each answer is a :class:`Plan`: the one
fenced write to make, the events to emit once it is applied, and the error to report. A stopped
run (cancelled, lease lost, shutdown) writes nothing of its own: :func:`after_stop` says what
the worker does instead. The worker carries plans out; every branch here has a unit test.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from ._dedupe import released_on_finish
from ._documents import validate_bson_value, validate_job_document
from ._errors import HandlerError, JobTimeout, PoisonJob, ValidationError
from ._history import Ending
from .job import AttemptOutcome, Job, StopReason
from .repeat import Repeat
from .retry import Retry
from .stores.base import Finish
from .tasks import TaskSpec

__all__ = [
    "MAX_ERROR_LENGTH",
    "MAX_TRACE_LENGTH",
    "Clock",
    "Plan",
    "Start",
    "StopPlan",
    "after_crash",
    "after_failure",
    "after_schedule_change",
    "after_stop",
    "after_success",
    "before_run",
    "describe",
    "unstorable_result",
]

MAX_ERROR_LENGTH = 4_000
"""Characters of an error message kept in ``lastError``."""
MAX_TRACE_LENGTH = 16_000
"""Characters of a traceback kept in ``lastErrorTrace`` (its end)."""

Clock = Callable[[], datetime]
"""The store's clock: decisions read it only when they depend on the time."""

CARRIED_OVER = ("lastError", "lastErrorType", "lastErrorTrace", "result", "progress")
"""Fields of an outcome kept when a repeating job's next occurrence is computed again."""


@dataclass(frozen=True)
class Policy:
    """The scheduler settings the decisions depend on."""

    default_timezone: str
    max_lease_expiries: int
    retention: Mapping[str, timedelta]


class Start(NamedTuple):
    """Run the handler. For a repeating job, ``slot`` is the occurrence the run is for and
    ``caught_up`` tells that it is an older missed slot run under ``misfire="all"``."""

    slot: datetime | None = None
    caught_up: bool = False


class Plan(NamedTuple):
    """One outcome to write: the fenced ``finish``, then the ``events`` to emit with the job as
    written (``job:fail`` listeners also get ``error``). ``start`` is set when ``finish`` is a
    repeating job's next occurrence computed from that start (to compute again if the schedule
    changed meanwhile)."""

    finish: Finish
    events: tuple[str, ...] = ()
    error: BaseException | None = None
    start: Start | None = None

    @property
    def failed(self) -> bool:
        """Whether this outcome ends an execution that failed for good (``job:fail``)."""
        return "job:fail" in self.events


RUN = Start()
"""Run a one-off job's handler."""
DONE = Ending(AttemptOutcome.COMPLETED)
SKIPPED_SLOTS = Ending(AttemptOutcome.SKIPPED)
SUCCEEDED = ("job:success", "job:complete")
COMPLETED = ("job:complete",)
RETRIED = ("job:retry",)
FAILED = ("job:fail",)


@dataclass(frozen=True)
class StopPlan:
    """What a stopped execution does instead of writing an outcome."""

    release: bool
    """Give the job back (pending, due now, attempts unchanged): the worker is stopping."""
    free_slot: bool
    """Free its concurrency slot only: the job is no longer this worker's."""
    lease_lost: bool
    """Report that the lease was lost (a ``worker:error``)."""


def describe(exc: BaseException) -> tuple[str, str, str]:
    """An error as stored: message (cut to MAX_ERROR_LENGTH), type name, and the end of its
    traceback (MAX_TRACE_LENGTH). An error raised in a handler's child process
    (:class:`HandlerError`) is stored with the type name and traceback it had there."""
    if isinstance(exc, HandlerError):
        message, kind, trace = exc.message or exc.type_name, exc.type_name, exc.trace
    else:
        message, kind = str(exc) or type(exc).__name__, type(exc).__name__
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return message[:MAX_ERROR_LENGTH], kind, trace[-MAX_TRACE_LENGTH:]


def before_run(job: Job, *, poisoned: bool, now: Clock, policy: Policy) -> Plan | Start:
    """Whether a claimed job runs: quarantine a poison job (its lease expired too often),
    fail a job whose stored schedule is unusable, skip a repeating job's missed slots when
    its misfire policy says so; otherwise :class:`Start` for the slot it runs for."""
    if poisoned:
        poison = PoisonJob(
            f"lease expired {job.lease_expiries} times without the job finishing "
            f"(limit {policy.max_lease_expiries}); its handler probably crashes or hangs its "
            "worker"
        )
        return after_failure(job, poison, None, task=None, now=now, policy=policy, final=True)
    stored_repeat = job.document.get("repeat")
    if stored_repeat and job.repeat is None:
        broken = ValueError(f"invalid repeat {stored_repeat!r}")
        return after_failure(
            job, broken, None, task=None, now=now, policy=policy, final=True, drop_repeat=True
        )
    repeat = job.repeat
    if repeat is None:
        return RUN
    slot = job.last_scheduled_at or job.next_run_at
    if job.attempts or slot is None:
        return Start(slot)
    decided = repeat.plan(
        slot,
        now(),
        caught_up_in_a_row=job.missed_runs,
        default_timezone=policy.default_timezone,
    )
    if decided.run:
        return Start(decided.slot, decided.caught_up)
    skip = {
        "status": "pending",
        "nextRunAt": decided.slot,
        "lastScheduledAt": decided.slot,
        "missedRuns": 0,
    }
    return Plan(Finish(set=skip, attempt=SKIPPED_SLOTS))


def after_success(job: Job, result: Any, start: Start, *, now: Clock, policy: Policy) -> Plan:
    """A handler returned ``result``: a one-off job completes (``job:success``, then
    ``job:complete``); a repeating job moves to its next slot (``job:complete``)."""
    if job.repeat is not None and start.slot is not None:
        finish = _next_occurrence(job, job.repeat, start, policy, {"result": result}, DONE)
        return Plan(finish, COMPLETED, start=start)
    fields = {"status": "completed", "leaseExpiries": 0, "result": result}
    if policy.retention:
        fields.update(_expiry("completed", now, policy))
    finish = Finish(set=fields, release_dedupe_key=released_on_finish(job.document), attempt=DONE)
    return Plan(finish, SUCCEEDED)


def after_failure(
    job: Job,
    error: BaseException,
    start: Start | None,
    *,
    task: TaskSpec | None,
    now: Clock,
    policy: Policy,
    final: bool = False,
    drop_repeat: bool = False,
) -> Plan:
    """An execution failed with ``error``. With attempts left (the task's retry policy, else
    the job's) it is retried after its backoff, never later than a repeating job's next slot
    (``job:retry``). Otherwise (or when ``final``) a repeating job moves to its next slot and a
    one-off job fails (``job:fail`` either way); ``drop_repeat`` fails a repeating job too.
    ``start`` is the run's start (``None`` when no handler ran for a slot)."""
    message, kind, trace = describe(error)
    attempts = job.attempts + 1
    errors = {"lastError": message, "lastErrorType": kind, "lastErrorTrace": trace}
    slot = start.slot if start is not None else None
    retry = (task.retry if task is not None else None) or job.retry
    timed_out = isinstance(error, JobTimeout)
    if not final and retry is not None and retry.allows_another(attempts):
        at = now()
        due = at + max(_retry_delay(task, retry, attempts), timedelta(0))
        if job.repeat is not None and slot is not None:
            due = min(due, job.repeat.next_after(slot, policy.default_timezone))
        fields: dict[str, Any] = {"status": "pending", "nextRunAt": due, "attempts": attempts}
        if slot is not None:
            fields["lastScheduledAt"] = slot
        outcome = AttemptOutcome.TIMED_OUT if timed_out else AttemptOutcome.RETRIED
        ending = Ending.of(outcome, message, kind, due - at)
        return Plan(Finish(set={**fields, **errors}, attempt=ending), RETRIED)
    ending = Ending.of(
        AttemptOutcome.TIMED_OUT if timed_out else AttemptOutcome.FAILED, message, kind
    )
    repeat = None if drop_repeat else job.repeat
    if slot is None:
        slot = job.last_scheduled_at or job.next_run_at
    if repeat is not None and slot is not None:
        following = Start(slot)
        finish = _next_occurrence(job, repeat, following, policy, errors, ending)
        return Plan(finish, FAILED, error, start=following)
    fields = {"status": "failed", "attempts": attempts, **errors}
    finish = Finish(
        set={**fields, **_expiry("failed", now, policy)},
        release_dedupe_key=released_on_finish(job.document),
        attempt=ending,
    )
    return Plan(finish, FAILED, error)


def after_crash(
    job: Job,
    error: BaseException,
    start: Start | None,
    *,
    task: TaskSpec | None,
    now: Clock,
    policy: Policy,
) -> Plan:
    """The child process running the handler died (``error`` says how: a signal, an exit
    code). It counts as a lease expiry, so a job whose handler keeps killing its process
    cannot retry forever: below ``max_lease_expiries`` it is a failed attempt (retried per its
    policy) with ``leaseExpiries`` one higher; at the limit it is quarantined as a
    :class:`PoisonJob` (a one-off job fails, a repeating one moves to its next slot, whose
    count starts again at 0)."""
    expiries = job.lease_expiries + 1
    if expiries < policy.max_lease_expiries:
        plan = after_failure(job, error, start, task=task, now=now, policy=policy)
    else:
        poison = PoisonJob(
            f"the handler's process died or the lease expired {expiries} times without the "
            f"job finishing (limit {policy.max_lease_expiries}); the last time: {error}"
        )
        plan = after_failure(job, poison, start, task=None, now=now, policy=policy, final=True)
    if plan.start is None:  # not a next occurrence (that one resets the count)
        plan.finish.set["leaseExpiries"] = expiries
    return plan


def after_schedule_change(current: Job, plan: Plan, policy: Policy) -> Plan:
    """A repeating job's next occurrence was refused because its schedule changed while it
    ran (``current`` is the job now, still owned by the run): the same outcome with the next
    occurrence computed from the new schedule, or completed if the schedule was removed."""
    start = plan.start or Start(current.last_scheduled_at or current.next_run_at)
    extra = {k: v for k, v in plan.finish.set.items() if k in CARRIED_OVER}
    ending = plan.finish.attempt
    if current.repeat is None or start.slot is None:
        completed = {"status": "completed", **extra}
        finish = Finish(set=completed, expect={"repeat": None}, attempt=ending)
    else:
        finish = _next_occurrence(current, current.repeat, start, policy, extra, ending)
    return plan._replace(finish=finish)


def after_stop(reason: StopReason) -> StopPlan:
    """A handler was stopped: at shutdown the job is given back; cancelled, or with its lease
    lost, it is no longer this worker's, so only its slot is freed (a lost lease is
    reported). A timeout is not a stop: it is a failed attempt (:func:`after_failure`)."""
    shutdown = reason is StopReason.SHUTDOWN
    return StopPlan(
        release=shutdown, free_slot=not shutdown, lease_lost=reason is StopReason.LEASE_LOST
    )


def unstorable_result(job: Job, result: Any) -> TypeError | None:
    """The error that fails a run whose return value cannot be stored (not BSON, or the job
    would outgrow a MongoDB document with it), or ``None``."""
    try:
        validate_bson_value("result", result)
        if result is not None:
            validate_job_document({**job.document, "result": result})
    except ValidationError as exc:
        return TypeError(f"the handler's return value cannot be stored: {exc.reason}")
    return None


def _next_occurrence(
    job: Job,
    repeat: Repeat,
    start: Start,
    policy: Policy,
    extra: Mapping[str, Any],
    ending: Ending | None,
) -> Finish:
    """The write that moves a repeating job to the slot after ``start.slot`` (guarded by the
    schedule it was computed from), recording the attempt's ``ending``."""
    assert start.slot is not None
    following = repeat.next_after(start.slot, policy.default_timezone)
    fields = {
        "status": "pending",
        "nextRunAt": following,
        "lastScheduledAt": following,
        "attempts": 0,
        "leaseExpiries": 0,
        "missedRuns": job.missed_runs + 1 if start.caught_up else 0,
        **extra,
    }
    return Finish(set=fields, expect={"repeat": job.document.get("repeat")}, attempt=ending)


def _retry_delay(task: TaskSpec | None, retry: Retry, attempts: int) -> timedelta:
    """The wait before the next attempt: the task's backoff function if it has one, else the
    retry policy's backoff."""
    if task is not None and task.backoff is not None:
        wait = task.backoff(attempts)
        return wait if isinstance(wait, timedelta) else timedelta(seconds=float(wait))
    return retry.delay_for(attempts)


def _expiry(status: str, now: Clock, policy: Policy) -> dict[str, Any]:
    """The ``expireAt`` that retention gives a one-off job finishing ``status``, if any."""
    keep = policy.retention.get(status)
    return {} if keep is None else {"expireAt": now() + keep}
