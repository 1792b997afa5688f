"""What the worker says about each job on the ``mongo_job_scheduler`` logger: DEBUG when a run
starts; INFO when it completes, is retried or fails; WARNING when a job is quarantined as
poison. Lost leases and unhandled names are warned about where they are found. Nothing is
formatted unless the record's level is enabled; each record carries ``job_id``, ``job_name``
and ``attempt`` as extras. Names and errors appear :func:`~mongo_job_scheduler._format.inert`:
one line, no terminal escapes."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .. import _outcomes
from .._errors import PoisonJob
from .._format import inert
from ..job import Job
from ._running import Execution

__all__ = ["log_outcome", "log_start"]

logger = logging.getLogger("mongo_job_scheduler")


def log_start(job: Job) -> None:
    """DEBUG: a handler starts."""
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "job %s (%s) started, attempt %d",
            inert(job.name),
            job.id,
            job.attempts + 1,
            extra=_extra(job),
        )


def log_outcome(execution: Execution, plan: _outcomes.Plan, written: Mapping[str, Any]) -> None:
    """The outcome just written: completed, retried, failed (INFO) or quarantined (WARNING)."""
    job = execution.job
    if isinstance(plan.error, PoisonJob):
        level = logging.WARNING
    elif plan.events:
        level = logging.INFO
    else:
        return  # a misfire skip: nothing ran
    if not logger.isEnabledFor(level):
        return
    extra = _extra(job)
    if isinstance(plan.error, PoisonJob):
        logger.warning(
            "job %s (%s) quarantined as poison: %s",
            inert(job.name),
            job.id,
            inert(plan.error),
            extra=extra,
        )
    elif "job:retry" in plan.events:
        due = written.get("nextRunAt")
        wait = (due - datetime.now(due.tzinfo)).total_seconds() if due is not None else 0.0
        logger.info(
            "job %s (%s) attempt %d failed, retrying in %.1fs: %s",
            inert(job.name),
            job.id,
            job.attempts + 1,
            max(wait, 0.0),
            inert(written.get("lastError")),
            extra=extra,
        )
    elif plan.failed:
        logger.info(
            "job %s (%s) failed on attempt %d: %s",
            inert(job.name),
            job.id,
            job.attempts + 1,
            inert(written.get("lastError")),
            extra=extra,
        )
    else:
        logger.info(
            "job %s (%s) completed, attempt %d, in %.3fs",
            inert(job.name),
            job.id,
            job.attempts + 1,
            time.monotonic() - execution.started,
            extra=extra,
        )


def _extra(job: Job) -> dict[str, Any]:
    return {"job_id": str(job.id), "job_name": job.name, "attempt": job.attempts + 1}
