"""Integration: an idle worker whose change stream breaks or stalls silently still starts due
jobs, within the documented bound (docs/internals.md, "Wake-ups"): an idle worker trusts its
stream and claims only at the safety poll, so the stream's health decides how fast it notices.

The faults come from MongoDB's ``failCommand`` fail point (``enableTestCommands``, on a
single-node replica set of this module's own), aimed at the worker's ``getMore`` commands by
its ``appName``:

- ``blockConnection``: every getMore hangs on the server for 2 minutes and answers nothing. The
  stream's watchdog calls it stalled ``STALL_AFTER`` seconds after the last answer, and the
  worker polls every ``poll_interval`` from then on;
- ``closeConnection``: every getMore has its connection closed. The stream fails, is reopened
  (each opening wakes the worker for one claim), and fails again; the worker polls meanwhile.

In both cases a job due now, created by another client once the stream is broken, starts
within ``STALL_AFTER + poll_interval`` (plus slack for a loaded machine), long before the
safety poll (30 s) would find it; once the fail point is off, the stream recovers and the
worker stops polling.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from tests.conftest import wait_for

from mongo_job_scheduler import Job, MongoJobStore, Scheduler
from mongo_job_scheduler._mongod import LocalMongod
from mongo_job_scheduler.stores._mongo_watch import STALL_AFTER, WATCH_AWAIT

POLL = 0.5  # the default poll interval
STALL_BOUND = 25.0  # the documented STALL_AFTER
SLACK = 3.0  # 2 cores shared with other test runs


@pytest.fixture(scope="module")
def test_commands_uri() -> Iterator[str]:
    server = LocalMongod(extra_args=["--setParameter", "enableTestCommands=1"])
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


class Finds(monitoring.CommandListener):
    """When the client sent each claim query (a ``find`` on the jobs collection)."""

    def __init__(self) -> None:
        self.at: list[float] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if (
            event.command_name == "find"
            and event.command.get("find") == "scheduler_jobs"
            # not the registration's sweep for unsettled dependants (every 10 s)
            and "dependants" not in event.command.get("filter", {})
        ):
            self.at.append(time.monotonic())

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def within(self, seconds: float) -> int:
        since = time.monotonic() - seconds
        return sum(1 for at in self.at if at >= since)


class Setup:
    def __init__(self, uri: str) -> None:
        self.app = f"stalled-{uuid.uuid4().hex[:8]}"
        self.db_name = f"mjs_stream_{uuid.uuid4().hex[:8]}"
        self.finds = Finds()
        self.worker_client: AsyncMongoClient[Any] = AsyncMongoClient(
            uri, appname=self.app, event_listeners=[self.finds]
        )
        self.client: AsyncMongoClient[Any] = AsyncMongoClient(uri)
        self.started: asyncio.Queue[tuple[Any, float]] = asyncio.Queue()

    async def handler(self, job: Job) -> None:
        await self.started.put((job.id, time.monotonic()))

    async def stream_open(self) -> bool:
        cursor = await self.client.admin.aggregate(
            [
                {"$currentOp": {"idleCursors": True, "allUsers": True}},
                {"$match": {"ns": f"{self.db_name}.scheduler_jobs", "appName": self.app}},
            ]
        )
        return any("$changeStream" in repr(op) for op in await cursor.to_list())

    async def fail_point(self, mode: str, data: dict[str, Any] | None = None) -> None:
        await self.client.admin.command(
            "configureFailPoint", "failCommand", mode=mode, data=data or {}
        )

    async def close(self) -> None:
        await self.client.drop_database(self.db_name)
        await self.worker_client.close()
        await self.client.close()


@pytest.fixture
async def setup(test_commands_uri: str) -> AsyncIterator[Setup]:
    made = Setup(test_commands_uri)
    try:
        yield made
    finally:
        await made.fail_point("off")
        await made.close()


@pytest.mark.parametrize(
    "fault",
    [
        {"blockConnection": True, "blockTimeMS": 120_000},
        {"closeConnection": True},
    ],
    ids=["getMore-hangs", "getMore-connection-closed"],
)
async def test_a_due_job_starts_within_the_bound_while_the_stream_is_broken(
    setup: Setup, fault: dict[str, Any]
) -> None:
    assert STALL_AFTER <= STALL_BOUND
    errors: list[BaseException] = []
    worker = Scheduler(MongoJobStore(setup.worker_client[setup.db_name]), setup.handler)
    worker.on("worker:error", errors.append)
    producer = Scheduler(MongoJobStore(setup.client[setup.db_name]))
    async with worker:
        await wait_for(setup.stream_open, timeout=10)
        await asyncio.sleep(1.0)
        assert setup.finds.within(0.8) == 0  # healthy stream: the worker does not poll
        await setup.fail_point(
            "alwaysOn", {"failCommands": ["getMore"], "appName": setup.app, **fault}
        )
        # The getMore in flight when the fail point was set still answers (within
        # WATCH_AWAIT); the ones after it fail.
        await asyncio.sleep(WATCH_AWAIT + 1.0)
        sent = time.monotonic()
        job = await producer.schedule("while-broken")
        bound = STALL_BOUND + POLL + SLACK
        ran, at = await asyncio.wait_for(setup.started.get(), bound + 1)
        assert ran == job.id
        assert at - sent <= bound, f"started {at - sent:.1f} s after it was created"
        assert setup.finds.within(2.0) >= 2  # the worker polls while the stream is broken
        await setup.fail_point("off")
        # The stream recovers (a hung getMore is abandoned after STALL_AFTER) and the worker
        # stops polling.
        await wait_for(lambda: setup.finds.within(2.0) == 0, timeout=STALL_BOUND + 15)
        again = await producer.schedule("after-recovery")
        ran, _ = await asyncio.wait_for(setup.started.get(), 5)
        assert ran == again.id
    assert errors == []
