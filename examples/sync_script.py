"""A plain script with the blocking API (``mongo_job_scheduler.sync``): no event loop, no
worker. It schedules a one-off job, a delayed one and a cron job in a time zone (with a dedupe
key, so running the script again reuses it), lists the jobs, cancels one and prints the counts.
The jobs wait in MongoDB for workers (``mongo-job-scheduler worker myapp.tasks:scheduler``).

Run it (the jobs go to the database MONGODB_URI names, else ``sync-script-example``)::

    MONGODB_URI=mongodb://localhost:27017/sync-script-example python examples/sync_script.py
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from pymongo import MongoClient

from mongo_job_scheduler.sync import MongoJobStore, Scheduler

REPORT = {"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"}  # 9:00 Paris time, Mon-Fri


def main(uri: str) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    with client:
        jobs = Scheduler(MongoJobStore(client.get_default_database("sync-script-example")))

        jobs.schedule("send-email", {"to": "ada@example.com"})
        later = jobs.schedule("send-email", {"to": "grace@example.com"}, delay=timedelta(hours=1))
        report = jobs.schedule("daily-report", repeat=REPORT, dedupe_key="daily-report")
        # While that job is active, the same dedupe key returns it instead of a second one.
        again = jobs.schedule("daily-report", repeat=REPORT, dedupe_key="daily-report")
        print(f"daily-report scheduled once: {again.id == report.id}")

        for job in jobs.get_jobs(sort=("createdAt", "asc"), limit=20):
            due = f"{job.next_run_at:%Y-%m-%d %H:%M} UTC" if job.next_run_at else "-"
            print(f"{job.id}  {job.name:<12}  {job.status.value:<9}  next run {due}")

        print(f"cancelled {later.id}: {jobs.cancel(later.id)}")
        counts = {status: n for status, n in jobs.stats().by_status.items() if n}
        print(f"jobs by status: {counts}")


if __name__ == "__main__":
    main(os.environ.get("MONGODB_URI", "mongodb://localhost:27017"))
