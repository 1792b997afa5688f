"""A worker process of the benchmark (driven by ``bench/run.py`` and ``bench/ab.py`` over
stdin/stdout).

It builds ``Scheduler(MongoJobStore(db), workers=W, poll_interval=P)`` with an async no-op
handler for jobs named ``noop`` and prints ``ready <file of the mongo_job_scheduler package it
imported>`` (``bench/ab.py`` points ``PYTHONPATH`` at another revision's source, so it uses only
the public API); on the line ``go`` it starts the scheduler and prints ``progress <count>
<wall time of the last handler start>`` whenever the count changed (at most every 100 ms); on
``stop`` it stops gracefully, writes the ids it ran (``burn`` mode only: ``memory`` mode keeps
no per-job state), prints ``bye`` and exits. Worker errors are printed as ``error <text>``.

Two lean modes serve the idle-fleet section of ``bench/run.py``: ``idle`` starts the scheduler
on ``go``, prints ``started``, and otherwise only prints ``probe <job id> <seconds>`` when it
runs a job named ``probe`` (handler start minus the job's ``next_run_at``, wall clock); ``bare``
builds no scheduler at all (the client alone, for the floor of an idle process's cost).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

import mongo_job_scheduler
from mongo_job_scheduler import Job, MongoJobStore, Scheduler

JOB_NAME = "noop"


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Tally:
    """The jobs this process ran: a count, the time of the last one, and (optionally) ids."""

    def __init__(self, keep_ids: bool) -> None:
        self.count = 0
        self.last = 0.0
        self.ids: list[Any] | None = [] if keep_ids else None

    async def handler(self, job: Job) -> None:
        self.count += 1
        self.last = time.time()
        if self.ids is not None:
            self.ids.append(job.id)


async def report(tally: Tally) -> None:
    shown = -1
    while True:
        if tally.count != shown:
            shown = tally.count
            say(f"progress {tally.count} {tally.last:.6f}")
        await asyncio.sleep(0.1)


async def probe(job: Job) -> None:
    assert job.next_run_at is not None
    latency = (datetime.now(timezone.utc) - job.next_run_at).total_seconds()
    say(f"probe {job.id} {latency:.6f}")


async def idle(args: argparse.Namespace) -> None:
    """``idle`` and ``bare`` modes: started on ``go``, nothing reported but probes."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(args.uri)
    scheduler = None
    if args.mode == "idle":
        scheduler = Scheduler(
            MongoJobStore(client[args.db]), workers=args.workers, poll_interval=args.poll
        )
        scheduler.task(JOB_NAME)(Tally(keep_ids=False).handler)
        scheduler.task("probe")(probe)
        scheduler.on("worker:error", lambda exc: say(f"error {type(exc).__name__}: {exc}"))
    await client.admin.command("ping")
    say(f"ready {mongo_job_scheduler.__file__}")
    if (await asyncio.to_thread(sys.stdin.readline)).strip() == "go":
        if scheduler is not None:
            await scheduler.start()
        say("started")
        while (await asyncio.to_thread(sys.stdin.readline)).strip() not in ("stop", ""):
            pass
        if scheduler is not None:
            await scheduler.stop(graceful=True, timeout=30)
    await client.close()
    say("bye")


async def main(args: argparse.Namespace) -> None:
    if args.mode in ("idle", "bare"):
        await idle(args)
        return
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(args.uri)
    tally = Tally(keep_ids=args.mode == "burn")
    scheduler = Scheduler(
        MongoJobStore(client[args.db]), workers=args.workers, poll_interval=args.poll
    )
    scheduler.task(JOB_NAME)(tally.handler)
    scheduler.on("worker:error", lambda exc: say(f"error {type(exc).__name__}: {exc}"))
    scheduler.on("scheduler:error", lambda exc: say(f"error {type(exc).__name__}: {exc}"))
    await client.admin.command("ping")
    say(f"ready {mongo_job_scheduler.__file__}")
    line = await asyncio.to_thread(sys.stdin.readline)
    if line.strip() != "go":
        await client.close()
        return
    await scheduler.start()
    reporter = asyncio.create_task(report(tally))
    while (await asyncio.to_thread(sys.stdin.readline)).strip() not in ("stop", ""):
        pass
    await scheduler.stop(graceful=True, timeout=30)
    reporter.cancel()
    say(f"progress {tally.count} {tally.last:.6f}")
    if tally.ids is not None and args.ids_file:
        text = "".join(f"{job_id}\n" for job_id in tally.ids)
        await asyncio.to_thread(Path(args.ids_file).write_text, text)
    await client.close()
    say("bye")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--mode", choices=["burn", "memory", "idle", "bare"], required=True)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--ids-file")
    asyncio.run(main(parser.parse_args()))
