"""What the dashboard's overview and job list cost over a large collection.

Fills a collection with ``--jobs`` jobs (by default 1,000,000 over ``--names`` names:
``--recent`` finished within the last hour, as many pending later, ``--due`` pending and due,
``--running`` running and ``--waiting`` waiting for a dependency, the rest finished a day ago)
with the library's indexes, then times ``Scheduler.throughput()``, ``Scheduler.job_names()``,
``Scheduler.stats()``, ``Scheduler.activity()`` (and each of its reads), the overview and the
workers page of the dashboard (``GET /partials/overview``, ``/partials/workers``: every read
of a refresh, rendering included) and the first page of the job list in each order the
dashboard offers, ``--repeat`` times each (the median is printed), with the keys and documents
each read examined (``explain``; summed over the reads of a call made of several).

    python bench/operator_reads.py --uri mongodb://127.0.0.1:27017/?directConnection=true

Without ``--uri`` it starts a throwaway ``mongod`` (the ``mongod`` extra). The database
``mjs_bench_operator_reads`` is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bson import ObjectId
from bson.codec_options import CodecOptions, DatetimeConversion
from pymongo import AsyncMongoClient, MongoClient

from mongo_job_scheduler import MongoJobStore, Scheduler
from mongo_job_scheduler._documents import build_query
from mongo_job_scheduler._mongod import LocalMongod
from mongo_job_scheduler.job import FINISHED_STATUSES
from mongo_job_scheduler.stats import ACTIVITY_READ_LIMIT, THROUGHPUT_READ_LIMIT
from mongo_job_scheduler.stores import _mongo_common as q

DB = "mjs_bench_operator_reads"
STATUSES = ("completed", "completed", "completed", "failed", "cancelled")


@dataclass(frozen=True)
class Mix:
    """How many jobs of each kind the collection holds (the rest finished a day ago)."""

    jobs: int
    recent: int
    due: int
    running: int
    waiting: int
    names: int


def fill(uri: str, mix: Mix) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    client.drop_database(DB)
    collection = client[DB][q.DEFAULT_COLLECTION]
    collection.create_indexes(q.JOB_INDEXES)
    now = client.admin.command("hello")["localTime"]
    recent, due, running, waiting = mix.recent, mix.due, mix.running, mix.waiting
    batch: list[dict[str, Any]] = []
    for i in range(mix.jobs):
        extra: dict[str, Any] = {}
        if i < recent:  # finished within the hour
            status, at = STATUSES[i % len(STATUSES)], now - timedelta(seconds=i * 3600 / recent)
        elif i < 2 * recent:  # pending, due later
            status, at = "pending", now + timedelta(minutes=i % 600)
        elif (k := i - 2 * recent) < due:  # pending, due within the last half hour
            status, at = "pending", now - timedelta(seconds=1 + k % 1800)
        elif (k := k - due) < running:  # running, its lease live
            status, at = "running", now - timedelta(seconds=1 + k % 60)
            extra = {"lockedBy": "bench", "lockUntil": now + timedelta(minutes=5)}
        elif k - running < waiting:  # waiting for a dependency
            status, at = "waiting", now - timedelta(minutes=5)
        else:  # finished a day ago or more
            status, at = STATUSES[i % len(STATUSES)], now - timedelta(days=1, seconds=i)
        due_at = at if status == "pending" else at - timedelta(seconds=2 + i % 30)
        batch.append(
            {
                "_id": ObjectId(),
                "name": f"job-{i % mix.names}",
                "status": status,
                "priority": 1 + i % 10,
                "data": {"i": i},
                "createdAt": due_at,
                "updatedAt": at,
                "nextRunAt": due_at,
                "lastRunAt": None if status == "pending" else at - timedelta(seconds=1),
                "attempts": 0,
                **extra,
            }
        )
        if len(batch) == 10_000:
            collection.insert_many(batch, ordered=False)
            batch = []
    if batch:
        collection.insert_many(batch, ordered=False)
    client.close()


def examined(uri: str, command: dict[str, Any]) -> tuple[int, int]:
    """Keys and documents the query part of ``command`` examined."""
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    codec = CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_AUTO)
    try:
        explained = client[DB].command(
            "explain", command, verbosity="executionStats", codec_options=codec
        )
    finally:
        client.close()
    if "executionStats" not in explained:
        explained = explained["stages"][0]["$cursor"]
    stats = explained["executionStats"]
    return int(stats["totalKeysExamined"]), int(stats["totalDocsExamined"])


async def timed(call: Callable[[], Awaitable[Any]], repeat: int) -> float:
    await call()  # warm the cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


Read = tuple[str, Callable[[], Awaitable[Any]], list[dict[str, Any]]]
"""A row of the table: its label, the call timed, and the commands whose plans it runs."""


def aggregate(pipeline: list[dict[str, Any]]) -> dict[str, Any]:
    return {"aggregate": q.DEFAULT_COLLECTION, "pipeline": pipeline, "cursor": {}}


def operator_reads(scheduler: Scheduler, now: Any) -> list[Read]:
    """The operator calls, each with the commands it sends to the jobs collection."""
    since = now.replace(second=0, microsecond=0) - timedelta(minutes=59)
    due = q.due_by_name_pipeline(now, ACTIVITY_READ_LIMIT)
    by_status = {s: q.active_by_name_pipeline(s, ACTIVITY_READ_LIMIT) for s in q.ACTIVE_READS}
    for status in FINISHED_STATUSES:
        by_status[status] = q.finished_by_name_pipeline(status, since, THROUGHPUT_READ_LIMIT)
    reads: list[Read] = [
        (
            "throughput() (last hour)",
            lambda: scheduler.throughput(),
            [aggregate(q.finished_per_minute_pipeline(since, THROUGHPUT_READ_LIMIT))],
        ),
        ("job_names()", lambda: scheduler.job_names(), [aggregate(q.job_names_pipeline(1000))]),
        (
            "stats() (group by name and status)",
            lambda: scheduler.stats(),
            [aggregate(q.COUNT_BY_NAME_AND_STATUS)],
        ),
        (
            "activity() (last hour; its seven reads)",
            lambda: scheduler.activity(),
            [*(aggregate(p) for p in by_status.values()), aggregate(due)],
        ),
    ]
    parts = [(f"{status} by name", pipeline) for status, pipeline in by_status.items()]
    parts.append(("due by name", due))
    for label, pipeline in parts:
        read = _store_read(scheduler, pipeline)
        reads.append((f"activity: {label}", read, [aggregate(pipeline)]))
    return reads


def _store_read(scheduler: Scheduler, pipeline: list[dict[str, Any]]) -> Callable[[], Any]:
    async def read() -> Any:
        store = scheduler.store
        assert isinstance(store, MongoJobStore)
        return await (await store.jobs.aggregate(pipeline)).to_list()

    return read


def page_reads(scheduler: Scheduler) -> list[Read]:
    """The dashboard's overview and workers page, each refresh as the browser asks for it."""
    import httpx

    from mongo_job_scheduler.dashboard import create_app

    token = "bench-operator-reads-token"
    app = create_app(scheduler, token=token)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://dashboard",
        headers={"Authorization": f"Bearer {token}"},
    )

    def get(path: str) -> Callable[[], Awaitable[Any]]:
        async def call() -> Any:
            response = await client.get(path)
            assert response.status_code == 200, response.text[:200]

        return call

    return [
        ("dashboard overview (GET /partials/overview)", get("/partials/overview"), []),
        ("dashboard workers page (GET /partials/workers)", get("/partials/workers"), []),
    ]


def list_reads(scheduler: Scheduler) -> list[Read]:
    """The first page of the job list in each order the dashboard offers."""
    orders: list[tuple[str, dict[str, Any]]] = [
        ("list: newest first (_id)", {"sort": ("_id", "desc")}),
        ("list: one name, newest first", {"name": "job-7", "sort": ("createdAt", "desc")}),
        ("list: by name", {"sort": ("name", "asc")}),
        ("list: pending by priority", {"status": "pending", "sort": ("priority", "asc")}),
        ("list: failed, last updated first", {"status": "failed", "sort": ("updatedAt", "desc")}),
    ]
    reads: list[Read] = []
    for label, kwargs in orders:
        query = build_query(limit=51, **kwargs)

        def page(kwargs: dict[str, Any] = kwargs) -> Awaitable[Any]:
            return scheduler.get_jobs(limit=51, **kwargs)

        command = {
            "find": q.DEFAULT_COLLECTION,
            "filter": query.to_filter(),
            "sort": dict(q.find_sort(query)),
            "limit": 51,
        }
        reads.append((label, page, [command]))
    return reads


async def measure(uri: str, repeat: int) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    scheduler = Scheduler(MongoJobStore(client[DB]))
    now = await scheduler.store.now()  # type: ignore[union-attr]
    reads = [*operator_reads(scheduler, now), *page_reads(scheduler), *list_reads(scheduler)]
    print(f"| read | median ms ({repeat} runs) | keys examined | documents examined |")
    print("| --- | --- | --- | --- |")
    for label, call, commands in reads:
        ms = await timed(call, repeat)
        if not commands:
            print(f"| {label} | {ms:,.1f} | | |")
            continue
        keys = docs = 0
        for command in commands:
            k, d = examined(uri, command)
            keys, docs = keys + k, docs + d
        print(f"| {label} | {ms:,.1f} | {keys:,} | {docs:,} |")
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--recent", type=int, default=30_000)
    parser.add_argument("--due", type=int, default=5_000)
    parser.add_argument("--running", type=int, default=500)
    parser.add_argument("--waiting", type=int, default=2_000)
    parser.add_argument("--names", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    mix = Mix(args.jobs, args.recent, args.due, args.running, args.waiting, args.names)
    server = None
    uri = args.uri
    if uri is None:
        server = LocalMongod(cache_size_gb=1)
        uri = server.start()
    try:
        started = time.perf_counter()
        fill(uri, mix)
        print(f"filled {args.jobs:,} jobs in {time.perf_counter() - started:.0f} s\n")
        asyncio.run(measure(uri, args.repeat))
    finally:
        MongoClient(uri).drop_database(DB)
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
