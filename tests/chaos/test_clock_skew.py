"""Chaos scenario 4, clock skew: worker processes run under libfaketime with their clocks
10 minutes ahead and 10 minutes behind, beside one with a correct clock. No live lease is taken
over, and due jobs are not delayed by more than one poll interval.

Three worker processes (``ahead`` +600 s, ``behind`` -600 s, ``exact``) on one database, in
two phases:

(b) due-time phase, run first while the workers are idle: each process alone handles its own
    name (``skew-<label>``), and the driver (correct clock) schedules jobs of each name due at
    known instants over the next seconds. Each job must start no earlier than its due time on
    the server's clock (give or take :data:`EARLY_TOLERANCE` of clock reading) and no later
    than one poll interval plus :data:`SCHEDULING_MARGIN` after it. A worker that trusted its
    own clock would start the ``ahead`` jobs up to 10 minutes early (its candidate query) or
    delay the ``behind`` ones by 10 minutes.
(a) lease phase: jobs of the shared name ``chaos`` that sleep 1 to 4 s with a 3 s lease renewed
    every 0.5 s, handled by all three processes. None may run twice or overlap itself, and no
    job document may show a lease expiry (``leaseExpiries``) or a second claim
    (``lockVersion`` > 1): the ``ahead`` worker, for which every lease looks expired by its own
    clock, must not take any over.

The scenario runs on the session's replica set (change streams and wake timers) and on a
standalone server, where polling is the only way a worker learns of another process's job:
the harsh case for the ``behind`` worker, whose candidate query alone decides when it sees a
due job.

libfaketime comes from Debian's ``faketime`` package (``scripts/test`` installs it when it can);
without it the test skips and says so.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mongo_job_scheduler._mongod import LocalMongod
from mongo_job_scheduler.sync import MongoJobStore, Scheduler
from tests.chaos.harness import (
    FAKETIME_LIB,
    Execution,
    Fleet,
    describe,
    poll_until,
    report,
    size,
)

SKEWS = {"ahead": 600.0, "behind": -600.0, "exact": 0.0}
POLL_INTERVAL = 0.5
SCHEDULING_MARGIN = 2.5
"""Seconds allowed beyond one poll interval for process scheduling: six processes (three
workers, the driver, mongod, pytest) share two cores with whatever else runs. A worker misled
by its clock would be 600 s off."""
EARLY_TOLERANCE = 0.1
"""How far before its due time a start may appear: ``nextRunAt`` is the producer's server-clock
estimate truncated to milliseconds, and the history times are the workers' clocks corrected by
their skew (same host, so the same clock as the server's)."""
LOCK_TIMEOUT = 3.0
HEARTBEAT = 0.5
SLEEPS = (1, 2, 3, 4)
"""Seconds each shared job sleeps, in turn; the 4 s ones outlive the lease without renewals."""

DUE_JOBS = size(8, 30)  # per process
DUE_STEP = 0.37  # seconds between two due instants of one process (not a multiple of the poll)
SHARED_JOBS = size(18, 90)
WORKERS = 3
FINISHED = ["completed", "failed", "cancelled"]

_FIGURES: dict[str, Any] = {}

PROBE = """
import asyncio, json, time
wall, mono = time.time(), time.monotonic()
async def pause():
    await asyncio.sleep(0.2)
asyncio.run(pause())
time.sleep(0.1)
print(json.dumps({"time": wall, "slept": time.monotonic() - mono}))
"""


@pytest.fixture(scope="module")
def faketime() -> dict[str, float]:
    """Skip unless libfaketime is installed; then check that it really shifts ``time.time()``
    of a child Python both ways and that its asyncio and blocking sleeps still work (the
    harness runs the workers under it with the monotonic clock faked too)."""
    if not Path(FAKETIME_LIB).exists():
        pytest.skip(
            f"libfaketime not found at {FAKETIME_LIB}: install Debian's faketime package "
            "(scripts/test does when run as root with apt-get)"
        )
    shifts = {}
    for skew in (600, -600):
        env = {**os.environ, "LD_PRELOAD": FAKETIME_LIB, "FAKETIME": f"{skew:+d}s"}
        env.pop("FAKETIME_DONT_FAKE_MONOTONIC", None)
        before = time.time()
        done = subprocess.run(
            [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
        )
        after = time.time()
        assert done.returncode == 0, f"python under libfaketime failed:\n{done.stderr[-2000:]}"
        probe = json.loads(done.stdout)
        assert before + skew - 1 <= probe["time"] <= after + skew + 1, (
            f"FAKETIME={skew:+d}s did not shift time.time(): {probe['time']} vs {before}"
        )
        assert 0.29 <= probe["slept"] < 10, f"sleeps under libfaketime took {probe['slept']}s"
        shifts[f"{skew:+d}"] = round(probe["time"] - before, 3)
    return shifts


@pytest.fixture
def standalone_fleet(db_name: str, tmp_path: Path) -> Iterator[Fleet]:
    """Worker processes on a standalone server of their own (no change streams: polling)."""
    server = LocalMongod(replica_set=None)
    server.start()
    fleet = Fleet(server.uri, db_name, tmp_path)
    try:
        yield fleet
    finally:
        fleet.kill_leftovers()
        server.stop()


def quantiles(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
        "min_ms": round(min(values) * 1000, 1),
    }


@pytest.mark.parametrize("topology", ["replica_set", "standalone"])
def test_skewed_clocks_neither_steal_leases_nor_delay_due_jobs(
    topology: str, faketime: dict[str, float], request: pytest.FixtureRequest
) -> None:
    fleet: Fleet = request.getfixturevalue(
        "fleet" if topology == "replica_set" else "standalone_fleet"
    )
    client: MongoClient[dict[str, Any]] = MongoClient(fleet.uri)
    try:
        producer = Scheduler(MongoJobStore(client[fleet.database]))
        jobs = client[fleet.database]["scheduler_jobs"]
        procs = {
            label: fleet.spawn(
                workers=WORKERS,
                lock_timeout=LOCK_TIMEOUT,
                heartbeat_interval=HEARTBEAT,
                poll_interval=POLL_INTERVAL,
                names=["chaos", f"skew-{label}"],
                skew_seconds=skew,
            )
            for label, skew in SKEWS.items()
        }
        for proc in procs.values():
            fleet.wait_started(proc)
        label_of = {proc.pid: label for label, proc in procs.items()}

        # (b) due times: each process alone runs its own name's jobs.
        first = datetime.now(timezone.utc) + timedelta(seconds=2)
        items = [
            {"name": f"skew-{label}", "run_at": first + timedelta(seconds=i * DUE_STEP + k * 0.1)}
            for i in range(DUE_JOBS)
            for k, label in enumerate(SKEWS)
        ]
        due = {str(job.id): job.next_run_at for job in producer.schedule_bulk(items)}
        assert all(at is not None for at in due.values())
        last_due = max(at for at in due.values() if at is not None)
        bound = POLL_INTERVAL + SCHEDULING_MARGIN
        poll_until(
            lambda: (
                jobs.count_documents({"name": {"$regex": "^skew-"}, "status": "completed"})
                == len(items)
            ),
            timeout=(last_due - datetime.now(timezone.utc)).total_seconds() + bound + 30,
            what="due jobs completed",
            fail=False,
        )
        history = fleet.history()
        runs = [e for e in history.executions if e.name.startswith("skew-")]
        started = {e.job for e in runs}
        missing = sorted(
            {
                job["name"]
                for job in jobs.find({"name": {"$regex": "^skew-"}})
                if str(job["_id"]) not in started
            }
        )
        assert not missing, (
            f"due jobs never started (> {bound + 30}s late) on: {missing}\n{fleet.logs()}"
        )
        assert sorted(e.job for e in runs) == sorted(due), "each due job runs exactly once"
        delays: dict[str, list[float]] = {label: [] for label in SKEWS}
        for run in runs:
            label = label_of[run.pid]
            assert run.name == f"skew-{label}", f"{run} ran on the {label} worker"
            at = due[run.job]
            assert at is not None
            delays[label].append(run.start - at.timestamp())
        for label, values in delays.items():
            early = [d for d in values if d < -EARLY_TOLERANCE]
            late = [d for d in values if d > bound]
            assert not early, f"the {label} worker started jobs before they were due: {early}"
            assert not late, f"the {label} worker started jobs more than {bound}s late: {late}"

        # (a) leases: long jobs shared by all three processes.
        shared = producer.schedule_bulk(
            [
                {"name": "chaos", "data": {"sleep": SLEEPS[i % len(SLEEPS)]}}
                for i in range(SHARED_JOBS)
            ]
        )
        ids = [job.id for job in shared]
        poll_until(
            lambda: (
                jobs.count_documents({"_id": {"$in": ids}, "status": {"$in": FINISHED}}) == len(ids)
            ),
            timeout=SHARED_JOBS * sum(SLEEPS) / len(SLEEPS) / WORKERS + 90,
            what=f"{len(ids)} shared jobs finished\n{fleet.logs()}",
        )
        codes = fleet.stop_all()
        assert set(codes.values()) == {0}, f"exit codes {codes}\n{fleet.logs()}"

        history = fleet.history()
        assert history.unfinished() == []
        assert history.overlaps() == [], describe(history.overlaps())
        assert history.reruns() == {}, describe(history.reruns().items())
        shared_runs: list[Execution] = [e for e in history.executions if e.name == "chaos"]
        assert sorted(e.job for e in shared_runs) == sorted(str(i) for i in ids)
        assert all(e.outcome == "ok" for e in shared_runs)
        taken_over = list(
            jobs.find(
                {
                    "_id": {"$in": ids},
                    "$or": [{"leaseExpiries": {"$gt": 0}}, {"lockVersion": {"$ne": 1}}],
                },
                {"leaseExpiries": 1, "lockVersion": 1},
            )
        )
        assert taken_over == [], f"claimed more than once: {taken_over[:5]}"
        assert jobs.count_documents({"_id": {"$in": ids}, "status": "completed"}) == len(ids)
        per_process = {label: sum(label_of[e.pid] == label for e in shared_runs) for label in SKEWS}
        assert all(per_process.values()), f"every worker must run shared jobs: {per_process}"
        renewed = sum(
            1 for e in shared_runs if e.end is not None and e.end - e.start > LOCK_TIMEOUT
        )

        _FIGURES[topology] = {
            "skews_s": SKEWS,
            "faketime_shift_s": faketime,
            "poll_interval_s": POLL_INTERVAL,
            "delay_bound_s": bound,
            "due_jobs_per_process": DUE_JOBS,
            "start_delay": {label: quantiles(values) for label, values in delays.items()},
            "shared_jobs": len(ids),
            "shared_runs_per_process": per_process,
            "runs_longer_than_lease": renewed,
            "overlaps": 0,
            "reruns": 0,
            "lease_takeovers": 0,
        }
        report("clock_skew", _FIGURES)
    finally:
        client.drop_database(fleet.database)
        client.close()
