"""Chaos scenario 1, killed workers: worker processes are SIGKILLed at random every 2 s
while they run a mixed load, and a new one is started for each. Every job must end in its right
final state, no job may ever run under two live owners at once, and the only re-executions
allowed are those of jobs whose owner was killed before their outcome was written (counted and
reported).

Full size (``MJS_CHAOS_SIZE=full``): 8 processes, 20,000 jobs, kills until the one-off jobs are
all done. CI size: 4 processes, 2,000 jobs, kills for about 18 s.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from pymongo import MongoClient

from mongo_job_scheduler.sync import MongoJobStore
from mongo_job_scheduler.sync import Scheduler as SyncScheduler
from tests.chaos.harness import Execution, Fleet, History, Proc, describe, report, size

PROCESSES = size(4, 8)
JOBS = size(2_000, 20_000)
CRON_JOBS = size(8, 40)  # part of JOBS
CRON = "*/3 * * * * *"  # every 3 s
CRON_PERIOD = 3.0
WORKERS = 8  # handlers per process
LOCK_TIMEOUT = 3.0
KILL_EVERY = 2.0
KILL_FOR = size(18.0, None)  # seconds of kills; None: until the one-off jobs are all done
DRAIN_TIMEOUT = size(120.0, 900.0)
# A job whose owner is killed mid-run has its lease expire; quarantining it after a few such
# expiries is scenario 7's subject (test_poison.py). Here a job may be unlucky several times.
MAX_LEASE_EXPIRIES = 50


def make_jobs(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The one-off jobs (65% instant, 25% sleeping 0-2 s, 10% failing 1 or 2 times first, of
    which half also sleep) and the cron jobs (priority 1, so a backlog does not starve them)."""
    one_offs = []
    for _ in range(JOBS - CRON_JOBS):
        roll = rng.random()
        data: dict[str, Any] = {"sleep": 0}
        item: dict[str, Any] = {"name": "chaos", "data": data}
        if roll < 0.25:
            data["sleep"] = round(rng.uniform(0, 2), 3)
        elif roll < 0.35:
            data["fail"] = rng.choice((1, 2))
            if rng.random() < 0.5:
                data["sleep"] = round(rng.uniform(0, 2), 3)
            item["retry"] = {"maxAttempts": 3, "delay": 0.1}
        one_offs.append(item)
    crons = [
        {"name": "chaos-cron", "data": {"cron": i}, "repeat": {"cron": CRON}, "priority": 1}
        for i in range(CRON_JOBS)
    ]
    return one_offs, crons


def started(proc: Proc) -> bool:
    return proc.alive() and "worker started" in proc.output()


def classify_reruns(history: History, fleet: Fleet) -> tuple[int, int, list[str]]:
    """Every re-execution of a (job, slot, attempt) and why it happened.

    ``History.unexplained_reruns`` accepts a repeat only after a run cut short by the kill
    (outcome ``killed``). A kill also explains a repeat after a run whose handler returned but
    whose outcome was never written: the owner was killed after the handler ended and before
    the (batched) fenced write reached the server. That is allowed only when the kill came
    within one lease of the handler's end (an outcome write never outlives its lease, so a
    process alive for longer than that after a run had written it or lost the lease), and the
    repeat started after the kill. Returns (killed mid-run, killed before the outcome write,
    problems)."""
    killed_at = {p.pid: p.killed_at for p in fleet.procs if p.killed_at is not None}
    mid_run = before_write = 0
    problems: list[str] = []
    for job, runs in history.by_job().items():
        seen: dict[tuple[str | None, int], Execution] = {}
        for run in sorted(runs, key=lambda e: e.start):
            key = (run.slot, run.attempt)
            previous = seen.get(key)
            seen[key] = run
            if previous is None:
                continue
            kill = killed_at.get(previous.pid)
            if previous.outcome == "killed":
                mid_run += 1
            elif (
                kill is not None
                and previous.end is not None
                and previous.end <= kill <= previous.end + LOCK_TIMEOUT + 1
                and run.start >= kill
            ):
                before_write += 1
            else:
                problems.append(f"job {job}: {previous!r} then {run!r} (owner killed at {kill})")
    return mid_run, before_write, problems


def test_killed_workers(sync_db: Any, fleet: Fleet, mongodb_uri: str, db_name: str) -> None:
    rng = random.Random(5_2024)
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    try:
        producer = SyncScheduler(MongoJobStore(client[db_name]))
        jobs_coll = client[db_name]["scheduler_jobs"]
        one_offs, crons = make_jobs(rng)
        expected: dict[str, dict[str, Any]] = {}
        for start in range(0, len(one_offs), 1000):
            chunk = one_offs[start : start + 1000]
            for item, job in zip(chunk, producer.schedule_bulk(chunk), strict=True):
                expected[str(job.id)] = item["data"]
        cron_ids = {str(job.id) for job in producer.schedule_bulk(crons)}
        assert len(expected) + len(cron_ids) == JOBS

        def spawn() -> Proc:
            return fleet.spawn(
                workers=WORKERS,
                lock_timeout=LOCK_TIMEOUT,
                max_lease_expiries=MAX_LEASE_EXPIRIES,
                stop_timeout=30,
            )

        began = time.monotonic()
        began_wall = datetime.now(timezone.utc)
        for proc in [spawn() for _ in range(PROCESSES)]:
            fleet.wait_started(proc)

        def unfinished_one_offs() -> int:
            return jobs_coll.count_documents(
                {"name": "chaos", "status": {"$nin": ["completed", "failed", "cancelled"]}}
            )

        # Kill a random started worker every KILL_EVERY seconds and start a new one at once.
        kills = 0
        next_kill = time.monotonic() + KILL_EVERY
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while True:
            now = time.monotonic()
            killing = KILL_FOR is None or now - began < KILL_FOR
            # Count the unfinished jobs between kills (not at every turn of the loop).
            if (not killing or now >= next_kill - 0.5) and unfinished_one_offs() == 0:
                break
            if now > deadline:
                raise AssertionError(
                    f"{unfinished_one_offs()} one-off jobs unfinished after {DRAIN_TIMEOUT}s\n"
                    + fleet.logs()
                )
            if killing and now >= next_kill:
                victims = [p for p in fleet.live() if started(p)]
                if victims:
                    fleet.kill(rng.choice(victims))
                    kills += 1
                    spawn()
                next_kill += KILL_EVERY
            crashed = [p for p in fleet.procs if not p.alive() and p.killed_at is None]
            assert not crashed, "a worker died on its own:\n" + fleet.logs()
            time.sleep(0.1)
        drained = time.monotonic() - began

        # Graceful stop of the survivors (one started by the last kill may still be importing:
        # its signal handlers must be installed first).
        for proc in fleet.live():
            fleet.wait_started(proc)
        stopped_at = datetime.now(timezone.utc)
        codes = fleet.stop_all(timeout=90)
        survivors = [p for p in fleet.procs if p.killed_at is None]
        assert all(codes[p.pid] == 0 for p in survivors), (codes, fleet.logs())

        history = fleet.history()
        runs = history.by_job()

        # -- final states -------------------------------------------------------------------
        docs = {str(d["_id"]): d for d in jobs_coll.find({})}
        assert len(docs) == JOBS
        not_done = [d for d in docs.values() if d["status"] == "running" or "lockedBy" in d]
        assert not not_done, describe(not_done)
        wrong = []
        for job_id, data in expected.items():
            doc = docs[job_id]
            attempts = int(doc.get("attempts") or 0)
            if doc["status"] != "completed" or attempts != data.get("fail", 0):
                wrong.append((job_id, data, doc["status"], attempts, doc.get("lastError")))
        assert not wrong, f"{len(wrong)} one-off jobs in a wrong final state:\n{describe(wrong)}"
        for job_id in cron_ids:
            doc = docs[job_id]
            slots = [e.slot for e in runs.get(job_id, []) if e.slot is not None]
            assert doc["status"] == "pending", doc
            assert len(set(slots)) >= 2, (job_id, slots)
            next_run = doc["nextRunAt"].replace(tzinfo=timezone.utc)
            # Advanced past every slot it ran, and kept up with the clock until the stop
            # (wide margin: a slot due just before the SIGTERM may be left for later).
            assert next_run > max(datetime.fromisoformat(s) for s in slots), (doc, slots)
            assert (stopped_at - next_run).total_seconds() < CRON_PERIOD + 15, (doc, stopped_at)
            assert next_run > began_wall

        # -- history against the documents ----------------------------------------------------
        assert history.unfinished() == [], describe(history.unfinished())
        overlaps = history.overlaps()
        assert overlaps == [], f"{len(overlaps)} jobs ran under two live owners:\n" + describe(
            overlaps
        )
        mid_run, before_write, problems = classify_reruns(history, fleet)
        assert not problems, f"{len(problems)} unexplained re-executions:\n" + "\n".join(
            problems[:5]
        )
        for job_id, data in expected.items():
            fails = int(data.get("fail", 0))
            settled: dict[int, Execution] = {}
            for run in sorted(runs.get(job_id, []), key=lambda e: e.start):
                settled[run.attempt] = run  # the last run of each attempt is the one that counted
            outcomes = {attempt: run.outcome for attempt, run in settled.items()}
            want = {a: "error" for a in range(1, fails + 1)} | {fails + 1: "ok"}
            assert outcomes == want, (job_id, data, runs.get(job_id))
        for job_id in cron_ids:
            assert {e.outcome for e in runs[job_id]} <= {"ok", "killed"}, runs[job_id]

        executions = len(history.executions)
        killed_runs = Counter(e.job for e in history.executions if e.outcome == "killed")
        figures = {
            "processes": PROCESSES,
            "handlers_per_process": WORKERS,
            "jobs": JOBS,
            "one_off_jobs": len(expected),
            "retrying_jobs": sum(1 for d in expected.values() if d.get("fail")),
            "cron_jobs": CRON_JOBS,
            "lock_timeout_s": LOCK_TIMEOUT,
            "kills": kills,
            "processes_started": len(fleet.procs),
            "executions": executions,
            "cron_executions": sum(len(runs[j]) for j in cron_ids),
            "executions_cut_by_kill": sum(killed_runs.values()),
            "re_executions": mid_run + before_write,
            "re_executions_killed_mid_run": mid_run,
            "re_executions_killed_before_outcome_write": before_write,
            "most_kills_of_one_job": max(killed_runs.values(), default=0),
            "wall_time_s": round(drained, 1),
            "overlaps": len(overlaps),
            "unexplained_re_executions": len(problems),
            "lost_jobs": 0,
            "stuck_running": 0,
        }
        report("killed_workers", figures)
        print(figures)
    finally:
        client.close()
