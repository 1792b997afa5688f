"""Prometheus metrics and OpenTelemetry spans over a real Scheduler on a real mongod."""

from __future__ import annotations

import asyncio
import importlib
import sys
import urllib.request
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry
from tests.conftest import wait_for

from mongo_job_scheduler import Job, JobStatus, MongoJobStore, Scheduler
from mongo_job_scheduler.metrics import SchedulerMetrics, instrument
from mongo_job_scheduler.tracing import instrument_tracing

NS = "mongo_job_scheduler"
FAST: dict[str, Any] = {"poll_interval": 0.02, "heartbeat_interval": 0.1, "lock_timeout": 5}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def sample(metrics: SchedulerMetrics, metric: str, /, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"{NS}_{metric}", labels)
    return 0.0 if value is None else value


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def spans() -> tuple[InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, provider


@pytest.fixture
async def scheduler(mongo_db: Any) -> AsyncIterator[Scheduler]:
    s = Scheduler(MongoJobStore(mongo_db), workers=2, **FAST)
    yield s
    await s.stop(graceful=False)


# -- counters and histograms ------------------------------------------------------------------


async def test_success_counts_once_and_times_the_run(
    scheduler: Scheduler, registry: CollectorRegistry
) -> None:
    metrics = instrument(scheduler, registry=registry)

    @scheduler.task("ok")
    async def ok(job: Job) -> None:
        await asyncio.sleep(0.05)

    await scheduler.start()
    job = await scheduler.schedule("ok", run_at=utcnow() - timedelta(seconds=3))
    await wait_for(lambda: sample(metrics, "job_run_seconds_count", name="ok") == 1)
    stored = await scheduler.get_job(job.id)
    assert stored is not None and stored.status is JobStatus.COMPLETED
    # job:success and job:complete both fire for a one-off job: counted once.
    assert sample(metrics, "jobs_total", name="ok", outcome="success") == 1
    assert sample(metrics, "job_run_seconds_sum", name="ok") >= 0.04
    assert sample(metrics, "jobs_running", name="ok") == 0
    # Due three seconds before it was scheduled: the lag is at least that.
    assert sample(metrics, "job_lag_seconds_count", name="ok") == 1
    assert sample(metrics, "job_lag_seconds_sum", name="ok") >= 2.5
    assert sample(metrics, "job_lag_seconds_bucket", name="ok", le="0.01") == 0


async def test_retry_then_fail(scheduler: Scheduler, registry: CollectorRegistry) -> None:
    metrics = instrument(scheduler, registry=registry)

    @scheduler.task("flaky")
    async def flaky(job: Job) -> None:
        raise RuntimeError(f"boom {job.attempts}")

    await scheduler.start()
    await scheduler.schedule("flaky", retry=2)
    await wait_for(lambda: sample(metrics, "jobs_total", name="flaky", outcome="fail") == 1)
    assert sample(metrics, "jobs_total", name="flaky", outcome="retry") == 1
    assert sample(metrics, "jobs_total", name="flaky", outcome="success") == 0
    assert sample(metrics, "job_run_seconds_count", name="flaky") == 2
    assert sample(metrics, "job_lag_seconds_count", name="flaky") == 2
    assert sample(metrics, "jobs_running", name="flaky") == 0


async def test_running_gauge_and_cancel(scheduler: Scheduler, registry: CollectorRegistry) -> None:
    metrics = instrument(scheduler, registry=registry)
    started = asyncio.Event()

    @scheduler.task("slow")
    async def slow(job: Job) -> None:
        started.set()
        await asyncio.Event().wait()  # until cancelled

    await scheduler.start()
    job = await scheduler.schedule("slow")
    await asyncio.wait_for(started.wait(), 10)
    assert sample(metrics, "jobs_running", name="slow") == 1
    assert await scheduler.cancel(job.id)
    assert sample(metrics, "jobs_total", name="slow", outcome="cancel") == 1
    assert sample(metrics, "jobs_running", name="slow") == 0
    assert sample(metrics, "job_run_seconds_count", name="slow") == 0


async def test_run_cancelled_by_another_process_leaves_the_running_gauge(
    mongo_db: Any, scheduler: Scheduler, registry: CollectorRegistry
) -> None:
    """The worker stops a job cancelled elsewhere without any event on this scheduler; the
    gauge still comes back down (the run's stop reason is swept)."""
    metrics = instrument(scheduler, registry=registry)
    started = asyncio.Event()

    @scheduler.task("slow")
    async def slow(job: Job) -> None:
        started.set()
        await asyncio.Event().wait()

    await scheduler.start()
    job = await scheduler.schedule("slow")
    await asyncio.wait_for(started.wait(), 10)
    other = Scheduler(MongoJobStore(mongo_db))  # another process's admin handle
    assert await other.cancel(job.id)
    await wait_for(lambda: sample(metrics, "jobs_running", name="slow") == 0)
    # That cancel was counted by the scheduler that made it, not here.
    assert sample(metrics, "jobs_total", name="slow", outcome="cancel") == 0


async def test_repeating_job_counts_each_run(
    scheduler: Scheduler, registry: CollectorRegistry
) -> None:
    metrics = instrument(scheduler, registry=registry)
    scheduler.task("tick")(lambda job: None)
    await scheduler.start()
    await scheduler.schedule("tick", repeat={"every": timedelta(milliseconds=100)})
    await wait_for(lambda: sample(metrics, "jobs_total", name="tick", outcome="success") >= 2)
    await scheduler.stop()
    runs = sample(metrics, "jobs_total", name="tick", outcome="success")
    assert sample(metrics, "job_run_seconds_count", name="tick") == runs
    assert sample(metrics, "jobs_running", name="tick") == 0


async def test_stalled_and_worker_errors(mongo_db: Any, registry: CollectorRegistry) -> None:
    scheduler = Scheduler(
        MongoJobStore(mongo_db), poll_interval=0.02, heartbeat_interval=0.05, lock_timeout=5
    )
    metrics = instrument(scheduler, registry=registry)
    release = asyncio.Event()

    @scheduler.task("stuck")
    async def stuck(job: Job) -> None:
        await release.wait()

    async with scheduler:
        await scheduler.schedule("stuck", max_execution=0.1)
        await wait_for(lambda: sample(metrics, "jobs_total", name="stuck", outcome="stalled") == 1)
        release.set()
        await wait_for(lambda: sample(metrics, "jobs_total", name="stuck", outcome="success") == 1)
        assert sample(metrics, "worker_errors_total") == 0
        scheduler.events.emit("worker:error", RuntimeError("database unreachable"))
        assert sample(metrics, "worker_errors_total") == 1


async def test_two_schedulers_share_one_registry(
    mongo_db: Any, registry: CollectorRegistry
) -> None:
    first = instrument(Scheduler(MongoJobStore(mongo_db)), registry=registry)
    second = instrument(Scheduler(MongoJobStore(mongo_db)), registry=registry)
    assert first.jobs_total is second.jobs_total
    first.close()
    second.close()


async def test_close_stops_listening(scheduler: Scheduler, registry: CollectorRegistry) -> None:
    metrics = instrument(scheduler, registry=registry)
    metrics.close()
    scheduler.task("ok")(lambda job: None)
    await scheduler.start()
    job = await scheduler.schedule("ok")
    await wait_for(lambda: _status(scheduler, job.id, JobStatus.COMPLETED))
    assert sample(metrics, "jobs_total", name="ok", outcome="success") == 0


async def _status(scheduler: Scheduler, job_id: Any, status: JobStatus) -> bool:
    job = await scheduler.get_job(job_id)
    return job is not None and job.status is status


# -- gauges from the database -----------------------------------------------------------------


async def test_refresh_sets_queue_gauges(mongo_db: Any, registry: CollectorRegistry) -> None:
    scheduler = Scheduler(MongoJobStore(mongo_db))  # not started: nothing runs the jobs
    metrics = instrument(scheduler, registry=registry)
    await metrics.refresh()
    assert sample(metrics, "queue_depth", status="pending") == 0
    assert sample(metrics, "due_jobs") == 0
    assert sample(metrics, "due_lag_seconds") == 0

    past = utcnow() - timedelta(seconds=30)
    await scheduler.schedule("a", run_at=past)
    await scheduler.schedule("b", run_at=past + timedelta(seconds=10))
    await scheduler.schedule("c", run_at=utcnow() + timedelta(hours=1))
    doomed = await scheduler.schedule("d", run_at=utcnow() + timedelta(hours=1))
    await scheduler.cancel(doomed.id)
    await metrics.refresh()
    assert sample(metrics, "queue_depth", status="pending") == 3
    assert sample(metrics, "queue_depth", status="cancelled") == 1
    assert sample(metrics, "queue_depth", status="running") == 0
    assert sample(metrics, "queue_depth", status="completed") == 0
    assert sample(metrics, "queue_depth_by_name", name="a", status="pending") == 1
    assert sample(metrics, "queue_depth_by_name", name="d", status="cancelled") == 1
    assert sample(metrics, "queue_depth_by_name", name="d", status="pending") == 0
    assert sample(metrics, "due_jobs") == 2
    assert 25 <= sample(metrics, "due_lag_seconds") < 600

    await mongo_db.scheduler_jobs.delete_many({"name": "d"})  # a name with no jobs left
    await metrics.refresh()
    assert (
        registry.get_sample_value(f"{NS}_queue_depth_by_name", {"name": "d", "status": "cancelled"})
        is None
    )
    assert sample(metrics, "queue_depth", status="cancelled") == 0


async def test_the_series_per_name_are_capped(mongo_db: Any, registry: CollectorRegistry) -> None:
    """At most ``max_names`` names get series of their own; the rest add up under
    ``(other)``: the busiest names for the queue gauges, the first seen for the counters."""
    scheduler = Scheduler(MongoJobStore(mongo_db))
    metrics = instrument(scheduler, registry=registry, max_names=5)
    jobs = await scheduler.schedule_bulk(
        [{"name": f"n{i}", "delay": 600} for i in range(8)]
        + [{"name": f"n{i}", "delay": 600} for i in range(3, 8)]
    )
    await metrics.refresh()
    depth = {
        s.labels["name"]: s.value
        for family in registry.collect()
        if family.name == f"{NS}_queue_depth_by_name"
        for s in family.samples
        if s.labels["status"] == "pending"
    }
    assert depth == {**{f"n{i}": 2.0 for i in range(3, 8)}, "(other)": 3.0}
    for job in jobs[:8]:
        await scheduler.cancel(job.id)
    cancelled = {
        s.labels["name"]: s.value
        for family in registry.collect()
        if family.name == f"{NS}_jobs"
        for s in family.samples
        if s.name == f"{NS}_jobs_total"
    }
    assert cancelled == {**{f"n{i}": 1.0 for i in range(5)}, "(other)": 3.0}


async def test_start_refreshing_keeps_gauges_current(
    mongo_db: Any, registry: CollectorRegistry
) -> None:
    scheduler = Scheduler(MongoJobStore(mongo_db))
    metrics = instrument(scheduler, registry=registry)
    task = metrics.start_refreshing(interval=0.05)
    await scheduler.schedule("a")
    await wait_for(lambda: sample(metrics, "queue_depth", status="pending") == 1)
    metrics.close()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


# -- the HTTP endpoint ------------------------------------------------------------------------


def _fetch(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


async def test_http_endpoint_serves_the_metrics(
    scheduler: Scheduler, registry: CollectorRegistry
) -> None:
    metrics = instrument(scheduler, registry=registry)
    scheduler.task("ok")(lambda job: None)
    await scheduler.start()
    await scheduler.schedule("ok")
    await wait_for(lambda: sample(metrics, "jobs_total", name="ok", outcome="success") == 1)
    await metrics.refresh()
    server, thread = metrics.start_http_server(0)  # a free port on 127.0.0.1
    try:
        assert server.server_address[0] == "127.0.0.1"
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        status, content_type, body = await asyncio.to_thread(_fetch, url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert status == 200
    assert content_type.startswith("text/plain")
    assert f'{NS}_jobs_total{{name="ok",outcome="success"}} 1.0' in body
    assert f'{NS}_job_run_seconds_count{{name="ok"}} 1.0' in body
    assert f'{NS}_queue_depth{{status="completed"}} 1.0' in body
    assert f"# TYPE {NS}_job_lag_seconds histogram" in body


def test_import_without_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "mongo_job_scheduler.metrics")
    with pytest.raises(ImportError, match=r"mongo-job-scheduler\[metrics\]"):
        importlib.import_module("mongo_job_scheduler.metrics")


def test_import_without_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "mongo_job_scheduler.tracing")
    with pytest.raises(ImportError, match=r"mongo-job-scheduler\[otel\]"):
        importlib.import_module("mongo_job_scheduler.tracing")


# -- tracing ----------------------------------------------------------------------------------


async def test_one_span_per_run_with_attributes(
    scheduler: Scheduler, spans: tuple[InMemorySpanExporter, TracerProvider]
) -> None:
    exporter, provider = spans
    instrument_tracing(scheduler, provider.get_tracer("test"))
    tracer = provider.get_tracer("handler")

    @scheduler.task("ok")
    async def ok(job: Job) -> None:
        with tracer.start_as_current_span("inside"):
            pass

    await scheduler.start()
    job = await scheduler.schedule("ok")
    await wait_for(lambda: any(s.name == "job.run" for s in exporter.get_finished_spans()))
    (run,) = [s for s in exporter.get_finished_spans() if s.name == "job.run"]
    (inside,) = [s for s in exporter.get_finished_spans() if s.name == "inside"]
    assert run.kind is SpanKind.CONSUMER
    assert run.parent is None
    assert run.attributes is not None
    assert run.attributes["job.id"] == str(job.id)
    assert run.attributes["job.name"] == "ok"
    assert run.attributes["job.attempts"] == 0
    assert run.attributes["job.token"] == 1
    assert run.attributes["job.outcome"] == "success"
    assert run.status.status_code is StatusCode.UNSET
    # The async handler ran with the run's span current.
    assert inside.parent is not None and inside.parent.span_id == run.context.span_id
    assert inside.context.trace_id == run.context.trace_id


async def test_failed_and_retried_runs_are_errors(
    scheduler: Scheduler, spans: tuple[InMemorySpanExporter, TracerProvider]
) -> None:
    exporter, provider = spans
    instrument_tracing(scheduler, provider.get_tracer("test"))

    @scheduler.task("flaky")
    async def flaky(job: Job) -> None:
        raise ValueError(f"bad input {job.attempts}")

    await scheduler.start()
    job = await scheduler.schedule("flaky", retry=2)
    await wait_for(lambda: len(exporter.get_finished_spans()) == 2)
    await wait_for(lambda: _status(scheduler, job.id, JobStatus.FAILED))
    first, second = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    for span, attempts, outcome in ((first, 0, "retry"), (second, 1, "fail")):
        assert span.attributes is not None
        assert span.attributes["job.attempts"] == attempts
        assert span.attributes["job.outcome"] == outcome
        assert span.status.status_code is StatusCode.ERROR
        assert "ValueError" in (span.status.description or "")
        (event,) = [e for e in span.events if e.name == "exception"]
        assert event.attributes is not None
        assert event.attributes["exception.type"].endswith("ValueError")
        assert f"bad input {attempts}" in str(event.attributes["exception.message"])
    assert first.attributes is not None and second.attributes is not None
    assert second.attributes["job.token"] == first.attributes["job.token"] + 1


async def test_timeout_is_an_error_span(
    scheduler: Scheduler, spans: tuple[InMemorySpanExporter, TracerProvider]
) -> None:
    exporter, provider = spans
    instrument_tracing(scheduler, provider.get_tracer("test"))

    @scheduler.task("hangs")
    async def hangs(job: Job) -> None:
        await asyncio.Event().wait()

    await scheduler.start()
    await scheduler.schedule("hangs", timeout=0.1)
    await wait_for(lambda: len(exporter.get_finished_spans()) == 1)
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["job.outcome"] == "fail"
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes is not None and "JobTimeout" in str(event.attributes["exception.type"])


async def test_cancelled_run_span_ends(
    mongo_db: Any, scheduler: Scheduler, spans: tuple[InMemorySpanExporter, TracerProvider]
) -> None:
    exporter, provider = spans
    tracing = instrument_tracing(scheduler, provider.get_tracer("test"))
    started: asyncio.Queue[Job] = asyncio.Queue()

    @scheduler.task("slow")
    async def slow(job: Job) -> None:
        await started.put(job)
        await asyncio.Event().wait()

    await scheduler.start()
    local = await scheduler.schedule("slow")
    remote = await scheduler.schedule("slow")
    running = {(await asyncio.wait_for(started.get(), 10)).id for _ in range(2)}
    assert running == {local.id, remote.id}
    assert tracing.span_for(local).is_recording()
    assert await scheduler.cancel(local.id)  # here: job:cancel ends the span
    assert await Scheduler(MongoJobStore(mongo_db)).cancel(remote.id)  # elsewhere: swept
    await wait_for(lambda: len(exporter.get_finished_spans()) == 2)
    for span in exporter.get_finished_spans():
        assert span.attributes is not None and span.attributes["job.outcome"] == "cancel"
        assert span.status.status_code is StatusCode.UNSET
    assert not tracing.span_for(local).is_recording()


async def test_tracing_without_an_sdk_is_a_no_op(scheduler: Scheduler) -> None:
    tracing = instrument_tracing(scheduler)  # the global provider: none configured here
    seen: list[bool] = []

    @scheduler.task("ok")
    async def ok(job: Job) -> None:
        seen.append(tracing.span_for(job).is_recording())

    await scheduler.start()
    job = await scheduler.schedule("ok")
    await wait_for(lambda: _status(scheduler, job.id, JobStatus.COMPLETED))
    assert seen == [False]
    tracing.close()
