"""Failover: a three-member replica set on 127.0.0.1 loses its primary twice while worker
processes run one-off jobs and an every-second cron job.

1. The primary is shut down cleanly (SIGTERM: it steps down, then quiesces and exits); an
   election follows; the stopped member is started again on its data and rejoins.
2. The new primary is killed (SIGKILL: no step-down, the others notice by missed heartbeats);
   another election follows; that member stays down (two of three keep a majority).

The workers connect with a replica-set URI over all three hosts. Afterwards: each failover
elected a different primary, no worker process exited, every one-off job completed exactly
once, no two executions of a job overlapped, nothing was re-executed, and the cron job ran
every second of the run exactly once (``misfire="all"`` catches up the seconds missed while
there was no primary, so a lost slot shows as a gap and a doubled one as a repeat).
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from mongo_job_scheduler.sync import MongoJobStore, Scheduler
from tests.chaos._topology import ReplicaSet, in_flight, log_warnings
from tests.chaos.harness import Fleet, describe, poll_until, report, size

DATABASE = "chaos_failover"
PROCESSES = size(3, 4)
WORKERS = size(4, 8)
LOCK_TIMEOUT = 10.0
JOBS = size(450, 1800)
WINDOW = size(30.0, 90.0)
"""Seconds over which the one-off jobs fall due (the failovers happen inside it)."""
QUIESCE_MS = size(3000, 15000)
"""How long a SIGTERMed member keeps answering before it exits (15 s is mongod's default)."""


def _jobs(start: datetime) -> list[dict[str, Any]]:
    rng = random.Random(2)
    items = []
    for i in range(JOBS):
        data: dict[str, Any] = {"i": i}
        if i % 2 == 0:
            data["sleep"] = round(rng.uniform(0.2, 1.0), 2)
        if i % 10 == 0:
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


def _longest_gap(runs: list[Any]) -> float:
    starts = sorted(e.start for e in runs)
    return round(max((b - a for a, b in itertools.pairwise(starts)), default=0.0), 2)


def _failover(rs: ReplicaSet, how: str) -> dict[str, Any]:
    """Stop (``how="SIGTERM"``) or kill (``"SIGKILL"``) the primary and wait for another one."""
    old = rs.wait_primary(timeout=60)
    at = time.time()
    began = time.monotonic()
    if how == "SIGKILL":
        old.kill()
    else:
        assert old.process is not None
        old.process.terminate()
    new = rs.wait_primary(other_than=old, timeout=60)
    return {
        "how": how,
        "at": at,
        "old": old,
        "new": new,
        "election_seconds": round(time.monotonic() - began, 2),
    }


def test_failover(tmp_path: Path) -> None:
    rs = ReplicaSet(
        "chaos",
        3,
        extra_args=["--setParameter", f"shutdownTimeoutMillisForSignaledShutdown={QUIESCE_MS}"],
    )
    fleet = Fleet(rs.uri, DATABASE, tmp_path)
    client: MongoClient[dict[str, Any]] | None = None
    try:
        rs.start()
        client = MongoClient(rs.uri, serverSelectionTimeoutMS=60_000)
        jobs = client[DATABASE]["scheduler_jobs"]
        producer = Scheduler(MongoJobStore(client[DATABASE]))

        procs = [fleet.spawn(workers=WORKERS, lock_timeout=LOCK_TIMEOUT) for _ in range(PROCESSES)]
        for proc in procs:
            fleet.wait_started(proc)

        start = datetime.now(timezone.utc) + timedelta(seconds=1)
        cron = producer.schedule("chaos-cron", repeat={"cron": "* * * * * *", "misfire": "all"})
        scheduled = {str(job.id) for job in producer.schedule_bulk(_jobs(start))}
        began = time.monotonic()

        # Failover 1 a quarter into the window, once jobs are running.
        poll_until(
            lambda: jobs.count_documents({"status": "completed"}) > 0, 30, "a job ran", interval=0.1
        )
        poll_until(
            lambda: time.monotonic() - began >= WINDOW / 4, WINDOW, "first failover", interval=0.1
        )
        first = _failover(rs, "SIGTERM")
        stopped = first["old"]
        assert stopped.process is not None
        stopped.process.wait(timeout=QUIESCE_MS / 1000 + 60)
        quiesced = round(time.monotonic() - began - WINDOW / 4, 2)
        stopped.start()
        rs.wait_healthy(timeout=60)  # the old primary is a secondary again: a majority remains
        rejoined = round(time.monotonic() - began - WINDOW / 4, 2)

        # Failover 2 past the middle of the window (or as soon as the set is whole again).
        poll_until(
            lambda: time.monotonic() - began >= WINDOW * 0.55,
            WINDOW,
            "second failover",
            interval=0.1,
        )
        second = _failover(rs, "SIGKILL")
        last_failover = time.monotonic()

        # Everything due runs to completion; the cron job catches up with the clock.
        poll_until(
            lambda: jobs.count_documents({"name": "chaos", "status": {"$ne": "completed"}}) == 0,
            WINDOW + 3 * LOCK_TIMEOUT + 120,
            "every one-off job completed",
            interval=0.2,
        )
        drained = round(time.monotonic() - last_failover, 2)

        def cron_caught_up() -> bool:
            doc = jobs.find_one({"_id": cron.id}) or {}
            due = doc.get("nextRunAt")
            return due is not None and due.replace(tzinfo=timezone.utc) > datetime.now(
                timezone.utc
            ) - timedelta(seconds=2)

        poll_until(cron_caught_up, 60, "the cron job caught up", interval=0.2)

        alive = [p.pid for p in procs if p.alive()]
        assert alive == [p.pid for p in procs], f"a worker exited:\n{fleet.logs()}"
        codes = fleet.stop_all()
        assert set(codes.values()) == {0}, f"exit codes {codes}:\n{fleet.logs()}"

        history = fleet.history()
        runs = history.executions
        one_off = [e for e in runs if e.name == "chaos"]
        cron_runs = [e for e in runs if e.name == "chaos-cron"]

        ok = Counter(e.job for e in one_off if e.outcome == "ok")
        never = scheduled - set(ok)
        twice = {job: n for job, n in ok.items() if n > 1}
        assert not never, f"{len(never)} jobs never completed in the history: {sorted(never)[:5]}"
        assert not twice, f"jobs completed more than once: {twice}"
        assert set(ok) <= scheduled
        assert history.overlaps() == [], describe(history.overlaps())
        unexplained = history.unexplained_reruns()
        assert unexplained == {}, describe(unexplained.items())
        assert history.unfinished() == [], describe(history.unfinished())
        assert jobs.count_documents({"status": "running"}) == 0

        by_slot: dict[str, list[Any]] = defaultdict(list)
        for e in cron_runs:
            by_slot[str(e.slot)].append(e)
        doubled = {slot: r for slot, r in by_slot.items() if len(r) > 1}
        assert doubled == {}, describe(doubled.items())
        seconds = sorted(datetime.fromisoformat(slot) for slot in by_slot)
        span = int((seconds[-1] - seconds[0]).total_seconds()) + 1
        missed = span - len(seconds)
        assert missed == 0, f"{missed} cron slots never ran between {seconds[0]} and {seconds[-1]}"
        assert {e.outcome for e in cron_runs} == {"ok"}

        assert first["new"] is not first["old"] and second["new"] is not second["old"]
        warnings = log_warnings(p.output() for p in procs)
        lease_expiries = sum(d.get("leaseExpiries", 0) for d in jobs.find({}, {"leaseExpiries": 1}))
        report(
            "failover",
            {
                "members": 3,
                "worker_processes": PROCESSES,
                "workers_per_process": WORKERS,
                "lock_timeout_s": LOCK_TIMEOUT,
                "one_off_jobs": JOBS,
                "window_s": WINDOW,
                "failovers": [
                    {
                        "how": f["how"],
                        "election_s": f["election_seconds"],
                        "executions_in_flight": in_flight(runs, f["at"]),
                    }
                    for f in (first, second)
                ],
                "longest_pause_between_starts_s": _longest_gap(runs),
                "stopped_member_exited_after_s": quiesced,
                "stopped_member_rejoined_after_s": rejoined,
                "drained_after_last_failover_s": drained,
                "executions": len(runs),
                "one_off_executions": len(one_off),
                "retries_on_purpose": sum(1 for e in one_off if e.outcome == "error"),
                "cron_slots": len(seconds),
                "doubled_cron_slots": len(doubled),
                "missed_cron_slots": missed,
                "jobs_lost": len(never),
                "re_executions": len(history.reruns()),
                "unexplained_re_executions": len(unexplained),
                "overlaps": 0,
                "lease_expiries": lease_expiries,
                "worker_exits": 0,
                "worker_warnings": warnings,
            },
        )
    finally:
        fleet.kill_leftovers()
        if client is not None:
            client.close()
        rs.destroy()
