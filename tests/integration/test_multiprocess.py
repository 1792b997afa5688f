"""Several worker processes on one database: each job runs exactly once
while every worker is healthy, concurrency limits hold across processes, and the jobs of a
worker killed with SIGKILL are run again by the survivors (at-least-once) — and only those.

The workers are separate Python processes (``_worker_process.py``), each with its own
``AsyncMongoClient`` and ``Scheduler``; every handler execution is recorded in the database.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import wait_for

from mongo_job_scheduler import MongoJobStore, Scheduler
from mongo_job_scheduler.stores.base import ClaimState

pytestmark = [pytest.mark.slow, pytest.mark.mongo_only]

WORKER_SCRIPT = Path(__file__).with_name("_worker_process.py")
REPO_ROOT = Path(__file__).resolve().parents[2]


# -- helpers ----------------------------------------------------------------------------------


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of ``[start, end]`` intervals open at one instant (an interval that
    ends exactly when another starts does not overlap it)."""
    events: list[tuple[float, int]] = []
    for start, end in intervals:
        events.append((start, 1))
        events.append((end, -1))
    events.sort(key=lambda e: (e[0], e[1]))  # at equal times, ends (-1) come before starts
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def test_max_overlap_sweep() -> None:
    assert max_overlap([]) == 0
    assert max_overlap([(0, 1), (1, 2), (2, 3)]) == 1
    assert max_overlap([(0, 2), (1, 3)]) == 2
    assert max_overlap([(0, 10), (1, 2), (1.5, 3), (2.5, 4)]) == 3


class Workers:
    """The worker processes of one test and the database they share."""

    def __init__(self, uri: str, db_name: str, log_dir: Path) -> None:
        self.uri = uri
        self.db_name = db_name
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, count: int, **config: Any) -> None:
        for i in range(count):
            payload = json.dumps({"uri": self.uri, "db": self.db_name, **config})
            out = (self.log_dir / f"worker-{i}.log").open("wb")
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER_SCRIPT), payload],
                    cwd=REPO_ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
            out.close()

    def logs(self) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("worker-*.log")):
            text = path.read_text(errors="replace").strip()
            if text:
                parts.append(f"--- {path.name}\n{text[-3000:]}")
        return "\n".join(parts) or "(no worker output)"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def start_together(self, db: Any) -> None:
        """Wait until every process is ready, then let them all start claiming at once."""

        async def all_ready() -> bool:
            self.check_alive()
            return await db.control.count_documents({"_id": {"$regex": "^ready-"}}) == len(
                self.procs
            )

        await wait_for(all_ready, timeout=30)
        await db.control.insert_one({"_id": "go"})

    def check_alive(self, allowed_dead: Iterable[int] = ()) -> None:
        for proc in self.procs:
            if proc.pid not in allowed_dead and proc.poll() is not None:
                raise AssertionError(
                    f"worker {proc.pid} exited early with {proc.returncode}\n{self.logs()}"
                )

    async def stop_all(self, db: Any, timeout: float = 30) -> dict[int, int]:
        """Ask the processes to stop gracefully and return their exit codes."""
        await db.control.insert_one({"_id": "stop"})
        await wait_for(lambda: all(p.poll() is not None for p in self.procs), timeout=timeout)
        return {p.pid: p.returncode for p in self.procs}

    def kill_leftovers(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)


@pytest.fixture
def workers(mongodb_uri: str, db_name: str) -> Iterator[Workers]:
    with tempfile.TemporaryDirectory(prefix="mjs-workers-") as tmp:
        group = Workers(mongodb_uri, db_name, Path(tmp))
        try:
            yield group
        finally:
            group.kill_leftovers()


def by_job(executions: list[dict[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    grouped: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for record in sorted(executions, key=lambda r: r["start"]):
        grouped[record["jobId"]].append(record)
    return grouped


# -- exactly once -----------------------------------------------------------------------------

PLAIN = 230
LIMITED = 40
FLAKY = 30


async def test_each_job_runs_exactly_once_across_processes(mongo_db: Any, workers: Workers) -> None:
    scheduler = Scheduler(MongoJobStore(mongo_db))
    items: list[dict[str, Any]] = []
    for i in range(PLAIN):
        items.append(
            {"name": "plain", "data": {"i": i, "sleep": (i % 5) * 0.004}, "priority": 1 + i % 10}
        )
    for i in range(LIMITED):
        items.append(
            {
                "name": "limited",
                "data": {"i": i, "sleep": 0.04},
                "concurrency": 2,
                "priority": 1 + i % 3,
            }
        )
    for i in range(FLAKY):
        items.append(
            {
                "name": "flaky",
                "data": {"i": i, "failFirst": True},
                "retry": {"maxAttempts": 2, "delay": 0.02},
            }
        )
    one_offs = await scheduler.schedule_bulk(items)
    # A few more through schedule(), one of them a high-priority single job.
    one_offs.append(await scheduler.schedule("plain", {"i": -1}, priority=1))
    one_offs.append(await scheduler.schedule("limited", {"i": -1, "sleep": 0.04}, concurrency=2))
    ticker = await scheduler.schedule(
        "tick", {"sleep": 0.03}, repeat={"every": timedelta(milliseconds=200)}
    )
    kinds = {job.id: job.name for job in one_offs}
    assert len(kinds) == PLAIN + LIMITED + FLAKY + 2

    workers.spawn(4, workers=4, poll_interval=0.02, lock_timeout=30)
    await workers.start_together(mongo_db)

    async def all_done() -> bool:
        workers.check_alive()
        return await mongo_db.scheduler_jobs.count_documents(
            {"_id": {"$in": list(kinds)}, "status": "completed"}
        ) == len(kinds)

    await wait_for(all_done, timeout=40)
    # Let the interval job run a few more occurrences while every process competes for it.
    ticks_before = await mongo_db.executions.count_documents({"jobId": ticker.id})
    await wait_for(
        lambda: _count_at_least(mongo_db, {"jobId": ticker.id}, ticks_before + 2), timeout=10
    )
    codes = await workers.stop_all(mongo_db)
    assert codes == {pid: 0 for pid in workers.pids}, workers.logs()

    executions = await mongo_db.executions.find({}).to_list()
    errors = await mongo_db.errors.find({}, {"_id": 0}).to_list()
    assert errors == [], errors
    runs = by_job(executions)
    pids_used = {r["pid"] for r in executions}
    assert pids_used <= set(workers.pids)
    assert len(pids_used) >= 2, f"only {pids_used} ran jobs; the processes did not compete"

    for job_id, name in kinds.items():
        records = runs[job_id]
        tokens = [r["token"] for r in records]
        assert len(set(tokens)) == len(tokens), f"{name} {job_id} ran twice with a token: {records}"
        if name == "flaky":
            assert [r["outcome"] for r in records] == ["error", "ok"], records
            assert [r["attempt"] for r in records] == [1, 2], records
            assert records[0]["end"] <= records[1]["start"], records
        else:
            assert [r["outcome"] for r in records] == ["ok"], f"{name} {job_id}: {records}"
    assert set(runs) == set(kinds) | {ticker.id}, "an execution of an unknown job was recorded"

    jobs = await mongo_db.scheduler_jobs.find({"_id": {"$in": list(kinds)}}).to_list()
    for doc in jobs:
        assert doc["status"] == "completed", doc
        assert "lockedBy" not in doc and "lockUntil" not in doc, doc
        assert doc.get("attempts", 0) == (1 if kinds[doc["_id"]] == "flaky" else 0), doc

    limited = [(r["start"], r["end"]) for r in executions if r["name"] == "limited"]
    assert len(limited) == LIMITED + 1
    assert max_overlap(limited) <= 2, "concurrency=2 was exceeded across processes"

    ticks = runs[ticker.id]
    assert len(ticks) >= 3, ticks
    assert all(r["outcome"] == "ok" for r in ticks), ticks
    assert max_overlap((r["start"], r["end"]) for r in ticks) == 1, "the interval job overlapped"
    slots = [r["slot"] for r in ticks]
    assert len(set(slots)) == len(slots), f"an occurrence ran twice: {slots}"
    assert slots == sorted(slots)
    tick_tokens = [r["token"] for r in ticks]
    assert tick_tokens == sorted(set(tick_tokens)), tick_tokens


async def _count_at_least(db: Any, flt: dict[str, Any], n: int) -> bool:
    return bool(await db.executions.count_documents(flt) >= n)


async def test_a_stale_candidate_never_frees_the_slot_of_the_running_owner(mongo_db: Any) -> None:
    """The race behind the cross-process concurrency check, made deterministic: worker B read
    job X as a candidate, worker A claimed X first; B's failed attempt at X must leave A's
    concurrency slot in place, so B cannot start a second job of the name."""
    scheduler = Scheduler(MongoJobStore(mongo_db))
    first = await scheduler.schedule("limited", {"n": 1}, concurrency=1)
    second = await scheduler.schedule("limited", {"n": 2}, concurrency=1)
    store_a, store_b = MongoJobStore(mongo_db), MongoJobStore(mongo_db)
    lease = timedelta(seconds=30)
    [claimed] = (await store_a.claim("owner-a", 1, lease, 3)).jobs
    assert claimed.document["_id"] == first.id
    stale = {"_id": first.id, "name": "limited", "concurrency": 1}
    assert await store_b._claim_one(stale, "owner-b", lease, 3, ClaimState()) is None
    assert (await store_b.claim("owner-b", 2, lease, 3)).jobs == []
    slots = await mongo_db.scheduler_jobs_slots.find_one({"_id": "limited"})
    assert [(h["job"], h["owner"]) for h in slots["holders"]] == [(first.id, "owner-a")]
    doc = await mongo_db.scheduler_jobs.find_one({"_id": second.id})
    assert doc["status"] == "pending"


# -- a worker dies -----------------------------------------------------------------------------

SLOW_JOBS = 24


async def test_jobs_of_a_killed_worker_are_rerun_by_the_survivors(
    mongo_db: Any, workers: Workers
) -> None:
    scheduler = Scheduler(MongoJobStore(mongo_db))
    jobs = await scheduler.schedule_bulk(
        [{"name": "slow", "data": {"i": i, "sleep": 1.0}} for i in range(SLOW_JOBS)]
    )
    ids = {job.id for job in jobs}
    workers.spawn(3, workers=3, poll_interval=0.02, lock_timeout=1.0, heartbeat_interval=0.2)
    await workers.start_together(mongo_db)

    async def victim_with_jobs_in_flight() -> int | None:
        workers.check_alive()
        open_runs = await mongo_db.executions.aggregate(
            [
                {"$match": {"end": {"$exists": False}}},
                {"$group": {"_id": "$pid", "n": {"$sum": 1}}},
                {"$match": {"n": {"$gte": 2}}},
                {"$sort": {"n": -1}},
            ]
        )
        found = await open_runs.to_list()
        return int(found[0]["_id"]) if found else None

    victim = await wait_for(victim_with_jobs_in_flight, timeout=30)
    os.kill(victim, signal.SIGKILL)
    victim_proc = next(p for p in workers.procs if p.pid == victim)
    await wait_for(lambda: victim_proc.poll() is not None, timeout=10)
    survivors = set(workers.pids) - {victim}

    async def all_done() -> bool:
        workers.check_alive(allowed_dead={victim})
        done = await mongo_db.scheduler_jobs.count_documents(
            {"_id": {"$in": list(ids)}, "status": "completed"}
        )
        return done == SLOW_JOBS

    await wait_for(all_done, timeout=40)
    codes = await workers.stop_all(mongo_db)
    assert codes[victim] == -signal.SIGKILL
    assert {pid: codes[pid] for pid in survivors} == {pid: 0 for pid in survivors}, workers.logs()

    executions = await mongo_db.executions.find({}).to_list()
    runs = by_job(executions)
    assert set(runs) == ids
    in_flight_at_death = {r["jobId"] for r in executions if r["pid"] == victim and "end" not in r}
    assert in_flight_at_death, "the victim had no job in flight"

    rerun = set()
    for job_id, records in runs.items():
        *earlier, last = records
        # Every job ends with one successful run by a survivor or a clean run by the victim.
        assert last["outcome"] == "ok", records
        tokens = [r["token"] for r in records]
        assert tokens == sorted(set(tokens)), f"tokens must grow with each claim: {records}"
        if earlier:
            rerun.add(job_id)
            # Only the killed worker's executions were repeated, and by a survivor.
            assert all(r["pid"] == victim for r in earlier), records
            assert last["pid"] in survivors, records
    # Every job the victim was running when it died was run again; nothing else was.
    assert in_flight_at_death <= rerun
    assert len(rerun) <= 3, f"more re-runs than the victim's 3 slots: {rerun}"
    errors = await mongo_db.errors.find({"pid": {"$in": list(survivors)}}, {"_id": 0}).to_list()
    assert errors == [], errors

    docs = await mongo_db.scheduler_jobs.find({"_id": {"$in": list(ids)}}).to_list()
    assert all(d["status"] == "completed" and "lockedBy" not in d for d in docs), docs
