"""A pytest suite for an app's jobs, on the plugin ``mongo_job_scheduler.testing``: each test
gets a scheduler on a fresh database, schedules, runs every due job with ``drain()`` and
asserts on the outcome. No sleeps, no mocks of MongoDB.

Run it (the plugin starts a throwaway mongod, unless MONGODB_URI names a server)::

    pip install 'mongo-job-scheduler[mongod]' pytest pytest-asyncio
    pytest examples/pytest_suite
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from signup import Outbox

from mongo_job_scheduler import JobStatus, Scheduler
from mongo_job_scheduler.testing import drain


async def test_welcome_now_and_a_reminder_three_days_later(
    scheduler: Scheduler, outbox: Outbox
) -> None:
    await scheduler.schedule("welcome-email", {"email": "ada@example.com"})

    [welcome] = await drain(scheduler)  # runs what is due: the welcome email only
    assert welcome.status is JobStatus.COMPLETED
    assert outbox.sent == [("ada@example.com", "Welcome!")]
    [reminder] = await scheduler.get_jobs(name="reminder-email")
    assert reminder.status is JobStatus.PENDING
    assert reminder.next_run_at is not None
    assert reminder.next_run_at > datetime.now(timezone.utc) + timedelta(days=2)

    [ran] = await drain(scheduler, include_future=True)  # fast-forward to the reminder
    assert ran.id == reminder.id and ran.status is JobStatus.COMPLETED
    assert outbox.sent[-1] == ("ada@example.com", "Anything we can help with?")


async def test_welcome_is_retried_while_the_mail_server_is_down(
    scheduler: Scheduler, outbox: Outbox
) -> None:
    outbox.failures = 2
    job = await scheduler.schedule("welcome-email", {"email": "grace@example.com"})

    await drain(scheduler)  # the first attempt fails; the retry waits a minute
    failed_once = await scheduler.get_job(job.id)
    assert failed_once is not None and failed_once.status is JobStatus.PENDING
    assert failed_once.last_error is not None and "unreachable" in failed_once.last_error

    finished = await drain(scheduler, include_future=True)  # the retries, brought forward
    done = next(j for j in finished if j.id == job.id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2  # two failed attempts
    assert outbox.sent[0] == ("grace@example.com", "Welcome!")
