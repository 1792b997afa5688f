"""The worker's own CPU per job: a burn-down on a store whose claims and writes cost almost
nothing, so what is measured is the worker (claim loop, executions, decisions, outcome writes
handed to the store) and not the database.

Run ``python bench/worker_cpu.py [jobs] [runs]`` with the package to measure on the path; to
compare two revisions, extract each one's ``src/`` (``git archive REV src | tar -x -C DIR``)
and run this script with ``PYTHONPATH=DIR/src`` for each, alternately (the machine's speed
drifts). It prints the median CPU microseconds per job over the runs.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from bson import ObjectId

import mongo_job_scheduler
from mongo_job_scheduler import InMemoryJobStore, Job, Scheduler
from mongo_job_scheduler.stores import base

NOW = datetime.now(timezone.utc)


class FreeStore(InMemoryJobStore):
    """Claims hand out prepared documents; outcome writes and renewals do nothing."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        super().__init__()
        self.docs = docs

    async def claim(self, owner: str, limit: int, *args: Any, **kwargs: Any) -> Any:
        taken = []
        while self.docs and len(taken) < limit:
            doc = self.docs.pop()
            doc.update(status="running", lockedBy=owner, lockVersion=1, lockUntil=NOW)
            taken.append(base.Claimed(doc))
        # Revisions before ClaimResult existed returned the list itself.
        result = getattr(base, "ClaimResult", None)
        return taken if result is None else result(taken)

    async def finish_many(self, items: Any) -> list[bool]:
        return [True] * len(items)

    async def renew(self, fences: Any, lease: timedelta) -> set[Any]:
        return set()

    async def watch(self, notify: Any, ready: Any = None, *args: Any, **kwargs: Any) -> bool:
        await asyncio.Event().wait()
        return True


async def one_run(jobs: int) -> float:
    """CPU microseconds per job of one burn-down of ``jobs`` no-op jobs, 64 workers."""
    docs = [
        {
            "_id": ObjectId(),
            "name": "noop",
            "data": {"i": i},
            "status": "pending",
            "attempts": 0,
            "priority": 5,
            "nextRunAt": NOW,
            "lockVersion": 0,
            "createdAt": NOW,
            "updatedAt": NOW,
        }
        for i in range(jobs)
    ]
    scheduler = Scheduler(FreeStore(docs), workers=64, poll_interval=0.05)
    done = asyncio.Event()
    count = 0

    async def noop(job: Job) -> None:
        nonlocal count
        count += 1
        if count == jobs:
            done.set()

    scheduler.handler = noop
    started = time.process_time()
    await scheduler.start()
    await done.wait()
    cpu = time.process_time() - started
    await scheduler.stop()
    return cpu / jobs * 1e6


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    results = [asyncio.run(one_run(jobs)) for _ in range(runs)]
    print(
        f"{mongo_job_scheduler.__file__}: worker CPU {statistics.median(results):.1f} us/job "
        f"(median of {runs}; runs {', '.join(f'{r:.1f}' for r in results)})"
    )


if __name__ == "__main__":
    main()
