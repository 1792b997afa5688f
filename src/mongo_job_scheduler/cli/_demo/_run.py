"""Running the demo: where its jobs are kept (the given server, a throwaway local mongod, or
memory), the workers' run with graceful stops on SIGINT/SIGTERM, and the exit code."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape

from ... import InMemoryJobStore, JobStore, MongoJobStore, Scheduler
from ..._mongod import LocalMongod, find_mongod
from .._connection import CliError, connect, mongo_error_message, redact_uri
from .._signals import StopSignals
from ._report import event_printer, live_table, summary, watch
from ._tour import Tracker, register_handlers, schedule_all

__all__ = ["DemoSettings", "run_demo"]

EXIT_INTERRUPTED = 130
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
        await _clean_up(client, backend, database, console)


async def _clean_up(
    client: AsyncMongoClient[dict[str, Any]], backend: _Backend, database: str, console: Console
) -> None:
    """Drop the demo database if it is to go, say so, and close the client."""
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
    tracker = Tracker()
    scheduler = Scheduler(
        store,
        workers=settings.workers,
        poll_interval=0.1,
        lock_timeout=30,
        id="demo",
    )
    register_handlers(scheduler, tracker)
    scheduled = await schedule_all(scheduler, tracker, console)
    watch(scheduler, tracker, event_printer(console, tracker))

    def graceful(sig: signal.Signals) -> None:
        console.print(f"[yellow]{sig.name}: stopping gracefully...[/yellow]")

    def already_stopping(sig: signal.Signals) -> None:
        console.print("[yellow]Already stopping; running jobs are finishing.[/yellow]")

    with StopSignals(graceful=graceful, hurry=already_stopping, again=already_stopping) as signals:
        console.print(
            f"Running {settings.workers} workers for {settings.duration:g}s (Ctrl-C stops early)..."
        )
        ran_for = await _run_workers(scheduler, tracker, console, settings.duration, signals)
        console.print(f"Stopped after {tracker.elapsed:.1f}s.")
        await summary(scheduler, tracker, scheduled, console, ran_for=ran_for)
    return EXIT_INTERRUPTED if signals.received else 0


async def _run_workers(
    scheduler: Scheduler, tracker: Tracker, console: Console, duration: float, signals: StopSignals
) -> float:
    """Run the workers for ``duration`` seconds or until a signal (a live table on a terminal),
    stop them gracefully, and return how long they ran before stopping began."""
    tracker.started = time.monotonic()
    deadline = tracker.started + duration
    stopping = False
    live: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if console.is_terminal:
        live = Live(
            get_renderable=lambda: Group(live_table(tracker, deadline, stopping)),
            console=console,
            refresh_per_second=4,
            transient=True,
        )
    try:
        with live:
            await scheduler.start()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(signals.requested.wait(), timeout=duration)
            stopping = True
            ran_for = tracker.elapsed
            await scheduler.stop(graceful=True, timeout=STOP_TIMEOUT)
    finally:
        if scheduler.is_running:  # something failed: do not leave workers behind
            await scheduler.stop(graceful=False)
    return ran_for


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
