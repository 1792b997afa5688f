"""A handler whose lease can no longer be renewed is stopped when the lease may have run out:
the database becomes unreachable mid-run, the renewal hangs in server selection,
and the handler must still be stopped before another worker could claim the job — not 12 s
later when the renewal gives up."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from mongo_job_scheduler import Job, MongoJobStore, Scheduler, StopReason
from mongo_job_scheduler._mongod import LocalMongod

pytestmark = [pytest.mark.slow, pytest.mark.mongo_only]


async def test_handler_is_stopped_at_its_lease_deadline_when_the_server_is_gone() -> None:
    server = LocalMongod(replica_set=None)
    await asyncio.to_thread(server.start)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        server.uri, serverSelectionTimeoutMS=12_000
    )
    started = asyncio.Event()
    stopped: list[tuple[StopReason | None, float]] = []
    stopped_event = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()
        try:
            await asyncio.sleep(120)
        except asyncio.CancelledError:
            stopped.append((job.stop_reason, time.monotonic()))
            stopped_event.set()
            raise

    scheduler = Scheduler(
        MongoJobStore(client["guard"]),
        handler,
        lock_timeout=3,
        heartbeat_interval=0.5,
        poll_interval=0.2,
    )
    try:
        await scheduler.start()
        await scheduler.schedule("long")
        await asyncio.wait_for(started.wait(), 20)
        claimed_by = time.monotonic()
        await asyncio.to_thread(server.stop)
        try:
            await asyncio.wait_for(stopped_event.wait(), 20)
        except asyncio.TimeoutError:
            raise AssertionError("the handler kept running after its lease ran out") from None
        reason, at = stopped[0]
        assert reason is StopReason.LEASE_LOST
        # The lease is 3 s from the claim (sent before `claimed_by`); the renewal of the
        # second heartbeat hangs for 12 s. Stopped no later than the lease end plus a wide
        # margin for a loaded machine, and far before the hung renewal returns.
        assert at - claimed_by < 3 + 5
    finally:
        await scheduler.stop(graceful=False, timeout=1)
        await client.close()
        await asyncio.to_thread(server.stop)
