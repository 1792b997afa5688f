"""The benchmark of the scheduler's speed at any size: run with ``scripts/bench [options]``.

It starts its own ``mongod`` servers on 127.0.0.1 (a single-node replica set, and a standalone
server for the polling figure), runs the sections below, stops the servers, prints a markdown
report and writes it to ``bench/results/<date>-<HHMM>-<host>.md`` and ``bench/results/latest.md``.

1. burn-down throughput, one process;  2. idle due-to-start latency (change streams vs polling);
3. latency under a steady load;  4. flat cost with a large collection (and ``explain``);
5. worker memory over many jobs;  6. several worker processes on one database;
7. the same burn-down on the Node library (when ``node`` and ``npm`` are installed);
8. what each executor (async, thread, process) adds per job (``executors.py``);
9. workflows: burn-downs whose jobs are the dependencies of one fan-in job;
10. ``mongod``'s CPU with fleets of idle worker processes (Python and Node), and the latency of
    jobs started by such a fleet.

``--quick`` runs every section at small sizes (about two minutes) as a smoke test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import pymongo
from benchlib import (
    BENCH_DIR,
    Child,
    DocFactory,
    RunCheck,
    ServerLoad,
    Stopwatch,
    check_runs,
    context_switches,
    cpu_model,
    cpu_seconds,
    load_average,
    log,
    mib,
    ms,
    os_name,
    percentile,
    ram_total,
    rate,
    rss_bytes,
    utcnow,
)
from bson import ObjectId
from executors import EXECUTORS, one_at_a_time
from executors import burn_down as executor_burn_down
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from mongo_job_scheduler import Job, MongoJobStore, Scheduler
from mongo_job_scheduler._mongod import LocalMongod
from mongo_job_scheduler.stores._mongo_common import (
    CLAIM_SORT,
    DEFAULT_COLLECTION,
    due_filter,
)

Doc = dict[str, Any]
JOB_NAME = "noop"
CHUNK = 1000
NODE_PACKAGES = ["mongo-job-scheduler@1.2.4", "mongodb@6"]
NODE_SCRIPT = BENCH_DIR / "node_burn_down.js"
NODE_IDLE_SCRIPT = BENCH_DIR / "node_idle_worker.js"
NODE_SCRIPTS = [NODE_SCRIPT, NODE_IDLE_SCRIPT]
RESULTS_DIR = BENCH_DIR / "results"

# The benchmark's goals.
TARGET_RATE = 5_000.0
TARGET_NODE_RATIO = 10.0
TARGET_IDLE_P50 = 0.025
TARGET_IDLE_P99 = 0.100
TARGET_SCALE_RATIO = 0.85
TARGET_KEYS_PER_JOB = 1.5
TARGET_RSS_GROWTH = 10.0
TARGET_MULTI_RATIO = 1.5
TARGET_PROCESS_OVER_THREAD = 100e-6
"""Seconds a no-op job in a child process may take over one in a thread (start → complete)."""
TARGET_MULTI_CPU_RATIO = 1.15
STEADY_KEEP_UP = 0.95


# -- report -----------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the results table."""

    section: str
    measurement: str
    value: str
    target: str
    verdict: str


@dataclass
class Report:
    """The results table and the per-section details."""

    rows: list[Row] = field(default_factory=list)
    details: dict[str, list[str]] = field(default_factory=dict)

    def add(self, section: str, measurement: str, value: str, target: str, ok: bool | None) -> None:
        verdict = "info" if ok is None else ("PASS" if ok else "FAIL")
        self.rows.append(Row(section, measurement, value, target, verdict))
        log(f"{section}: {measurement} = {value} [{verdict}]")

    def skip(self, section: str, measurement: str, reason: str) -> None:
        self.rows.append(Row(section, measurement, reason, "", "skipped"))
        log(f"{section}: {measurement} skipped ({reason})")

    def note(self, section: str, text: str) -> None:
        self.details.setdefault(section, []).append(text)


def fmt_rate(value: float) -> str:
    return f"{value:,.0f} jobs/s"


def fmt_int(value: int) -> str:
    return f"{value:,}"


class Run(Protocol):
    """One timed burn-down (one process or several)."""

    @property
    def rate(self) -> float: ...
    @property
    def ok(self) -> bool: ...
    @property
    def check(self) -> RunCheck: ...
    @property
    def completed_in_db(self) -> int: ...


def median_rate(results: Sequence[Run]) -> float:
    return statistics.median(result.rate for result in results) if results else 0.0


def runs_value(results: Sequence[Run]) -> str:
    """The median rate, and every run's rate when there were several."""
    if len(results) == 1:
        return fmt_rate(results[0].rate)
    shown = ", ".join(f"{result.rate:,.0f}" for result in results)
    return f"{fmt_rate(median_rate(results))} (median of {len(results)}: {shown})"


# -- shared state -----------------------------------------------------------------------------


@dataclass
class BurnResult:
    """One burn-down: how fast, and whether every job ran exactly once."""

    jobs: int
    seconds: float
    check: RunCheck
    completed_in_db: int
    errors: list[str]
    timed_out: bool
    cpu: float
    server: str
    last_at: float = 0.0
    """``time.perf_counter()`` when the last job's handler ran."""

    @property
    def rate(self) -> float:
        return rate(self.check.ran if self.timed_out else self.jobs, self.seconds)

    @property
    def ok(self) -> bool:
        return self.check.ok and not self.timed_out and self.completed_in_db == self.jobs

    def describe(self) -> str:
        text = (
            f"{fmt_int(self.jobs)} jobs in {self.seconds:.2f} s = {fmt_rate(self.rate)}; "
            f"{self.check.describe()}; {fmt_int(self.completed_in_db)} `completed` in the "
            f"collection after stop; worker process {self.cpu:.2f} s CPU; {self.server}"
        )
        if self.timed_out:
            text += "; TIMED OUT"
        if self.errors:
            text += f"; {len(self.errors)} worker errors (first: {self.errors[0]})"
        return text


class Bench:
    """Options, the replica-set server, the report, and results shared between sections."""

    def __init__(self, args: argparse.Namespace, mongod: LocalMongod) -> None:
        self.args = args
        self.mongod = mongod
        self.uri = mongod.uri
        self.client: AsyncMongoClient[Doc] = AsyncMongoClient(self.uri)
        self.report = Report()
        self._databases = 0
        self.node_version: str | None = None
        self._node: tuple[str, Path] | None = None
        self._node_folder: str | None = None

    def database_name(self, label: str) -> str:
        self._databases += 1
        return f"bench_{label}_{self._databases}_{os.getpid()}"

    async def drop(self, name: str) -> None:
        await self.client.drop_database(name)

    async def node(self, section: str) -> tuple[str, Path] | None:
        """``node`` and a folder where ``NODE_PACKAGES`` are installed (npm, once per run, for
        sections 7 and 8), or ``None`` without ``node``/``npm``. :meth:`close` removes it."""
        if self._node is not None:
            return self._node
        node, npm = shutil.which("node"), shutil.which("npm")
        if node is None or npm is None:
            return None
        self.node_version = (await run_command([node, "--version"], 30)).strip()
        self._node_folder = tempfile.mkdtemp(prefix="mjs-bench-node-")
        log(f"{section}: npm install {' '.join(NODE_PACKAGES)}")
        await run_command(
            [
                npm,
                "install",
                "--prefix",
                self._node_folder,
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                *NODE_PACKAGES,
            ],
            timeout=600,
        )
        folder = Path(self._node_folder)
        for script in NODE_SCRIPTS:
            shutil.copy(script, folder / script.name)
        self._node = (node, folder)
        return self._node

    async def close(self) -> None:
        await self.client.close()
        if self._node_folder is not None:
            shutil.rmtree(self._node_folder, ignore_errors=True)


# -- 1. burn-down throughput ------------------------------------------------------------------


async def insert_with_schedule_bulk(scheduler: Scheduler, count: int) -> list[Any]:
    """Insert ``count`` no-op jobs due now with ``schedule_bulk`` in chunks; return their ids."""
    ids: list[Any] = []
    for first in range(0, count, CHUNK):
        last = min(first + CHUNK, count)
        items = [{"name": JOB_NAME, "data": {"i": i}} for i in range(first, last)]
        ids += [job.id for job in await scheduler.schedule_bulk(items)]
    return ids


async def burn_down(
    db: AsyncDatabase[Doc],
    jobs: int,
    workers: int,
    before_start: Callable[[], Awaitable[None]] | None = None,
    prepare: Callable[[Scheduler, list[Any]], Awaitable[Callable[[], Awaitable[Any]]]]
    | None = None,
) -> BurnResult:
    """Insert ``jobs`` no-op jobs, then start one Scheduler and time it from ``start()`` until
    the last job's handler ran; verify every job ran exactly once. ``prepare`` gets the
    scheduler and the ids before it starts (to add more jobs and tasks) and returns what to
    wait for, besides the jobs, before the scheduler stops."""
    scheduler = Scheduler(MongoJobStore(db), workers=workers, poll_interval=0.05)
    ids = await insert_with_schedule_bulk(scheduler, jobs)
    also = None if prepare is None else await prepare(scheduler, ids)
    if before_start is not None:
        await before_start()
    runs: Counter[Any] = Counter()
    done = asyncio.Event()
    last = 0.0
    errors: list[str] = []

    async def noop(job: Job) -> None:
        nonlocal last
        runs[job.id] += 1
        last = time.perf_counter()
        if len(runs) >= jobs:
            done.set()

    scheduler.task(JOB_NAME)(noop)
    scheduler.on("worker:error", lambda exc: errors.append(f"{type(exc).__name__}: {exc}"))
    server_before = await ServerLoad.read(db.client)
    cpu_before = time.process_time()
    clock = Stopwatch()
    await scheduler.start()
    timed_out = False
    try:
        await asyncio.wait_for(done.wait(), timeout=120 + jobs / 100)
    except asyncio.TimeoutError:
        timed_out = True
    seconds = (last if last else time.perf_counter()) - clock.start
    cpu = time.process_time() - cpu_before
    server = (await ServerLoad.read(db.client)).since(server_before, jobs)
    if also is not None and not timed_out:
        await asyncio.wait_for(also(), timeout=120)
    await scheduler.stop(graceful=True)
    completed = 0
    for first in range(0, len(ids), 10_000):
        completed += await db[DEFAULT_COLLECTION].count_documents(
            {"_id": {"$in": ids[first : first + 10_000]}, "status": "completed"}
        )
    return BurnResult(
        jobs, seconds, check_runs(ids, runs), completed, errors, timed_out, cpu, server, last
    )


async def fresh_burn(bench: Bench, jobs: int, label: str = "burn") -> BurnResult:
    """One burn-down of ``jobs`` on a fresh database, dropped afterwards."""
    name = bench.database_name(label)
    try:
        return await burn_down(bench.client[name], jobs, bench.args.workers)
    finally:
        await bench.drop(name)


async def python_burns(bench: Bench, jobs: int) -> list[BurnResult]:
    """``--repeat`` burn-downs of ``jobs``, each on a fresh database."""
    return [await fresh_burn(bench, jobs) for _ in range(bench.args.repeat)]


def add_once_row(bench: Bench, section: str, label: str, results: Sequence[Run]) -> None:
    """The exactly-once row of a set of runs: duplicates and lost jobs summed over them."""
    duplicates = sum(r.check.duplicates for r in results)
    missing = sum(r.check.missing for r in results)
    completed = sum(r.completed_in_db for r in results)
    expected = sum(r.check.expected for r in results)
    runs = f" in {len(results)} runs" if len(results) > 1 else ""
    bench.report.add(
        section,
        f"{label}: each job ran exactly once",
        f"{duplicates} duplicates, {missing} missing{runs}; "
        f"{fmt_int(completed)} of {fmt_int(expected)} completed",
        "no job twice, none lost",
        all(r.ok for r in results),
    )


async def section_burn(bench: Bench) -> None:
    section = "1. Burn-down"
    workers = bench.args.workers
    for jobs in bench.args.jobs:
        log(f"{section}: {jobs} jobs, {workers} workers, {bench.args.repeat} run(s)")
        results = await python_burns(bench, jobs)
        bench.report.add(
            section,
            f"{fmt_int(jobs)} jobs, 1 process, {workers} workers",
            runs_value(results),
            f"≥ {fmt_rate(TARGET_RATE)}",
            median_rate(results) >= TARGET_RATE,
        )
        add_once_row(bench, section, f"{fmt_int(jobs)} jobs", results)
        for result in results:
            bench.report.note(section, result.describe())


# -- 2. idle latency --------------------------------------------------------------------------


@dataclass
class LatencyResult:
    latencies: list[float]
    missed: int
    errors: list[str]

    def describe(self) -> str:
        values = self.latencies
        if not values:
            return f"no samples ({self.missed} probes never ran)"
        return (
            f"{len(values)} probes: p50 {ms(percentile(values, 50))}, "
            f"p90 {ms(percentile(values, 90))}, p99 {ms(percentile(values, 99))}, "
            f"min {ms(min(values))}, max {ms(max(values))}; {self.missed} missed; "
            f"{len(self.errors)} worker errors"
        )


async def idle_latency(uri: str, probes: int, poll_interval: float, workers: int) -> LatencyResult:
    """Idle workers; a producer on its own client schedules a job due in 150 ms, waits for its
    handler and a random fraction of a poll interval, and repeats.
    Latency = handler start (wall clock) - the job's ``next_run_at``."""
    worker_client: AsyncMongoClient[Doc] = AsyncMongoClient(uri)
    producer_client: AsyncMongoClient[Doc] = AsyncMongoClient(uri)
    name = f"bench_idle_{os.getpid()}_{int(time.time())}"
    loop = asyncio.get_running_loop()
    arrivals: dict[Any, asyncio.Future[float]] = {}

    def arrival(job_id: Any) -> asyncio.Future[float]:
        return arrivals.setdefault(job_id, loop.create_future())

    async def probe(job: Job) -> None:
        started = utcnow()
        assert job.next_run_at is not None
        future = arrival(job.id)
        if not future.done():
            future.set_result((started - job.next_run_at).total_seconds())

    errors: list[str] = []
    worker = Scheduler(
        MongoJobStore(worker_client[name]), workers=workers, poll_interval=poll_interval
    )
    worker.task("probe")(probe)
    worker.on("worker:error", lambda exc: errors.append(f"{type(exc).__name__}: {exc}"))
    producer = Scheduler(MongoJobStore(producer_client[name]))
    warmup = 3
    latencies: list[float] = []
    missed = 0
    gaps = random.Random(3)
    await worker.start()
    try:
        for index in range(warmup + probes):
            # A random pause, so probes do not lock into one phase of the polling cycle.
            await asyncio.sleep(gaps.uniform(0, poll_interval))
            job = await producer.schedule("probe", run_at=utcnow() + timedelta(milliseconds=150))
            try:
                latency = await asyncio.wait_for(arrival(job.id), timeout=5 + 4 * poll_interval)
            except asyncio.TimeoutError:
                missed += 1
                continue
            if index >= warmup:
                latencies.append(latency)
    finally:
        await worker.stop(graceful=True)
        await worker_client.drop_database(name)
        await worker_client.close()
        await producer_client.close()
    return LatencyResult(latencies, missed, errors)


async def section_idle(bench: Bench) -> None:
    section = "2. Idle latency"
    args = bench.args
    log(f"{section}: replica set (change streams), {args.idle_probes} probes")
    replica = await idle_latency(bench.uri, args.idle_probes, args.idle_poll, args.workers)
    p50, p99 = percentile(replica.latencies, 50), percentile(replica.latencies, 99)
    bench.report.add(
        section, "replica set (change streams): p50", ms(p50), "≤ 25 ms", p50 <= TARGET_IDLE_P50
    )
    bench.report.add(
        section,
        "replica set (change streams): p99",
        ms(p99),
        "≤ 100 ms",
        p99 <= TARGET_IDLE_P99 and replica.missed == 0,
    )
    bench.report.note(
        section, f"Replica set, poll interval {args.idle_poll} s: {replica.describe()}"
    )

    log(f"{section}: standalone server (polling), {args.idle_probes} probes")
    standalone_server = LocalMongod(replica_set=None, cache_size_gb=args.cache_gb)
    standalone_server.start()
    try:
        standalone = await idle_latency(
            standalone_server.uri, args.idle_probes, args.idle_poll, args.workers
        )
    finally:
        standalone_server.stop()
    p50, p99 = percentile(standalone.latencies, 50), percentile(standalone.latencies, 99)
    poll = f"≤ {ms(args.idle_poll)} (one poll interval)"
    bench.report.add(section, "standalone (polling): p50", ms(p50), poll, p50 <= args.idle_poll)
    bench.report.add(
        section,
        "standalone (polling): p99",
        ms(p99),
        poll,
        p99 <= args.idle_poll and standalone.missed == 0,
    )
    bench.report.note(
        section, f"Standalone, poll interval {args.idle_poll} s: {standalone.describe()}"
    )


# -- 3. steady-state latency under load -------------------------------------------------------


async def section_steady(bench: Bench) -> None:
    """A producer on its own client offers ``rate`` jobs/s (batches of ``batch`` due now) for
    ``seconds`` while workers run; due-to-start latency of every job and achieved throughput."""
    section = "3. Steady load"
    args = bench.args
    offered, seconds, batch = args.steady_rate, args.steady_seconds, args.steady_batch
    log(f"{section}: {offered} jobs/s for {seconds} s in batches of {batch}")
    name = bench.database_name("steady")
    producer_client: AsyncMongoClient[Doc] = AsyncMongoClient(bench.uri)
    latencies: list[float] = []
    last = 0.0
    errors: list[str] = []
    everything_ran = asyncio.Event()
    produced = 0
    producing = True

    async def load(job: Job) -> None:
        nonlocal last
        assert job.next_run_at is not None
        latencies.append((utcnow() - job.next_run_at).total_seconds())
        last = time.perf_counter()
        if not producing and len(latencies) >= produced:
            everything_ran.set()

    worker = Scheduler(MongoJobStore(bench.client[name]), workers=args.workers, poll_interval=0.05)
    worker.task("load")(load)
    worker.on("worker:error", lambda exc: errors.append(f"{type(exc).__name__}: {exc}"))
    producer_store = MongoJobStore(producer_client[name])
    producer = Scheduler(producer_store)
    await producer_store.setup()
    await worker.start()
    batches = max(1, round(offered * seconds / batch))
    interval = batch / offered
    clock = Stopwatch()
    try:
        for index in range(batches):
            delay = clock.start + index * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await producer.schedule_bulk([{"name": "load"} for _ in range(batch)])
            produced += batch
        produce_seconds = clock.elapsed
        producing = False
        if len(latencies) >= produced:
            everything_ran.set()
        try:
            await asyncio.wait_for(everything_ran.wait(), timeout=60)
        except asyncio.TimeoutError:
            pass
        total_seconds = (last or time.perf_counter()) - clock.start
    finally:
        await worker.stop(graceful=True)
        await producer_client.close()
        await bench.drop(name)
    achieved = rate(len(latencies), total_seconds)
    offered_real = rate(produced, produce_seconds)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    bench.report.add(section, f"due→start p50 at {fmt_rate(offered)}", ms(p50), "—", None)
    bench.report.add(section, f"due→start p99 at {fmt_rate(offered)}", ms(p99), "—", None)
    bench.report.add(
        section,
        "achieved throughput",
        f"{fmt_rate(achieved)} of {fmt_rate(offered_real)} offered",
        f"keeps up (≥ {STEADY_KEEP_UP:.0%} of offered)",
        achieved >= STEADY_KEEP_UP * offered_real and len(latencies) == produced,
    )
    bench.report.note(
        section,
        f"{fmt_int(produced)} jobs offered in {produce_seconds:.2f} s "
        f"({fmt_rate(offered_real)}; asked {fmt_rate(offered)}), {fmt_int(len(latencies))} ran, "
        f"last one {total_seconds:.2f} s after the first batch; due→start p50 {ms(p50)}, "
        f"p90 {ms(percentile(latencies, 90))}, p99 {ms(p99)}, "
        f"max {ms(max(latencies) if latencies else float('nan'))}; {len(errors)} worker errors",
    )


# -- 4. flat cost at scale --------------------------------------------------------------------


async def bulk_load(db: AsyncDatabase[Doc], make: Callable[[int], list[Doc]], count: int) -> None:
    """Insert ``count`` documents from ``make`` in unordered batches of 10,000 (two in flight)."""
    collection = db[DEFAULT_COLLECTION]
    in_flight: set[asyncio.Task[Any]] = set()
    for first in range(0, count, 10_000):
        docs = make(min(10_000, count - first))
        in_flight.add(asyncio.create_task(collection.insert_many(docs, ordered=False)))
        if len(in_flight) >= 2:
            finished, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                task.result()
    for task in in_flight:
        await task


def plan_stages(plan: Any) -> tuple[list[str], list[str]]:
    """The stage names and index names found anywhere in a winning plan."""
    stages: list[str] = []
    indexes: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "stage" and isinstance(value, str):
                    stages.append(value)
                elif key == "indexName" and isinstance(value, str):
                    indexes.append(value)
                elif key != "slotBasedPlan":
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(plan)
    return stages, indexes


async def explain_claim(db: AsyncDatabase[Doc], names: Sequence[str] | None, limit: int) -> Doc:
    """``explain`` (executionStats) of the claim's candidate query."""
    reply: Doc = await db.command(
        {
            "explain": {
                "find": DEFAULT_COLLECTION,
                "filter": due_filter(utcnow(), names=names),
                "sort": dict(CLAIM_SORT),
                "limit": limit,
            },
            "verbosity": "executionStats",
        }
    )
    stats = reply["executionStats"]
    stages, indexes = plan_stages(reply["queryPlanner"]["winningPlan"])
    return {
        "keys": int(stats["totalKeysExamined"]),
        "docs": int(stats["totalDocsExamined"]),
        "returned": int(stats["nReturned"]),
        "millis": int(stats["executionTimeMillis"]),
        "stages": stages,
        "indexes": sorted(set(indexes)),
    }


async def section_scale(bench: Bench) -> None:
    """Burn-downs beside a large collection, interleaved with burn-downs on empty ones."""
    section = "4. Flat cost at scale"
    args = bench.args
    jobs, future, finished = args.scale_jobs, args.scale_future, args.scale_finished
    name = bench.database_name("scale")
    db = bench.client[name]
    factory = DocFactory(JOB_NAME)
    log(f"{section}: loading {future:,} future and {finished:,} completed jobs")
    clock = Stopwatch()
    await bulk_load(db, factory.future, future)
    await bulk_load(db, factory.finished, finished)
    bench.report.note(
        section,
        f"Loaded {fmt_int(future)} pending jobs due in 1-30 days and {fmt_int(finished)} "
        f"completed jobs in {clock.elapsed:.1f} s (raw `insert_many`, unordered batches of "
        f"10,000, documents copied from `build_new_job`); indexes built by `setup()`. Each "
        f"repetition burns {fmt_int(jobs)} due jobs down on an empty collection, then "
        f"{fmt_int(jobs)} beside the large one.",
    )
    explains: dict[str, Doc] = {}
    limit = args.workers + 4

    async def explain() -> None:
        explains["due_filter(now)"] = await explain_claim(db, None, limit)
        explains[f"due_filter(now, names=['{JOB_NAME}'])"] = await explain_claim(
            db, [JOB_NAME], limit
        )

    baselines: list[BurnResult] = []
    results: list[BurnResult] = []
    try:
        for index in range(args.repeat):
            log(f"{section}: run {index + 1}: {jobs} jobs on an empty collection, then beside")
            baselines.append(await fresh_burn(bench, jobs, "baseline"))
            first = explain if index == 0 else None
            results.append(await burn_down(db, jobs, args.workers, before_start=first))
    finally:
        await bench.drop(name)
    empty, large = median_rate(baselines), median_rate(results)
    ratio = large / empty if empty else 0.0
    bench.report.add(
        section, f"{fmt_int(jobs)} jobs, empty collection", runs_value(baselines), "—", None
    )
    bench.report.add(
        section,
        f"{fmt_int(jobs)} jobs beside {fmt_int(future)} future + {fmt_int(finished)} done",
        runs_value(results),
        "—",
        None,
    )
    bench.report.add(
        section,
        "large / empty collection (medians)",
        f"{ratio:.2f}x",
        "within 15% (≥ 0.85x)",
        ratio >= TARGET_SCALE_RATIO,
    )
    add_once_row(bench, section, "all runs", [*baselines, *results])
    for baseline, result in zip(baselines, results, strict=True):
        bench.report.note(section, f"Empty collection: {baseline.describe()}")
        bench.report.note(section, f"Large collection: {result.describe()}")
    for label, stats in explains.items():
        per_job = stats["keys"] / stats["returned"] if stats["returned"] else float("inf")
        in_memory_sort = any(stage.endswith("SORT") for stage in stats["stages"])
        bench.report.add(
            section,
            f"explain `{label}` limit {limit}: keys examined / returned",
            f"{stats['keys']} / {stats['returned']} = {per_job:.2f}",
            f"bounded (≤ {TARGET_KEYS_PER_JOB} per job, no in-memory sort)",
            per_job <= TARGET_KEYS_PER_JOB and not in_memory_sort and stats["returned"] > 0,
        )
        bench.report.note(
            section,
            f"explain `{label}`, sort {dict(CLAIM_SORT)}, limit {limit}: "
            f"totalKeysExamined {stats['keys']}, totalDocsExamined {stats['docs']}, nReturned "
            f"{stats['returned']}, {stats['millis']} ms; plan {' ← '.join(stats['stages'])}; "
            f"index {', '.join(stats['indexes']) or 'none'}",
        )


# -- 5. memory --------------------------------------------------------------------------------


async def section_memory(bench: Bench) -> None:
    """One worker subprocess runs ``memory_jobs`` no-op jobs that the parent feeds in batches
    (at most five batches pending at once; completed ones are deleted every ten batches); its
    RSS is sampled after every tenth of the jobs, and growth measured from the first sample."""
    section = "5. Memory"
    args = bench.args
    total = args.memory_jobs
    step = max(1, total // 10)
    batch = min(10_000, step)
    backlog = 5 * batch
    log(f"{section}: one worker process, {total:,} jobs")
    name = bench.database_name("memory")
    db = bench.client[name]
    collection = db[DEFAULT_COLLECTION]
    await MongoJobStore(db).setup()
    factory = DocFactory(JOB_NAME)
    child = Child(bench.uri, name, mode="memory", workers=args.workers, poll_interval=0.05)
    inserted = 0
    samples: list[tuple[int, int]] = []
    stalled = False
    clock = Stopwatch()
    try:
        await child.spawn()
        await child.wait_ready()
        while inserted < min(total, backlog):
            count = min(batch, total - inserted)
            await collection.insert_many(factory.due_now(count))
            inserted += count
        await child.send("go")
        clock.restart()
        next_sample, deleted_at, last_change, seen = step, 0, time.monotonic(), 0
        while child.status.count < total:
            if child.process is not None and child.process.returncode is not None:
                raise RuntimeError(f"the worker process exited with {child.process.returncode}")
            done = child.status.count
            if done != seen:
                seen, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > 60:
                stalled = True
                break
            if done >= next_sample:
                samples.append((done, rss_bytes(child.pid)))
                next_sample += step
            if inserted < total and inserted - done < backlog:
                count = min(batch, total - inserted)
                await collection.insert_many(factory.due_now(count))
                inserted += count
                continue
            if done - deleted_at >= 10 * batch:
                await collection.delete_many({"status": "completed"})
                deleted_at = done
                continue
            child.status.progress.clear()
            try:
                await asyncio.wait_for(child.status.progress.wait(), timeout=1)
            except asyncio.TimeoutError:
                pass
        seconds = clock.elapsed
        end_rss = rss_bytes(child.pid)
        samples.append((child.status.count, end_rss))
    finally:
        await child.stop()
        await bench.drop(name)
    first_count, first_rss = samples[0]
    growth = (end_rss - first_rss) / first_rss * 100
    bench.report.add(
        section,
        f"worker RSS after {fmt_int(first_count)} → {fmt_int(child.status.count)} jobs",
        f"{mib(first_rss)} → {mib(end_rss)} ({growth:+.1f}%)",
        f"grows < {TARGET_RSS_GROWTH:.0f}%",
        growth < TARGET_RSS_GROWTH and not stalled and child.status.count >= total,
    )
    trail = ", ".join(f"{fmt_int(count)}: {mib(rss)}" for count, rss in samples)
    bench.report.note(
        section,
        f"{fmt_int(child.status.count)} jobs in {seconds:.1f} s "
        f"({fmt_rate(rate(child.status.count, seconds))} with the parent feeding batches of "
        f"{fmt_int(batch)}); RSS by jobs run: {trail}"
        + ("; STALLED (no progress for 60 s)" if stalled else "")
        + (f"; worker errors: {child.status.errors[:3]}" if child.status.errors else ""),
    )


# -- 6. many processes ------------------------------------------------------------------------


@dataclass
class MultiResult:
    processes: int
    jobs: int
    seconds: float
    check: RunCheck
    completed_in_db: int
    per_process: list[int]
    errors: list[str]
    cpu: list[float]
    server: str
    server_cpu: float
    """Seconds of CPU the ``mongod`` used from ``go`` to the last handler."""
    rss: list[int]
    """Each worker process's RSS right after the last handler."""
    packages: list[str]
    """The ``mongo_job_scheduler/__init__.py`` each worker process imported."""
    switches: int = 0
    """Context switches of the worker processes' threads (summed) over the run."""
    server_switches: int = 0
    """Context switches of ``mongod``'s threads over the run."""
    separate: bool = False
    """Each process burned down its own database (shared nothing)."""

    @property
    def rate(self) -> float:
        return rate(self.check.ran, self.seconds)

    @property
    def cpu_per_job(self) -> float:
        """Worker processes' CPU seconds (summed) per job run."""
        return sum(self.cpu) / self.check.ran if self.check.ran else float("nan")

    @property
    def total_cpu_per_job(self) -> float:
        """Worker processes' and ``mongod``'s CPU seconds per job run."""
        total = sum(self.cpu) + self.server_cpu
        return total / self.check.ran if self.check.ran else float("nan")

    @property
    def ok(self) -> bool:
        return self.check.ok and self.completed_in_db == self.jobs

    def describe(self) -> str:
        return (
            f"{self.processes} process(es)"
            + (", each its own queue" if self.separate else "")
            + f": {fmt_int(self.jobs)} jobs in {self.seconds:.2f} s = "
            f"{fmt_rate(self.rate)}; per process {self.per_process}; {self.check.describe()}; "
            f"{fmt_int(self.completed_in_db)} `completed` in the collection; "
            f"worker processes {', '.join(f'{cpu:.2f}' for cpu in self.cpu)} s CPU; "
            f"CPU per job {self.cpu_per_job * 1e6:.0f} µs workers + "
            f"{(self.total_cpu_per_job - self.cpu_per_job) * 1e6:.0f} µs mongod = "
            f"{self.total_cpu_per_job * 1e6:.0f} µs; context switches per job: workers "
            f"{self.switches / max(self.check.ran, 1):.2f}, mongod "
            f"{self.server_switches / max(self.check.ran, 1):.2f}; "
            f"{self.server}; {len(self.errors)} worker errors"
            + (f" (first: {self.errors[0]})" if self.errors else "")
        )


async def multi_burn(
    bench: Bench,
    processes: int,
    jobs: int,
    package_src: Path | None = None,
    *,
    separate: bool = False,
) -> MultiResult:
    """Burn-down of ``jobs`` by ``processes`` worker subprocesses, timed from the ``go`` sent
    to all of them until the last handler ran; the ids each ran are checked for duplicates.
    With ``package_src``, the workers import ``mongo_job_scheduler`` from that directory (see
    :class:`benchlib.Child`); the jobs are written by this process's package either way.

    With ``separate``, the processes share nothing: each burns down its own database holding
    its share of the jobs (the control for what running several processes costs on this
    machine, apart from what sharing one queue costs)."""
    label = f"multi{processes}" + ("sep" if separate else "")
    if separate:
        names = [bench.database_name(f"{label}-{index}") for index in range(processes)]
    else:
        names = [bench.database_name(label)] * processes
    shares = [jobs // processes + (index < jobs % processes) for index in range(processes)]
    ids: list[Any] = []
    for name, share in zip(names, shares, strict=True) if separate else [(names[0], jobs)]:
        ids += await insert_with_schedule_bulk(Scheduler(MongoJobStore(bench.client[name])), share)
    folder = Path(tempfile.mkdtemp(prefix="mjs-bench-ids-"))
    children = [
        Child(
            bench.uri,
            names[index],
            mode="burn",
            workers=bench.args.workers,
            poll_interval=0.05,
            ids_file=folder / f"{index}.ids",
            package_src=package_src,
        )
        for index in range(processes)
    ]
    try:
        for child in children:
            await child.spawn()
        await asyncio.gather(*(child.wait_ready() for child in children))
        server_before = await ServerLoad.read(bench.client)
        mongod_pid = int((await bench.client.admin.command("serverStatus"))["pid"])
        cpu_before = [cpu_seconds(child.pid) for child in children]
        switches_before = sum(context_switches(child.pid) for child in children)
        server_switches_before = context_switches(mongod_pid)
        started = time.time()
        await asyncio.gather(*(child.send("go") for child in children))
        deadline = time.monotonic() + 120 + jobs / 100
        while sum(c.status.count for c in children) < jobs and time.monotonic() < deadline:
            if all(c.process is not None and c.process.returncode is not None for c in children):
                break
            await asyncio.sleep(0.05)
        last = max(c.status.last_run for c in children)
        seconds = (last if last > started else time.time()) - started
        cpu = [cpu_seconds(c.pid) - before for c, before in zip(children, cpu_before, strict=True)]
        switches = sum(context_switches(child.pid) for child in children) - switches_before
        server_switches = context_switches(mongod_pid) - server_switches_before
        rss = [rss_bytes(child.pid) for child in children]
        server_after = await ServerLoad.read(bench.client)
        server = server_after.since(server_before, jobs)
        await asyncio.gather(*(child.stop() for child in children))
        runs: Counter[Any] = Counter()
        for index in range(processes):
            path = folder / f"{index}.ids"
            if path.exists():
                runs.update(ObjectId(line) for line in path.read_text().split())
        completed = 0
        for name in sorted(set(names)):
            jobs_of = bench.client[name][DEFAULT_COLLECTION]
            completed += await jobs_of.count_documents({"status": "completed"})
    finally:
        for child in children:
            await child.stop()
        shutil.rmtree(folder, ignore_errors=True)
        for name in sorted(set(names)):
            await bench.drop(name)
    errors = [error for child in children for error in child.status.errors]
    return MultiResult(
        processes,
        jobs,
        seconds,
        check_runs(ids, runs),
        completed,
        [c.status.count for c in children],
        errors,
        cpu,
        server,
        server_after.cpu - server_before.cpu,
        rss,
        [child.status.package for child in children],
        switches,
        server_switches,
        separate,
    )


async def section_multi(bench: Bench) -> None:
    """One worker process vs ``--processes`` of them sharing one queue, and the same number
    sharing nothing (each burns down its own queue: what running that many processes costs
    on this machine, apart from what sharing a queue costs), interleaved ``--repeat`` times."""
    section = "6. Many processes"
    args = bench.args
    jobs, workers, many = args.multi_jobs, args.workers, args.processes
    kinds = list(dict.fromkeys([(1, False), (many, False), (many, True)]))
    runs: dict[tuple[int, bool], list[MultiResult]] = {kind: [] for kind in kinds}
    for index in range(args.repeat):
        for processes, separate in kinds:
            alone = ", each its own queue" if separate else ""
            log(
                f"{section}: run {index + 1}: {jobs} jobs, "
                f"{processes} process(es) x {workers}{alone}"
            )
            result = await multi_burn(bench, processes, jobs, separate=separate)
            runs[processes, separate].append(result)
            bench.report.note(section, result.describe())
    labels = {
        kind: f"{kind[0]} process{'es' if kind[0] > 1 else ''} x {workers} workers"
        + (", each its own queue" if kind[1] else "")
        for kind in kinds
    }
    for kind, results in runs.items():
        bench.report.add(
            section, f"{fmt_int(jobs)} jobs, {labels[kind]}", runs_value(results), "—", None
        )
        add_once_row(bench, section, labels[kind], results)
    one, shared = median_rate(runs[1, False]), median_rate(runs[many, False])
    ratio = shared / one if one else 0.0
    bench.report.add(
        section,
        f"{many} processes vs 1 (medians)",
        f"{ratio:.2f}x",
        f"≥ {TARGET_MULTI_RATIO}x",
        ratio >= TARGET_MULTI_RATIO,
    )
    per_job: dict[tuple[int, bool], float] = {}
    for kind, results in runs.items():
        per_job[kind] = statistics.median(r.total_cpu_per_job for r in results)
        workers_part = statistics.median(r.cpu_per_job for r in results)
        bench.report.add(
            section,
            f"CPU per job, {labels[kind]} (workers + mongod, median)",
            f"{per_job[kind] * 1e6:.0f} µs ({workers_part * 1e6:.0f} µs workers)",
            "—",
            None,
        )
    base = per_job[1, False]
    cpu_ratio = per_job[many, False] / base if base else float("inf")
    bench.report.add(
        section,
        f"CPU per job, {many} processes vs 1 (medians)",
        f"{cpu_ratio:.2f}x",
        f"≤ {TARGET_MULTI_CPU_RATIO}x",
        cpu_ratio <= TARGET_MULTI_CPU_RATIO,
    )
    floor = per_job[many, True] / base if base else float("inf")
    bench.report.add(
        section,
        f"CPU per job, {many} processes each with its own queue vs 1 (control, medians)",
        f"{floor:.2f}x",
        "—",
        None,
    )


# -- 7. Node comparison -----------------------------------------------------------------------


async def run_command(args: Sequence[str], timeout: float, cwd: str | None = None) -> str:
    """Run a command; return its stdout, or raise with its stderr."""
    process = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError(f"{shlex.join(args)} timed out after {timeout:.0f} s") from None
    if process.returncode != 0:
        tail = err.decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"{shlex.join(args)} exited with {process.returncode}: {tail}")
    return out.decode(errors="replace")


async def section_node(bench: Bench) -> None:
    section = "7. Node comparison"
    installed = await bench.node(section)
    if installed is None:
        print("skipped: node/npm not found", file=sys.stderr)
        bench.report.skip(section, "Node mongo-job-scheduler 1.2.4", "skipped: node/npm not found")
        return
    node, folder = installed
    script = folder / NODE_SCRIPT.name
    for jobs in bench.args.jobs:
        # Each Node run has a Python run right beside it (the order alternates), so the
        # ratio compares the two at the same moments: this machine's speed drifts by tens
        # of percent over minutes, and section 1 ran long before.
        node_rates: list[float] = []
        python_runs: list[BurnResult] = []
        for index in range(bench.args.repeat):
            sides = ("python", "node") if index % 2 == 0 else ("node", "python")
            for side in sides:
                if side == "python":
                    log(f"{section}: run {index + 1}: Python burn-down of {jobs} jobs")
                    python_runs.append(await fresh_burn(bench, jobs, "burn_beside_node"))
                    continue
                log(f"{section}: run {index + 1}: Node burn-down of {jobs} jobs")
                name = bench.database_name("node")
                try:
                    output = await run_command(
                        [node, str(script), bench.uri, name, str(jobs)],
                        timeout=1800,
                        cwd=str(folder),
                    )
                finally:
                    await bench.drop(name)
                stats = json.loads(output.strip().splitlines()[-1])
                node_rates.append(float(stats["rate"]))
                bench.report.note(
                    section,
                    f"Node {fmt_int(jobs)} jobs: {stats['handled']:,} handler calls "
                    f"({stats['distinct']:,} distinct ids, {stats['duplicates']} duplicates, "
                    f"{stats['errors']} worker errors) in {stats['seconds']:.2f} s = "
                    f"{fmt_rate(stats['rate'])}.",
                )
        for result in python_runs:
            bench.report.note(section, f"Python beside Node: {result.describe()}")
        python = median_rate(python_runs)
        node_rate = statistics.median(node_rates)
        ratio = python / node_rate if node_rate else float("inf")
        shown = ", ".join(f"{value:,.0f}" for value in node_rates)
        bench.report.add(
            section,
            f"Node 1.2.4, {fmt_int(jobs)} jobs (8 workers, poll 50 ms)",
            fmt_rate(node_rate)
            + (f" (median of {len(node_rates)}: {shown})" if len(node_rates) > 1 else ""),
            "—",
            None,
        )
        bench.report.add(
            section,
            f"Python, {fmt_int(jobs)} jobs, each run beside a Node run "
            f"({bench.args.workers} workers)",
            runs_value(python_runs),
            "—",
            None,
        )
        add_once_row(bench, section, f"Python beside Node, {fmt_int(jobs)} jobs", python_runs)
        bench.report.add(
            section,
            f"Python / Node, {fmt_int(jobs)} jobs (medians)",
            f"{ratio:.1f}x ({fmt_rate(python)} / {fmt_rate(node_rate)})",
            f"≥ {TARGET_NODE_RATIO:.0f}x",
            ratio >= TARGET_NODE_RATIO,
        )


# -- 10. idle fleet ---------------------------------------------------------------------------


TARGET_FLEET_NODE_SHARE = 0.10
"""The extra mongod CPU of the compared Python fleet, as a share of the Node fleet's."""
TARGET_FLEET_PER_PROCESS = 0.02
"""Extra mongod CPU per idle Python process, in percent of one core."""
FLEET_SPAWN_BATCH = 10
FLEET_WORKERS = 4


@dataclass
class FleetWindow:
    """``mongod``'s CPU over one measurement window with a fleet of idle processes."""

    label: str
    kind: str
    """``none``, ``python``, ``bare`` (processes with a client and no scheduler) or ``node``."""
    processes: int
    mongod: float
    """Percent of one core used by ``mongod`` (``/proc/<pid>/stat``) over the window."""
    fleet: float
    """Percent of one core used by the fleet's processes together."""
    ops: dict[str, float]
    """``serverStatus`` operation counters per second over the window."""

    def describe(self, baseline: float) -> str:
        shown = ", ".join(f"{key} {value:.1f}" for key, value in self.ops.items() if value >= 0.05)
        extra = self.mongod - baseline
        per = f" = {extra / self.processes:.4f}% per process" if self.processes else ""
        return (
            f"{self.label}: mongod {self.mongod:.2f}% of a core (extra {extra:+.2f}%{per}); "
            f"the fleet's processes {self.fleet:.1f}% of a core; server operations per second: "
            f"{shown or 'none'}"
        )


class IdleFleet:
    """Idle worker processes on one database: ``bench/child.py`` in ``idle`` or ``bare`` mode,
    or the Node library's ``node_idle_worker.js``; grown in steps, stopped together."""

    def __init__(self, bench: Bench, database: str, on_probe: Callable[[str, float], None]):
        self.bench = bench
        self.database = database
        self.on_probe = on_probe
        self.children: list[Child] = []
        self.node: list[asyncio.subprocess.Process] = []

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self.children] + [p.pid for p in self.node]

    async def grow(self, size: int, mode: str) -> None:
        """Start ``bench/child.py`` processes in ``mode`` until there are ``size`` of them."""
        while len(self.children) < size:
            batch = [
                Child(
                    self.bench.uri,
                    self.database,
                    mode=mode,
                    workers=FLEET_WORKERS,
                    poll_interval=self.bench.args.idle_poll,
                    on_probe=self.on_probe,
                )
                for _ in range(min(FLEET_SPAWN_BATCH, size - len(self.children)))
            ]
            for child in batch:
                await child.spawn()
            await asyncio.gather(*(child.wait_ready() for child in batch))
            await asyncio.gather(*(child.send("go") for child in batch))
            await asyncio.gather(
                *(asyncio.wait_for(child.status.started.wait(), 60) for child in batch)
            )
            self.children += batch
        errors = [e for child in self.children for e in child.status.errors]
        if errors:
            raise RuntimeError(f"idle workers reported errors: {errors[:3]}")

    async def grow_node(self, size: int, node: str, folder: Path) -> None:
        """Start Node idle workers (``node_idle_worker.js``) until there are ``size``."""
        script = folder / NODE_IDLE_SCRIPT.name
        while len(self.node) < size:
            batch = []
            for _ in range(min(FLEET_SPAWN_BATCH, size - len(self.node))):
                batch.append(
                    await asyncio.create_subprocess_exec(
                        node,
                        str(script),
                        self.bench.uri,
                        self.database,
                        str(FLEET_WORKERS),
                        cwd=str(folder),
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                    )
                )
            for process in batch:
                assert process.stdout is not None
                line = await asyncio.wait_for(process.stdout.readline(), 60)
                if line.decode().strip() != "ready":
                    raise RuntimeError(f"a Node idle worker said {line!r}, not ready")
            self.node += batch

    async def stop(self) -> None:
        """Stop every process (gracefully; killed after a minute)."""
        await asyncio.gather(*(child.stop() for child in self.children))
        self.children = []
        for process in self.node:
            if process.returncode is None and process.stdin is not None:
                with contextlib.suppress(ConnectionError):
                    process.stdin.write(b"stop\n")
                    await process.stdin.drain()
        for process in self.node:
            try:
                await asyncio.wait_for(process.wait(), 60)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        self.node = []


async def fleet_window(
    bench: Bench, mongod_pid: int, fleet: IdleFleet, label: str, kind: str
) -> FleetWindow:
    """Wait ``--fleet-settle`` seconds, then measure ``mongod`` over ``--fleet-window``."""
    args = bench.args
    processes = len(fleet.pids)
    settle, window = args.fleet_settle, args.fleet_window
    log(f"10. Idle fleet: {label}: settle {settle:.0f} s, measure {window:.0f} s")
    await asyncio.sleep(settle)
    pids = fleet.pids
    load = await ServerLoad.read(bench.client)
    mongod, workers = cpu_seconds(mongod_pid), sum(map(cpu_seconds, pids))
    started = time.monotonic()
    await asyncio.sleep(window)
    seconds = time.monotonic() - started
    mongod = cpu_seconds(mongod_pid) - mongod
    workers = sum(map(cpu_seconds, pids)) - workers
    after = await ServerLoad.read(bench.client)
    keys = ("query", "getmore", "update", "insert", "delete", "command", "aggregate")
    ops = {key: (after.ops.get(key, 0) - load.ops.get(key, 0)) / seconds for key in keys}
    return FleetWindow(label, kind, processes, 100 * mongod / seconds, 100 * workers / seconds, ops)


@dataclass
class FleetProbes:
    now: list[float] = field(default_factory=list)
    future: list[float] = field(default_factory=list)
    missed: int = 0


async def fleet_probes(
    bench: Bench, database: str, arrival: Callable[[str], asyncio.Future[float]]
) -> FleetProbes:
    """With the fleet idle, a producer on its own client schedules ``--fleet-probes`` jobs due
    now (one at a time, 0.2-1 s apart) and as many due 0.3-3 s later (five at a time); each
    one's latency is its handler's start minus its ``next_run_at``."""
    args = bench.args
    rng = random.Random(8)
    client: AsyncMongoClient[Doc] = AsyncMongoClient(bench.uri)
    producer = Scheduler(MongoJobStore(client[database]))
    probes = FleetProbes()
    warmup = 2

    async def one(run_at: Any, into: list[float] | None) -> None:
        job = await producer.schedule("probe", run_at=run_at)
        try:
            latency = await asyncio.wait_for(arrival(str(job.id)), timeout=15)
        except asyncio.TimeoutError:
            probes.missed += 1
            return
        if into is not None:
            into.append(latency)

    try:
        for index in range(warmup + args.fleet_probes):
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            await one(None, probes.now if index >= warmup else None)
        for _ in range(max(1, args.fleet_probes // 5)):
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            await asyncio.gather(
                *(
                    one(utcnow() + timedelta(seconds=rng.uniform(0.3, 3.0)), probes.future)
                    for _ in range(5)
                )
            )
    finally:
        await client.close()
    return probes


def slope(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of ``y`` over ``x``."""
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0


async def section_fleet(bench: Bench) -> None:
    """``mongod``'s CPU with 0 and ``--fleet-sizes`` idle Python worker processes (4 workers,
    default poll interval), with as many processes holding only a client, and with
    ``--fleet-compare`` idle Node 1.2.4 processes, all on one replica set in one run; the
    due-to-start latency of jobs scheduled with the compared Python fleet idle."""
    section = "10. Idle fleet"
    args = bench.args
    compare = args.fleet_compare
    sizes = sorted({*args.fleet_sizes, compare})
    mongod_pid = int((await bench.client.admin.command("serverStatus"))["pid"])
    database = bench.database_name("fleet")
    await MongoJobStore(bench.client[database]).setup()
    loop = asyncio.get_running_loop()
    arrivals: dict[str, asyncio.Future[float]] = {}

    def arrival(job_id: str) -> asyncio.Future[float]:
        return arrivals.setdefault(job_id, loop.create_future())

    def on_probe(job_id: str, latency: float) -> None:
        future = arrival(job_id)
        if not future.done():
            future.set_result(latency)

    fleet = IdleFleet(bench, database, on_probe)
    windows: list[FleetWindow] = []
    probes: FleetProbes | None = None
    try:
        windows.append(await fleet_window(bench, mongod_pid, fleet, "no worker processes", "none"))
        for size in sizes:
            log(f"{section}: {size} idle Python worker processes")
            await fleet.grow(size, "idle")
            label = f"{size} idle Python processes"
            windows.append(await fleet_window(bench, mongod_pid, fleet, label, "python"))
            if size == compare:
                log(f"{section}: latency probes with {size} idle processes")
                probes = await fleet_probes(bench, database, arrival)
        await fleet.stop()
        log(f"{section}: {compare} processes with a client and no scheduler")
        await fleet.grow(compare, "bare")
        label = f"{compare} processes with a client only"
        windows.append(await fleet_window(bench, mongod_pid, fleet, label, "bare"))
        await fleet.stop()
        installed = await bench.node(section)
        if installed is not None:
            log(f"{section}: {compare} idle Node 1.2.4 worker processes")
            await fleet.grow_node(compare, *installed)
            label = f"{compare} idle Node 1.2.4 processes"
            windows.append(await fleet_window(bench, mongod_pid, fleet, label, "node"))
            await fleet.stop()
        windows.append(await fleet_window(bench, mongod_pid, fleet, "no worker processes", "none"))
    finally:
        await fleet.stop()
        await bench.drop(database)
    report_fleet(bench, section, windows, probes)


def report_fleet(
    bench: Bench, section: str, windows: list[FleetWindow], probes: FleetProbes | None
) -> None:
    compare = bench.args.fleet_compare
    quiet = [w.mongod for w in windows if w.kind == "none"]
    baseline = statistics.fmean(quiet)
    bench.report.add(
        section,
        "mongod with no worker processes",
        f"{baseline:.2f}% of a core (" + ", ".join(f"{v:.2f}%" for v in quiet) + ")",
        "—",
        None,
    )
    python = {w.processes: w for w in windows if w.kind == "python"}
    for size, window in python.items():
        extra = window.mongod - baseline
        judged = size == compare
        bench.report.add(
            section,
            f"{size} idle Python processes: extra mongod CPU",
            f"{extra:.2f}% of a core = {extra / size:.4f}% per process",
            f"≤ {TARGET_FLEET_PER_PROCESS}% per process" if judged else "—",
            extra / size <= TARGET_FLEET_PER_PROCESS if judged else None,
        )
    points = [(0.0, value) for value in quiet] + [(float(n), w.mongod) for n, w in python.items()]
    bench.report.add(
        section,
        "Python: extra mongod CPU per idle process (least-squares slope)",
        f"{slope(points):.4f}% of a core",
        "—",
        None,
    )
    for window in windows:
        if window.kind == "bare":
            extra = window.mongod - baseline
            bench.report.add(
                section,
                f"{window.processes} processes with a client only (no scheduler)",
                f"{extra:.2f}% of a core = {extra / window.processes:.4f}% per process",
                "—",
                None,
            )
    node = next((w for w in windows if w.kind == "node"), None)
    if node is None:
        bench.report.skip(section, f"{compare} idle Node processes", "node/npm not found")
    else:
        node_extra = node.mongod - baseline
        bench.report.add(
            section,
            f"{compare} idle Node 1.2.4 processes: extra mongod CPU",
            f"{node_extra:.2f}% of a core = {node_extra / compare:.4f}% per process",
            "—",
            None,
        )
        extra = python[compare].mongod - baseline
        share = extra / node_extra if node_extra > 0 else float("inf")
        bench.report.add(
            section,
            f"{compare} Python / {compare} Node idle processes: extra mongod CPU",
            f"{share:.3f} ({extra:.2f}% / {node_extra:.2f}%)",
            f"≤ {TARGET_FLEET_NODE_SHARE:.2f}",
            share <= TARGET_FLEET_NODE_SHARE,
        )
    for window in windows:
        bench.report.note(section, window.describe(baseline))
    if probes is None:
        return
    for label, values, checks in (
        ("due now", probes.now, ((50, TARGET_IDLE_P50), (99, TARGET_IDLE_P99))),
        ("due 0.3-3 s after scheduling", probes.future, ((50, None), (99, TARGET_IDLE_P99))),
    ):
        for pct, goal in checks:
            value = percentile(values, pct)
            bench.report.add(
                section,
                f"{compare} idle processes, jobs {label}: due→start p{pct}",
                ms(value),
                "—" if goal is None else f"≤ {ms(goal)}",
                None if goal is None else (value <= goal and probes.missed == 0),
            )
        bench.report.note(
            section,
            f"Jobs {label}, {len(values)} probes: p50 {ms(percentile(values, 50))}, "
            f"p90 {ms(percentile(values, 90))}, p99 {ms(percentile(values, 99))}, "
            f"max {ms(max(values) if values else float('nan'))}",
        )
    if probes.missed:
        bench.report.note(section, f"{probes.missed} probes did not start within 15 s")


# -- 8. executors -----------------------------------------------------------------------------


async def section_executors(bench: Bench) -> None:
    """Per-job time of a no-op handler under each executor (see ``executors.py``)."""
    section = "8. Executors"
    args = bench.args
    jobs, repeat = args.executor_jobs, args.repeat
    log(f"{section}: {jobs} jobs one at a time per executor, in-memory store, {repeat} run(s)")
    per_job = await one_at_a_time(jobs, repeat)
    for executor, seconds in per_job.items():
        extra = seconds - per_job["async"]
        value = f"{seconds * 1e6:.0f} µs ({extra * 1e6:+.0f} µs over async)"
        bench.report.add(
            section, f"{executor}: start → complete, one job at a time", value, "—", None
        )
    over_thread = per_job["process"] - per_job["thread"]
    bench.report.add(
        section,
        "process over thread, per job",
        f"{over_thread * 1e6:+.0f} µs",
        f"≤ {TARGET_PROCESS_OVER_THREAD * 1e6:.0f} µs",
        over_thread <= TARGET_PROCESS_OVER_THREAD,
    )
    name = bench.database_name("executors")
    log(f"{section}: burn-down of {jobs} jobs per executor on MongoDB, {args.workers} workers")
    try:
        rates = await executor_burn_down(
            lambda: MongoJobStore(bench.client[name]), jobs, args.workers, repeat
        )
    finally:
        await bench.drop(name)
    for executor in EXECUTORS:
        label = f"{executor}: burn-down of {fmt_int(jobs)} jobs, {args.workers} workers"
        bench.report.add(section, label, fmt_rate(rates[executor]), "—", None)
    bench.report.note(
        section,
        f"start → complete: median over {fmt_int(jobs)} no-op jobs run one after another on an "
        "InMemoryJobStore (one worker), the median of the runs; burn-down: MongoDB, timed from "
        "the resume of the paused name to the last completion, the process pool at its default "
        f"size ({os.cpu_count()} CPUs)",
    )


# -- 9. workflows -----------------------------------------------------------------------------


@dataclass
class FanIn:
    """A fan-in waiting for the jobs of a burn-down: when and how often it ran."""

    runs: int = 0
    started: float = 0.0
    ran: asyncio.Event = field(default_factory=asyncio.Event)

    async def prepare(self, scheduler: Scheduler, ids: list[Any]) -> Callable[[], Awaitable[Any]]:
        async def joined(job: Job) -> None:
            self.runs += 1
            self.started = time.perf_counter()
            self.ran.set()

        scheduler.task("fan-in")(joined)
        await scheduler.schedule("fan-in", depends_on=ids)
        return self.ran.wait


async def section_workflow(bench: Bench) -> None:
    """Burn-downs whose jobs are the dependencies of one fan-in job, beside the same burn-downs
    without a dependant: the cost per completed dependency, and the fan-in released once."""
    section = "9. Workflows"
    for jobs in bench.args.workflow_jobs:
        plain: list[BurnResult] = []
        fanned: list[BurnResult] = []
        fan_ins: list[FanIn] = []
        for index in range(bench.args.repeat):
            log(f"{section}: run {index + 1}: {jobs} jobs without, then with a fan-in")
            plain.append(await fresh_burn(bench, jobs, "flow_plain"))
            fan_in = FanIn()
            name = bench.database_name("flow_fan_in")
            try:
                result = await burn_down(
                    bench.client[name], jobs, bench.args.workers, prepare=fan_in.prepare
                )
            finally:
                await bench.drop(name)
            fanned.append(result)
            fan_ins.append(fan_in)
            bench.report.note(section, f"No dependant: {plain[-1].describe()}")
            bench.report.note(section, f"Fan-in over all {jobs}: {result.describe()}")
        label = f"{fmt_int(jobs)} jobs"
        bench.report.add(section, f"{label}, no dependant", runs_value(plain), "—", None)
        bench.report.add(
            section, f"{label}, all one fan-in's dependencies", runs_value(fanned), "—", None
        )
        ratio = median_rate(fanned) / median_rate(plain)
        bench.report.add(
            section, f"{label}: with / without a dependant (medians)", f"{ratio:.2f}x", "—", None
        )
        once = all(f.runs == 1 for f in fan_ins)
        delays = [f.started - r.last_at for f, r in zip(fan_ins, fanned, strict=True)]
        bench.report.add(
            section,
            f"{label}: the fan-in ran exactly once, after the last dependency",
            f"runs {[f.runs for f in fan_ins]}; started {max(delays) * 1000:.0f} ms after the "
            "last dependency at most",
            "once each",
            once,
        )
        add_once_row(bench, section, f"{label} with a fan-in", fanned)


# -- the run ----------------------------------------------------------------------------------


SECTIONS: list[tuple[str, str, Callable[[Bench], Awaitable[None]]]] = [
    ("burn", "1. Burn-down", section_burn),
    ("idle", "2. Idle latency", section_idle),
    ("steady", "3. Steady load", section_steady),
    ("scale", "4. Flat cost at scale", section_scale),
    ("memory", "5. Memory", section_memory),
    ("multi", "6. Many processes", section_multi),
    ("node", "7. Node comparison", section_node),
    ("executors", "8. Executors", section_executors),
    ("workflow", "9. Workflows", section_workflow),
    ("fleet", "10. Idle fleet", section_fleet),
]


def code_revision() -> str:
    """The git commit of the tree benchmarked, and whether it had uncommitted changes."""
    root = BENCH_DIR.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    if not commit:
        return "unknown"
    return f"{commit}" + (" with uncommitted changes under src/" if dirty else "")


def command_line(script: str = "scripts/bench", module: str = "bench/run.py") -> str:
    """How this run was started: ``script`` when it ran through it (``BENCH_VIA_SCRIPT``)."""
    if os.environ.get("BENCH_VIA_SCRIPT"):
        return shlex.join([script, *sys.argv[1:]])
    return shlex.join(["python", module, *sys.argv[1:]])


def machine_facts() -> dict[str, str]:
    """The machine, OS, Python and PyMongo lines of a report header."""
    return {
        "Machine": f"{os.cpu_count()} cores (nproc), {cpu_model()}, {ram_total()} RAM",
        "OS": os_name(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "PyMongo": pymongo.version,
    }


def table_row(cells: Sequence[str]) -> str:
    """One markdown table row (``|`` inside cells escaped)."""
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def render(bench: Bench, facts: dict[str, str]) -> str:
    lines = ["# mongo-job-scheduler benchmark", ""]
    lines += [f"- **{key}**: {value}" for key, value in facts.items()]
    lines += [
        "",
        "## Results",
        "",
        "| Section | Measurement | Value | Goal | Result |",
        "|---|---|---|---|---|",
    ]
    for row in bench.report.rows:
        cells = [row.section, row.measurement, row.value, row.target, f"**{row.verdict}**"]
        lines.append(table_row(cells))
    lines += ["", "## Details", ""]
    for section, notes in bench.report.details.items():
        lines += [f"### {section}", ""]
        lines += [f"- {note}" for note in notes]
        lines.append("")
    return "\n".join(lines)


def cancel_on_sigterm() -> None:
    """Let SIGTERM stop the run the way Ctrl-C does (``finally`` blocks stop the servers)."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


@asynccontextmanager
async def replica_set_bench(args: argparse.Namespace) -> AsyncIterator[Bench]:
    """A :class:`Bench` on a new single-node replica set ``rs0`` on 127.0.0.1 (WiredTiger cache
    ``args.cache_gb``), for one ``async with`` block; its client is closed and the server
    stopped afterwards."""
    mongod = LocalMongod(replica_set="rs0", cache_size_gb=args.cache_gb)
    log(f"starting mongod (replica set rs0, WiredTiger cache {args.cache_gb} GB)")
    mongod.start()
    try:
        bench = Bench(args, mongod)
        try:
            yield bench
        finally:
            await bench.close()
    finally:
        mongod.stop()


async def run_sections(
    bench: Bench,
    sections: Sequence[tuple[str, str, Callable[[Bench], Awaitable[None]]]],
    failures: list[str],
) -> None:
    """Run each section not skipped by its flag; a failure is reported (and noted in
    ``failures``), and the next section runs."""
    for key, title, run in sections:
        if getattr(bench.args, f"skip_{key}"):
            bench.report.skip(title, "(whole section)", "skipped by flag")
            continue
        try:
            await run(bench)
        except Exception as exc:  # report it and go on with the other sections
            log(f"{title} failed: {type(exc).__name__}: {exc}")
            failures.append(title)
            bench.report.add(title, "(section)", f"error: {exc!r}", "", False)


async def main(args: argparse.Namespace) -> int:
    cancel_on_sigterm()
    started_at = utcnow()
    load_before = load_average()
    clock = Stopwatch()
    failures: list[str] = []
    async with replica_set_bench(args) as bench:
        build = await bench.client.admin.command("buildInfo")
        await run_sections(bench, SECTIONS, failures)
    mongod = bench.mongod
    facts = {
        "Date": started_at.strftime("%Y-%m-%d %H:%M UTC"),
        **machine_facts(),
        "MongoDB server": (
            f"{build.get('version')} (`{mongod.binary}`), on 127.0.0.1, single-node replica set "
            f"`rs0` (plus a standalone server for the polling figure), WiredTiger cache "
            f"{args.cache_gb} GB"
        ),
        "Node": bench.node_version or "not used",
        "Workers per process": f"{args.workers} (poll interval 0.05 s; {args.idle_poll} s idle)",
        "Repetitions": f"throughput figures are the median of {args.repeat} run(s)",
        "Load average before / after": f"{load_before} → {load_average()}",
        "Duration": f"{clock.elapsed / 60:.1f} min",
        "Code": code_revision(),
        "Command": f"`{command_line()}`",
    }
    text = render(bench, facts)
    print(text)
    RESULTS_DIR.mkdir(exist_ok=True)
    suffix = "-quick" if args.quick else ""
    path = RESULTS_DIR / f"{started_at:%Y-%m-%d-%H%M}-{socket.gethostname()}{suffix}.md"
    path.write_text(text + "\n")
    (RESULTS_DIR / "latest.md").write_text(text + "\n")
    log(f"report written to {path} and {RESULTS_DIR / 'latest.md'}")
    return 1 if failures else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )

    def ints(text: str) -> list[int]:
        return [int(part.replace("_", "")) for part in text.split(",") if part]

    add = parser.add_argument
    add("--quick", action="store_true", help="every section at small sizes (a smoke test)")
    add("--jobs", type=ints, help="burn-down sizes, comma-separated (default 2000,20000)")
    add("--workers", type=int, default=64, help="workers per process (default 64)")
    add("--idle-probes", type=int, help="idle-latency probes per server (default 100)")
    add("--idle-poll", type=float, default=0.5, help="poll interval of idle workers (0.5 s)")
    add("--steady-rate", type=int, help="jobs/s offered under steady load (default 1000)")
    add("--steady-seconds", type=float, help="how long the steady load lasts (default 10 s)")
    add("--steady-batch", type=int, default=10, help="jobs per producer batch (default 10)")
    add("--scale-jobs", type=int, help="due jobs burnt down at scale (default 20000)")
    add("--scale-future", type=int, help="future-dated jobs in the collection (1000000)")
    add("--scale-finished", type=int, help="completed jobs in the collection (200000)")
    add("--memory-jobs", type=int, help="jobs run by the memory test (default 1000000)")
    add("--multi-jobs", type=int, help="jobs burnt down by 1 vs N processes (default 20000)")
    add("--workflow-jobs", type=ints, help="dependencies of one fan-in (default 1000,10000)")
    add("--processes", type=int, default=4, help="worker processes compared with one (4)")
    add("--repeat", type=int, help="runs of each throughput figure; medians are compared (3)")
    add("--cache-gb", type=float, default=1.0, help="mongod WiredTiger cache size (1.0 GB)")
    add("--executor-jobs", type=int, help="jobs per run of section 8 (default 2000)")
    add("--fleet-sizes", type=ints, help="idle Python worker processes (default 10,50,100)")
    add("--fleet-compare", type=int, help="idle processes compared with Node (default 50)")
    add("--fleet-settle", type=float, help="seconds before each CPU window (default 70)")
    add("--fleet-window", type=float, help="seconds of each CPU window (default 60)")
    add("--fleet-probes", type=int, help="latency probes of each kind, fleet idle (50)")
    for key, title, _ in SECTIONS:
        add(f"--skip-{key}", action="store_true", help=f"skip section {title}")
    args = parser.parse_args(argv)
    full = {
        "jobs": [2_000, 20_000],
        "idle_probes": 100,
        "steady_rate": 1_000,
        "steady_seconds": 10.0,
        "scale_jobs": 20_000,
        "scale_future": 1_000_000,
        "scale_finished": 200_000,
        "memory_jobs": 1_000_000,
        "multi_jobs": 20_000,
        "workflow_jobs": [1_000, 10_000],
        "executor_jobs": 2_000,
        "repeat": 3,
        "fleet_sizes": [10, 50, 100],
        "fleet_compare": 50,
        "fleet_settle": 70.0,
        "fleet_window": 60.0,
        "fleet_probes": 50,
    }
    quick = {
        "jobs": [1_000, 2_000],
        "idle_probes": 15,
        "steady_rate": 500,
        "steady_seconds": 3.0,
        "scale_jobs": 2_000,
        "scale_future": 50_000,
        "scale_finished": 10_000,
        "memory_jobs": 20_000,
        "multi_jobs": 4_000,
        "workflow_jobs": [500, 2_000],
        "executor_jobs": 300,
        "repeat": 1,
        "fleet_sizes": [3, 6],
        "fleet_compare": 6,
        "fleet_settle": 3.0,
        "fleet_window": 6.0,
        "fleet_probes": 10,
    }
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
