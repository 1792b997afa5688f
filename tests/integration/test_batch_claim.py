"""The batch claim's quick path (``MongoJobStore._claim_batch``): when every job it read is still
as it was read, the claim takes them all and builds the claimed documents from what it read,
without a read-back ``find``; a job written after it was read is never run as it was read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from mongo_job_scheduler import MongoJobStore, Scheduler
from mongo_job_scheduler.stores import _mongo_common as q

pytestmark = pytest.mark.mongo_only

OWNER = "batch-owner"
LEASE = timedelta(seconds=30)
CLAIM_TIMES = ("lockedAt", "lockUntil", "lastRunAt", "updatedAt")


class ReadBacks(monitoring.CommandListener):
    """Counts the finds that read a batch claim back (by its ``claimId``)."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and "claimId" in event.command.get("filter", {}):
            self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def listened(mongodb_uri: str, db_name: str) -> AsyncIterator[tuple[Any, ReadBacks]]:
    listener = ReadBacks()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_uri, event_listeners=[listener]
    )
    try:
        yield client[db_name], listener
    finally:
        await client.drop_database(db_name)
        await client.close()


async def schedule(store: MongoJobStore, count: int, *, written_ago: timedelta) -> list[Any]:
    """``count`` due jobs, last written ``written_ago`` (as if scheduled that long ago)."""
    jobs = await Scheduler(store).schedule_bulk(
        [{"name": "batch", "data": {"i": i}} for i in range(count)]
    )
    ids = [job.id for job in jobs]
    if written_ago:
        now = await store.now()
        await store.jobs.update_many(
            {"_id": {"$in": ids}}, {"$set": {"updatedAt": now - written_ago}}
        )
    return ids


async def assert_as_stored(store: MongoJobStore, claimed: dict[str, Any]) -> None:
    """The claimed document is the stored one: the same fields and values, but for the claim's
    own timestamps, which may be a little early (never later: the lease is not overstated)."""
    stored = await store.get(claimed["_id"])
    assert stored is not None
    assert set(claimed) == set(stored)
    for key, value in stored.items():
        if key in CLAIM_TIMES:
            assert isinstance(claimed[key], datetime) and claimed[key] <= value
            assert value - claimed[key] < timedelta(seconds=5)
        else:
            assert claimed[key] == value, key


@pytest.mark.parametrize("written_ago", [timedelta(hours=1), -timedelta(minutes=1)])
async def test_batch_claim_builds_what_the_store_holds(
    listened: tuple[Any, ReadBacks], written_ago: timedelta
) -> None:
    """Jobs last written an hour ago are claimed without a read-back, and each claimed document
    is the stored one (:func:`assert_as_stored`). Jobs written less than READ_BACK_MARGIN
    before the claim are read back (stamped a minute ahead here, so that a slow machine cannot
    let the margin pass between the write and the claim)."""
    db, read_backs = listened
    store = MongoJobStore(db)
    ids = await schedule(store, 10, written_ago=written_ago)
    claimed = (await store.claim(OWNER, 10, LEASE, 5)).jobs
    assert sorted(c.document["_id"] for c in claimed) == sorted(ids)
    assert read_backs.count == (0 if written_ago > timedelta(0) else 1)
    for item in claimed:
        await assert_as_stored(store, item.document)
        assert item.token == item.document["lockVersion"] == 1


async def test_job_written_between_read_and_claim_is_never_run_as_read(
    listened: tuple[Any, ReadBacks],
) -> None:
    """Another process updates a job after the claim read it and before the claim's update:
    the claim leaves that job alone (or hands it over as it is now), and the next claim takes
    it with the new data. The jobs the claim did take are as stored, though it had to ask
    which ones it took (by id only)."""
    db, read_backs = listened
    other = MongoJobStore(db)  # the other process

    class Racing(MongoJobStore):
        """Lets the other process write to the first job right after each candidate read."""

        async def _candidates(self, flt: dict[str, Any], skip: int, limit: int) -> Any:
            found = await super()._candidates(flt, skip, limit)
            if found:
                await other.update(
                    found[0]["_id"], expect_status=["pending"], set={"data": {"changed": True}}
                )
            return found

    store = Racing(db)
    await schedule(store, 5, written_ago=timedelta(hours=1))
    seen: dict[Any, Any] = {}
    while len(seen) < 5:
        claimed = (await store.claim(OWNER, 5, LEASE, 5)).jobs
        assert claimed, "every job is claimed in the end"
        for item in claimed:
            await assert_as_stored(store, item.document)
            seen[item.document["_id"]] = item.document["data"]
    assert {"changed": True} in seen.values()
    assert read_backs.count >= 1  # the first claim took 4 of 5 and asked which


def test_claimed_as_read_mirrors_the_claim_update() -> None:
    """A pending job without lease or version fields gets the claim's defaults."""
    now = datetime(2026, 1, 2, 3, 4, 5, 678_901).astimezone()
    doc = q.claimed_as_read({"_id": 1, "status": "pending"}, OWNER, LEASE, "claim", now)
    assert doc["status"] == "running" and doc["lockedBy"] == OWNER
    assert (doc["leaseExpiries"], doc["lockVersion"], doc["claimId"]) == (0, 1, "claim")
    assert doc["lockedAt"].microsecond == 678_000  # milliseconds, as BSON stores them
    assert doc["lockUntil"] - doc["lockedAt"] == LEASE
    again = q.claimed_as_read(dict(doc, status="pending"), OWNER, LEASE, "claim", now)
    assert again["lockVersion"] == 2 and again["leaseExpiries"] == 0
