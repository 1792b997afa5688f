"""Workflows across processes: fan-ins whose last dependencies complete at the same moment in
different worker processes are released and run exactly once, and a worker killed between a
dependency's completion and the release leaves nothing stuck."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from mongo_job_scheduler import Job, JobStatus, MongoJobStore, Scheduler
from mongo_job_scheduler.worker import _acks, _registration

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from pymongo import AsyncMongoClient
    from mongo_job_scheduler import MongoJobStore, Scheduler

    async def main(config):
        client = AsyncMongoClient(config["uri"])
        db = client[config["db"]]
        scheduler = Scheduler(MongoJobStore(db), workers=8, poll_interval=0.05)

        @scheduler.task("dep")
        async def dep(job):
            # Every dependency of a round ends at the same wall-clock moment.
            await asyncio.sleep(max(0.0, job.data["at"] - time.time()))
            return job.data["n"]

        @scheduler.task("fan-in")
        async def fan_in(job):
            await db.runs.insert_one({"job": job.id, "pid": os.getpid()})

        if config.get("die_after") is not None:
            def die(job):
                if str(job.id) == config["die_after"]:
                    os._exit(9)  # completed, dependants not settled yet
            scheduler.on("job:success", die)

        await db.control.insert_one({"ready": os.getpid()})
        async with scheduler:
            while await db.control.find_one({"_id": "stop"}) is None:
                await asyncio.sleep(0.05)
        await client.close()

    asyncio.run(main(json.loads(sys.argv[1])))
    """
)

PROCESSES = 4
ROUNDS = 6
DEPS = 8


@pytest.fixture
async def db(mongodb_uri: str) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    name = f"mjs_flow_{uuid.uuid4().hex[:10]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


async def _spawn(script: Path, config: dict[str, Any]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, str(script), json.dumps(config))


async def _until(predicate: Any, timeout: float) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)


async def test_fan_ins_completed_at_once_in_several_processes_run_once(
    db: Any, mongodb_uri: str, tmp_path: Path
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    scheduler = Scheduler(MongoJobStore(db))
    procs = [await _spawn(script, {"uri": mongodb_uri, "db": db.name}) for _ in range(PROCESSES)]
    try:
        await _until(
            lambda: _count(db.control, {"ready": {"$exists": True}}, PROCESSES), timeout=60
        )
        fan_ins = []
        for round_ in range(ROUNDS):
            at = time.time() + 1.0 + 0.5 * round_
            deps = await scheduler.schedule_bulk(
                [{"name": "dep", "data": {"n": n, "at": at}} for n in range(DEPS)]
            )
            fan_ins.append(await scheduler.schedule("fan-in", depends_on=deps))
        for job in fan_ins:
            done = await scheduler.wait(job.id, timeout=60)
            assert done.status is JobStatus.COMPLETED
        runs = await db.runs.find({}).to_list()
        assert sorted(r["job"] for r in runs) == sorted(j.id for j in fan_ins)  # once each
    finally:
        await db.control.insert_one({"_id": "stop"})
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except asyncio.TimeoutError:
                proc.kill()


async def _count(collection: Any, flt: dict[str, Any], wanted: int) -> bool:
    return bool(await collection.count_documents(flt) >= wanted)


async def test_a_worker_killed_between_completion_and_release_leaves_nothing_stuck(
    db: Any, mongodb_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    producer = Scheduler(MongoJobStore(db))
    dep = await producer.schedule("dep", {"n": 0, "at": 0}, delay=0.5)
    fan_in = await producer.schedule("fan-in", depends_on=[dep])
    dying = await _spawn(script, {"uri": mongodb_uri, "db": db.name, "die_after": str(dep.id)})
    assert await asyncio.wait_for(dying.wait(), 60) == 9
    completed = await producer.get_job(dep.id)
    assert completed is not None and completed.status is JobStatus.COMPLETED
    waiting = await producer.get_job(fan_in.id)
    assert waiting is not None and waiting.status is JobStatus.WAITING  # the kill landed

    # Any other running worker settles it; this one sweeps every 0.1 s after a 0.2 s grace.
    monkeypatch.setattr(_registration, "REGISTER_EVERY", 0.1)
    monkeypatch.setattr(_acks, "SETTLE_GRACE", timedelta(milliseconds=200))
    survivor = Scheduler(MongoJobStore(db), poll_interval=0.05)
    ran = asyncio.Event()

    @survivor.task("fan-in")
    async def fan_in_handler(job: Job) -> None:
        ran.set()

    async with survivor:
        await asyncio.wait_for(ran.wait(), 20)
    assert (await producer.wait(fan_in.id, timeout=10)).status is JobStatus.COMPLETED
