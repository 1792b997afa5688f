"""Query plans of the hot paths: every claim, heartbeat, completion and cancel query is
answered from an index, without a collection scan or an in-memory sort, and the claim query's
cost does not grow with the number of finished or future jobs in the collection. That includes
the candidate query of a routed scheduler (``name $in``), the batch claim's ``update_many``
(about one ``_id`` key per job of the batch) and the read-backs of batch claims and bulk
outcome writes.

The operator reads are bounded the same way: throughput reads the ``finished`` index only
(never a document) within its window, the failures of the last hour and purge read the same
index, and the job names one ``by_name`` key per name. The activity by name reads at most its
limit of each status, from index keys alone but for the running jobs, and the due count and
the oldest due job read ``claim_order`` keys only.

The collection holds ~5,000 finished jobs (100 of them finished ten minutes ago, the others a
day ago), ~5,000 future jobs, a handful of running jobs (some with expired leases), 20 due
jobs and 30 jobs waiting for a dependency; each test asks the server to ``explain`` the exact
filter the store builds (``stores/_mongo_common.py``) and walks the plan.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from bson.codec_options import CodecOptions, DatetimeConversion
from pymongo import AsyncMongoClient, MongoClient

from mongo_job_scheduler import AttemptOutcome, MongoJobStore, Scheduler
from mongo_job_scheduler._documents import build_query
from mongo_job_scheduler._history import Ending
from mongo_job_scheduler.dashboard._sorting import LIST_SORTS, list_sort
from mongo_job_scheduler.job import FINISHED_STATUSES
from mongo_job_scheduler.stats import THROUGHPUT_READ_LIMIT
from mongo_job_scheduler.stores import _mongo_common as q
from mongo_job_scheduler.stores.base import Fence

pytestmark = pytest.mark.mongo_only

FINISHED = 5_000
RECENT = 100
"""Finished jobs (every other one failed) that finished ten minutes ago; the others a day ago."""
FUTURE = 5_000
DUE = 20
RUNNING_LIVE = 12
RUNNING_EXPIRED = 6
WAITING = 30
NAMES = ["email", "report", "cleanup", "sync", "billing"]
OWNER = "plan-owner"
DONE = Ending(AttemptOutcome.COMPLETED)

# Stages that read an index (classic engine names; EXPRESS_* and IDHACK are the _id fast paths;
# COUNT_SCAN and DISTINCT_SCAN count keys or skip from one value to the next).
INDEX_STAGES = {
    "IXSCAN", "IDHACK", "EXPRESS_IXSCAN", "EXPRESS_CLUSTERED_IXSCAN", "COUNT_SCAN", "DISTINCT_SCAN",
}  # fmt: skip


# -- plan walking -----------------------------------------------------------------------------


def walk(node: Any) -> Iterator[Mapping[str, Any]]:
    """Every stage (a mapping with a ``stage`` key) in an explain subtree, depth first, whatever
    nests it (``inputStage``, ``inputStages``, ``queryPlan``, ``shards``, ...)."""
    if isinstance(node, Mapping):
        if "stage" in node:
            yield node
        for key, value in node.items():
            if key in ("rejectedPlans", "allPlansExecution"):
                continue
            yield from walk(value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from walk(item)


def winning_stages(explained: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The stages of the winning plan (of every shard, on a sharded cluster)."""
    planner = explained.get("queryPlanner", {})
    stages = list(walk(planner.get("winningPlan", {})))
    assert stages, f"no stages found in explain output: {explained}"
    return stages


def stage_names(stages: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(s["stage"]) for s in stages]


def index_names(stages: Sequence[Mapping[str, Any]]) -> set[str]:
    """Names of the indexes the plan reads (``_id_`` for the _id fast paths)."""
    names = set()
    for stage in stages:
        if stage["stage"] in ("IDHACK", "EXPRESS_IXSCAN") and "indexName" not in stage:
            names.add("_id_")
        elif stage["stage"] in INDEX_STAGES:
            names.add(str(stage.get("indexName", "?")))
    return names


def assert_index_backed(
    explained: Mapping[str, Any], *, index: str | set[str], allow_sort: bool = False
) -> list[Mapping[str, Any]]:
    """The winning plan reads ``index`` (one of, if a set), never scans the collection, and
    (unless ``allow_sort``) sorts nothing in memory."""
    stages = winning_stages(explained)
    names = stage_names(stages)
    plan = explained["queryPlanner"]["winningPlan"]
    assert not any("COLLSCAN" in n for n in names), f"collection scan in plan {names}: {plan}"
    assert any(n in INDEX_STAGES for n in names), f"no index stage in plan {names}: {plan}"
    wanted = {index} if isinstance(index, str) else index
    used = index_names(stages)
    assert used & wanted, f"expected index {wanted}, plan reads {used}: {plan}"
    if not allow_sort:
        # SORT_MERGE streams index-ordered inputs together (one per status): no buffering.
        sorts = [n for n in names if n == "SORT" or (n.startswith("SORT_") and n != "SORT_MERGE")]
        assert not sorts, f"in-memory sort in plan {names}: {plan}"
    return stages


def stats(explained: Mapping[str, Any]) -> Mapping[str, Any]:
    """The execution statistics of the query part (of the ``$cursor`` stage of a pipeline that
    the server runs partly outside the query engine)."""
    if "executionStats" not in explained:
        explained = explained["stages"][0]["$cursor"]
    return dict(explained["executionStats"])


# -- fixture data -----------------------------------------------------------------------------


class Collection:
    """The populated collection (read through the sync client) and what the tests know of it."""

    def __init__(self, db: Any, name: str, now: datetime) -> None:
        self.db = db
        self.name = name
        self.now = now
        self.due_ids: list[ObjectId] = []
        self.live_ids: list[ObjectId] = []
        self.expired_ids: list[ObjectId] = []
        self.completed_ids: list[ObjectId] = []

    def explain(self, command: dict[str, Any]) -> dict[str, Any]:
        # Index bounds may hold the largest BSON date, beyond Python's datetime.
        codec = CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_AUTO)
        return dict(
            self.db.command("explain", command, verbosity="executionStats", codec_options=codec)
        )

    def explain_find(
        self,
        flt: Mapping[str, Any],
        *,
        sort: Sequence[tuple[str, int]] | None = None,
        limit: int | None = None,
        skip: int | None = None,
        projection: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        command: dict[str, Any] = {"find": self.name, "filter": dict(flt)}
        if sort:
            command["sort"] = dict(sort)
        if skip:
            command["skip"] = skip
        if limit:
            command["limit"] = limit
        if projection:
            command["projection"] = dict(projection)
        return self.explain(command)


async def _populate(uri: str, db_name: str) -> tuple[datetime, list[ObjectId]]:
    """Create the indexes and the jobs through the public API; return the server time used and
    the job ids in the order of the items."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    try:
        store = MongoJobStore(client[db_name])
        scheduler = Scheduler(store)
        await store.setup()
        now = await store.now()
        items: list[dict[str, Any]] = []
        # Finished jobs: due long ago (nextRunAt in the past); completed or failed below.
        for i in range(FINISHED):
            items.append(
                {
                    "name": NAMES[i % len(NAMES)],
                    "data": {"i": i},
                    "run_at": now - timedelta(days=1, seconds=i),
                    "priority": 1 + i % 10,
                }
            )
        # Future jobs: every priority, due between one minute and a few days from now.
        for i in range(FUTURE):
            items.append(
                {
                    "name": NAMES[i % len(NAMES)],
                    "data": {"i": i},
                    "run_at": now + timedelta(minutes=1, seconds=37 * i),
                    "priority": 1 + (i * 7) % 10,
                }
            )
        # Due jobs (some become running below).
        for i in range(RUNNING_LIVE + RUNNING_EXPIRED + DUE):
            items.append(
                {
                    "name": NAMES[i % len(NAMES)],
                    "data": {"i": i},
                    "run_at": now - timedelta(seconds=30 + i),
                    "priority": 1 + (i * 3) % 10,
                }
            )
        # Jobs that become waiting below (as if they waited for a dependency).
        for i in range(WAITING):
            items.append({"name": NAMES[i % len(NAMES)], "data": {"i": i}, "delay": 3600})
        ids: list[ObjectId] = []
        for start in range(0, len(items), 2_000):
            ids += [j.id for j in await scheduler.schedule_bulk(items[start : start + 2_000])]
        return now, ids
    finally:
        await client.close()


@pytest.fixture(scope="module")
def populated(mongodb_uri: str) -> Iterator[Collection]:
    db_name = f"mjs_plans_{uuid.uuid4().hex[:12]}"
    now, ids = asyncio.run(_populate(mongodb_uri, db_name))
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    try:
        coll = Collection(client[db_name], q.DEFAULT_COLLECTION, now)
        jobs = coll.db[coll.name]
        finished = ids[:FINISHED]
        coll.completed_ids = finished[::2]
        jobs.update_many(
            {"_id": {"$in": coll.completed_ids}}, {"$set": {"status": "completed", "attempts": 1}}
        )
        jobs.update_many(
            {"_id": {"$in": finished[1::2]}},
            {"$set": {"status": "failed", "attempts": 1, "lastError": "boom"}},
        )
        jobs.update_many(
            {"_id": {"$in": finished}},
            {"$set": {"updatedAt": now - timedelta(days=1), "lastRunAt": now - timedelta(days=1)}},
        )
        jobs.update_many(
            {"_id": {"$in": finished[:RECENT]}},
            {
                "$set": {
                    "updatedAt": now - timedelta(minutes=10),
                    "lastRunAt": now - timedelta(minutes=11),
                }
            },
        )
        running = RUNNING_LIVE + RUNNING_EXPIRED
        rest = ids[FINISHED + FUTURE : len(ids) - WAITING]
        coll.live_ids = rest[:RUNNING_LIVE]
        coll.expired_ids = rest[RUNNING_LIVE:running]
        coll.due_ids = rest[running:]
        jobs.update_many({"_id": {"$in": ids[-WAITING:]}}, {"$set": {"status": "waiting"}})
        for group, lock_until, owner in (
            (coll.live_ids, now + timedelta(minutes=10), "other-owner"),
            (coll.expired_ids, now - timedelta(minutes=1), "dead-owner"),
        ):
            jobs.update_many(
                {"_id": {"$in": group}},
                {
                    "$set": {
                        "status": "running",
                        "lockedBy": owner,
                        "lockedAt": now - timedelta(minutes=2),
                        "lockUntil": lock_until,
                        "lockVersion": 1,
                    }
                },
            )
        # This worker owns four of the live jobs (the heartbeat and completion tests use them).
        jobs.update_many(
            {"_id": {"$in": coll.live_ids[:4]}}, {"$set": {"lockedBy": OWNER, "lockVersion": 3}}
        )
        assert jobs.count_documents({}) == FINISHED + FUTURE + running + DUE + WAITING
        yield coll
    finally:
        client.drop_database(db_name)
        client.close()


# -- claim ------------------------------------------------------------------------------------


def test_due_query_uses_claim_order_without_sort_and_bounded_keys(
    populated: Collection,
) -> None:
    limit = DUE + 4
    explained = populated.explain_find(
        q.due_filter(populated.now),
        sort=q.CLAIM_SORT,
        limit=limit,
    )
    assert_index_backed(explained, index="claim_order")
    st = stats(explained)
    assert st["nReturned"] == DUE
    # One key per due job, plus at most one boundary key per priority value (the scan seeks
    # past the future part of each priority): nothing proportional to the 10,000 other jobs.
    assert st["totalKeysExamined"] <= DUE + 10 + 2, st
    assert st["totalDocsExamined"] <= DUE, st


def test_due_query_with_small_limit_stops_early(populated: Collection) -> None:
    explained = populated.explain_find(q.due_filter(populated.now), sort=q.CLAIM_SORT, limit=5)
    assert_index_backed(explained, index="claim_order")
    st = stats(explained)
    assert st["nReturned"] == 5
    assert st["totalKeysExamined"] <= 5 + 10 + 2, st


def test_due_query_excluding_saturated_names_stays_on_claim_order(
    populated: Collection,
) -> None:
    explained = populated.explain_find(
        q.due_filter(populated.now, ["email", "report"]),
        sort=q.CLAIM_SORT,
        limit=DUE + 4,
    )
    assert_index_backed(explained, index="claim_order")
    st = stats(explained)
    assert 0 < st["nReturned"] < DUE
    assert st["totalKeysExamined"] <= DUE + 10 + 2, st


def test_contended_lane_query_stays_on_claim_order(populated: Collection) -> None:
    """Under contention a claim skips to its lane: the skipped jobs cost one key (and one
    fetch) each, nothing more, and nothing is sorted in memory."""
    explained = populated.explain_find(
        q.due_filter(populated.now),
        sort=q.CLAIM_SORT,
        skip=8,
        limit=8,
    )
    assert_index_backed(explained, index="claim_order")
    st = stats(explained)
    assert st["nReturned"] == 8
    assert st["totalKeysExamined"] <= 16 + 10 + 2, st
    assert st["totalDocsExamined"] <= 16, st


def test_due_query_returns_the_global_order(populated: Collection) -> None:
    """The plan's order is the claim order (priority, then due time, then insertion)."""
    cursor = populated.db[populated.name].find(q.due_filter(populated.now)).sort(q.CLAIM_SORT)
    got = [d["_id"] for d in cursor.to_list()]
    docs = populated.db[populated.name].find({"_id": {"$in": populated.due_ids}}).to_list()
    expected = [
        d["_id"] for d in sorted(docs, key=lambda d: (d["priority"], d["nextRunAt"], d["_id"]))
    ]
    assert got == expected


def test_look_ahead_query_reads_only_the_next_poll_window(populated: Collection) -> None:
    """A polling worker's look-ahead (``next_due``) reads claim_order within the window: the
    5,000 future jobs further out and the due ones cost nothing (the small in-memory sort is
    over the window's jobs only)."""
    window = q.upcoming_filter(populated.now, populated.now + timedelta(seconds=1))
    explained = populated.explain_find(window, sort=[("nextRunAt", 1)], limit=1)
    assert_index_backed(explained, index="claim_order", allow_sort=True)
    st = stats(explained)
    # At most a seek and a boundary key per priority value (10 here): nothing proportional to
    # the 5,000 future or 20 due jobs.
    assert st["totalKeysExamined"] <= 2 * 10 + 2, st
    assert st["totalDocsExamined"] <= 2, st


def test_expired_lease_query_uses_lease_expiry_without_sort(populated: Collection) -> None:
    explained = populated.explain_find(
        q.expired_filter(populated.now),
        sort=[("lockUntil", 1)],
        limit=8,
        projection=q.CANDIDATE_PROJECTION,
    )
    assert_index_backed(explained, index="lease_expiry")
    st = stats(explained)
    assert st["nReturned"] == RUNNING_EXPIRED
    # Only expired leases are read (plus one boundary key), not the live ones nor anything else.
    assert st["totalKeysExamined"] <= RUNNING_EXPIRED + 1, st


def test_claim_find_and_modify_targets_one_document_by_id(populated: Collection) -> None:
    for job_id in (populated.due_ids[0], populated.expired_ids[0]):
        explained = populated.explain(
            {
                "findAndModify": populated.name,
                "query": q.claim_filter(job_id),
                "update": q.claim_update("claimer", timedelta(seconds=30)),
                "new": True,
            }
        )
        assert_index_backed(explained, index="_id_")
        st = stats(explained)
        assert st["totalKeysExamined"] <= 1, st
        assert st["totalDocsExamined"] <= 1, st
    # explain did not write anything.
    doc = populated.db[populated.name].find_one({"_id": populated.due_ids[0]})
    assert doc is not None and doc["status"] == "pending"


def test_due_query_for_routed_names_stays_on_claim_order(populated: Collection) -> None:
    """A scheduler without a catch-all handler claims only its names (``name $in``): still the
    claim order index, no sort, and no read of the future or finished jobs."""
    explained = populated.explain_find(
        q.due_filter(populated.now, names=["email", "billing"]),
        sort=q.CLAIM_SORT,
        limit=DUE + 4,
    )
    assert_index_backed(explained, index="claim_order")
    st = stats(explained)
    assert 0 < st["nReturned"] < DUE
    assert st["totalKeysExamined"] <= DUE + 10 + 2, st
    # name is a key of claim_order: only the jobs of those names are fetched.
    assert st["totalDocsExamined"] == st["nReturned"], st


def _batch_claim_filters(populated: Collection, ids: list[ObjectId]) -> list[dict[str, Any]]:
    """The filters a batch claim's ``update_many`` may send for ``ids``: by ids, and (the quick
    path, which does not read the batch back) by ids and each job's ``updatedAt`` as read."""
    docs = {d["_id"]: d for d in populated.db[populated.name].find({"_id": {"$in": ids}})}
    return [
        q.claim_many_filter(ids),
        q.unchanged_filter(q.claim_many_filter(ids), [docs[i] for i in ids]),
    ]


def test_batch_claim_update_many_reads_only_its_ids(populated: Collection) -> None:
    """One ``update_many`` claims a batch: it reads the batch's ids through ``_id_`` (about
    one key per id, whatever else the collection holds) and takes only the claimable ones."""
    claimable = [*populated.due_ids, *populated.expired_ids]
    not_claimable = [*populated.live_ids[:3], populated.completed_ids[0]]
    ids = claimable + not_claimable
    for flt in _batch_claim_filters(populated, ids):
        explained = populated.explain(
            {
                "update": populated.name,
                "updates": [
                    {
                        "q": flt,
                        "u": q.claim_update("batch-claimer", timedelta(seconds=30), ObjectId()),
                        "multi": True,
                    }
                ],
            }
        )
        assert_index_backed(explained, index="_id_")
        st = stats(explained)
        assert len(ids) <= st["totalKeysExamined"] <= len(ids) + 4, st
        assert st["totalDocsExamined"] <= len(ids), st
        update_stage = next(s for s in walk(st["executionStages"]) if s["stage"] == "UPDATE")
        # Due and lease-expired jobs match; live leases and finished jobs do not.
        assert update_stage["nMatched"] == len(claimable), update_stage
    # explain did not write anything.
    doc = populated.db[populated.name].find_one({"_id": populated.due_ids[0]})
    assert doc is not None and doc["status"] == "pending" and "claimId" not in doc


def test_batch_claim_and_bulk_finish_read_backs_use_id_index(populated: Collection) -> None:
    ids = populated.live_ids[:4]
    claim_id = ObjectId()
    for flt, projection in (
        ({"_id": {"$in": ids}, "claimId": claim_id}, None),  # the claimed batch
        ({"_id": {"$in": ids}, "claimId": claim_id}, {"_id": 1}),  # which ones (quick path)
        ({"_id": {"$in": ids}, "claimId": claim_id, "lockedBy": OWNER}, None),
        ({"_id": {"$in": ids}}, q.OUTCOME_PROJECTION),  # which outcomes a bulk write applied
    ):
        explained = populated.explain_find(flt, projection=projection)
        assert_index_backed(explained, index="_id_")
        st = stats(explained)
        assert st["totalKeysExamined"] <= len(ids) + 1, st
        assert st["totalDocsExamined"] <= len(ids), st


# -- heartbeat, completion, release, cancel ---------------------------------------------------


def test_renew_update_reads_only_the_renewed_jobs(populated: Collection) -> None:
    fences = [Fence(job_id, OWNER, 3) for job_id in populated.live_ids[:4]]
    explained = populated.explain(
        {
            "update": populated.name,
            "updates": [
                {
                    "q": q.renew_filter(fences),
                    "u": q.renew_update(timedelta(seconds=30)),
                    "multi": True,
                }
            ],
        }
    )
    # One write renews every lease of the worker, reading one _id key per fence.
    assert_index_backed(explained, index="_id_")
    st = stats(explained)
    assert st["totalKeysExamined"] <= len(fences), st
    assert st["totalDocsExamined"] <= 2 * len(fences), st


def test_renew_fallback_lookup_uses_id_index(populated: Collection) -> None:
    ids = populated.live_ids[:4]
    explained = populated.explain_find(
        {"_id": {"$in": ids}, "status": "running", "lockedBy": OWNER}, projection={"lockVersion": 1}
    )
    assert_index_backed(explained, index="_id_")
    assert stats(explained)["totalKeysExamined"] <= len(ids) + 1


@pytest.mark.parametrize("expect", [None, {"repeat": None}])
def test_fenced_finish_and_release_use_id_index(
    populated: Collection, expect: dict[str, Any] | None
) -> None:
    fence = Fence(populated.live_ids[0], OWNER, 3)
    for update in (q.finish_update({"status": "completed"}, [], DONE), q.release_update()):
        explained = populated.explain(
            {
                "update": populated.name,
                "updates": [{"q": q.fence_filter(fence, expect), "u": update}],
            }
        )
        assert_index_backed(explained, index="_id_")
        st = stats(explained)
        assert st["totalKeysExamined"] <= 1, st
        assert st["totalDocsExamined"] <= 1, st


def test_grouped_finish_reads_only_its_ids(populated: Collection) -> None:
    """Identical outcomes of one owner and token are written by one ``update_many`` over
    their ids: it reads the ``_id`` index, one key per id."""
    ids = populated.live_ids[:3]
    fence = Fence(ids[0], OWNER, 3)
    explained = populated.explain(
        {
            "update": populated.name,
            "updates": [
                {
                    "q": q.fences_filter(ids, fence),
                    "u": q.finish_update({"status": "completed"}, [], DONE),
                    "multi": True,
                }
            ],
        }
    )
    assert_index_backed(explained, index="_id_")
    st = stats(explained)
    assert st["totalKeysExamined"] <= len(ids) + 1, st
    assert st["totalDocsExamined"] <= len(ids), st


def test_cancel_and_update_job_use_id_index(populated: Collection) -> None:
    job_id = populated.due_ids[-1]
    for update in (
        q.cancel_update(),
        {"$set": {"data": {"x": 1}}, "$currentDate": {"updatedAt": True}},
    ):
        explained = populated.explain(
            {
                "findAndModify": populated.name,
                "query": {"_id": job_id, "status": {"$in": ["pending", "running"]}},
                "update": update,
                "new": True,
            }
        )
        assert_index_backed(explained, index="_id_")
        assert stats(explained)["totalKeysExamined"] <= 1


def test_get_job_uses_id_index(populated: Collection) -> None:
    explained = populated.explain_find({"_id": populated.completed_ids[0]}, limit=1)
    assert_index_backed(explained, index="_id_")
    assert stats(explained)["totalDocsExamined"] == 1


# -- listing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status"),
    [("report", None), ("report", "failed"), ("billing", ["pending", "running"])],
)
def test_get_jobs_by_name_uses_by_name_index(populated: Collection, name: str, status: Any) -> None:
    query = build_query(name=name, status=status, limit=10)
    explained = populated.explain_find(
        query.to_filter(),
        sort=[(query.sort_field, query.sort_direction), ("_id", query.sort_direction)],
        limit=query.limit,
    )
    # Listing is an admin path: a bounded top-k sort after the index read is acceptable.
    stages = assert_index_backed(explained, index="by_name", allow_sort=True)
    scans = [s for s in stages if s.get("indexName") == "by_name"]
    bounds = scans[0].get("indexBounds", {})
    if bounds:
        assert bounds["name"] == [f'["{name}", "{name}"]'], bounds
    # Only jobs of that name are read (the other names' thousands of jobs are never touched).
    st = stats(explained)
    assert st["nReturned"] == 10
    of_name = populated.db[populated.name].count_documents({"name": name})
    assert of_name > 1_000
    assert st["totalDocsExamined"] <= of_name, st
    assert st["totalKeysExamined"] <= of_name + 1, st


# -- fleet view -------------------------------------------------------------------------------


@pytest.mark.parametrize("head", [5, None])
def test_due_by_name_reads_only_due_jobs_from_claim_order(
    populated: Collection, head: int | None
) -> None:
    """The count of due jobs by name (the unhandled-names check reads the first ``head`` of
    them; ``stats`` reads all) walks the due part of ``claim_order``, nothing else."""
    explained = populated.explain(
        {
            "aggregate": populated.name,
            "pipeline": q.due_by_name_pipeline(populated.now, head),
            "cursor": {},
        }
    )
    assert "claim_order" in index_names(list(walk(explained))), explained
    assert not {"COLLSCAN", "FETCH"} & set(stage_names(list(walk(explained))))
    keys = stats(explained)["totalKeysExamined"]
    assert (head or DUE) <= keys <= (head or DUE) + 10 + 2, explained
    assert stats(explained)["totalDocsExamined"] == 0, explained


def test_the_due_count_and_the_oldest_due_job_read_claim_order_keys_only(
    populated: Collection,
) -> None:
    """``stats()``' due count and oldest due job: ``status`` and ``name`` are keys of
    ``claim_order``, so no document is fetched (one key per due job)."""
    flt = q.due_filter(populated.now)
    count = populated.explain({"count": populated.name, "query": flt})
    oldest = populated.explain_find(
        flt, sort=q.OLDEST_DUE_SORT, limit=1, projection=q.OLDEST_DUE_PROJECTION
    )
    for explained in (count, oldest):
        stages = winning_stages(explained)
        assert index_names(stages) == {"claim_order"}, stage_names(stages)
        assert not {"COLLSCAN", "FETCH"} & set(stage_names(stages)), stage_names(stages)
        st = stats(explained)
        assert st["totalDocsExamined"] == 0, st
        assert DUE <= st["totalKeysExamined"] <= DUE + 10 + 2, st


# -- operator reads ---------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "read"), [(THROUGHPUT_READ_LIMIT, RECENT), (10, 10)])
def test_throughput_reads_the_finished_index_within_its_window_only(
    populated: Collection, limit: int, read: int
) -> None:
    """The jobs finished in the last hour, by minute and status: index keys only (no document
    is fetched), one per job in the window (at most ``limit``), none for the 4,900 jobs that
    finished a day ago or the active ones."""
    since = populated.now - timedelta(hours=1)
    explained = populated.explain(
        {
            "aggregate": populated.name,
            "pipeline": q.finished_per_minute_pipeline(since, limit),
            "cursor": {},
        }
    )
    stages = list(walk(explained))
    assert "finished" in index_names(stages), explained
    assert not {"COLLSCAN", "FETCH", "SORT"} & set(stage_names(stages)), stage_names(stages)
    st = stats(explained)
    assert st["totalDocsExamined"] == 0, st
    # One key per job read, plus at most a boundary key per finished status.
    assert read <= st["totalKeysExamined"] <= read + 3, st
    rows = populated.db[populated.name].aggregate(q.finished_per_minute_pipeline(since, limit))
    assert sum(row["n"] for row in rows) == read


def test_failures_of_the_last_hour_are_counted_from_the_finished_index(
    populated: Collection,
) -> None:
    explained = populated.explain(
        {"count": populated.name, "query": q.failed_since_filter(populated.now)}
    )
    stages = winning_stages(explained)
    assert "finished" in index_names(stages), stage_names(stages)
    assert "COLLSCAN" not in stage_names(stages)
    st = stats(explained)
    assert st["totalDocsExamined"] == 0, st
    assert st["totalKeysExamined"] <= RECENT // 2 + 1, st


def test_purge_reads_the_finished_index(populated: Collection) -> None:
    before = populated.now - timedelta(hours=1)
    explained = populated.explain(
        {
            "delete": populated.name,
            "deletes": [{"q": q.finished_before_filter(before, ["completed"]), "limit": 0}],
        }
    )
    stages = winning_stages(explained)
    assert "finished" in index_names(stages), stage_names(stages)
    assert "COLLSCAN" not in stage_names(stages)
    st = stats(explained)
    old_completed = (FINISHED - RECENT) // 2
    assert old_completed <= st["totalKeysExamined"] <= old_completed + 1, st
    untouched = FINISHED + FUTURE + RUNNING_LIVE + RUNNING_EXPIRED + DUE + WAITING
    assert populated.db[populated.name].count_documents({}) == untouched


def test_job_names_read_one_key_per_name(populated: Collection) -> None:
    explained = populated.explain(
        {"aggregate": populated.name, "pipeline": q.job_names_pipeline(1000), "cursor": {}}
    )
    stages = list(walk(explained))
    assert "DISTINCT_SCAN" in stage_names(stages), stage_names(stages)
    assert index_names(stages) == {"by_name"}
    assert "COLLSCAN" not in stage_names(stages) and "FETCH" not in stage_names(stages)
    st = stats(explained)
    assert st["totalDocsExamined"] == 0, st
    assert st["totalKeysExamined"] <= len(NAMES) + 1, st


@pytest.mark.parametrize(
    ("status", "index", "present"),
    [
        ("pending", "claim_order", FUTURE + DUE),
        ("running", "lease_expiry", RUNNING_LIVE + RUNNING_EXPIRED),
        ("waiting", "waiting", WAITING),
    ],
)
@pytest.mark.parametrize("limit", [10, 10_000])
def test_activity_reads_at_most_its_limit_of_each_active_status(
    populated: Collection, status: str, index: str, present: int, limit: int
) -> None:
    """The count by name of the first ``limit`` jobs of an active status walks that status's
    partial index in its order and stops at the limit, never scanning the collection or
    sorting; pending and waiting jobs are counted from the keys alone (no document)."""
    explained = populated.explain(
        {
            "aggregate": populated.name,
            "pipeline": q.active_by_name_pipeline(status, limit),
            "cursor": {},
        }
    )
    stages = list(walk(explained))
    names = set(stage_names(stages))
    assert index_names(stages) == {index}, stage_names(stages)
    assert not {"COLLSCAN", "SORT"} & names, stage_names(stages)
    read = min(limit, present)
    st = stats(explained)
    assert read <= st["totalKeysExamined"] <= read + 1, st
    if status == "running":  # fetched, one document per key: running jobs are few
        assert st["totalDocsExamined"] <= read, st
    else:
        assert "FETCH" not in names and st["totalDocsExamined"] == 0, stage_names(stages)
    rows = populated.db[populated.name].aggregate(q.active_by_name_pipeline(status, limit))
    assert sum(row["n"] for row in rows) == read


@pytest.mark.parametrize("status", ["completed", "failed"])
@pytest.mark.parametrize(("limit", "read"), [(THROUGHPUT_READ_LIMIT, RECENT // 2), (10, 10)])
def test_activity_counts_the_finished_jobs_of_its_window_from_the_finished_keys(
    populated: Collection, status: str, limit: int, read: int
) -> None:
    """The jobs of a finished status in the window, by name: one backward scan of that
    status's range of ``finished`` keys, one key per job in the window (at most ``limit``,
    the newest), no document, none of the jobs that finished a day ago."""
    since = populated.now - timedelta(hours=1)
    pipeline = q.finished_by_name_pipeline(status, since, limit)
    explained = populated.explain({"aggregate": populated.name, "pipeline": pipeline, "cursor": {}})
    stages = list(walk(explained))
    assert index_names(stages) == {"finished"}, stage_names(stages)
    names = set(stage_names(stages))
    assert not {"COLLSCAN", "FETCH", "SORT", "SORT_MERGE"} & names, stage_names(stages)
    st = stats(explained)
    assert st["totalDocsExamined"] == 0, st
    assert read <= st["totalKeysExamined"] <= read + 1, st
    rows = list(populated.db[populated.name].aggregate(pipeline))
    assert sum(row["n"] for row in rows) == read
    assert {row["_id"] for row in rows} <= set(NAMES)


def test_activity_examines_a_bounded_number_of_keys_in_all(populated: Collection) -> None:
    """The whole activity read with small limits examines about seven limits' worth of keys
    (one per status, and the due jobs) and the running jobs' documents, whatever else the
    collection holds."""
    limit = 7
    since = populated.now - timedelta(hours=1)
    pipelines = [q.active_by_name_pipeline(status, limit) for status in q.ACTIVE_READS]
    pipelines += [q.finished_by_name_pipeline(s, since, limit) for s in FINISHED_STATUSES]
    pipelines.append(q.due_by_name_pipeline(populated.now, limit))
    keys = docs = 0
    for pipeline in pipelines:
        explained = populated.explain(
            {"aggregate": populated.name, "pipeline": pipeline, "cursor": {}}
        )
        assert "COLLSCAN" not in stage_names(list(walk(explained)))
        st = stats(explained)
        keys += st["totalKeysExamined"]
        docs += st["totalDocsExamined"]
    # Seven reads of at most the limit and a boundary key each, and the due read's boundary
    # keys of each priority.
    assert keys <= 7 * (limit + 1) + 10 + 2, keys
    assert docs <= limit, docs  # the running jobs' documents only


# -- the dashboard's job list ---------------------------------------------------------------------

LIST_ORDERS = [
    (None, [], "createdAt", "_id_"),
    ("report", [], "createdAt", "by_name"),
    (None, [], "name", "by_name"),
    (None, ["pending"], "priority", "claim_order"),
    (None, ["failed"], "updatedAt", "finished"),
    (None, ["completed", "failed", "cancelled"], "updatedAt", "finished"),
]
"""Each order the dashboard's job list offers, with the filter it needs and the index that
keeps it."""


def test_the_list_orders_cover_every_sortable_column() -> None:
    assert {key for _, _, key, _ in LIST_ORDERS} == {column.key for column in LIST_SORTS}


@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize(("name", "statuses", "key", "index"), LIST_ORDERS)
def test_every_order_the_job_list_offers_is_kept_by_an_index(
    populated: Collection,
    name: str | None,
    statuses: list[str],
    key: str,
    index: str,
    direction: str,
) -> None:
    """A page of the list (51 jobs: 50 and one to know there is a next page) reads about 51
    keys and documents in the index's order, never sorting the matching jobs in memory."""
    sort = list_sort(key, direction, name, statuses)
    query = build_query(name=name, status=statuses or None, sort=sort, limit=51)
    explained = populated.explain_find(query.to_filter(), sort=q.find_sort(query), limit=51)
    assert_index_backed(explained, index=index)
    st = stats(explained)
    assert st["nReturned"] == 51
    assert st["totalKeysExamined"] <= 51 + 3, st
    assert st["totalDocsExamined"] <= 51, st
