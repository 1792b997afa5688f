"""Outage: the only mongod (a standalone server, so the workers poll: no change streams) is
shut down mid-run for 10 s (5 s at CI size) and started again on the same port and data.

The workers' lease (``lock_timeout``) is longer than the outage plus a heartbeat, so no lease
can run out while the server is away: a handler that ends during the outage keeps its lease
until its outcome can be written, and no job may run twice. Afterwards: no worker process
exited (checked throughout the outage too), every job completed exactly once, nothing was
re-executed at all (``History.reruns() == {}``), no executions overlapped, and nothing was left
running.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from mongo_job_scheduler.sync import MongoJobStore, Scheduler
from tests.chaos._topology import Member, in_flight, log_warnings
from tests.chaos.harness import Fleet, describe, poll_until, report, size

DATABASE = "chaos_outage"
PROCESSES = size(3, 4)
WORKERS = size(4, 8)
OUTAGE = size(5.0, 10.0)
LOCK_TIMEOUT = size(20.0, 30.0)
"""Longer than the outage plus a heartbeat interval (min(lock_timeout / 3, 5 s)) plus the
restart: the last renewal before the outage still covers every execution until after it."""
JOBS = size(300, 1200)
WINDOW = size(20.0, 50.0)
"""Seconds over which the jobs fall due (the outage starts a quarter into it)."""


def _jobs(start: datetime) -> list[dict[str, Any]]:
    rng = random.Random(3)
    items = []
    for i in range(JOBS):
        data: dict[str, Any] = {"i": i}
        if i % 2 == 0:
            data["sleep"] = round(rng.uniform(0.2, 1.0), 2)
        if i % 25 == 0:
            data["sleep"] = 3.0  # some runs straddle the moment the server goes away
        if i % 10 == 5:
            data["fail"] = 1  # attempt 1 raises, attempt 2 succeeds
        items.append(
            {
                "name": "chaos",
                "data": data,
                "run_at": start + timedelta(seconds=WINDOW * i / JOBS),
                "retry": {"maxAttempts": 3, "delay": 0},
            }
        )
    return items


def test_outage(tmp_path: Path) -> None:
    server = Member()
    fleet = Fleet(server.uri, DATABASE, tmp_path)
    client: MongoClient[dict[str, Any]] | None = None
    try:
        server.start()
        client = MongoClient(server.uri, serverSelectionTimeoutMS=60_000)
        jobs = client[DATABASE]["scheduler_jobs"]
        producer = Scheduler(MongoJobStore(client[DATABASE]))

        procs = [fleet.spawn(workers=WORKERS, lock_timeout=LOCK_TIMEOUT) for _ in range(PROCESSES)]
        for proc in procs:
            fleet.wait_started(proc)
        start = datetime.now(timezone.utc) + timedelta(seconds=1)
        scheduled = {str(job.id) for job in producer.schedule_bulk(_jobs(start))}
        began = time.monotonic()

        poll_until(
            lambda: jobs.count_documents({"status": "running"}) > 0, 30, "a run", interval=0.05
        )
        poll_until(
            lambda: time.monotonic() - began >= WINDOW / 4, WINDOW, "the outage", interval=0.1
        )

        down_at = time.time()
        stopping = time.monotonic()
        server.stop()
        stopped_in = round(time.monotonic() - stopping, 2)
        while time.monotonic() - stopping < OUTAGE:  # the outage itself; the workers must live
            exited = [p.pid for p in procs if not p.alive()]
            assert not exited, f"worker(s) {exited} exited during the outage:\n{fleet.logs()}"
            time.sleep(0.1)
        server.start()
        up_at = time.time()
        outage = round(up_at - down_at, 2)

        poll_until(
            lambda: jobs.count_documents({"status": {"$ne": "completed"}}) == 0,
            WINDOW + OUTAGE + 2 * LOCK_TIMEOUT + 120,
            "every job completed",
            interval=0.2,
        )
        exited = [p.pid for p in procs if not p.alive()]
        assert not exited, f"worker(s) {exited} exited:\n{fleet.logs()}"
        codes = fleet.stop_all()
        assert set(codes.values()) == {0}, f"exit codes {codes}:\n{fleet.logs()}"

        history = fleet.history()
        runs = history.executions
        ok = Counter(e.job for e in runs if e.outcome == "ok")
        never = scheduled - set(ok)
        twice = {job: n for job, n in ok.items() if n > 1}
        assert not never, f"{len(never)} jobs never completed in the history: {sorted(never)[:5]}"
        assert not twice, f"jobs completed more than once: {twice}"
        assert set(ok) == scheduled
        assert history.reruns() == {}, describe(history.reruns().items())
        assert history.overlaps() == [], describe(history.overlaps())
        assert history.unfinished() == [], describe(history.unfinished())
        assert {e.outcome for e in runs} <= {"ok", "error"}, Counter(e.outcome for e in runs)
        assert jobs.count_documents({"status": "running"}) == 0

        ended_during = [e for e in runs if e.end is not None and down_at <= e.end < up_at]
        after = [e.start for e in runs if e.start >= up_at]
        lease_expiries = sum(d.get("leaseExpiries", 0) for d in jobs.find({}, {"leaseExpiries": 1}))
        report(
            "outage",
            {
                "worker_processes": PROCESSES,
                "workers_per_process": WORKERS,
                "lock_timeout_s": LOCK_TIMEOUT,
                "jobs": JOBS,
                "window_s": WINDOW,
                "outage_s": outage,
                "mongod_shutdown_s": stopped_in,
                "executions_in_flight_at_shutdown": in_flight(runs, down_at),
                "handlers_ended_during_outage": len(ended_during),
                "first_start_after_restart_s": round(min(after) - up_at, 2) if after else None,
                "executions": len(runs),
                "retries_on_purpose": sum(1 for e in runs if e.outcome == "error"),
                "jobs_lost": len(never),
                "re_executions": len(history.reruns()),
                "overlaps": 0,
                "lease_expiries": lease_expiries,
                "worker_exits": 0,
                "worker_warnings": log_warnings(p.output() for p in procs),
            },
        )
    finally:
        fleet.kill_leftovers()
        if client is not None:
            client.close()
        server.destroy()
