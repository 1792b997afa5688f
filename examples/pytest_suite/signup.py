"""A small app's background jobs: on sign-up, a welcome email now and a reminder three days
later. :func:`register` puts the tasks on any scheduler: the app's own, run by its workers,
or the one a test gets from the pytest plugin (see ``test_signup.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from mongo_job_scheduler import Job, Scheduler


@dataclass
class Outbox:
    """Where the emails go (a real app calls its mail API here); ``failures`` makes the next
    sends fail, as an unreachable mail server would."""

    sent: list[tuple[str, str]] = field(default_factory=list)
    failures: int = 0

    def send(self, to: str, subject: str) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("mail server unreachable")
        self.sent.append((to, subject))


def register(scheduler: Scheduler, outbox: Outbox) -> None:
    """Register the app's tasks on ``scheduler``, sending mail through ``outbox``."""

    @scheduler.task("welcome-email", retry={"maxAttempts": 3, "delay": 60})
    async def welcome_email(job: Job) -> None:
        email = job.data["email"]
        outbox.send(email, "Welcome!")
        await reminder_email.schedule({"email": email}, delay=timedelta(days=3))

    @scheduler.task("reminder-email")
    async def reminder_email(job: Job) -> None:
        outbox.send(job.data["email"], "Anything we can help with?")
