"""Chaos scenario 5, cron exactly once: five scheduler processes, an every-second cron for 60 s
(15 s in CI): each slot runs once.

Each process runs :mod:`tests.chaos.cron_app`, which declares the same cron when its workers
start: ``schedule("chaos-cron", repeat={"cron": "* * * * * *", "misfire": "all"},
dedupe_key="chaos-cron")``. A repeating job never finishes, so under the default dedupe scope
(``"active"``) its key stays held and every later declaration returns the same job. Half-way
through, one process is stopped gracefully and replaced, so a declaration also lands while the
cron is running, as in a rolling deploy.

Checks: one job document (and one registry entry) for the cron, every declaration got it;
every slot from the first one after the job was created up to the stop ran exactly once, with
no gap: the misfire policy is ``"all"``, which runs every missed slot late instead of
collapsing them (``"once"``, the default, would allow a gap after a run more than a second
late, so a lost slot could not be told from a collapsed one); no overlapping runs, no re-run,
no lease expiry.
"""

from __future__ import annotations

import json
import signal
import statistics
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from tests.chaos.cron_app import CRON_NAME
from tests.chaos.harness import Fleet, Proc, describe, report, size

PROCESSES = 5
DURATION = size(15.0, 60.0)
EXPRESSION = "* * * * * *"
MISFIRE = "all"
DEDUPE_KEY = "chaos-cron"
LAG_MARGIN = 5.0
"""Seconds before the stop by which the last slot must have run: the cron kept running to the
end (a wide margin for process scheduling on a loaded machine, not a latency claim)."""


def spawn_cron_worker(fleet: Fleet, declared_dir: Path) -> Proc:
    """A worker running ``tests.chaos.cron_app:scheduler``, which declares the cron at
    start-up."""
    cron = {
        "expression": EXPRESSION,
        "misfire": MISFIRE,
        "dedupe_key": DEDUPE_KEY,
        "declared_dir": str(declared_dir),
    }
    return fleet.spawn(
        workers=2,
        names=[CRON_NAME],
        app="tests.chaos.cron_app:scheduler",
        extra={"cron": cron},
    )


def declarations(declared_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(declared_dir.glob("*.json"))]


def wait_declared(declared_dir: Path, count: int, fleet: Fleet, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(declarations(declared_dir)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} declarations not made in {timeout}s\n{fleet.logs()}")
        time.sleep(0.05)


def test_every_slot_of_a_cron_runs_exactly_once(fleet: Fleet) -> None:
    declared_dir = fleet.workdir / "declared"
    client: MongoClient[dict[str, Any]] = MongoClient(fleet.uri)
    try:
        procs = [spawn_cron_worker(fleet, declared_dir) for _ in range(PROCESSES)]
        for proc in procs:
            fleet.wait_started(proc)
        wait_declared(declared_dir, PROCESSES, fleet)
        begin = time.monotonic()

        # Half-way: a rolling restart of one process, which declares the cron again.
        while time.monotonic() - begin < DURATION / 2:
            assert all(p.alive() for p in procs), fleet.logs()
            time.sleep(0.2)
        fleet.signal(procs[0], signal.SIGTERM)
        assert procs[0].popen.wait(timeout=60) == 0, fleet.logs()
        replacement = spawn_cron_worker(fleet, declared_dir)
        fleet.wait_started(replacement)
        wait_declared(declared_dir, PROCESSES + 1, fleet)

        while time.monotonic() - begin < DURATION:
            assert all(p.alive() for p in fleet.procs[1:]), fleet.logs()
            time.sleep(0.2)
        stopped_at = time.time()
        codes = fleet.stop_all()
        assert set(codes.values()) == {0}, f"exit codes {codes}\n{fleet.logs()}"

        # One job, whoever declared it.
        made = declarations(declared_dir)
        assert len(made) == PROCESSES + 1
        assert [d for d in made if "error" in d] == [], made
        jobs = client[fleet.database]["scheduler_jobs"]
        docs = list(jobs.find({}))
        assert len(docs) == 1, f"{len(docs)} job documents: {docs}"
        [doc] = docs
        assert {d["job"] for d in made} == {str(doc["_id"])}
        registry = list(client[fleet.database]["scheduler_jobs_dedupe"].find({}))
        assert [(r["_id"], r["jobId"]) for r in registry] == [(DEDUPE_KEY, doc["_id"])]
        assert doc["status"] == "pending"
        assert doc.get("leaseExpiries", 0) == 0, doc

        # Every slot exactly once, no gap, no overlap.
        history = fleet.history()
        runs = [e for e in history.executions if e.name == CRON_NAME]
        assert runs, fleet.logs()
        assert history.unfinished() == []
        assert history.overlaps() == [], describe(history.overlaps())
        assert history.reruns() == {}, describe(history.reruns().items())
        assert [e for e in runs if e.outcome != "ok"] == []
        per_slot = Counter(e.slot for e in runs)
        doubled = {slot: n for slot, n in per_slot.items() if n > 1}
        assert doubled == {}, f"slots run more than once: {doubled}"
        slots = sorted(datetime.fromisoformat(s) for s in per_slot if s is not None)
        assert len(slots) == len(runs)
        created = doc["createdAt"].replace(tzinfo=timezone.utc)
        first_slot = created.replace(microsecond=0) + timedelta(seconds=1)
        assert slots[0] == first_slot, f"first slot {slots[0]}, expected {first_slot}"
        gaps = [(a, b) for a, b in pairwise(slots) if b - a != timedelta(seconds=1)]
        assert gaps == [], f"slots missing between: {gaps[:5]}"
        last_expected = datetime.fromtimestamp(stopped_at - LAG_MARGIN, timezone.utc)
        assert slots[-1] >= last_expected, f"last slot {slots[-1]}, stopped at {stopped_at}"
        assert len(slots) >= DURATION

        lateness = [e.start - datetime.fromisoformat(e.slot).timestamp() for e in runs if e.slot]
        report(
            "cron_once",
            {
                "processes": PROCESSES,
                "rolling_restarts": 1,
                "duration_s": DURATION,
                "expression": EXPRESSION,
                "misfire": MISFIRE,
                "declarations": len(made),
                "job_documents": len(docs),
                "slots": len(slots),
                "runs": len(runs),
                "doubled_slots": 0,
                "missing_slots": 0,
                "overlaps": 0,
                "runs_later_than_1s": sum(1 for x in lateness if x > 1),
                "lock_version": doc.get("lockVersion"),
                "runs_per_process": sorted(Counter(e.pid for e in runs).values(), reverse=True),
                "start_lateness_ms": {
                    "p50": round(statistics.median(lateness) * 1000, 1),
                    "max": round(max(lateness) * 1000, 1),
                },
            },
        )
    finally:
        client.drop_database(fleet.database)
        client.close()
