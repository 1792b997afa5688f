"""``SchedulerConfig``: the validated options of a ``Scheduler``, handed to its workers."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ._durations import Duration, to_seconds
from ._errors import ConfigurationError, ValidationError
from ._format import CONTROL_CHARACTERS
from .repeat import _zone
from .tasks import Executor, parse_executor

__all__ = ["FINAL_STATUSES", "SchedulerConfig"]

FINAL_STATUSES = ("completed", "failed", "cancelled")
"""The statuses a job ends in, each of which may have its own retention."""


@dataclass(frozen=True)
class SchedulerConfig:
    """Every option of a scheduler, validated once (:meth:`from_options`). Durations are
    ``timedelta``; ``poll_interval`` and ``heartbeat_interval`` are seconds."""

    id: str
    workers: int
    poll_interval: float
    lease: timedelta
    heartbeat_interval: float
    max_execution: timedelta | None
    max_lease_expiries: int
    default_timezone: str
    retention: Mapping[str, timedelta] = field(default_factory=dict)
    """How long finished one-off jobs are kept, by final status (absent: forever)."""
    executor: Executor = "auto"
    """The executor of tasks that name none (and of the catch-all handler)."""
    process_pool: int = 1
    """How many child processes run ``executor="process"`` handlers at once, at most."""
    max_tasks_per_child: int | None = None
    """Replace a child process after it ran this many handlers (``None``: never)."""
    max_memory_per_child: int | None = None
    """Replace a child process whose resident memory exceeds this many bytes after a
    handler (read from ``/proc``; ``None``: never)."""

    @classmethod
    def from_options(
        cls,
        *,
        workers: Any = 1,
        poll_interval: Any = 0.5,
        lock_timeout: Any = 600,
        default_timezone: Any = "UTC",
        max_execution: Any = None,
        id: Any = None,
        heartbeat_interval: Any = None,
        max_lease_expiries: Any = 3,
        retention: Any = None,
        executor: Any = "auto",
        process_pool: Any = None,
        max_tasks_per_child: Any = None,
        max_memory_per_child: Any = None,
    ) -> SchedulerConfig:
        """Validate the ``Scheduler`` keyword options; a bad one raises
        :class:`ConfigurationError` naming it."""
        workers = _positive_int("workers", workers)
        poll = _seconds("poll_interval", poll_interval)
        lease = _seconds("lock_timeout", lock_timeout)
        try:
            _zone(default_timezone, "default_timezone")
        except ValidationError as exc:
            raise ConfigurationError(exc.field, exc.reason) from None
        stall = None if max_execution is None else _seconds("max_execution", max_execution)
        if heartbeat_interval is None:
            heartbeat = min(lease / 3, 5.0)
        else:
            heartbeat = _seconds("heartbeat_interval", heartbeat_interval)
            if heartbeat >= lease:
                raise ConfigurationError("heartbeat_interval", "must be shorter than lock_timeout")
        expiries = _positive_int("max_lease_expiries", max_lease_expiries)
        keep = _retention(retention)
        processes = _process_options(
            executor, process_pool, max_tasks_per_child, max_memory_per_child
        )
        if id is not None and (not isinstance(id, str) or not id or id.startswith("$")):
            raise ConfigurationError("id", f"must be a non-empty string, got {id!r}")
        if id is not None and CONTROL_CHARACTERS.search(id):
            raise ConfigurationError("id", f"must not contain control characters, got {id!r}")
        return cls(
            id=id or f"scheduler-{uuid.uuid4().hex[:8]}",
            workers=workers,
            poll_interval=poll,
            lease=timedelta(seconds=lease),
            heartbeat_interval=heartbeat,
            max_execution=None if stall is None else timedelta(seconds=stall),
            max_lease_expiries=expiries,
            default_timezone=default_timezone,
            retention=keep,
            **processes,
        )

    def with_workers(self, workers: Any) -> SchedulerConfig:
        """This configuration with another (validated) number of workers."""
        return dataclasses.replace(self, workers=_positive_int("workers", workers))


def _positive_int(field_name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(field_name, f"must be a positive integer, got {value!r}")
    return value


def _process_options(
    executor: Any, process_pool: Any, max_tasks_per_child: Any, max_memory_per_child: Any
) -> dict[str, Any]:
    """Validate the default executor and the options of the process pool."""
    try:
        chosen = parse_executor("executor", executor)
    except ValidationError as exc:
        raise ConfigurationError(exc.field, exc.reason) from None
    pool = cpu_count() if process_pool is None else _positive_int("process_pool", process_pool)
    return {
        "executor": chosen,
        "process_pool": pool,
        "max_tasks_per_child": _optional_count("max_tasks_per_child", max_tasks_per_child),
        "max_memory_per_child": _optional_count("max_memory_per_child", max_memory_per_child),
    }


def _optional_count(field_name: str, value: Any) -> int | None:
    return None if value is None else _positive_int(field_name, value)


def cpu_count() -> int:
    """The CPUs this process may run on (the default ``process_pool``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _seconds(field_name: str, value: Duration) -> float:
    try:
        return to_seconds(field_name, value)
    except ValidationError as exc:
        raise ConfigurationError(field_name, exc.reason) from None


def _retention(value: Any) -> dict[str, timedelta]:
    """Validate ``retention={"completed": ..., "failed": ..., "cancelled": ...}``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError("retention", "expected a mapping of final status to duration")
    out: dict[str, timedelta] = {}
    for status, keep in value.items():
        if status not in FINAL_STATUSES:
            raise ConfigurationError(
                "retention", f"unknown status {status!r}; one of completed, failed, cancelled"
            )
        if keep is not None:
            out[status] = timedelta(seconds=_seconds(f"retention.{status}", keep))
    return out
