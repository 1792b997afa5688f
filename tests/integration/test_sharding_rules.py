"""Sharding rules, proved without a sharded cluster.

A jobs collection sharded on ``{_id: "hashed"}`` keeps working only if the library never needs a
unique index there other than ``_id`` and names ``_id`` (by equality) in every ``findAndModify``,
every upsert and every single-document update or delete it sends (before MongoDB 7.0 mongos
refuses those without the shard key). A PyMongo command listener records every command sent while
a representative workload runs through the public API; the test then checks each one. The side
collections (dedupe registry, concurrency slots, paused names, rate-limit windows), sharded on
``_id`` too, follow the same rules.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from tests.conftest import wait_for

from mongo_job_scheduler import Job, JobStatus, MongoJobStore, Scheduler
from mongo_job_scheduler.stores import _mongo_common as q

pytestmark = pytest.mark.mongo_only

JOBS = q.DEFAULT_COLLECTION
SIDE = {
    *q.side_collection_names(JOBS),
    q.paused_collection_name(JOBS),
    q.rates_collection_name(JOBS),
}


@dataclass(frozen=True)
class Sent:
    """One command the client sent."""

    database: str
    name: str
    command: dict[str, Any]

    def __str__(self) -> str:
        shown = {k: v for k, v in self.command.items() if k not in ("lsid", "$clusterTime", "$db")}
        return f"{self.name} on {self.database}: {shown}"


class Recorder(monitoring.CommandListener):
    """Keeps a copy of every command started on the client."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append(
            Sent(event.database_name, event.command_name, copy.deepcopy(dict(event.command)))
        )

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


# -- the rules --------------------------------------------------------------------------------


def has_id_equality(flt: Any) -> bool:
    """Whether a filter pins ``_id`` to one value (``{_id: v}`` or ``{_id: {$eq: v}}``)."""
    if not isinstance(flt, Mapping) or "_id" not in flt:
        return False
    value = flt["_id"]
    if isinstance(value, Mapping):
        keys = list(value)
        if keys == ["$eq"]:
            return True
        return not any(str(k).startswith("$") for k in keys)  # a literal document _id
    return True


@dataclass(frozen=True)
class Write:
    """One targeted write inside a command: which collection, its filter, and how many
    documents it may touch."""

    collection: str
    kind: str  # "findAndModify", "update", "delete"
    filter: Any
    upsert: bool
    single: bool
    sent: Sent


def writes(sent: Sent, db_name: str) -> Iterator[Write]:
    """The writes of a recorded command against ``db_name`` (``findAndModify``, ``update``,
    ``delete``, and client-level ``bulkWrite``)."""
    cmd = sent.command
    name = sent.name.lower()
    if sent.database == db_name and name == "findandmodify":
        coll = cmd.get("findAndModify", cmd.get("findandmodify"))
        yield Write(
            coll, "findAndModify", cmd.get("query", {}), bool(cmd.get("upsert")), True, sent
        )
    elif sent.database == db_name and name == "update":
        for u in cmd.get("updates", []):
            yield Write(
                cmd["update"],
                "update",
                u.get("q"),
                bool(u.get("upsert")),
                not u.get("multi"),
                sent,
            )
    elif sent.database == db_name and name == "delete":
        for d in cmd.get("deletes", []):
            yield Write(cmd["delete"], "delete", d.get("q"), False, d.get("limit") == 1, sent)
    elif name == "bulkwrite":
        namespaces = [ns["ns"] for ns in cmd.get("nsInfo", [])]
        for op in cmd.get("ops", []):
            for kind in ("update", "delete"):
                if kind in op:
                    ns = namespaces[op[kind]]
                    db, _, coll = ns.partition(".")
                    if db == db_name:
                        yield Write(
                            coll,
                            kind,
                            op.get("filter"),
                            bool(op.get("upsert")),
                            not op.get("multi"),
                            sent,
                        )


def violations(recorded: list[Sent], db_name: str) -> list[str]:
    """Every breach of the sharding rules in the recorded commands, described with the
    offending command."""
    found = []
    ours = {JOBS, *SIDE}
    for sent in recorded:
        for write in writes(sent, db_name):
            if write.collection not in ours:
                continue
            needs_id = write.kind == "findAndModify" or write.upsert or write.single
            if needs_id and not has_id_equality(write.filter):
                why = (
                    "findAndModify"
                    if write.kind == "findAndModify"
                    else "upsert"
                    if write.upsert
                    else f"single-document {write.kind}"
                )
                found.append(
                    f"{why} on {write.collection} without _id equality in its filter "
                    f"{write.filter!r}; command: {sent}"
                )
        if sent.database == db_name and sent.name == "createIndexes":
            coll = sent.command["createIndexes"]
            if coll in ours:
                for index in sent.command.get("indexes", []):
                    if index.get("unique") and dict(index.get("key", {})) != {"_id": 1}:
                        found.append(f"unique index {index} on {coll}; command: {sent}")
    return found


def test_rule_checker_catches_breaches() -> None:
    """The checker itself fails on each kind of breach (so a green workload test means
    something)."""
    db = "d"

    def one(name: str, command: dict[str, Any]) -> list[str]:
        return violations([Sent(db, name, command)], db)

    assert one("findAndModify", {"findAndModify": JOBS, "query": {"status": "pending"}})
    assert one("findAndModify", {"findAndModify": JOBS, "query": {"_id": {"$in": [1, 2]}}})
    assert one(
        "update",
        {"update": JOBS, "updates": [{"q": {"dedupeKey": "k"}, "u": {}, "upsert": True}]},
    )
    assert one("update", {"update": JOBS, "updates": [{"q": {"name": "x"}, "u": {}}]})
    assert one("delete", {"delete": JOBS, "deletes": [{"q": {"name": "x"}, "limit": 1}]})
    assert one(
        "update",
        {"update": SIDE.copy().pop(), "updates": [{"q": {"k": 1}, "u": {}, "upsert": True}]},
    )
    assert one(
        "createIndexes",
        {"createIndexes": JOBS, "indexes": [{"key": {"dedupeKey": 1}, "unique": True}]},
    )
    # What the rules allow.
    assert not one("findAndModify", {"findAndModify": JOBS, "query": {"_id": 1, "status": "x"}})
    assert not one("findAndModify", {"findAndModify": JOBS, "query": {"_id": {"$eq": 1}}})
    assert not one(
        "update", {"update": JOBS, "updates": [{"q": {"status": "r"}, "u": {}, "multi": True}]}
    )
    assert not one("delete", {"delete": JOBS, "deletes": [{"q": {"status": "x"}, "limit": 0}]})
    assert not one("findAndModify", {"findAndModify": "other", "query": {"x": 1}})
    assert not one(
        "createIndexes", {"createIndexes": JOBS, "indexes": [{"key": {"name": 1}, "name": "n"}]}
    )


# -- the workload ---------------------------------------------------------------------------


@pytest.fixture
async def recorded_client(mongodb_uri: str) -> Any:
    recorder = Recorder()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_uri, event_listeners=[recorder]
    )
    try:
        yield client, recorder
    finally:
        await client.close()


async def _run_workload(db: Any) -> dict[str, Any]:
    """Exercise every write path of the public API; return what the checks need."""
    store = MongoJobStore(db)
    main = Scheduler(store, workers=4, poll_interval=0.02, lock_timeout=5, heartbeat_interval=0.1)
    done: asyncio.Queue[str] = asyncio.Queue()
    attempts: dict[Any, int] = {}
    running_cancellable = asyncio.Event()

    @main.task("plain")
    async def plain(job: Job) -> str:
        return "ok"

    @main.task("flaky")
    async def flaky(job: Job) -> None:
        attempts[job.id] = attempts.get(job.id, 0) + 1
        if job.attempts == 0:
            raise RuntimeError("first attempt fails")

    @main.task("limited")
    async def limited(job: Job) -> None:
        await asyncio.sleep(0.03)

    @main.task("rated", rate_limit={"limit": 2, "period": 60})
    async def rated(job: Job) -> None:
        return None

    @main.task("tick")
    async def tick(job: Job) -> None:
        await done.put("tick")

    @main.task("cancel-me")
    async def cancel_me(job: Job) -> None:
        running_cancellable.set()
        await asyncio.sleep(60)

    # Producers: with and without dedupe keys, single and bulk (duplicates in and across calls).
    first = await main.schedule("plain", {"n": 1}, dedupe_key="plain:1", priority=2)
    again = await main.schedule("plain", {"n": 1}, dedupe_key="plain:1")
    assert again.id == first.id
    await main.schedule("plain", {"n": 2})
    bulk = await main.schedule_bulk(
        [
            {"name": "plain", "data": {"n": 3}},
            {"name": "plain", "data": {"n": 4}, "dedupe_key": "plain:4"},
            {"name": "plain", "data": {"n": 4}, "dedupe_key": "plain:4"},
            {"name": "plain", "data": {"n": 1}, "dedupe_key": "plain:1"},
            *({"name": "limited", "data": {"i": i}, "concurrency": 2} for i in range(6)),
        ]
    )
    assert bulk[1].id == bulk[2].id and bulk[3].id == first.id
    flaky_job = await main.schedule("flaky", retry={"maxAttempts": 2, "delay": 0.01})
    ticker = await main.schedule("tick", repeat={"every": timedelta(milliseconds=150)})
    later = await main.schedule("plain", {"n": 5}, run_at=None, delay=3600, dedupe_key="later")
    # Admin on pending jobs: update data/priority, change a repeat, cancel, read.
    await main.update_job(later.id, data={"n": 55}, priority=3)
    await main.update_job(ticker.id, repeat={"every": timedelta(milliseconds=120)})
    assert await main.cancel(later.id) is True
    assert await main.cancel(later.id) is False
    assert [j.id for j in await main.get_jobs(name="plain", status="cancelled")] == [later.id]
    assert await main.get_job(first.id) is not None

    # Pause and resume a name (the paused-names collection), and rate-limited starts.
    assert await main.pause("rated") is True
    assert await main.paused_names() == ["rated"]
    rated_jobs = [await main.schedule("rated", {"i": i}) for i in range(2)]
    assert await main.resume("rated") is True

    await main.start()
    limited_ids = [j.id for j in bulk[4:]]
    one_offs = [first.id, bulk[0].id, bulk[1].id, flaky_job.id, *limited_ids]
    one_offs += [j.id for j in rated_jobs]

    async def finished() -> bool:
        docs = await db[JOBS].find({"_id": {"$in": one_offs}}).to_list()
        return all(d["status"] == "completed" for d in docs) and len(docs) == len(one_offs)

    await wait_for(finished, timeout=20)
    for _ in range(3):
        await asyncio.wait_for(done.get(), timeout=10)
    assert attempts[flaky_job.id] == 2
    # A completed job with a dedupe key runs again (reclaims its key).
    await main.update_job(first.id, run_at=await store.now())
    await wait_for(lambda: _status_is(db, first.id, "completed", min_version=2), timeout=10)

    # Cancel a running job.
    victim = await main.schedule("cancel-me")
    await asyncio.wait_for(running_cancellable.wait(), timeout=10)
    assert await main.cancel(victim.id) is True
    await wait_for(lambda: _status_is(db, victim.id, "cancelled"), timeout=10)
    await main.stop(graceful=True, timeout=5)
    assert await main.cancel(ticker.id) is True

    # A lease expiry and a re-claim: the first owner stops renewing (max_execution) while its
    # handler still runs; a second scheduler claims the job once the lease expired.
    release_first = asyncio.Event()
    calls: list[int] = []

    async def stalling(job: Job) -> str:
        assert job.name == "stall", job
        calls.append(job.token)
        if len(calls) == 1:
            await release_first.wait()
        return "done"

    stalled = asyncio.Event()
    owner_a = Scheduler(
        store,
        stalling,
        workers=1,
        poll_interval=0.02,
        lock_timeout=0.6,
        heartbeat_interval=0.1,
        max_execution=0.15,
    )
    owner_a.on("job:stalled", lambda job: stalled.set())
    owner_b = Scheduler(store, stalling, workers=1, poll_interval=0.02, lock_timeout=5)
    stall_job = await owner_a.schedule("stall")
    await owner_a.start()
    await asyncio.wait_for(stalled.wait(), timeout=10)
    await owner_b.start()
    await wait_for(lambda: _status_is(db, stall_job.id, "completed"), timeout=15)
    release_first.set()
    await owner_a.stop(graceful=True, timeout=5)
    await owner_b.stop(graceful=True, timeout=5)
    assert len(calls) == 2 and calls[1] > calls[0], calls

    # A graceful stop that runs out of time gives the running job back.
    started = asyncio.Event()

    async def blocking(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)

    holder = Scheduler(store, blocking, workers=1, poll_interval=0.02, lock_timeout=5)
    await holder.start()
    held = await holder.schedule("held", dedupe_key="held")
    await asyncio.wait_for(started.wait(), timeout=10)
    await holder.stop(graceful=True, timeout=0.1)
    released = await main.get_job(held.id)
    assert released is not None and released.status is JobStatus.PENDING
    assert released.locked_by is None
    await main.cancel(held.id)
    # Delete a job that waits for another, then the one it waited for (with its dedupe key).
    part = await main.schedule("plain", delay=3600, dedupe_key="part")
    waits = await main.schedule("plain", depends_on=[part.id])
    assert await main.delete_job(waits.id) is True
    assert await main.delete_job(part.id) is True
    return {"stall_job": stall_job.id}


async def _status_is(db: Any, job_id: Any, status: str, min_version: int = 0) -> bool:
    doc = await db[JOBS].find_one({"_id": job_id})
    return bool(doc and doc["status"] == status and doc.get("lockVersion", 0) >= min_version)


async def test_workload_obeys_the_sharding_rules(recorded_client: Any, db_name: str) -> None:
    client, recorder = recorded_client
    db = client[db_name]
    try:
        facts = await _run_workload(db)
        stall_doc = await db[JOBS].find_one({"_id": facts["stall_job"]})
        assert stall_doc["status"] == "completed" and stall_doc["lockVersion"] >= 2

        recorded = list(recorder.sent)
        problems = violations(recorded, db_name)
        assert not problems, "sharding rule broken:\n" + "\n".join(problems)

        # The workload really went through the paths the rules are about.
        all_writes = [w for s in recorded for w in writes(s, db_name)]
        kinds = {(w.collection, w.kind, w.upsert, w.single) for w in all_writes}
        slots, dedupe = f"{JOBS}_slots", f"{JOBS}_dedupe"
        assert (JOBS, "findAndModify", False, True) in kinds, kinds  # claims, cancel, update
        assert (JOBS, "update", False, True) in kinds, kinds  # fenced finish / release
        assert (JOBS, "update", False, False) in kinds, kinds  # one renew for all leases
        assert (slots, "findAndModify", True, True) in kinds, kinds  # slot acquire upserts
        assert any(w.collection == dedupe for w in all_writes), kinds
        paused, rates = q.paused_collection_name(JOBS), q.rates_collection_name(JOBS)
        assert any(w.collection == paused for w in all_writes), kinds  # pause, resume
        assert any(w.collection == rates for w in all_writes), kinds  # rate-limited starts
        created = [s for s in recorded if s.name == "createIndexes"]
        assert any(s.command["createIndexes"] == JOBS for s in created)
        inserts = [s for s in recorded if s.name == "insert" and s.command["insert"] == dedupe]
        assert inserts, "no dedupe key was registered"
    finally:
        await client.drop_database(db_name)


async def test_only_unique_index_is_id(mongo_db: Any) -> None:
    scheduler = Scheduler(MongoJobStore(mongo_db), lambda job: None, workers=2, poll_interval=0.02)
    async with scheduler:
        await scheduler.schedule("limited", concurrency=1)
        await scheduler.schedule("deduped", dedupe_key="k")
        await scheduler.schedule("rated", rate_limit={"limit": 5, "period": 60})
        await scheduler.pause("other")  # creates the paused-names collection
        await scheduler.resume("other")

        async def all_done() -> bool:
            return await mongo_db[JOBS].count_documents({"status": "completed"}) == 3

        await wait_for(all_done, timeout=10)
    for coll in (JOBS, *sorted(SIDE)):
        indexes = await (await mongo_db[coll].list_indexes()).to_list()
        names = [ix["name"] for ix in indexes]
        assert "_id_" in names, (coll, indexes)
        unique = [ix for ix in indexes if ix.get("unique") and ix["name"] != "_id_"]
        assert unique == [], f"unique index on {coll} other than _id: {unique}"
        if coll == JOBS:
            assert {"claim_order", "lease_expiry", "by_name"} <= set(names), names


async def test_sync_facade_obeys_the_sharding_rules(
    mongodb_uri: str, mongo_db: Any, db_name: str
) -> None:
    """The blocking twin's producer and admin writes follow the same rules."""
    from pymongo import MongoClient

    from mongo_job_scheduler import sync

    recorder = Recorder()
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri, event_listeners=[recorder])
    try:
        blocking = sync.Scheduler(sync.MongoJobStore(client[db_name]))
        first = blocking.schedule("plain", {"n": 1}, dedupe_key="k1")
        assert blocking.schedule("plain", {"n": 1}, dedupe_key="k1").id == first.id
        bulk = blocking.schedule_bulk(
            [
                {"name": "plain", "data": {"n": 2}},
                {"name": "plain", "dedupe_key": "k2"},
                {"name": "plain", "dedupe_key": "k2"},
                {"name": "limited", "concurrency": 1},
            ]
        )
        assert bulk[1].id == bulk[2].id
        blocking.update_job(bulk[0].id, data={"n": 22}, priority=1)
        blocking.get_jobs(name="plain", status=["pending"])

        # Run the jobs with an async worker, then run a finished deduped job again from sync code.
        async with Scheduler(MongoJobStore(mongo_db), lambda job: None, poll_interval=0.02):
            await wait_for(
                lambda: _status_is(mongo_db, first.id, "completed", min_version=1), timeout=10
            )
        blocking.update_job(first.id, run_at=blocking.store.now())
        assert blocking.cancel(first.id) is True
        assert blocking.cancel(first.id) is False

        # The operator calls: retry (re-registers the key), pause, resume, stats, purge.
        assert blocking.retry_job(first.id).status is JobStatus.PENDING
        assert blocking.cancel(first.id) is True
        assert blocking.wait(first.id, timeout=0).status is JobStatus.CANCELLED
        assert blocking.pause("plain") is True and blocking.paused_names() == ["plain"]
        assert blocking.resume("plain") is True
        assert blocking.stats().total == 4
        blocking.live_workers()
        cutoff = blocking.store.now() + timedelta(seconds=1)
        assert blocking.purge(cutoff, statuses=["cancelled"]) == 1

        recorded = list(recorder.sent)
        problems = violations(recorded, db_name)
        assert not problems, "sharding rule broken by the sync facade:\n" + "\n".join(problems)
        kinds = {(w.collection, w.kind) for s in recorded for w in writes(s, db_name)}
        assert (JOBS, "findAndModify") in kinds, kinds
        assert any(s.name == "insert" and s.command["insert"] == f"{JOBS}_dedupe" for s in recorded)
        paused = q.paused_collection_name(JOBS)
        assert {(paused, "update"), (paused, "delete"), (JOBS, "delete")} <= kinds, kinds
    finally:
        client.close()
