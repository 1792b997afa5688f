"""mongo-job-scheduler: durable background jobs, retries, cron and interval schedules on MongoDB.

The public API is re-exported here; everything else is an implementation detail.
"""

from ._errors import (
    ConfigurationError,
    HandlerCrashed,
    HandlerError,
    InvalidJobState,
    JobNotFound,
    JobTimeout,
    LeaseLost,
    PoisonJob,
    SchedulerError,
    ValidationError,
)
from ._version import __version__
from .events import EVENTS
from .fleet import WorkerInfo
from .job import AttemptOutcome, AttemptRecord, Job, JobStatus, Progress, StopReason
from .rate_limit import RateLimit
from .repeat import Repeat, RunPlan
from .retry import Retry
from .scheduler import Scheduler
from .stats import Activity, SchedulerStats, Throughput, ThroughputMinute
from .stores import InMemoryJobStore, JobStore, MongoJobStore

__all__ = [
    "EVENTS",
    "Activity",
    "AttemptOutcome",
    "AttemptRecord",
    "ConfigurationError",
    "HandlerCrashed",
    "HandlerError",
    "InMemoryJobStore",
    "InvalidJobState",
    "Job",
    "JobNotFound",
    "JobStatus",
    "JobStore",
    "JobTimeout",
    "LeaseLost",
    "MongoJobStore",
    "PoisonJob",
    "Progress",
    "RateLimit",
    "Repeat",
    "Retry",
    "RunPlan",
    "Scheduler",
    "SchedulerError",
    "SchedulerStats",
    "StopReason",
    "Throughput",
    "ThroughputMinute",
    "ValidationError",
    "WorkerInfo",
    "__version__",
]
