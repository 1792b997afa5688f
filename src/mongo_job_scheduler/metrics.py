"""Prometheus metrics for a :class:`~mongo_job_scheduler.Scheduler` (optional extra ``metrics``).

A thin layer over the public API: it listens to the scheduler's events and reads counts through
public methods only. ::

    from mongo_job_scheduler.metrics import instrument

    metrics = instrument(scheduler)            # registers event listeners
    metrics.start_http_server(9464)            # serves /metrics on 127.0.0.1:9464
    metrics.start_refreshing(interval=15)      # keeps queue_depth / due_jobs current

Metric names carry the ``namespace`` prefix (default ``mongo_job_scheduler``); see
``docs/observability.md`` for what each one means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from threading import Thread
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client import start_http_server as _prometheus_http_server
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "mongo_job_scheduler.metrics needs prometheus-client; install the 'metrics' extra: "
        "pip install 'mongo-job-scheduler[metrics]'"
    ) from exc

from .job import Job, JobStatus, StopReason
from .stats import MAX_NAMES_SHOWN, busiest_names

if TYPE_CHECKING:
    from .scheduler import Scheduler

__all__ = [
    "DEFAULT_LAG_BUCKETS",
    "DEFAULT_RUN_BUCKETS",
    "OTHER_NAMES",
    "OUTCOMES",
    "SchedulerMetrics",
    "instrument",
    "start_http_server",
]

logger = logging.getLogger("mongo_job_scheduler")

OUTCOMES = ("success", "retry", "fail", "cancel", "stalled")
"""The values of the ``outcome`` label of ``jobs_total``."""

DEFAULT_RUN_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
)  # fmt: skip
DEFAULT_LAG_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600,
)  # fmt: skip

OTHER_NAMES = "(other)"
"""The ``name`` label of the series that sum the job names beyond ``max_names``."""

SWEEP_INTERVAL = 0.5
"""How often (seconds) open runs are checked for having been let go without an outcome event."""

_ABANDONED = (StopReason.CANCELLED, StopReason.LEASE_LOST, StopReason.SHUTDOWN)


@dataclass
class _Families:
    jobs_total: Counter
    job_run_seconds: Histogram
    job_lag_seconds: Histogram
    worker_errors_total: Counter
    jobs_running: Gauge
    queue_depth: Gauge
    queue_depth_by_name: Gauge
    due_jobs: Gauge
    due_lag_seconds: Gauge


# One set of metric objects per (registry, namespace): instrumenting several schedulers of one
# process into the same registry shares (and sums into) the same series.
_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Families]] = (
    weakref.WeakKeyDictionary()
)


def _make_families(
    registry: CollectorRegistry,
    namespace: str,
    run_buckets: Sequence[float],
    lag_buckets: Sequence[float],
) -> _Families:
    by_namespace = _FAMILIES.setdefault(registry, {})
    existing = by_namespace.get(namespace)
    if existing is not None:
        return existing
    common: dict[str, Any] = {"namespace": namespace, "registry": registry}
    made = _Families(
        jobs_total=Counter(
            "jobs_total",
            "Job runs by outcome (success, retry, fail, cancel, stalled).",
            ["name", "outcome"],
            **common,
        ),
        job_run_seconds=Histogram(
            "job_run_seconds",
            "Wall time of one run, from job:start to its outcome.",
            ["name"],
            buckets=tuple(run_buckets),
            **common,
        ),
        job_lag_seconds=Histogram(
            "job_lag_seconds",
            "Time from when a job was due (nextRunAt) to when a worker took it.",
            ["name"],
            buckets=tuple(lag_buckets),
            **common,
        ),
        worker_errors_total=Counter(
            "worker_errors_total",
            "worker:error events (database errors, lost leases, unwritten outcomes).",
            **common,
        ),
        jobs_running=Gauge(
            "jobs_running",
            "Jobs running in this process now.",
            ["name"],
            **common,
        ),
        queue_depth=Gauge(
            "queue_depth",
            "Jobs in the collection by status (as of the last refresh).",
            ["status"],
            **common,
        ),
        queue_depth_by_name=Gauge(
            "queue_depth_by_name",
            "Jobs in the collection by name and status (as of the last refresh).",
            ["name", "status"],
            **common,
        ),
        due_jobs=Gauge(
            "due_jobs",
            "Pending jobs whose nextRunAt has passed (as of the last refresh).",
            **common,
        ),
        due_lag_seconds=Gauge(
            "due_lag_seconds",
            "How long the oldest due pending job has waited (as of the last refresh).",
            **common,
        ),
    )
    by_namespace[namespace] = made
    return made


@dataclass
class _Run:
    name: str
    job: Job
    started: float
    stop_seen: bool = False


@dataclass
class SchedulerMetrics:
    """The metrics of one instrumented scheduler. The metric objects are public attributes
    (``jobs_total``, ``job_run_seconds``, ``job_lag_seconds``, ``worker_errors_total``,
    ``jobs_running``, ``queue_depth``, ``queue_depth_by_name``, ``due_jobs``,
    ``due_lag_seconds``)."""

    scheduler: Scheduler
    registry: CollectorRegistry
    namespace: str
    _families: _Families = field(repr=False)
    _runs: dict[tuple[str, int], _Run] = field(default_factory=dict, repr=False)
    _listeners: list[tuple[str, Callable[..., None]]] = field(default_factory=list, repr=False)
    _last_success: tuple[str, int] | None = field(default=None, repr=False)
    _sweeper: asyncio.Task[None] | None = field(default=None, repr=False)
    _refresher: asyncio.Task[None] | None = field(default=None, repr=False)
    _named: set[tuple[str, str]] = field(default_factory=set, repr=False)
    max_names: int = MAX_NAMES_SHOWN
    _labelled: set[str] = field(default_factory=set, repr=False)

    # -- the metric objects -----------------------------------------------------------------

    @property
    def jobs_total(self) -> Counter:
        return self._families.jobs_total

    @property
    def job_run_seconds(self) -> Histogram:
        return self._families.job_run_seconds

    @property
    def job_lag_seconds(self) -> Histogram:
        return self._families.job_lag_seconds

    @property
    def worker_errors_total(self) -> Counter:
        return self._families.worker_errors_total

    @property
    def jobs_running(self) -> Gauge:
        return self._families.jobs_running

    @property
    def queue_depth(self) -> Gauge:
        return self._families.queue_depth

    @property
    def queue_depth_by_name(self) -> Gauge:
        return self._families.queue_depth_by_name

    @property
    def due_jobs(self) -> Gauge:
        return self._families.due_jobs

    @property
    def due_lag_seconds(self) -> Gauge:
        return self._families.due_lag_seconds

    # -- wiring -----------------------------------------------------------------------------

    def _attach(self) -> None:
        handlers: dict[str, Callable[..., None]] = {
            "job:start": self._on_start,
            "job:success": self._on_success,
            "job:complete": self._on_complete,
            "job:retry": self._on_retry,
            "job:fail": self._on_fail,
            "job:cancel": self._on_cancel,
            "job:stalled": self._on_stalled,
            "worker:error": self._on_worker_error,
            "scheduler:stop": self._on_scheduler_stop,
        }
        for event, handler in handlers.items():
            self.scheduler.on(event, handler)
            self._listeners.append((event, handler))

    def close(self) -> None:
        """Stop listening to the scheduler and stop background refreshing (the metrics stay
        registered and keep their last values)."""
        for event, handler in self._listeners:
            self.scheduler.off(event, handler)
        self._listeners.clear()
        for task in (self._sweeper, self._refresher):
            if task is not None:
                task.cancel()
        self._sweeper = self._refresher = None
        self._drop_all()

    def _name(self, name: str) -> str:
        """The ``name`` label of a job event: the name itself for the first ``max_names``
        names seen, :data:`OTHER_NAMES` for any other."""
        if name in self._labelled:
            return name
        if len(self._labelled) < self.max_names:
            self._labelled.add(name)
            return name
        return OTHER_NAMES

    # -- event listeners --------------------------------------------------------------------

    def _on_start(self, job: Job) -> None:
        key = (str(job.id), job.token)
        for other in [k for k in self._runs if k[0] == key[0]]:
            self._end(other)  # an earlier run of the same job was taken over
        name = self._name(job.name)
        self._runs[key] = _Run(name, job, time.monotonic())
        self.jobs_running.labels(name).inc()
        if job.next_run_at is not None:
            # Both instants come from the database's clock: nextRunAt, and lastRunAt as written
            # by the claim that started this run; so the lag is immune to this host's skew.
            taken = job.last_run_at or datetime.now(timezone.utc)
            lag = (taken - job.next_run_at).total_seconds()
            self.job_lag_seconds.labels(name).observe(max(lag, 0.0))
        self._ensure_sweeper()

    def _on_success(self, job: Job) -> None:
        self._outcome(job, "success", timed=True)
        self._last_success = (str(job.id), job.token)

    def _on_complete(self, job: Job) -> None:
        key = (str(job.id), job.token)
        if self._last_success == key:  # the job:complete that follows job:success
            self._last_success = None
            return
        self._outcome(job, "success", timed=True)  # a repeating job's run (no job:success)

    def _on_retry(self, job: Job) -> None:
        self._outcome(job, "retry", timed=True)

    def _on_fail(self, job: Job, error: BaseException | None = None) -> None:
        self._outcome(job, "fail", timed=True)

    def _on_cancel(self, job: Job) -> None:
        self.jobs_total.labels(self._name(job.name), "cancel").inc()
        for key in [k for k in self._runs if k[0] == str(job.id)]:
            self._end(key)

    def _on_stalled(self, job: Job) -> None:
        self.jobs_total.labels(self._name(job.name), "stalled").inc()

    def _on_worker_error(self, error: BaseException | None = None) -> None:
        self.worker_errors_total.inc()

    def _on_scheduler_stop(self) -> None:
        self._drop_all()

    # -- runs -------------------------------------------------------------------------------

    def _outcome(self, job: Job, outcome: str, *, timed: bool) -> None:
        self.jobs_total.labels(self._name(job.name), outcome).inc()
        key = (str(job.id), job.token)
        if key not in self._runs:
            key = next((k for k in self._runs if k[0] == key[0]), key)
        run = self._end(key)
        if run is not None and timed:
            self.job_run_seconds.labels(run.name).observe(time.monotonic() - run.started)

    def _end(self, key: tuple[str, int]) -> _Run | None:
        run = self._runs.pop(key, None)
        if run is not None:
            self.jobs_running.labels(run.name).dec()
        return run

    def _drop_all(self) -> None:
        for key in list(self._runs):
            self._end(key)

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to sweep with
                self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """End runs the worker let go of without an outcome event (cancelled by another
        process, lease lost, shutdown): their job's ``stop_reason`` says so. A run is ended at
        the second sweep that sees it, so an outcome event racing the stop still wins."""
        while self._runs:
            await asyncio.sleep(SWEEP_INTERVAL)
            for key, run in list(self._runs.items()):
                if run.job.stop_reason in _ABANDONED:
                    if run.stop_seen:
                        self._end(key)
                    else:
                        run.stop_seen = True

    # -- gauges from the database -----------------------------------------------------------

    async def refresh(self) -> None:
        """Update ``queue_depth{status}``, ``queue_depth_by_name{name, status}``, ``due_jobs``
        and ``due_lag_seconds`` from one :meth:`Scheduler.stats` snapshot (a few aggregate
        queries on the database; call it at scrape rate, not per job). The ``max_names``
        names with the most jobs have series of their own, the others add up under
        :data:`OTHER_NAMES`."""
        stats = await self.scheduler.stats()
        for status, count in stats.by_status.items():
            self.queue_depth.labels(status).set(count)
        totals = {name: sum(counts.values()) for name, counts in stats.by_name.items()}
        shown, others = busiest_names(totals, self.max_names)
        series = {name: stats.by_name[name] for name in shown}
        if others:
            series[OTHER_NAMES] = {
                status.value: sum(stats.by_name[n].get(status.value, 0) for n in others)
                for status in JobStatus
            }
        seen: set[tuple[str, str]] = set()
        for name, counts in series.items():
            for status in JobStatus:
                self.queue_depth_by_name.labels(name, status.value).set(counts.get(status.value, 0))
                seen.add((name, status.value))
        for labels in self._named - seen:  # names that no longer have any job
            with contextlib.suppress(KeyError):
                self.queue_depth_by_name.remove(*labels)
        self._named = seen
        self.due_jobs.set(stats.due)
        lag = stats.lag
        self.due_lag_seconds.set(0.0 if lag is None else lag.total_seconds())

    def start_refreshing(self, interval: float = 15.0) -> asyncio.Task[None]:
        """Call :meth:`refresh` now and then every ``interval`` seconds in the running event
        loop until :meth:`close` (a failed refresh is logged and retried at the next tick)."""
        if interval <= 0:
            raise ValueError("interval must be positive")
        if self._refresher is not None and not self._refresher.done():
            self._refresher.cancel()
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop(interval))
        return self._refresher

    async def _refresh_loop(self, interval: float) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:
                logger.warning("metrics refresh failed: %s", exc, extra={"error": repr(exc)})
            await asyncio.sleep(interval)

    # -- exposition -------------------------------------------------------------------------

    def start_http_server(self, port: int, addr: str = "127.0.0.1") -> tuple[WSGIServer, Thread]:
        """Serve this registry's metrics at ``http://addr:port/metrics`` from a daemon thread;
        see :func:`start_http_server`."""
        return start_http_server(port, addr, registry=self.registry)


def instrument(
    scheduler: Scheduler,
    *,
    registry: CollectorRegistry | None = None,
    namespace: str = "mongo_job_scheduler",
    run_buckets: Sequence[float] = DEFAULT_RUN_BUCKETS,
    lag_buckets: Sequence[float] = DEFAULT_LAG_BUCKETS,
    max_names: int = MAX_NAMES_SHOWN,
) -> SchedulerMetrics:
    """Record ``scheduler``'s job outcomes, run times and lags as Prometheus metrics in
    ``registry`` (default: prometheus-client's global registry). Several schedulers may share a
    registry and namespace: their series add up. Buckets apply when the metrics are first
    created in a registry. At most ``max_names`` job names get series of their own (the
    first seen for the job counters, the busiest for ``queue_depth_by_name``); the others add
    up under the name :data:`OTHER_NAMES`."""
    if isinstance(max_names, bool) or not isinstance(max_names, int) or max_names < 1:
        raise ValueError("max_names must be a positive integer")
    target = REGISTRY if registry is None else registry
    families = _make_families(target, namespace, run_buckets, lag_buckets)
    metrics = SchedulerMetrics(scheduler, target, namespace, families, max_names=max_names)
    metrics._attach()
    return metrics


def start_http_server(
    port: int, addr: str = "127.0.0.1", *, registry: CollectorRegistry | None = None
) -> tuple[WSGIServer, Thread]:
    """Serve ``registry`` (default: the global one) in the Prometheus text format at
    ``http://addr:port/metrics`` from a daemon thread. ``port=0`` picks a free port (read it
    from ``server.server_port``). Returns the server (``server.shutdown()`` stops it) and its
    thread. Binds to loopback by default; pass ``addr="0.0.0.0"`` to expose it."""
    return _prometheus_http_server(port, addr, registry=REGISTRY if registry is None else registry)
