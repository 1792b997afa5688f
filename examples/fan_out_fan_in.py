"""Fan-out / fan-in: a job splits a book into chapters, one job counts the words of each
chapter (in parallel, on any worker), and a last job adds the counts up once every chapter is
done. The split creates the chapter jobs and the job that waits for them in one transaction,
so either all of them exist or none does.

Run it against a MongoDB replica set (transactions need one)::

    MONGODB_URI=mongodb://localhost:27017/?replicaSet=rs0 python examples/fan_out_fan_in.py
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pymongo import AsyncMongoClient

from mongo_job_scheduler import Job, MongoJobStore, Scheduler

BOOK = [
    "It was the best of times, it was the worst of times.",
    "It was the age of wisdom, it was the age of foolishness.",
    "It was the epoch of belief, it was the epoch of incredulity.",
]


async def main(uri: str, database: str = "fan-out-fan-in-example") -> int:
    """Count the words of :data:`BOOK` through a fan-out / fan-in; returns the total."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    scheduler = Scheduler(MongoJobStore(client[database]), workers=4, poll_interval=0.1)

    @scheduler.task("count-words")
    async def count_words(job: Job) -> int:
        return len(job.data["text"].split())

    # --8<-- [start:add-up]
    @scheduler.task("add-up")
    async def add_up(job: Job) -> int:
        # The results of every job it waited for, in one round trip.
        chapters = await scheduler.get_jobs(ids=job.depends_on)
        return sum(chapter.result for chapter in chapters)

    # --8<-- [end:add-up]
    # --8<-- [start:split]
    @scheduler.task("split")
    async def split(job: Job) -> str:
        async with client.start_session() as session, await session.start_transaction():
            chapters = await count_words.schedule_bulk(
                [{"data": {"text": text}} for text in job.data["book"]], session=session
            )
            total = await add_up.schedule(depends_on=chapters, session=session)
        return str(total.id)

    # --8<-- [end:split]

    try:
        async with scheduler:
            book = await split.schedule({"book": BOOK})
            split_done = await scheduler.wait(book.id, timeout=30)
            total = await scheduler.wait(split_done.result, timeout=30)
            return int(total.result)
    finally:
        await client.drop_database(database)
        await client.close()


if __name__ == "__main__":
    print("words:", asyncio.run(main(os.environ.get("MONGODB_URI", "mongodb://localhost:27017"))))
