"""The worker's side of the Flask app: its tasks, on an asyncio ``Scheduler`` without a store.
The worker command gives it a store on MONGODB_URI's database and runs it until SIGTERM::

    mongo-job-scheduler worker flask_app.tasks:scheduler
"""

from __future__ import annotations

from mongo_job_scheduler import Job, Scheduler

scheduler = Scheduler(workers=4)


@scheduler.task("send-welcome-email", retry={"maxAttempts": 5, "delay": 10})
def send_welcome_email(job: Job) -> dict[str, str]:
    # A plain function runs in a worker thread: call your (blocking) mail API here.
    return {"sent_to": job.data["email"], "subject": "Welcome!"}
