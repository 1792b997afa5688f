"""The demo's jobs: one of each kind (one-off, delayed, retrying, cron, interval, prioritised,
deduplicated, concurrency-limited), their handlers, and the tally of what ran.

Only the public API is used, so the code doubles as an example.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ... import Job, Scheduler

__all__ = ["JobStats", "Scheduled", "Tracker", "register_handlers", "schedule_all"]

CRON = "*/2 * * * * *"
CRON_TIMEZONE = "Asia/Kolkata"
INTERVAL = timedelta(seconds=2)
DELAY = timedelta(seconds=3)
FLAKY_RETRY = {"maxAttempts": 3, "delay": 0.5, "backoff": "exponential"}
FLAKY_SUCCEEDS_ON = 3
BATCH_SIZE = 6
BATCH_CONCURRENCY = 2
DEDUPE_KEY = "inventory:warehouse-7"


@dataclass
class JobStats:
    """How often the jobs of one name ran and how those runs ended."""

    kind: str
    runs: int = 0
    succeeded: int = 0
    retries: int = 0
    failures: int = 0
    last: str = ""


@dataclass
class Tracker:
    """Counts events per job name and remembers what the summary reports."""

    started: float = field(default_factory=time.monotonic)
    stats: dict[str, JobStats] = field(default_factory=dict)
    start_order: list[str] = field(default_factory=list)
    running: Counter[str] = field(default_factory=Counter)
    max_running: Counter[str] = field(default_factory=Counter)
    flaky_success_attempt: int | None = None
    reminder_scheduled: float | None = None
    reminder_started: float | None = None

    def kind(self, name: str, kind: str) -> None:
        """Record which kind of job ``name`` shows."""
        self.stats.setdefault(name, JobStats(kind))

    def get(self, name: str) -> JobStats:
        """The stats of job name ``name``."""
        return self.stats.setdefault(name, JobStats("?"))

    @property
    def elapsed(self) -> float:
        """Seconds since the workers started."""
        return time.monotonic() - self.started


def register_handlers(scheduler: Scheduler, tracker: Tracker) -> None:
    """The demo's task handlers (plain async functions taking the :class:`Job`)."""

    @scheduler.task("send-email")
    async def send_email(job: Job) -> None:
        await asyncio.sleep(0.2)

    @scheduler.task("reminder")
    async def reminder(job: Job) -> None:
        if tracker.reminder_scheduled is not None and tracker.reminder_started is None:
            tracker.reminder_started = time.monotonic() - tracker.reminder_scheduled
        await asyncio.sleep(0.1)

    @scheduler.task("flaky-payment")
    async def flaky_payment(job: Job) -> None:
        attempt = job.attempts + 1  # attempts counts the failed attempts before this one
        await asyncio.sleep(0.05)
        if attempt < FLAKY_SUCCEEDS_ON:
            raise ConnectionError(f"payment gateway timed out (simulated, attempt {attempt})")
        tracker.flaky_success_attempt = attempt

    @scheduler.task("heartbeat-cron")
    async def heartbeat(job: Job) -> None:
        await asyncio.sleep(0.05)

    @scheduler.task("cleanup-interval")
    async def cleanup(job: Job) -> None:
        await asyncio.sleep(0.05)

    @scheduler.task("urgent-report")
    async def urgent_report(job: Job) -> None:
        await asyncio.sleep(0.1)

    @scheduler.task("bulk-report")
    async def bulk_report(job: Job) -> None:
        await asyncio.sleep(0.1)

    @scheduler.task("sync-inventory")
    async def sync_inventory(job: Job) -> None:
        await asyncio.sleep(0.2)

    @scheduler.task("resize-image")
    async def resize_image(job: Job) -> None:
        tracker.running[job.name] += 1
        tracker.max_running[job.name] = max(
            tracker.max_running[job.name], tracker.running[job.name]
        )
        try:
            await asyncio.sleep(0.4)
        finally:
            tracker.running[job.name] -= 1


@dataclass
class Scheduled:
    """What scheduling returned, for the summary."""

    dedupe_first: Job
    dedupe_second: Job


async def schedule_all(scheduler: Scheduler, tracker: Tracker, console: Console) -> Scheduled:
    """Schedule one job of each kind, note its kind in ``tracker`` and print what was
    scheduled."""
    lines: list[tuple[str, str]] = []

    def note(name: str, kind: str, text: str) -> None:
        tracker.kind(name, kind)
        lines.append((name, text))

    for user in (101, 102, 103):
        await scheduler.schedule("send-email", {"userId": user, "template": "welcome"})
    note("send-email", "one-off", "3 one-off jobs, due now")

    tracker.reminder_scheduled = time.monotonic()
    await scheduler.schedule("reminder", {"text": "stand up and stretch"}, delay=DELAY)
    note("reminder", "delayed", f"one job delayed by {DELAY.total_seconds():g}s")

    await scheduler.schedule("flaky-payment", {"orderId": "A-1001"}, retry=FLAKY_RETRY)
    note(
        "flaky-payment",
        "retrying",
        f"fails twice then succeeds; retry={FLAKY_RETRY}",
    )

    await scheduler.schedule("heartbeat-cron", repeat={"cron": CRON, "timezone": CRON_TIMEZONE})
    note("heartbeat-cron", "cron", f"cron {CRON!r} (seconds field) in {CRON_TIMEZONE}")

    await scheduler.schedule("cleanup-interval", repeat={"every": INTERVAL})
    note("cleanup-interval", "interval", f"every {INTERVAL.total_seconds():g}s")

    await scheduler.schedule("bulk-report", {"rows": 50_000}, priority=10)
    await scheduler.schedule("urgent-report", {"rows": 10}, priority=1)
    note("bulk-report", "priority 10", "scheduled first, lowest priority (10)")
    note("urgent-report", "priority 1", "scheduled second, highest priority (1): runs first")

    first = await scheduler.schedule("sync-inventory", {"run": 1}, dedupe_key=DEDUPE_KEY)
    second = await scheduler.schedule("sync-inventory", {"run": 2}, dedupe_key=DEDUPE_KEY)
    same = "returned the first job" if second.id == first.id else "created a second job"
    note("sync-inventory", "deduped", f"scheduled twice with dedupe_key {DEDUPE_KEY!r}: {same}")

    await scheduler.schedule_bulk(
        [
            {
                "name": "resize-image",
                "data": {"image": f"photo-{i}.jpg"},
                "concurrency": BATCH_CONCURRENCY,
            }
            for i in range(1, BATCH_SIZE + 1)
        ]
    )
    note(
        "resize-image",
        f"limit {BATCH_CONCURRENCY}",
        f"{BATCH_SIZE} jobs in one schedule_bulk, concurrency={BATCH_CONCURRENCY} across workers",
    )

    _print_scheduled(console, lines)
    return Scheduled(first, second)


def _print_scheduled(console: Console, lines: list[tuple[str, str]]) -> None:
    table = Table(title="Scheduled", box=box.SIMPLE, title_justify="left", show_header=False)
    table.add_column("job", style="bold")
    table.add_column("what")
    for name, text in lines:
        table.add_row(name, escape(text))
    console.print(table)
