"""Contract: batched claims and bulk outcome writes (round trips are batched where correctness
allows, and every claiming and ownership guarantee still holds), over both stores.

- ``claim(owner, n, ...)`` takes up to ``n`` due jobs in the one global order; on MongoDB the jobs
  without a concurrency limit are taken by one ``update_many`` marked with a ``claimId`` and read
  back with one ``find``.
- ``finish_many`` applies several fenced outcomes at once and answers per item; refused items
  change nothing, dedupe keys are released only for applied items, concurrency slots are freed
  for all; on MongoDB a retry of a batch whose reply was lost counts the items already applied.
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from mongo_job_scheduler import InMemoryJobStore, Job, JobStore, MongoJobStore, Scheduler
from mongo_job_scheduler._documents import build_query
from mongo_job_scheduler.stores.base import Claimed, Fence, Finish
from tests.conftest import wait_for
from tests.contract.helpers import claim_jobs

LEASE = timedelta(seconds=60)
SHORT_LEASE = timedelta(milliseconds=200)


# -- helpers ----------------------------------------------------------------------------------


class Commands(monitoring.CommandListener):
    """Every command a client sent (name and body), for counting round trips."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, copy.deepcopy(dict(event.command))))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def on(self, collection: str) -> list[tuple[str, dict[str, Any]]]:
        """The commands sent to ``collection`` (any command whose first value names it)."""
        return [(n, c) for n, c in self.sent if next(iter(c.values()), None) == collection]


class Views:
    """Other store objects on the same jobs (other processes' views, for MongoDB: each on its
    own client); the in-memory store is shared as is."""

    def __init__(self, store: JobStore, uri: str) -> None:
        self.store = store
        self.uri = uri
        self.clients: list[AsyncMongoClient[dict[str, Any]]] = []

    def new(self, *listeners: monitoring.CommandListener) -> JobStore:
        if isinstance(self.store, InMemoryJobStore):
            return self.store
        assert isinstance(self.store, MongoJobStore)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            self.uri, event_listeners=list(listeners)
        )
        self.clients.append(client)
        return MongoJobStore(client[self.store.database.name], self.store.collection_name)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


@pytest.fixture
async def views(store: JobStore, mongodb_uri: str) -> AsyncIterator[Views]:
    made = Views(store, mongodb_uri)
    try:
        yield made
    finally:
        await made.close()


async def _doc(store: JobStore, job_id: Any) -> dict[str, Any]:
    doc = await store.get(job_id)
    assert doc is not None, job_id
    return doc


def _order(doc: dict[str, Any]) -> tuple[int, Any, Any]:
    return (doc["priority"], doc["nextRunAt"], doc["_id"])


def _ids(claimed: Sequence[Claimed]) -> list[Any]:
    return [c.document["_id"] for c in claimed]


def _fence(claimed: Claimed, owner: str) -> Fence:
    doc = claimed.document
    slot = doc["name"] if doc.get("concurrency") else None
    return Fence(doc["_id"], owner, claimed.token, slot)


async def _pending_count(store: JobStore) -> int:
    return len(await store.find(build_query(status="pending", limit=10_000)))


# -- batch claims -----------------------------------------------------------------------------


async def test_batch_claim_takes_exactly_the_limit_in_the_global_order(
    store: JobStore, views: Views
) -> None:
    producer = Scheduler(store)
    now = await store.now()
    # Priorities and due times repeat, so many jobs tie on both and _id (insertion) decides.
    await producer.schedule_bulk(
        [
            {
                "name": f"n{i % 3}",
                "data": {"i": i},
                "priority": 1 + (i * 7) % 10,
                "run_at": now - timedelta(seconds=1 + i % 4),
            }
            for i in range(120)
        ]
    )
    everything = await store.find(build_query(limit=1_000))
    expected = sorted(everything, key=_order)[:50]

    recorder = Commands()
    claimer = views.new(recorder)
    claimed = (await claimer.claim("batch-owner", 50, LEASE, 3)).jobs

    assert len(claimed) == 50
    assert _ids(claimed) == [d["_id"] for d in expected]  # returned in the claim order too
    taken = set(_ids(claimed))
    for doc in await store.find(build_query(limit=1_000)):
        if doc["_id"] in taken:
            assert doc["status"] == "running"
            assert doc["lockedBy"] == "batch-owner"
            assert doc["lockVersion"] == 1
        else:
            assert doc["status"] == "pending"
            assert doc["lockVersion"] == 0
            assert "lockedBy" not in doc
    for item in claimed:
        assert item.token == 1 and not item.poisoned
        assert item.document["status"] == "running"

    if isinstance(claimer, MongoJobStore):
        # One update_many took all 50 (no per-job findAndModify), marked with one claimId.
        jobs = recorder.on(claimer.collection_name)
        updates = [c for n, c in jobs if n == "update"]
        assert len(updates) == 1, updates
        assert updates[0]["updates"][0].get("multi") is True
        assert not [c for n, c in jobs if n == "findAndModify"]
        claim_ids = {item.document.get("claimId") for item in claimed}
        assert len(claim_ids) == 1 and None not in claim_ids


async def test_concurrent_batch_claims_are_disjoint_and_cover_every_job(
    store: JobStore, views: Views
) -> None:
    producer = Scheduler(store)
    jobs = await producer.schedule_bulk(
        [{"name": "race", "data": {"i": i}, "priority": 1 + i % 10} for i in range(300)]
    )
    ids = {job.id for job in jobs}
    got: dict[str, list[Any]] = {}

    async def claimer(owner: str) -> None:
        view = views.new()
        mine = got.setdefault(owner, [])
        while True:
            claimed = (await view.claim(owner, 20, LEASE, 3)).jobs
            for item in claimed:
                assert item.document["lockedBy"] == owner
                assert item.token == 1
            mine += _ids(claimed)
            if not claimed:
                if not await _pending_count(view):
                    return
                await asyncio.sleep(0)  # others hold the candidates just read: look again

    await asyncio.wait_for(asyncio.gather(*(claimer(f"owner-{n}") for n in range(6))), 60)

    counts = Counter(job_id for taken in got.values() for job_id in taken)
    assert set(counts) == ids
    assert all(count == 1 for count in counts.values()), counts.most_common(3)
    for owner, taken in got.items():
        for job_id in taken:
            doc = await _doc(store, job_id)
            assert doc["status"] == "running"
            assert doc["lockedBy"] == owner
            assert doc["lockVersion"] == 1
    assert (await store.claim("late", 50, LEASE, 3)).jobs == []


async def test_mixed_batch_respects_concurrency_limits(store: JobStore, views: Views) -> None:
    producer = Scheduler(store)
    now = await store.now()
    items: list[dict[str, Any]] = []
    for i in range(36):  # alternating names, all due, in a strict order of due times
        limited = i % 3 == 0
        items.append(
            {
                "name": "lim" if limited else "free",
                "data": {"i": i},
                "run_at": now - timedelta(seconds=100 - i),
                **({"concurrency": 3} if limited else {}),
            }
        )
    jobs = await producer.schedule_bulk(items)
    lim = [j.id for j in jobs if j.name == "lim"]
    free = [j.id for j in jobs if j.name == "free"]
    assert len(lim) == 12 and len(free) == 24

    first = views.new()
    claimed = (await first.claim("owner-a", 20, LEASE, 3)).jobs
    # The three best limited jobs (the limit) and the 17 best free ones, in the global order.
    expected = [j.id for j in jobs if j.id in set(lim[:3]) | set(free[:17])]
    assert _ids(claimed) == expected

    # Other owners racing for the rest never push the limited name past its limit.
    rest: list[Claimed] = []

    async def racer(owner: str) -> None:
        rest.extend((await views.new().claim(owner, 10, LEASE, 3)).jobs)

    await asyncio.gather(*(racer(f"owner-{n}") for n in "bcde"))
    assert set(_ids(rest)) <= set(free[17:])

    async def running(name: str) -> int:
        docs = await store.find(build_query(name=name, status="running", limit=100))
        return len(docs)

    assert await running("lim") == 3
    # Ending the limited executions in one finish_many frees their slots: the next three go.
    ended = [c for c in claimed if c.document["name"] == "lim"]
    results = await first.finish_many(
        [(_fence(c, "owner-a"), Finish(set={"status": "completed"})) for c in ended]
    )
    assert results == [True, True, True]
    again = (await views.new().claim("owner-f", 20, LEASE, 3)).jobs
    assert set(_ids(again)) >= set(lim[3:6])
    assert not set(_ids(again)) & set(lim[6:])
    assert await running("lim") == 3


# -- bulk outcome writes ----------------------------------------------------------------------


async def _claim_named(store: JobStore, owner: str, names: list[str], count: int) -> list[Claimed]:
    claimed = (await store.claim(owner, 10, LEASE, 3, names)).jobs
    assert len(claimed) == count, [c.document["name"] for c in claimed]
    return claimed


async def test_finish_many_answers_per_item_and_leaves_refused_jobs_unchanged(
    store: JobStore, views: Views
) -> None:
    producer = Scheduler(store)
    now = await store.now()
    done = await producer.schedule("done", dedupe_key="k-done", priority=1)
    stale = await producer.schedule("stale", dedupe_key="k-stale", priority=1)
    gone = await producer.schedule("gone", dedupe_key="k-gone", priority=1)
    limited = await producer.schedule("lim2", concurrency=2, priority=1)
    changed = await producer.schedule(
        "lim2",
        repeat={"every": timedelta(seconds=60)},
        run_at=now - timedelta(seconds=1),
        concurrency=2,
        priority=1,
    )
    waiting = [(await producer.schedule("lim2", concurrency=2, priority=9)).id for _ in range(2)]

    # "stale": owner-a's lease expires and owner-b takes the job over (token 2).
    a, b = views.new(), views.new()
    [stale_a] = (await a.claim("owner-a", 1, SHORT_LEASE, 3, ["stale"])).jobs
    stale_b = await wait_for(lambda: claim_jobs(b, "owner-b", 1, LEASE, 3, ["stale"]), timeout=10)
    assert stale_b[0].token == 2
    # owner-a holds the rest; the two waiting "lim2" jobs find no slot.
    held = {
        c.document["_id"]: c for c in await _claim_named(a, "owner-a", ["done", "gone", "lim2"], 4)
    }
    assert set(held) == {done.id, gone.id, limited.id, changed.id}
    # "gone" is cancelled while it runs; "changed" gets a new schedule while it runs.
    assert (await store.cancel(gone.id))[1] is True
    assert await store.update(
        changed.id, expect_status=["running"], set={"repeat": {"every": 120_000}}
    )
    refused_before = {
        job_id: await _doc(store, job_id) for job_id in (stale.id, gone.id, changed.id)
    }

    original_repeat = held[changed.id].document["repeat"]
    next_slot = now + timedelta(seconds=59)
    items = [
        (
            _fence(held[done.id], "owner-a"),
            Finish(set={"status": "completed"}, release_dedupe_key="k-done"),
        ),
        (
            _fence(stale_a, "owner-a"),
            Finish(set={"status": "completed"}, release_dedupe_key="k-stale"),
        ),
        (_fence(held[limited.id], "owner-a"), Finish(set={"status": "completed"})),
        (
            _fence(held[gone.id], "owner-a"),
            Finish(set={"status": "completed"}, release_dedupe_key="k-gone"),
        ),
        (
            _fence(held[changed.id], "owner-a"),
            Finish(
                set={"status": "pending", "nextRunAt": next_slot, "lastScheduledAt": next_slot},
                expect={"repeat": original_repeat},
            ),
        ),
    ]
    assert await a.finish_many(items) == [True, False, True, False, False]

    for job_id, before in refused_before.items():
        assert await _doc(store, job_id) == before, job_id
    for job_id, claimed in ((done.id, held[done.id]), (limited.id, held[limited.id])):
        doc = await _doc(store, job_id)
        assert doc["status"] == "completed"
        assert doc["lockVersion"] == claimed.token
        assert not {"lockedBy", "lockedAt", "lockUntil"} & set(doc)

    # Dedupe keys: released for the applied item only ("gone" released its own when cancelled).
    assert (await producer.schedule("done", dedupe_key="k-done")).id != done.id
    assert (await producer.schedule("stale", dedupe_key="k-stale")).id == stale.id
    # Slots: freed for every item, refused ones too ("changed" still runs, but its slot is
    # gone), so both waiting "lim2" jobs can run now.
    assert (await _doc(store, changed.id))["status"] == "running"
    third = (await views.new().claim("owner-c", 10, LEASE, 3, ["lim2"])).jobs
    assert sorted(_ids(third)) == sorted(waiting)


async def test_finish_many_fences_each_item_by_its_own_token(store: JobStore, views: Views) -> None:
    # Identical outcomes of one owner go out together (one update_many per token on MongoDB),
    # but each job must still match its own token. "x" and "z" were both taken over by their
    # own owner (token 2); the item for "x" carries the stale token 1, the one for "z" the
    # current token 2, and "y" the only token it ever had (1): a filter that mixed the tokens
    # of the batch ({lockVersion: {$in: [1, 2]}}) would wrongly apply the stale "x" item.
    producer = Scheduler(store)
    x, y, z = [await producer.schedule(name) for name in ("x", "y", "z")]
    a = views.new()
    [x1] = (await a.claim("owner-a", 1, SHORT_LEASE, 9, ["x"])).jobs
    [z1] = (await a.claim("owner-a", 1, SHORT_LEASE, 9, ["z"])).jobs
    x2 = await wait_for(lambda: claim_jobs(a, "owner-a", 1, LEASE, 9, ["x"]), timeout=10)
    z2 = await wait_for(lambda: claim_jobs(a, "owner-a", 1, LEASE, 9, ["z"]), timeout=10)
    [y1] = (await a.claim("owner-a", 1, LEASE, 9, ["y"])).jobs
    assert (x1.token, x2[0].token, z1.token, z2[0].token, y1.token) == (1, 2, 1, 2, 1)
    done = Finish(set={"status": "completed"})
    items = [
        (_fence(x1, "owner-a"), done),
        (_fence(y1, "owner-a"), done),
        (_fence(z2[0], "owner-a"), done),
    ]
    assert await a.finish_many(items) == [False, True, True]
    assert (await _doc(store, x.id))["status"] == "running"
    assert (await _doc(store, x.id))["lockVersion"] == 2
    assert (await _doc(store, y.id))["status"] == "completed"
    assert (await _doc(store, z.id))["status"] == "completed"


@pytest.mark.mongo_only
async def test_finish_many_retried_after_a_lost_reply_counts_applied_items(
    store: JobStore, views: Views
) -> None:
    producer = Scheduler(store)
    first = await producer.schedule("retry-me", dedupe_key="k-first", priority=1)
    second = await producer.schedule("retry-me", priority=1)
    lim = await producer.schedule("retry-lim", concurrency=1, priority=1)
    stale = await producer.schedule("retry-stale", priority=1)
    a = views.new()
    [stale_a] = (await a.claim("owner-a", 1, SHORT_LEASE, 3, ["retry-stale"])).jobs
    await wait_for(lambda: claim_jobs(views.new(), "owner-b", 1, LEASE, 3, ["retry-stale"]), 10)
    held = {
        c.document["_id"]: c for c in await _claim_named(a, "owner-a", ["retry-me", "retry-lim"], 3)
    }
    items = [
        (
            _fence(held[first.id], "owner-a"),
            Finish(set={"status": "completed"}, release_dedupe_key="k-first"),
        ),
        (_fence(stale_a, "owner-a"), Finish(set={"status": "completed"})),
        (_fence(held[second.id], "owner-a"), Finish(set={"status": "failed", "attempts": 1})),
        (_fence(held[lim.id], "owner-a"), Finish(set={"status": "completed"})),
    ]
    assert await a.finish_many(items) == [True, False, True, True]
    after_first = {j: await _doc(store, j) for j in (first.id, second.id, lim.id, stale.id)}
    # Meanwhile a new job takes the released key; a retry must not release it again.
    newer = await producer.schedule("retry-me", dedupe_key="k-first")
    assert newer.id != first.id

    # The same batch again (its first reply was "lost"): the applied items count as applied.
    assert await a.finish_many(items) == [True, False, True, True]
    for job_id, doc in after_first.items():
        assert await _doc(store, job_id) == doc
    assert (await producer.schedule("retry-me", dedupe_key="k-first")).id == newer.id
    # One item alone takes the single-write path: same answer on a retry.
    assert await a.finish_many(items[2:3]) == [True]
    assert await a.finish_many(items[1:2]) == [False]


async def test_burn_down_runs_each_job_exactly_once(store: JobStore) -> None:
    runs: Counter[Any] = Counter()
    batches: list[int] = []
    finish_many = store.finish_many

    async def recording(items: Sequence[tuple[Fence, Finish]]) -> list[bool]:
        batches.append(len(items))
        return await finish_many(items)

    store.finish_many = recording  # type: ignore[method-assign]  # observe the batch sizes

    async def noop(job: Job) -> None:
        runs[job.id] += 1

    scheduler = Scheduler(store, noop, workers=32, poll_interval=0.02)
    jobs = await scheduler.schedule_bulk([{"name": "burn", "data": {"i": i}} for i in range(500)])
    ids = {job.id for job in jobs}

    async def all_completed() -> bool:
        done = await store.find(build_query(status="completed", limit=1_000))
        return len(done) == len(ids)

    async with scheduler:
        await wait_for(all_completed, timeout=60)

    assert set(runs) == ids
    assert all(count == 1 for count in runs.values()), runs.most_common(3)
    for doc in await store.find(build_query(limit=1_000)):
        assert doc["status"] == "completed"
        assert doc["lockVersion"] == 1
        assert "lockedBy" not in doc
    assert sum(batches) == len(ids)
    assert max(batches) > 1, "outcomes were never acknowledged together"


@pytest.mark.mongo_only
async def test_batch_claim_returns_each_job_as_it_is_when_claimed(
    store: JobStore, views: Views, mongodb_uri: str
) -> None:
    """An ``update_job`` that lands between the claim's candidate read and its ``update_many``
    is in the job the handler gets (the change was acknowledged before the claim)."""
    from pymongo import MongoClient

    from mongo_job_scheduler import sync

    assert isinstance(store, MongoJobStore)
    producer = Scheduler(store)
    jobs = await producer.schedule_bulk([{"name": "fresh", "data": {"v": 1}} for _ in range(3)])
    # Stamped as written a minute from now: whatever the time the claim takes to start, the
    # jobs count as just written, so the claim reads them back (the quick path, for jobs left
    # unchanged for a while, is tested in tests/integration/test_batch_claim.py).
    ahead = await store.now() + timedelta(minutes=1)
    await store.jobs.update_many(
        {"_id": {"$in": [j.id for j in jobs]}}, {"$set": {"updatedAt": ahead}}
    )
    other: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    blocking = sync.Scheduler(sync.MongoJobStore(other[store.database.name]))

    class UpdateBeforeTheClaimWrite(monitoring.CommandListener):
        """Right before the batch claim's write goes out, another process updates a job."""

        done = False

        def started(self, event: monitoring.CommandStartedEvent) -> None:
            updates = event.command.get("updates", []) if event.command_name == "update" else []
            if not self.done and any(u.get("multi") for u in updates):
                self.done = True
                blocking.update_job(jobs[0].id, data={"v": 2}, priority=3)

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    interleave = UpdateBeforeTheClaimWrite()
    try:
        claimed = (await views.new(interleave).claim("owner-a", 3, LEASE, 3)).jobs
    finally:
        other.close()
    assert interleave.done
    stored = await _doc(store, jobs[0].id)
    assert stored["data"] == {"v": 2} and stored["status"] == "running"
    by_id = {c.document["_id"]: c.document for c in claimed}
    assert set(by_id) == {j.id for j in jobs}
    assert by_id[jobs[0].id]["data"] == {"v": 2}
    assert by_id[jobs[0].id]["priority"] == 3
