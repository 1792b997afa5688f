"""Flask: the web app only enqueues; a separate worker process runs the jobs. The app factory
gives each app one blocking scheduler (the ``sync`` facade, on one connection pool) for the
views, and the worker is the library's command on the tasks in :mod:`flask_app.tasks`.

Run it from ``examples/``; both processes find the jobs in the database MONGODB_URI names::

    pip install mongo-job-scheduler flask
    export MONGODB_URI=mongodb://localhost:27017/flask-example
    mongo-job-scheduler worker flask_app.tasks:scheduler &     # the worker (SIGTERM stops it)
    flask --app flask_app run                                  # the web app, on port 5000
    curl -X POST localhost:5000/signups -H 'content-type: application/json' \\
         -d '{"email": "ada@example.com"}'                    # {"id": "665f1c2e8b3a4d0012ab34cd"}
    curl localhost:5000/jobs/665f1c2e8b3a4d0012ab34cd         # {"status": "completed", ...}
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from flask import Blueprint, Flask, current_app, request
from pymongo import MongoClient

from mongo_job_scheduler import ValidationError, sync

from .tasks import send_welcome_email

jobs = Blueprint("jobs", __name__)


def create_app(mongodb_uri: str | None = None) -> Flask:
    app = Flask(__name__)
    uri = mongodb_uri or os.environ.get("MONGODB_URI", "mongodb://localhost:27017/flask-example")
    # One client per app, for the life of the process (it is a pool: not closed per request).
    # connect=False: no connection before a server such as gunicorn forks its workers.
    client: MongoClient[dict[str, Any]] = MongoClient(uri, connect=False)
    atexit.register(client.close)
    store = sync.MongoJobStore(client.get_default_database())  # the worker's database too
    app.extensions["job_scheduler"] = sync.Scheduler(store)
    app.register_blueprint(jobs)
    return app


def producer() -> sync.Scheduler:
    scheduler: sync.Scheduler = current_app.extensions["job_scheduler"]
    return scheduler


@jobs.post("/signups")
def sign_up() -> tuple[dict[str, str], int]:
    email = request.get_json()["email"]
    # ... create the account, then welcome the user in the background, once:
    job = producer().schedule(
        send_welcome_email.name, {"email": email}, dedupe_key=f"welcome:{email}"
    )
    return {"id": str(job.id)}, 202


@jobs.get("/jobs/<job_id>")
def job_status(job_id: str) -> tuple[dict[str, Any], int]:
    try:
        job = producer().get_job(job_id)
    except ValidationError:  # not a job id
        job = None
    if job is None:
        return {"error": "no such job"}, 404
    return {"status": job.status.value, "result": job.result, "error": job.last_error}, 200
