"""A job's timeline as its page shows it (``_job_timeline.html``): the steps in the order they
happen, built from the public ``Job`` view alone (its attempt history, status, lock, progress
and schedule) and the jobs it waits for or that wait for it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .._history import HISTORY_LIMIT
from ..job import AttemptOutcome, AttemptRecord, Job, JobStatus

__all__ = ["HISTORY_LIMIT", "OUTCOME_LABELS", "Step", "history_cut", "job_timeline"]


@dataclass(frozen=True)
class Step:
    """One step of a timeline. ``kind`` tells the template how to show it:

    - ``created``: the job was created (``at``);
    - ``waits``: it waits (or waited) for ``jobs``;
    - ``attempt``: an ``attempt`` from the history (``at`` its start); ``retry_at`` when
      another attempt followed after its delay;
    - ``running``: the attempt running now (``at`` its claim), with the lease and the
      progress of ``job``;
    - ``progress``: the last progress reported (the job is not running);
    - ``ended``: the job ended ``completed``, ``failed`` or ``cancelled`` (``at``: its last
      change);
    - ``next``: the next run of a pending job (``at``; repeating or not);
    - ``dependants``: ``jobs`` wait (or waited) for it.
    """

    kind: str
    at: datetime | None = None
    attempt: AttemptRecord | None = None
    retry_at: datetime | None = None
    jobs: tuple[Job, ...] = ()

    @property
    def outcome(self) -> str:
        """The CSS modifier of the step: an attempt's outcome, else the kind."""
        return self.attempt.outcome.value if self.attempt is not None else self.kind


def job_timeline(job: Job, waits_for: Sequence[Job], dependants: Sequence[Job]) -> list[Step]:
    """The steps of ``job``'s life, oldest first, then what is still to come."""
    steps = [Step("created", job.created_at)]
    if waits_for:
        steps.append(Step("waits", jobs=tuple(waits_for)))
    for record in job.history:
        retry_at = None
        if record.retry_delay is not None and record.ended_at is not None:
            retry_at = record.ended_at + record.retry_delay
        steps.append(Step("attempt", record.started_at, record, retry_at))
    if job.status is JobStatus.RUNNING:
        steps.append(Step("running", job.last_run_at))
    elif job.progress is not None:
        steps.append(Step("progress", job.progress.updated_at))
    if job.status.finished:
        steps.append(Step("ended", job.updated_at))
    elif job.status is JobStatus.PENDING:
        steps.append(Step("next", job.next_run_at))
    if dependants:
        steps.append(Step("dependants", jobs=tuple(dependants)))
    return steps


def history_cut(job: Job) -> bool:
    """Whether older attempts of ``job`` may have been dropped from its history (it holds as
    many as it keeps)."""
    return len(job.history) >= HISTORY_LIMIT


OUTCOME_LABELS = {
    AttemptOutcome.COMPLETED: "completed",
    AttemptOutcome.RETRIED: "failed, retried",
    AttemptOutcome.FAILED: "failed",
    AttemptOutcome.TIMED_OUT: "timed out",
    AttemptOutcome.LEASE_LOST: "lease lost",
    AttemptOutcome.CANCELLED: "cancelled",
    AttemptOutcome.STOPPED: "stopped (worker shut down)",
    AttemptOutcome.SKIPPED: "missed slots skipped",
}
"""How the page words each outcome."""
