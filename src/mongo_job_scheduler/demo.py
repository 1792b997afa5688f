"""``mongo-job-scheduler demo``: a guided tour of the scheduler against a real (or in-memory)
store.

It schedules one job of each kind (one-off, delayed, retrying, cron, interval, prioritised,
deduplicated, concurrency-limited), runs a :class:`~mongo_job_scheduler.Scheduler` for a while
showing events as they happen, stops it gracefully and prints what ran. Only the public API is
used, so the code doubles as an example.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pymongo.errors import PyMongoError
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from . import InMemoryJobStore, Job, JobStatus, JobStore, MongoJobStore, Scheduler
from ._mongod import LocalMongod, find_mongod
from .cli import CliError, connect, mongo_error_message, redact_uri

__all__ = ["DemoSettings", "run_demo"]

EXIT_INTERRUPTED = 130

CRON = "*/2 * * * * *"
CRON_TIMEZONE = "Asia/Kolkata"
INTERVAL = timedelta(seconds=2)
DELAY = timedelta(seconds=3)
FLAKY_RETRY = {"maxAttempts": 3, "delay": 500, "backoff": "exponential"}
FLAKY_SUCCEEDS_ON = 3
BATCH_SIZE = 6
BATCH_CONCURRENCY = 2
DEDUPE_KEY = "inventory:warehouse-7"
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class DemoSettings:
    """What the ``demo`` command was asked to do."""

    mongodb_uri: str | None
    database: str
    duration: float
    workers: int
    keep: bool


@dataclass(frozen=True)
class _Backend:
    """Where the demo keeps its jobs."""

    label: str
    uri: str | None = None
    database: str | None = None
    drop: bool = False
    user_server: bool = False


@dataclass
class _JobStats:
    kind: str
    runs: int = 0
    succeeded: int = 0
    retries: int = 0
    failures: int = 0
    last: str = ""


@dataclass
class _Tracker:
    """Counts events per job name and remembers what the summary reports."""

    started: float = field(default_factory=time.monotonic)
    stats: dict[str, _JobStats] = field(default_factory=dict)
    start_order: list[str] = field(default_factory=list)
    running: Counter[str] = field(default_factory=Counter)
    max_running: Counter[str] = field(default_factory=Counter)
    flaky_success_attempt: int | None = None
    reminder_scheduled: float | None = None
    reminder_started: float | None = None

    def kind(self, name: str, kind: str) -> None:
        self.stats.setdefault(name, _JobStats(kind))

    def get(self, name: str) -> _JobStats:
        return self.stats.setdefault(name, _JobStats("?"))

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


# -- the jobs -------------------------------------------------------------------------------


def _register_handlers(scheduler: Scheduler, tracker: _Tracker) -> None:
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
class _Scheduled:
    """What scheduling returned, for the summary."""

    dedupe_first: Job
    dedupe_second: Job


async def _schedule_all(scheduler: Scheduler, tracker: _Tracker, console: Console) -> _Scheduled:
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

    table = Table(title="Scheduled", box=box.SIMPLE, title_justify="left", show_header=False)
    table.add_column("job", style="bold")
    table.add_column("what")
    for name, text in lines:
        table.add_row(name, escape(text))
    console.print(table)
    return _Scheduled(first, second)


# -- showing events -------------------------------------------------------------------------

_EVENT_STYLE = {
    "job:start": "cyan",
    "job:complete": "green",
    "job:retry": "yellow",
    "job:fail": "bold red",
    "job:stalled": "magenta",
    "worker:error": "red",
}


def _short(job: Job) -> str:
    return str(job.id)[-6:]


def _watch(scheduler: Scheduler, tracker: _Tracker, log: Callable[[str, str, str], None]) -> None:
    """Count and show the events the demo cares about."""

    def on_start(job: Job) -> None:
        stats = tracker.get(job.name)
        stats.runs += 1
        stats.last = "running"
        tracker.start_order.append(job.name)
        log("job:start", job.name, f"#{_short(job)} attempt {job.attempts + 1}")

    def on_complete(job: Job) -> None:
        stats = tracker.get(job.name)
        stats.succeeded += 1
        stats.last = "succeeded"
        detail = f"#{_short(job)}"
        if job.attempts:
            detail += f" on attempt {job.attempts + 1}"
        if job.is_repeating and job.next_run_at is not None:
            detail += f", next run {job.next_run_at:%H:%M:%S} UTC"
        log("job:complete", job.name, detail)

    def on_retry(job: Job) -> None:
        stats = tracker.get(job.name)
        stats.retries += 1
        stats.last = "retrying"
        when = ""
        if job.next_run_at is not None:
            when = f", retry at {job.next_run_at:%H:%M:%S.%f}"[:-3]
        log("job:retry", job.name, f"#{_short(job)} {job.last_error}{when}")

    def on_fail(job: Job, error: BaseException) -> None:
        stats = tracker.get(job.name)
        stats.failures += 1
        stats.last = "failed"
        log("job:fail", job.name, f"#{_short(job)} {type(error).__name__}: {error}")

    def on_stalled(job: Job) -> None:
        log("job:stalled", job.name, f"#{_short(job)}")

    def on_worker_error(error: BaseException) -> None:
        log("worker:error", "", f"{type(error).__name__}: {error}")

    scheduler.on("job:start", on_start)
    scheduler.on("job:complete", on_complete)
    scheduler.on("job:retry", on_retry)
    scheduler.on("job:fail", on_fail)
    scheduler.on("job:stalled", on_stalled)
    scheduler.on("worker:error", on_worker_error)


def _live_table(tracker: _Tracker, deadline: float, stopping: bool) -> RenderableType:
    left = max(0.0, deadline - time.monotonic())
    state = "stopping..." if stopping else f"{left:4.1f}s left"
    table = Table(title=f"Live ({state})", box=box.ROUNDED, title_justify="left")
    for column in ("job", "kind", "runs", "ok", "retries", "failures", "last"):
        table.add_column(
            column, justify="right" if column in ("runs", "ok", "retries", "failures") else "left"
        )
    for name, stats in tracker.stats.items():
        table.add_row(
            name,
            stats.kind,
            str(stats.runs),
            str(stats.succeeded),
            str(stats.retries),
            str(stats.failures),
            stats.last,
        )
    return table


# -- summary --------------------------------------------------------------------------------


async def _summary(
    scheduler: Scheduler,
    tracker: _Tracker,
    scheduled: _Scheduled,
    console: Console,
    *,
    ran_for: float,
) -> None:
    runs = Table(title="Runs per job", box=box.SQUARE, title_justify="left")
    runs.add_column("job")
    runs.add_column("kind")
    for column in ("runs", "succeeded", "retries", "failures"):
        runs.add_column(column, justify="right")
    for name, stats in tracker.stats.items():
        runs.add_row(
            name,
            stats.kind,
            str(stats.runs),
            str(stats.succeeded),
            str(stats.retries),
            str(stats.failures),
        )
    total = _JobStats("")
    for stats in tracker.stats.values():
        total.runs += stats.runs
        total.succeeded += stats.succeeded
        total.retries += stats.retries
        total.failures += stats.failures
    runs.add_section()
    runs.add_row(
        "total", "", str(total.runs), str(total.succeeded), str(total.retries), str(total.failures)
    )
    console.print(runs)

    jobs = await scheduler.get_jobs(limit=10_000)
    counts = Counter(job.status for job in jobs)
    statuses = Table(title="Final status", box=box.SQUARE, title_justify="left")
    statuses.add_column("status")
    statuses.add_column("jobs", justify="right")
    for status in JobStatus:
        statuses.add_row(status.value, str(counts.get(status, 0)))
    statuses.add_section()
    statuses.add_row("total", str(len(jobs)))
    console.print(statuses)
    console.print(f"[dim]({len(jobs)} jobs read back with get_jobs)[/dim]")

    deduped = await scheduler.get_jobs(name="sync-inventory")
    facts = _facts(tracker, scheduled, len(deduped))
    console.print("[bold]What happened[/bold]")
    for fact in facts:
        if fact.ok:
            mark = "[green]✔[/green]"
        elif ran_for < fact.needs:  # not reached in a short run: expected, not wrong
            mark = "[dim]-[/dim]"
        else:
            mark = "[red]✘[/red]"
        console.print(f"  {mark} {escape(fact.text)}")


def _count(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def _times(count: int) -> str:
    return _count(count, "time", "times")


@dataclass(frozen=True)
class _Fact:
    """One line of "What happened": whether it held, and how long the workers must run for it
    to hold (a shorter or interrupted run shows it as not reached rather than wrong)."""

    ok: bool
    text: str
    needs: float = 0.0


def _facts(tracker: _Tracker, scheduled: _Scheduled, dedupe_jobs: int) -> list[_Fact]:
    stats = tracker.stats
    facts: list[_Fact] = []
    cron, interval = stats["heartbeat-cron"].succeeded, stats["cleanup-interval"].succeeded
    facts.append(
        _Fact(
            cron >= 2,
            f"cron job heartbeat-cron ran {_times(cron)} ({CRON!r} in {CRON_TIMEZONE})",
            needs=5,
        )
    )
    facts.append(
        _Fact(interval >= 2, f"interval job cleanup-interval ran {_times(interval)}", needs=5)
    )
    attempt = tracker.flaky_success_attempt
    flaky = stats["flaky-payment"]
    if attempt is not None:
        facts.append(
            _Fact(
                attempt == FLAKY_SUCCEEDS_ON,
                f"retrying job flaky-payment succeeded on attempt {attempt} "
                f"after {_count(flaky.retries, 'retry', 'retries')}",
            )
        )
    else:
        facts.append(
            _Fact(
                False,
                f"retrying job flaky-payment has not succeeded yet ({flaky.runs} attempts)",
                needs=4,
            )
        )
    same = scheduled.dedupe_second.id == scheduled.dedupe_first.id
    facts.append(
        _Fact(
            same and dedupe_jobs == 1,
            f"dedupe pair produced {dedupe_jobs} job"
            + ("s" if dedupe_jobs != 1 else "")
            + (" (the second schedule() returned the first job)" if same else ""),
        )
    )
    order = [n for n in tracker.start_order if n in ("urgent-report", "bulk-report")]
    if len(order) == 2:
        facts.append(
            _Fact(
                order[0] == "urgent-report",
                f"{order[0]} started before {order[1]} (priority 1 runs before priority 10)",
            )
        )
    else:
        facts.append(_Fact(False, "the prioritised pair did not both run", needs=3))
    peak = tracker.max_running["resize-image"]
    done = stats["resize-image"].succeeded
    facts.append(
        _Fact(
            0 < peak <= BATCH_CONCURRENCY and done == BATCH_SIZE,
            f"resize-image ran at most {peak} at once (limit {BATCH_CONCURRENCY}), "
            f"{done} of {BATCH_SIZE} done",
            needs=0 if peak > BATCH_CONCURRENCY else 4,
        )
    )
    delayed = tracker.reminder_started
    if delayed is not None:
        facts.append(
            _Fact(
                delayed >= DELAY.total_seconds() - 0.5,
                f"delayed job reminder started {delayed:.1f}s after it was scheduled "
                f"(delay {DELAY.total_seconds():g}s)",
            )
        )
    else:
        facts.append(_Fact(False, "delayed job reminder has not run yet", needs=5))
    return facts


# -- running ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _signals(on_signal: Callable[[signal.Signals], None]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / Windows
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def _run(settings: DemoSettings, backend: _Backend, console: Console) -> int:
    if backend.uri is None or backend.database is None:
        return await _tour(settings, InMemoryJobStore(), console)
    uri, database = backend.uri, backend.database
    client = await connect(uri)
    try:
        try:
            info = await client.server_info()
            store = MongoJobStore(client[database])
        except Exception as exc:
            raise CliError(mongo_error_message(exc, uri)) from None
        fate = "dropped at the end" if backend.drop else "kept at the end"
        if not backend.user_server:
            fate = "on the throwaway server"
        console.print(
            f"Store: [bold]MongoDB {escape(str(info.get('version', '?')))}[/bold] "
            f"at {escape(backend.label)}, database {database} ({fate})"
        )
        try:
            return await _tour(settings, store, console)
        except PyMongoError as exc:
            raise CliError(mongo_error_message(exc, uri)) from None
    finally:
        if backend.drop:
            try:
                await client.drop_database(database)
                console.print(f"Dropped the demo database {database}.")
            except PyMongoError as exc:
                console.print(
                    f"[yellow]Could not drop the demo database {database}: "
                    f"{escape(mongo_error_message(exc))}[/yellow]"
                )
        elif backend.user_server:
            console.print(f"Kept the demo database {database}.")
        await client.close()


async def _tour(settings: DemoSettings, store: JobStore, console: Console) -> int:
    tracker = _Tracker()
    scheduler = Scheduler(
        store,
        workers=settings.workers,
        poll_interval=0.1,
        lock_timeout=30,
        id="demo",
    )
    _register_handlers(scheduler, tracker)
    scheduled = await _schedule_all(scheduler, tracker, console)

    def log(event: str, name: str, detail: str) -> None:
        style = _EVENT_STYLE.get(event, "")
        line = Text.assemble(
            (f"{tracker.elapsed:6.2f}s ", "dim"),
            (f"{event:<13}", style),
            (f"{name:<17}", "bold"),
            detail,
        )
        console.print(line, overflow="fold")

    _watch(scheduler, tracker, log)
    stop = asyncio.Event()
    interrupted: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if interrupted:
            console.print("[yellow]Already stopping; running jobs are finishing.[/yellow]")
            return
        interrupted.append(sig)
        console.print(f"[yellow]{sig.name}: stopping gracefully...[/yellow]")
        stop.set()

    stopping = False
    with _signals(on_signal):
        console.print(
            f"Running {settings.workers} workers for {settings.duration:g}s (Ctrl-C stops early)..."
        )
        tracker.started = time.monotonic()
        deadline = tracker.started + settings.duration
        live: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if console.is_terminal:
            live = Live(
                get_renderable=lambda: Group(_live_table(tracker, deadline, stopping)),
                console=console,
                refresh_per_second=4,
                transient=True,
            )
        try:
            with live:
                await scheduler.start()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=settings.duration)
                stopping = True
                ran_for = tracker.elapsed
                await scheduler.stop(graceful=True, timeout=STOP_TIMEOUT)
        finally:
            if scheduler.is_running:  # something failed: do not leave workers behind
                await scheduler.stop(graceful=False)
        console.print(f"Stopped after {tracker.elapsed:.1f}s.")
        await _summary(scheduler, tracker, scheduled, console, ran_for=ran_for)
    return EXIT_INTERRUPTED if interrupted else 0


def _choose_backend(
    settings: DemoSettings, console: Console, stack: contextlib.ExitStack
) -> _Backend:
    if settings.mongodb_uri:
        database = f"{settings.database}_{uuid.uuid4().hex[:8]}"
        return _Backend(
            label=redact_uri(settings.mongodb_uri),
            uri=settings.mongodb_uri,
            database=database,
            drop=not settings.keep,
            user_server=True,
        )
    binary = find_mongod()
    if binary is not None:
        console.print(f"Starting a throwaway local mongod ({escape(binary)})")
        server = LocalMongod(binary=binary)
        with console.status("Starting mongod..."):
            try:
                server.start()
            except Exception as exc:
                console.print(
                    f"[yellow]Could not start mongod ({escape(str(exc))}); "
                    "falling back to the in-memory store.[/yellow]"
                )
                return _memory_backend(console, "mongod did not start")
        stack.callback(_stop_server, server, console)
        if settings.keep:
            console.print("[dim]--keep has no effect on a throwaway server.[/dim]")
        return _Backend(
            label=f"127.0.0.1:{server.port}",
            uri=server.uri,
            database=settings.database,
        )
    return _memory_backend(console, "no MONGODB_URI and no mongod found")


def _memory_backend(console: Console, why: str) -> _Backend:
    console.print(
        f"Store: [bold]in memory (InMemoryJobStore)[/bold]: {escape(why)}. Set MONGODB_URI, or "
        + escape("pip install 'mongo-job-scheduler[mongod]' for a local mongod.")
    )
    return _Backend(label="in memory")


def _stop_server(server: LocalMongod, console: Console) -> None:
    server.stop()
    console.print("Stopped the throwaway mongod and deleted its data.")


def run_demo(settings: DemoSettings, console: Console | None = None) -> int:
    """Run the demo and return the process exit code (0, or 130 if interrupted). Problems the
    user can fix raise :class:`~mongo_job_scheduler.cli.CliError`."""
    if console is None:
        wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
        console = Console(highlight=False, width=120 if wide else None)
    with contextlib.ExitStack() as stack:
        backend = _choose_backend(settings, console, stack)
        return asyncio.run(_run(settings, backend, console))
