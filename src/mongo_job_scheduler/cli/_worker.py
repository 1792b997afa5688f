"""``worker MODULE:ATTR``: import an application's :class:`~mongo_job_scheduler.Scheduler` and
run its workers until SIGTERM or SIGINT (graceful on the first, hand-back on the second)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import signal
import sys
from typing import Any

import click
from pymongo import AsyncMongoClient
from pymongo.errors import InvalidName, PyMongoError

from .._errors import ValidationError
from ..scheduler import Scheduler
from ..stores import MongoJobStore
from ._connection import CliError, CliOptions, connect, mongo_error_message
from ._output import err
from ._signals import StopSignals

__all__ = ["worker"]

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


@click.command(help=WORKER_HELP, short_help="Run a scheduler's workers until SIGTERM/SIGINT.")
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
    """Run the workers of the scheduler at TARGET (the command's help is WORKER_HELP)."""
    asyncio.run(_work(options, target, workers, stop_timeout, metrics_port))


async def _work(
    options: CliOptions,
    target: str,
    workers: int | None,
    stop_timeout: float,
    metrics_port: int | None = None,
) -> None:
    """Run the workers of ``target`` until a signal stops them (see :data:`WORKER_HELP`)."""
    scheduler: Scheduler | None = None
    hurried: list[asyncio.Task[None]] = []

    def graceful(sig: signal.Signals) -> None:
        err(f"{sig.name}: stopping gracefully (send it again to stop now)")

    def hurry(sig: signal.Signals) -> None:
        if scheduler is not None:
            err(f"{sig.name}: stopping now; running jobs are handed back")
            stopping = asyncio.get_running_loop().create_task(scheduler.stop(graceful=False))
            hurried.append(stopping)

    client: AsyncMongoClient[dict[str, Any]] | None = None
    try:
        with StopSignals(graceful=graceful, hurry=hurry) as signals:
            scheduler = await _resolve_scheduler(target)
            client = await _give_store(scheduler, options, target)
            if workers is not None:
                scheduler.configure(workers=workers)
            await _start(scheduler)
            if metrics_port is not None:
                _serve_metrics(scheduler, metrics_port)
            await _run_until_stopped(scheduler, signals.requested, stop_timeout, hurried)
    finally:
        if client is not None:
            await client.close()


async def _give_store(
    scheduler: Scheduler, options: CliOptions, target: str
) -> AsyncMongoClient[dict[str, Any]] | None:
    """Give a store-less ``scheduler`` a MongoJobStore on --database / --collection; return the
    client it opened (to close at the end), or ``None`` when the scheduler had a store."""
    if scheduler.store is not None:
        return None
    uri = options.mongodb_uri
    if not uri:
        raise CliError(
            f"{target} has no store: give it a MongoJobStore, or pass --mongodb-uri "
            "(or set MONGODB_URI) for one on --database / --collection"
        )
    client = await connect(uri)
    try:
        scheduler.configure(store=MongoJobStore(client[options.database], options.collection))
    except (InvalidName, ValidationError) as exc:
        await client.close()
        raise CliError(mongo_error_message(exc, uri)) from None
    return client


async def _start(scheduler: Scheduler) -> None:
    """Start the workers and say on stderr who they are and which job names they run."""
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
    err(
        f"worker started: id={owners[0] if owners else scheduler.id} "
        f"workers={scheduler.workers} names={shown}"
    )
    if names == []:
        err("Warning: no task is registered and there is no handler: nothing will run")


async def _run_until_stopped(
    scheduler: Scheduler,
    requested: asyncio.Event,
    stop_timeout: float,
    hurried: list[asyncio.Task[None]],
) -> None:
    """Wait for a stop request, stop gracefully (or as a second signal hurried), and never
    leave workers running."""
    try:
        await requested.wait()
        await scheduler.stop(graceful=True, timeout=stop_timeout)
        if hurried:
            await asyncio.gather(*hurried)
    finally:
        if scheduler.is_running:  # something failed: leave no workers behind
            await scheduler.stop(graceful=False)
    err("stopped")


def _serve_metrics(scheduler: Scheduler, port: int) -> None:
    """Instrument ``scheduler`` and serve its metrics on 127.0.0.1:``port`` (worker option)."""
    try:
        from ..metrics import instrument
    except ImportError as exc:
        raise CliError(str(exc)) from None
    from prometheus_client import CollectorRegistry

    metrics = instrument(scheduler, registry=CollectorRegistry())
    metrics.start_refreshing()
    server, _thread = metrics.start_http_server(port)
    err(f"metrics on http://127.0.0.1:{server.server_port}/metrics")
