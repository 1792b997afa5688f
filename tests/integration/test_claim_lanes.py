"""Claims under contention: after a batch claim lost races to other workers, a
``MongoJobStore`` takes its next batches from its own lane of the queue's head (lane k skips k
batches), so competing processes spread over the head instead of all reading and racing for its
first jobs; when the queue is shorter than the lane's offset, it takes the head itself. Without
lost races the store always claims the head, in the global claim order."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from mongo_job_scheduler import MongoJobStore, Scheduler
from mongo_job_scheduler.stores import mongo as mongo_store
from mongo_job_scheduler.stores.base import ClaimState

pytestmark = pytest.mark.mongo_only

LEASE = timedelta(seconds=30)


async def queue(mongo_db: Any, count: int) -> tuple[MongoJobStore, list[Any]]:
    """``count`` due jobs in a known claim order (one second apart, oldest first)."""
    store = MongoJobStore(mongo_db)
    scheduler = Scheduler(store)
    now = await store.now()
    items = [
        {"name": "work", "data": {"i": i}, "run_at": now - timedelta(seconds=count - i)}
        for i in range(count)
    ]
    jobs = await scheduler.schedule_bulk(items)
    return store, [job.id for job in jobs]


async def claim_ids(store: MongoJobStore, limit: int, state: ClaimState) -> list[Any]:
    claimed = (await store.claim("worker-a", limit, LEASE, 5, state=state)).jobs
    return [c.document["_id"] for c in claimed]


async def test_without_lost_races_a_claim_takes_the_head(mongo_db: Any) -> None:
    store, ids = await queue(mongo_db, 40)
    state = ClaimState()
    assert await claim_ids(store, 4, state) == ids[:4]
    assert await claim_ids(store, 4, state) == ids[4:8]
    assert state.lost_races is False


async def test_after_a_lost_race_the_store_claims_from_another_lane(mongo_db: Any) -> None:
    store, ids = await queue(mongo_db, 60)
    state = ClaimState()
    limit = 4
    size = limit + 4  # the candidate batch a claim of `limit` reads
    state.lost_races = True  # as if other workers had taken part of the last batch
    got = await claim_ids(store, limit, state)
    lanes = {lane: ids[lane * size : lane * size + limit] for lane in range(1, mongo_store.LANES)}
    assert got in lanes.values(), f"claimed {got}, expected one of the lanes {lanes}"
    lane = next(k for k, v in lanes.items() if v == got)
    # The lane sticks while the store stays contended: the next claim skips as many jobs of
    # the (now shorter) queue, and nothing it claimed twice.
    remaining = [i for i in ids if i not in got]
    again = await claim_ids(store, limit, state)
    assert again == remaining[lane * size : lane * size + limit]
    assert not set(again) & set(got)


async def test_contended_claim_of_a_short_queue_takes_the_head(mongo_db: Any) -> None:
    store, ids = await queue(mongo_db, 10)
    state = ClaimState()
    state.lost_races = True
    # Every lane but the first skips at least 8 of the 10 jobs: too few left, so the head.
    assert await claim_ids(store, 4, state) == ids[:4]


async def test_contention_ends_after_a_while(
    mongo_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mongo_store, "CONTENDED_FOR", 0.3)
    store, ids = await queue(mongo_db, 60)
    state = ClaimState()
    state.lost_races = True
    first = await claim_ids(store, 4, state)
    assert first != ids[:4]
    # The lane mode is a span of time: once CONTENDED_FOR has passed without another lost
    # race, the store claims the head again.
    await asyncio.sleep(0.6)
    assert await claim_ids(store, 4, state) == ids[:4]


async def test_a_store_away_from_the_head_goes_back_to_it(
    mongo_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even while it keeps losing races, a store returns to the first lane once it has been
    away for CONTENDED_FOR, so the head of the queue is not left to wait indefinitely."""
    monkeypatch.setattr(mongo_store, "CONTENDED_FOR", 0.3)
    # Lane moves pick the highest other lane, so only the rule under test can pick the first.
    monkeypatch.setattr(mongo_store.random, "choice", max)
    store, ids = await queue(mongo_db, 60)
    state = ClaimState()
    state.lost_races = True
    first = await claim_ids(store, 4, state)
    assert first == ids[24:28]  # lane 3 of batches of 8
    await asyncio.sleep(0.6)
    state.lost_races = True  # still losing races: but away from the head for too long
    assert await claim_ids(store, 4, state) == ids[:4]
