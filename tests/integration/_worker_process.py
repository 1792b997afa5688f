"""One worker process for the multi-process tests (``test_multiprocess.py``).

Run as ``python _worker_process.py '<json config>'``. The process builds a ``Scheduler`` on a
``MongoJobStore`` of its own ``AsyncMongoClient``, announces itself in the ``control``
collection (``{_id: "ready-<pid>"}``), waits for ``{_id: "go"}`` so that every process starts
claiming at the same moment, runs jobs until ``{_id: "stop"}`` appears, stops gracefully and exits
0 (2: no "go" in time, 3: no "stop" in time).

Every execution of the handler is recorded in the ``executions`` collection: one document
inserted when the handler starts (``jobId``, ``name``, ``pid``, ``token``, ``attempt``, ``slot``,
``start``) and completed when it ends (``end``, ``outcome``). Times are ``time.time()`` of this
machine, shared by all the processes. The job's ``data`` drives the handler: ``sleep`` (seconds)
and ``failFirst`` (raise on the first attempt). ``worker:error`` events land in ``errors``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from pymongo import AsyncMongoClient

from mongo_job_scheduler import Job, MongoJobStore, Scheduler


async def _wait_for_control(control: Any, key: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if await control.find_one({"_id": key}) is not None:
            return True
        await asyncio.sleep(0.02)
    return False


async def run(config: dict[str, Any]) -> int:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(config["uri"])
    db = client[config["db"]]
    executions = db["executions"]
    control = db["control"]
    errors = db["errors"]
    pid = os.getpid()
    pending_writes: set[asyncio.Task[Any]] = set()

    async def handle(job: Job) -> None:
        data = job.data if isinstance(job.data, dict) else {}
        start = time.time()
        record = await executions.insert_one(
            {
                "jobId": job.id,
                "name": job.name,
                "pid": pid,
                "token": job.token,
                "attempt": job.attempts + 1,
                "slot": job.next_run_at,
                "start": start,
            }
        )
        outcome = "cancelled"
        try:
            await asyncio.sleep(float(data.get("sleep", 0)))
            if data.get("failFirst") and job.attempts == 0:
                outcome = "error"
                raise RuntimeError("the first attempt fails on purpose")
            outcome = "ok"
        finally:
            await executions.update_one(
                {"_id": record.inserted_id}, {"$set": {"end": time.time(), "outcome": outcome}}
            )

    def on_worker_error(exc: BaseException) -> None:
        task = asyncio.ensure_future(
            errors.insert_one({"pid": pid, "type": type(exc).__name__, "message": str(exc)})
        )
        pending_writes.add(task)
        task.add_done_callback(pending_writes.discard)

    scheduler = Scheduler(
        MongoJobStore(db),
        handle,
        workers=int(config.get("workers", 4)),
        poll_interval=float(config.get("poll_interval", 0.02)),
        lock_timeout=float(config.get("lock_timeout", 30)),
        heartbeat_interval=config.get("heartbeat_interval"),
        id=f"proc-{pid}",
    )
    scheduler.on("worker:error", on_worker_error)
    lifetime = time.monotonic() + float(config.get("max_lifetime", 90))
    try:
        await control.insert_one({"_id": f"ready-{pid}", "pid": pid})
        if not await _wait_for_control(control, "go", lifetime):
            return 2
        await scheduler.start()
        stopped = await _wait_for_control(control, "stop", lifetime)
        await scheduler.stop(graceful=True, timeout=10)
        if pending_writes:
            await asyncio.wait(pending_writes, timeout=5)
        await control.insert_one({"_id": f"stopped-{pid}", "pid": pid})
        return 0 if stopped else 3
    finally:
        await client.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(run(json.loads(sys.argv[1]))))
