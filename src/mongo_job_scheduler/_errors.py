"""Every error the library raises on purpose, in one place."""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "HandlerCrashed",
    "HandlerError",
    "InvalidJobState",
    "JobNotFound",
    "JobTimeout",
    "LeaseLost",
    "PoisonJob",
    "SchedulerError",
    "ValidationError",
]


class SchedulerError(Exception):
    """Base class of the library's errors."""


class ValidationError(SchedulerError, ValueError):
    """An argument or option is invalid. Raised before anything is written.

    ``field`` names the offending argument (for example ``"repeat.cron"``).
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")


class ConfigurationError(ValidationError):
    """A ``Scheduler`` or store option is invalid."""


class JobNotFound(SchedulerError, LookupError):
    """No job has the given id."""

    def __init__(self, job_id: object) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} not found")


class InvalidJobState(SchedulerError):
    """The operation is not allowed in the job's current status."""


class LeaseLost(SchedulerError):
    """This worker no longer owns the job (its lease expired, or it was cancelled or released)."""


class JobTimeout(SchedulerError, TimeoutError):
    """A handler ran longer than the job's ``timeout``; the attempt counts as failed."""


class PoisonJob(SchedulerError):
    """A job's lease expired too many times without the job finishing (it kept killing workers)."""


class HandlerCrashed(SchedulerError):
    """The child process running a handler (``executor="process"``) died before the handler
    returned: killed by a signal (a segfault, the out-of-memory killer), or ``os._exit``. The
    message says how; the attempt failed, and the death counts towards ``max_lease_expiries``."""


class HandlerError(SchedulerError):
    """An exception a handler raised in its child process (``executor="process"``), carried
    back as text: the original's type name (``type_name``), message and traceback (``trace``).
    The exception object itself stays in the child."""

    def __init__(self, type_name: str, message: str, trace: str) -> None:
        self.type_name = type_name
        self.message = message
        self.trace = trace
        super().__init__(message)
