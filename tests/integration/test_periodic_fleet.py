"""A periodic declaration started by many processes at the same moment: one job between them,
and a changed declaration started by all of them updates that same job."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from mongo_job_scheduler import MongoJobStore, Scheduler

pytestmark = pytest.mark.slow

PROCESSES = 5

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from pymongo import AsyncMongoClient
    from mongo_job_scheduler import MongoJobStore, Scheduler

    async def main(config):
        client = AsyncMongoClient(config["uri"])
        db = client[config["db"]]
        scheduler = Scheduler(MongoJobStore(db), poll_interval=0.05)

        @scheduler.periodic("fleet-report", cron=config["cron"], data=config["data"])
        async def report(job):
            return None

        await db.control.insert_one({"ready": config["n"]})
        deadline = time.monotonic() + 30
        while await db.control.find_one({"_id": "go"}) is None:
            if time.monotonic() > deadline:
                return 2
            await asyncio.sleep(0.005)
        await scheduler.start()
        await scheduler.stop(graceful=False)
        await client.close()
        return 0

    sys.exit(asyncio.run(main(json.loads(sys.argv[1]))))
    """
)


async def _start_all_at_once(
    mongodb_uri: str, db_name: str, script: Path, cron: str, data: Any
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    control = client[db_name]["control"]
    await control.delete_many({})
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            json.dumps({"uri": mongodb_uri, "db": db_name, "cron": cron, "data": data, "n": n}),
        )
        for n in range(PROCESSES)
    ]
    try:
        for _ in range(600):  # every process is ready before any starts
            if await control.count_documents({"ready": {"$exists": True}}) == PROCESSES:
                break
            await asyncio.sleep(0.05)
        await control.insert_one({"_id": "go"})
        codes = [await asyncio.wait_for(p.wait(), 60) for p in procs]
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
        await client.close()
    assert codes == [0] * PROCESSES


async def test_processes_starting_at_once_create_one_job(mongodb_uri: str, tmp_path: Path) -> None:
    db_name = f"mjs_periodic_{uuid.uuid4().hex[:10]}"
    script = tmp_path / "declare.py"
    script.write_text(SCRIPT)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    try:
        scheduler = Scheduler(MongoJobStore(client[db_name]))
        await _start_all_at_once(mongodb_uri, db_name, script, "0 2 * * *", {"v": 1})
        [job] = await scheduler.get_jobs(name="fleet-report")
        assert job.data == {"v": 1}
        await _start_all_at_once(mongodb_uri, db_name, script, "15 3 * * *", {"v": 2})
        [again] = await scheduler.get_jobs(name="fleet-report")
        assert again.id == job.id
        assert again.data == {"v": 2}
        assert again.repeat is not None and again.repeat.cron == "15 3 * * *"
    finally:
        await client.drop_database(db_name)
        await client.close()
