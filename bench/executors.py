"""Section 8 of the benchmark: what each executor adds per job, with a no-op handler.

- ``async``: an ``async def`` handler on the worker's event loop;
- ``thread``: a plain function in the worker's thread pool;
- ``process``: a plain function in a child process (``executor="process"``).

Two figures per executor, each the median of ``repeat`` runs after a warm-up run (the process
pool's children are started by then):

- **one at a time**: on an ``InMemoryJobStore``, a job is scheduled, and the next one once it
  completed, ``jobs`` times; each job is timed from ``job:start`` (just before the handler is
  handed to its executor) to ``job:complete`` (its outcome written), so the store's claim is
  left out (finished jobs are purged every 100 jobs, so the store stays small); the figure is
  the median over the jobs, and its difference from ``async`` is the executor's overhead per
  job;
- **burn-down**: ``workers`` workers run ``jobs`` due jobs on MongoDB (jobs/s, timed from
  ``resume`` of their paused name to the last completion), the process pool with its default
  size (one child per CPU).

Run alone (in-memory figures only): ``python bench/executors.py [--jobs N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

from mongo_job_scheduler import InMemoryJobStore, Job, JobStore, Scheduler

EXECUTORS = ("async", "thread", "process")
JOB_NAME = "noop"


async def async_noop(job: Job) -> None:
    return None


def noop(job: Job) -> None:
    return None


def scheduler_for(executor: str, store: JobStore, workers: int) -> Scheduler:
    """A scheduler whose ``noop`` task runs with ``executor``."""
    scheduler = Scheduler(store, workers=workers, poll_interval=0.05)
    if executor == "async":
        scheduler.task(JOB_NAME)(async_noop)
    elif executor == "thread":
        scheduler.task(JOB_NAME)(noop)
    else:
        scheduler.task(JOB_NAME, executor="process")(noop)
    return scheduler


async def run_jobs(scheduler: Scheduler, jobs: int) -> float:
    """Insert ``jobs`` due jobs into the running scheduler's store while their name is paused,
    then resume it; seconds from the resume until the last one completed."""
    done = asyncio.Event()
    completed = 0

    def count(job: Job) -> None:
        nonlocal completed
        completed += 1
        if completed >= jobs:
            done.set()

    scheduler.on("job:complete", count)
    try:
        await scheduler.pause(JOB_NAME)
        for first in range(0, jobs, 1000):
            size = min(1000, jobs - first)
            await scheduler.schedule_bulk([{"name": JOB_NAME}] * size)
        started = time.perf_counter()
        await scheduler.resume(JOB_NAME)
        await asyncio.wait_for(done.wait(), timeout=120 + jobs / 50)
        return time.perf_counter() - started
    finally:
        scheduler.off("job:complete", count)


async def run_in_turn(scheduler: Scheduler, jobs: int) -> float:
    """Schedule a job, and the next once it completed, ``jobs`` times; the median seconds
    from a job's start to its completion."""
    completed = asyncio.Event()
    started: list[float] = []
    spans: list[float] = []
    scheduler.on("job:start", lambda job: started.append(time.perf_counter()))
    scheduler.on("job:complete", lambda job: (spans.append(time.perf_counter() - started[-1]),))
    scheduler.on("job:complete", lambda job: completed.set())
    for index in range(jobs):
        if index % 100 == 0:  # keep the in-memory store small: its claim reads every job
            await scheduler.purge(datetime.now(timezone.utc) + timedelta(days=1))
        completed.clear()
        await scheduler.schedule(JOB_NAME)
        await asyncio.wait_for(completed.wait(), timeout=60)
    return statistics.median(spans)


async def measure(
    executor: str,
    store: Callable[[], JobStore],
    run: Callable[[Scheduler, int], Awaitable[float]],
    jobs: int,
    workers: int,
    repeat: int,
) -> list[float]:
    """``repeat`` timed runs of ``jobs`` jobs each (after a warm-up run of 50), seconds."""
    scheduler = scheduler_for(executor, store(), workers)
    await scheduler.start()
    try:
        await run_jobs(scheduler, 50)
        return [await run(scheduler, jobs) for _ in range(repeat)]
    finally:
        await scheduler.stop()


async def burn_down(
    store: Callable[[], JobStore], jobs: int, workers: int, repeat: int
) -> dict[str, float]:
    """Jobs per second of a burn-down, for each executor (the median of the runs)."""
    rates = {}
    for executor in EXECUTORS:
        runs = await measure(executor, store, run_jobs, jobs, workers, repeat)
        rates[executor] = jobs / statistics.median(runs)
    return rates


async def one_at_a_time(jobs: int, repeat: int) -> dict[str, float]:
    """Seconds from start to completion of a job, one at a time on an in-memory store, for
    each executor (the median of the runs' medians)."""
    per_job = {}
    for executor in EXECUTORS:
        runs = await measure(executor, InMemoryJobStore, run_in_turn, jobs, 1, repeat)
        per_job[executor] = statistics.median(runs)
    return per_job


def overhead_rows(per_job: dict[str, float]) -> list[tuple[str, str, str]]:
    """(executor, µs per job, µs over async) for a report."""
    base = per_job["async"]
    return [
        (name, f"{seconds * 1e6:.0f} µs", f"{(seconds - base) * 1e6:+.0f} µs")
        for name, seconds in per_job.items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per timed run (2000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per executor (3)")
    args = parser.parse_args(argv)
    per_job = asyncio.run(one_at_a_time(args.jobs, args.repeat))
    print("| executor | start → complete, one job at a time (in-memory store) | over async |")
    print("|---|---|---|")
    for row in overhead_rows(per_job):
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
