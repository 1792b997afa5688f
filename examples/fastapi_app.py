"""FastAPI: the scheduler runs inside the web app. The app's lifespan starts the workers with
the app and stops them gracefully with it (running jobs finish, or are handed back to another
worker after 30 s); one route enqueues a job and returns its id, another reads its status.

Run it (the jobs go to the database MONGODB_URI names, else ``fastapi-example``)::

    pip install mongo-job-scheduler fastapi uvicorn
    export MONGODB_URI=mongodb://localhost:27017/fastapi-example
    uvicorn fastapi_app:app --app-dir examples
    curl -X POST localhost:8000/documents -H 'content-type: application/json' \\
         -d '{"text": "to be or not to be"}'           # {"id": "665f1c2e8b3a4d0012ab34cd"}
    curl localhost:8000/jobs/665f1c2e8b3a4d0012ab34cd  # {"status": "completed", "result": ...}
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from pymongo import AsyncMongoClient

from mongo_job_scheduler import Job, MongoJobStore, Scheduler, ValidationError

# Tasks are registered at import time; the store is given in the lifespan, on the app's loop.
scheduler = Scheduler(workers=4)


@scheduler.task("count-words", retry=3)
async def count_words(job: Job) -> dict[str, int]:
    return {"words": len(job.data["text"].split())}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    uri = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    scheduler.configure(store=MongoJobStore(client.get_default_database("fastapi-example")))
    try:
        async with scheduler:  # start(); on shutdown, stop(graceful=True)
            yield
    finally:
        await client.close()


app = FastAPI(lifespan=lifespan)


class Document(BaseModel):
    text: str


@app.post("/documents", status_code=202)
async def submit_document(document: Document) -> dict[str, str]:
    job = await count_words.schedule({"text": document.text})
    return {"id": str(job.id)}


@app.get("/jobs/{job_id}")
async def job_status(job_id: str) -> dict[str, Any]:
    try:
        job = await scheduler.get_job(job_id)
    except ValidationError:  # not a job id
        job = None
    if job is None:
        raise HTTPException(status_code=404, detail="no such job")
    return {"id": job_id, "status": job.status.value, "result": job.result, "error": job.last_error}
