"""Chaos scenario 6, SIGTERM under load: a graceful stop leaves no job running; a second
SIGTERM stops at once and still loses nothing.

(a) Busy workers (jobs of 0-2 s) all get SIGTERM: they exit 0 within the stop timeout (short on
purpose, so some handlers are still running when it ends and their jobs are handed back),
nothing is left running, every execution ended, the jobs never started are still pending; a
fresh worker then runs the rest, and every job completes exactly once apart from the handed-back
ones, which ran a second time (counted).

(b) Workers busy with long jobs get SIGTERM and then a second SIGTERM: they exit quickly (far
sooner than the jobs would take), the jobs are pending again with no attempt counted, and a new
worker completes them all.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from typing import Any

from pymongo import MongoClient

from mongo_job_scheduler.sync import MongoJobStore
from mongo_job_scheduler.sync import Scheduler as SyncScheduler
from tests.chaos.harness import Fleet, Proc, describe, poll_until, report, size

WORKERS = 8
FIGURES: dict[str, Any] = {}
"""Both tests' figures, reported together as the scenario ``sigterm``."""
LOCK_TIMEOUT = 10.0

# (a)
BUSY_PROCESSES = size(2, 4)
BUSY_JOBS = size(300, 3_000)
STOP_TIMEOUT = 1.0  # a 0-2 s job still running 1 s after the SIGTERM is handed back
DRAIN_WORKERS = 64
DONE_BEFORE_STOP = size(40, 400)  # executions finished before the SIGTERM

# (b)
LONG_PROCESSES = size(1, 4)
LONG_SLEEP = 60.0
HURRY_EXIT_WITHIN = 20.0  # after the second SIGTERM; the jobs would take LONG_SLEEP


def poll(predicate: Callable[[], Any], timeout: float, what: str, fleet: Fleet) -> Any:
    return poll_until(predicate, timeout, what, detail=fleet.logs)


def wait_exits(procs: list[Proc], timeout: float, fleet: Fleet) -> dict[int, float]:
    """Wait for every process to exit; return when each was seen gone (``time.monotonic()``)."""
    exited: dict[int, float] = {}

    def all_gone() -> bool:
        for proc in procs:
            if proc.pid not in exited and not proc.alive():
                exited[proc.pid] = time.monotonic()
        return len(exited) == len(procs)

    poll(all_gone, timeout, "workers exiting", fleet)
    return exited


def lock_fields(doc: dict[str, Any]) -> list[str]:
    return [k for k in ("lockedBy", "lockedAt", "lockUntil") if k in doc]


def test_graceful_stop_under_load(
    sync_db: Any, fleet: Fleet, mongodb_uri: str, db_name: str
) -> None:
    rng = random.Random(6)
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    try:
        producer = SyncScheduler(MongoJobStore(client[db_name]))
        jobs_coll = client[db_name]["scheduler_jobs"]
        items = [
            {"name": "chaos", "data": {"sleep": round(rng.uniform(0, 2), 3)}}
            for _ in range(BUSY_JOBS)
        ]
        ids = {str(job.id) for job in producer.schedule_bulk(items)}

        procs = [
            fleet.spawn(workers=WORKERS, lock_timeout=LOCK_TIMEOUT, stop_timeout=STOP_TIMEOUT)
            for _ in range(BUSY_PROCESSES)
        ]
        for proc in procs:
            fleet.wait_started(proc)
        poll(
            lambda: sum(e.outcome == "ok" for e in fleet.history().executions) >= DONE_BEFORE_STOP,
            60,
            "jobs done before the stop",
            fleet,
        )
        poll(
            lambda: jobs_coll.count_documents({"status": "running"}) >= WORKERS,
            30,
            "workers busy",
            fleet,
        )
        assert jobs_coll.count_documents({"status": "pending"}) > 0, "load too small: all taken"

        sent = time.monotonic()
        for proc in procs:
            fleet.signal(proc, signal.SIGTERM)
        exited = wait_exits(procs, STOP_TIMEOUT + 60, fleet)
        exit_times = [at - sent for at in exited.values()]
        assert [p.popen.returncode for p in procs] == [0] * len(procs), fleet.logs()
        # The stop timeout plus the hand-back writes and the shutdown (wide margin).
        assert max(exit_times) < STOP_TIMEOUT + 15, exit_times

        # Nothing running, every execution ended; stopped handlers' jobs pending again.
        history = fleet.history()
        assert history.unfinished() == [], describe(history.unfinished())
        docs = {str(d["_id"]): d for d in jobs_coll.find({})}
        running = [d for d in docs.values() if d["status"] == "running" or lock_fields(d)]
        assert not running, describe(running)
        first = history.by_job()
        completed = {j for j, runs in first.items() if [e.outcome for e in runs] == ["ok"]}
        handed_back = {j for j, runs in first.items() if [e.outcome for e in runs] == ["cancelled"]}
        assert set(first) == completed | handed_back, describe(
            runs for j, runs in first.items() if j not in completed | handed_back
        )
        for job_id, doc in docs.items():
            want = "completed" if job_id in completed else "pending"
            assert doc["status"] == want, (job_id, doc, first.get(job_id))
            if want == "pending":  # handed back or never started: no attempt counted
                assert int(doc.get("attempts") or 0) == 0 and "lastError" not in doc, doc
        never_started = ids - set(first)
        assert never_started, "load too small: every job started before the SIGTERM"

        # A fresh worker runs the rest (many handlers at once: the jobs only sleep).
        drainer = fleet.spawn(workers=DRAIN_WORKERS, lock_timeout=LOCK_TIMEOUT)
        fleet.wait_started(drainer)
        poll(
            lambda: jobs_coll.count_documents({"status": "completed"}) == len(ids),
            size(120, 600),
            "drain after the stop",
            fleet,
        )
        assert fleet.stop_all(timeout=60)[drainer.pid] == 0

        history = fleet.history()
        assert history.unfinished() == [] and history.overlaps() == []
        for job_id, runs in history.by_job().items():
            outcomes = [e.outcome for e in runs]
            expected = ["cancelled", "ok"] if job_id in handed_back else ["ok"]
            assert outcomes == expected, (job_id, runs)
            assert {e.attempt for e in runs} == {1}, runs
        assert set(history.by_job()) == ids

        figures = {
            "graceful_processes": BUSY_PROCESSES,
            "graceful_handlers_per_process": WORKERS,
            "graceful_jobs": BUSY_JOBS,
            "graceful_stop_timeout_s": STOP_TIMEOUT,
            "graceful_completed_before_stop": len(completed),
            "graceful_handed_back_at_stop_timeout": len(handed_back),
            "graceful_never_started_before_stop": len(never_started),
            "graceful_exit_codes": sorted({p.popen.returncode for p in procs}),
            "graceful_slowest_exit_after_sigterm_s": round(max(exit_times), 2),
            "graceful_left_running": 0,
            "graceful_re_executions": len(handed_back),
            "graceful_lost_jobs": 0,
        }
        FIGURES.update(figures)
        report("sigterm", FIGURES)
        print(figures)
    finally:
        client.close()


def test_second_sigterm_hands_back_at_once(
    sync_db: Any, fleet: Fleet, mongodb_uri: str, db_name: str
) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    try:
        producer = SyncScheduler(MongoJobStore(client[db_name]))
        jobs_coll = client[db_name]["scheduler_jobs"]
        count = LONG_PROCESSES * WORKERS
        jobs = producer.schedule_bulk(
            [{"name": "chaos", "data": {"sleep": LONG_SLEEP}} for _ in range(count)]
        )
        ids = {str(job.id) for job in jobs}
        procs = [
            fleet.spawn(workers=WORKERS, lock_timeout=LOCK_TIMEOUT, stop_timeout=300)
            for _ in range(LONG_PROCESSES)
        ]
        for proc in procs:
            fleet.wait_started(proc)
        # Every job started (each process runs WORKERS of them).
        poll(lambda: len(fleet.history().executions) == count, 60, "long jobs started", fleet)

        for proc in procs:
            fleet.signal(proc, signal.SIGTERM)
        poll(
            lambda: all("stopping gracefully" in p.output() for p in procs),
            30,
            "first SIGTERM",
            fleet,
        )
        # The graceful stop waits for the running jobs (up to 300 s): still alive.
        assert all(p.alive() for p in procs), fleet.logs()
        sent = time.monotonic()
        for proc in procs:
            fleet.signal(proc, signal.SIGTERM)
        exited = wait_exits(procs, 60, fleet)
        exit_times = [at - sent for at in exited.values()]
        assert [p.popen.returncode for p in procs] == [0] * len(procs), fleet.logs()
        assert max(exit_times) < HURRY_EXIT_WITHIN, exit_times
        assert all("stopping now" in p.output() for p in procs), fleet.logs()

        history = fleet.history()
        assert history.unfinished() == []
        assert sorted(e.outcome or "" for e in history.executions) == ["cancelled"] * count
        for doc in jobs_coll.find({}):
            assert doc["status"] == "pending", doc
            assert not lock_fields(doc), doc
            assert int(doc.get("attempts") or 0) == 0 and "lastError" not in doc, doc
            assert int(doc.get("leaseExpiries") or 0) == 0, doc

        # Shorten the jobs (an operator's update of pending jobs) so the check is quick, then
        # a new worker completes every one of them.
        for job in jobs:
            producer.update_job(job.id, data={"sleep": 0.2})
        worker = fleet.spawn(workers=WORKERS, lock_timeout=LOCK_TIMEOUT)
        fleet.wait_started(worker)
        poll(
            lambda: jobs_coll.count_documents({"status": "completed"}) == count,
            60,
            "handed-back jobs completed",
            fleet,
        )
        assert fleet.stop_all(timeout=60)[worker.pid] == 0
        history = fleet.history()
        assert history.overlaps() == [] and history.unfinished() == []
        for runs in history.by_job().values():
            assert [e.outcome for e in runs] == ["cancelled", "ok"], runs
            assert [e.attempt for e in runs] == [1, 1], runs
        assert set(history.by_job()) == ids

        figures = {
            "hurry_processes": LONG_PROCESSES,
            "hurry_long_jobs": count,
            "hurry_job_length_s": LONG_SLEEP,
            "hurry_slowest_exit_after_second_sigterm_s": round(max(exit_times), 2),
            "hurry_exit_codes": sorted({p.popen.returncode for p in procs}),
            "hurry_handed_back": count,
            "hurry_attempts_counted": 0,
            "hurry_completed_by_new_worker": count,
            "hurry_lost_jobs": 0,
        }
        FIGURES.update(figures)
        report("sigterm", FIGURES)
        print(figures)
    finally:
        client.close()
