"""What the dashboard's overview and job list cost over a large collection.

Fills a collection with ``--jobs`` jobs (by default 1,000,000: ``--recent`` finished within
the last hour, as many pending, the rest finished a day ago, over ``--names`` names) with the
library's indexes, then times ``Scheduler.throughput()``, ``Scheduler.job_names()``,
``Scheduler.stats()`` and the first page of the job list in each order the dashboard offers,
``--repeat`` times each (the median is printed), with the keys and documents each read
examined (``explain``).

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
from datetime import timedelta
from typing import Any

from bson import ObjectId
from bson.codec_options import CodecOptions, DatetimeConversion
from pymongo import AsyncMongoClient, MongoClient

from mongo_job_scheduler import MongoJobStore, Scheduler
from mongo_job_scheduler._documents import build_query
from mongo_job_scheduler._mongod import LocalMongod
from mongo_job_scheduler.stats import THROUGHPUT_READ_LIMIT
from mongo_job_scheduler.stores import _mongo_common as q

DB = "mjs_bench_operator_reads"
STATUSES = ("completed", "completed", "completed", "failed", "cancelled")


def fill(uri: str, jobs: int, recent: int, names: int) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    client.drop_database(DB)
    collection = client[DB][q.DEFAULT_COLLECTION]
    collection.create_indexes(q.JOB_INDEXES)
    now = client.admin.command("hello")["localTime"]
    batch: list[dict[str, Any]] = []
    for i in range(jobs):
        if i < recent:  # finished within the hour
            status, at = STATUSES[i % len(STATUSES)], now - timedelta(seconds=i * 3600 / recent)
        elif i < 2 * recent:  # pending, due later
            status, at = "pending", now + timedelta(minutes=i % 600)
        else:  # finished a day ago or more
            status, at = STATUSES[i % len(STATUSES)], now - timedelta(days=1, seconds=i)
        due = at - timedelta(seconds=2 + i % 30)
        batch.append(
            {
                "_id": ObjectId(),
                "name": f"job-{i % names}",
                "status": status,
                "priority": 1 + i % 10,
                "data": {"i": i},
                "createdAt": due,
                "updatedAt": at,
                "nextRunAt": due,
                "lastRunAt": None if status == "pending" else at - timedelta(seconds=1),
                "attempts": 0,
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


async def measure(uri: str, repeat: int, recent: int) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    scheduler = Scheduler(MongoJobStore(client[DB]))
    now = await scheduler.store.now()  # type: ignore[union-attr]
    orders: list[tuple[str, dict[str, Any]]] = [
        ("list: newest first (_id)", {"sort": ("_id", "desc")}),
        ("list: one name, newest first", {"name": "job-7", "sort": ("createdAt", "desc")}),
        ("list: by name", {"sort": ("name", "asc")}),
        ("list: pending by priority", {"status": "pending", "sort": ("priority", "asc")}),
        ("list: failed, last updated first", {"status": "failed", "sort": ("updatedAt", "desc")}),
    ]
    since = now.replace(second=0, microsecond=0) - timedelta(minutes=59)
    reads: list[tuple[str, Callable[[], Awaitable[Any]], dict[str, Any]]] = [
        (
            "throughput() (last hour)",
            lambda: scheduler.throughput(),
            {
                "aggregate": q.DEFAULT_COLLECTION,
                "pipeline": q.finished_per_minute_pipeline(since, THROUGHPUT_READ_LIMIT),
                "cursor": {},
            },
        ),
        (
            "job_names()",
            lambda: scheduler.job_names(),
            {
                "aggregate": q.DEFAULT_COLLECTION,
                "pipeline": q.job_names_pipeline(1000),
                "cursor": {},
            },
        ),
        (
            "stats() (group by name and status)",
            lambda: scheduler.stats(),
            {
                "aggregate": q.DEFAULT_COLLECTION,
                "pipeline": q.COUNT_BY_NAME_AND_STATUS,
                "cursor": {},
            },
        ),
    ]
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
        reads.append((label, page, command))
    print(f"| read | median ms ({repeat} runs) | keys examined | documents examined |")
    print("| --- | --- | --- | --- |")
    for label, call, command in reads:
        ms = await timed(call, repeat)
        keys, docs = examined(uri, command)
        print(f"| {label} | {ms:,.1f} | {keys:,} | {docs:,} |")
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--recent", type=int, default=30_000)
    parser.add_argument("--names", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    server = None
    uri = args.uri
    if uri is None:
        server = LocalMongod(cache_size_gb=1)
        uri = server.start()
    try:
        started = time.perf_counter()
        fill(uri, args.jobs, args.recent, args.names)
        print(f"filled {args.jobs:,} jobs in {time.perf_counter() - started:.0f} s\n")
        asyncio.run(measure(uri, args.repeat, args.recent))
    finally:
        MongoClient(uri).drop_database(DB)
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
