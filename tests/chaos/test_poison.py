"""Chaos scenario 7, poison job: a handler that kills its own process is quarantined after
the configured number of lease expiries, with a clear ``lastError``, while the normal jobs
scheduled beside it all complete.

The driver keeps ``PROCESSES`` workers alive, starting a new one each time one dies. Each
process runs one handler at a time, so a normal job never shares a process with the poison job:
one that did would die with it and have its lease expire too (correct, and scenario 1's
subject), and could be quarantined with it under a limit this small.
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from typing import Any

from pymongo import MongoClient

from mongo_job_scheduler.sync import MongoJobStore
from mongo_job_scheduler.sync import Scheduler as SyncScheduler
from tests.chaos.harness import Fleet, History, describe, report, size

PROCESSES = 2
MAX_LEASE_EXPIRIES = 2
LOCK_TIMEOUT = 1.5
NORMAL_JOBS = size(40, 400)
SPREAD = size(6.0, 30.0)  # the normal jobs fall due over this many seconds
TIMEOUT = size(90.0, 300.0)


def test_poison_job_is_quarantined(
    sync_db: Any, fleet: Fleet, mongodb_uri: str, db_name: str
) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    try:
        producer = SyncScheduler(MongoJobStore(client[db_name]))
        jobs_coll = client[db_name]["scheduler_jobs"]
        poison = producer.schedule("chaos", {"kill": True})
        normals = producer.schedule_bulk(
            [
                {
                    "name": "chaos",
                    "data": {"sleep": 0.1 * (i % 3)},
                    "delay": timedelta(seconds=SPREAD * i / NORMAL_JOBS),
                }
                for i in range(NORMAL_JOBS)
            ]
        )
        normal_ids = [job.id for job in normals]

        def spawn() -> None:
            fleet.spawn(
                workers=1,
                lock_timeout=LOCK_TIMEOUT,
                max_lease_expiries=MAX_LEASE_EXPIRIES,
                poll_interval=0.2,
            )

        began = time.monotonic()
        for _ in range(PROCESSES):
            spawn()

        def settled() -> bool:
            status = jobs_coll.find_one({"_id": poison.id}, {"status": 1})
            done = jobs_coll.count_documents({"_id": {"$in": normal_ids}, "status": "completed"})
            return bool(status and status["status"] == "failed") and done == NORMAL_JOBS

        deadline = time.monotonic() + TIMEOUT
        quarantined_after: float | None = None
        while not settled():
            if quarantined_after is None:
                doc = jobs_coll.find_one({"_id": poison.id}, {"status": 1})
                if doc and doc["status"] == "failed":
                    quarantined_after = time.monotonic() - began
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not settled in {TIMEOUT}s: {jobs_coll.find_one({'_id': poison.id})}\n"
                    + fleet.logs()
                )
            if len(fleet.live()) < PROCESSES:  # a worker died: start another one
                spawn()
            time.sleep(0.05)
        if quarantined_after is None:
            quarantined_after = time.monotonic() - began
        for proc in fleet.live():
            fleet.wait_started(proc)  # a process still starting up stops cleanly too
        dead = [p for p in fleet.procs if not p.alive()]
        codes = fleet.stop_all(timeout=60)

        # Every process that died was killed by the poison job, as its handler started.
        raw = History.load(fleet.history_dir, {})
        poison_runs = [e for e in raw.executions if e.job == str(poison.id)]
        for proc in dead:
            assert codes[proc.pid] == -signal.SIGKILL, (codes, fleet.logs())
            runs = [e for e in poison_runs if e.pid == proc.pid]
            assert len(runs) == 1 and runs[0].end is None, (proc.pid, runs)
            proc.killed_at = runs[0].start
        survivors = [p for p in fleet.procs if p not in dead]
        assert all(codes[p.pid] == 0 for p in survivors), (codes, fleet.logs())

        history = fleet.history()
        assert history.unfinished() == [], describe(history.unfinished())
        assert history.overlaps() == []
        # The poison job ran exactly MAX_LEASE_EXPIRIES times, each killing its process; the
        # claim after the last expiry quarantined it without running it.
        runs = history.by_job()[str(poison.id)]
        assert [e.outcome for e in runs] == ["killed"] * MAX_LEASE_EXPIRIES, runs
        assert len(dead) == MAX_LEASE_EXPIRIES
        doc = jobs_coll.find_one({"_id": poison.id})
        assert doc is not None and doc["status"] == "failed", doc
        error = doc.get("lastError", "")
        assert doc.get("lastErrorType") == "PoisonJob", doc
        assert f"lease expired {MAX_LEASE_EXPIRIES} times" in error, error
        assert f"limit {MAX_LEASE_EXPIRIES}" in error, error
        assert "lockedBy" not in doc

        # The normal jobs: completed, each exactly once.
        for normal in jobs_coll.find({"_id": {"$in": normal_ids}}):
            assert normal["status"] == "completed" and "lockedBy" not in normal, normal
        normal_runs = {str(i): history.by_job().get(str(i), []) for i in normal_ids}
        assert all([e.outcome for e in r] == ["ok"] for r in normal_runs.values()), describe(
            (j, r) for j, r in normal_runs.items() if [e.outcome for e in r] != ["ok"]
        )

        figures = {
            "processes_kept_alive": PROCESSES,
            "handlers_per_process": 1,
            "max_lease_expiries": MAX_LEASE_EXPIRIES,
            "lock_timeout_s": LOCK_TIMEOUT,
            "poison_executions": len(runs),
            "processes_killed_by_poison": len(dead),
            "processes_started": len(fleet.procs),
            "quarantined_after_s": round(quarantined_after, 1),
            "last_error": error,
            "normal_jobs": NORMAL_JOBS,
            "normal_jobs_completed": NORMAL_JOBS,
            "normal_re_executions": 0,
        }
        report("poison", figures)
        print(figures)
    finally:
        client.close()
