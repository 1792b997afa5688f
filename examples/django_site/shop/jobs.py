"""Where the scheduler lives: the tasks are registered here, on an asyncio ``Scheduler`` that
only the worker process starts (``python manage.py runworker``). Views are blocking, so they
enqueue through :func:`producer`, the blocking facade on the same database."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from pymongo import MongoClient

from mongo_job_scheduler import Job, Scheduler, sync

DATABASE = "django-example"  # when MONGODB_URI names no database

scheduler = Scheduler(workers=4)  # runworker gives it a store, on its own event loop


@scheduler.task("send-receipt", retry={"maxAttempts": 5, "delay": 10, "backoff": "exponential"})
def send_receipt(job: Job) -> dict[str, Any]:
    # A plain function, run in a worker thread: settings and mail are ready (django.setup()).
    order = job.data
    send_mail(
        subject=f"Your receipt for order {order['order']}",
        message=f"Total: {order['total']}",
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[order["email"]],
    )
    return {"sent_to": order["email"], "sent_from": settings.DEFAULT_FROM_EMAIL}


@cache
def producer() -> sync.Scheduler:
    """The blocking scheduler views enqueue with: one client (a connection pool) per process."""
    client: MongoClient[dict[str, Any]] = MongoClient(settings.MONGODB_URI)
    return sync.Scheduler(sync.MongoJobStore(client.get_default_database(DATABASE)))
