"""``worker MODULE:ATTR``: import an application's :class:`~mongo_job_scheduler.Scheduler` and
run its workers until SIGTERM or SIGINT (graceful on the first, hand-back on the second)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import signal
import sys
import sysconfig
import traceback
from pathlib import Path
from typing import Any

import click
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from .._errors import ValidationError
from ..scheduler import Scheduler
from ..stores import InMemoryJobStore, JobStore, MongoJobStore
from ._connection import CliError, CliOptions, mongo_error_message, open_store, redact_uri
from ._output import err
from ._signals import StopSignals

__all__ = ["worker"]

WORKER_HELP = """Run the workers of the Scheduler at MODULE:ATTR until SIGTERM or SIGINT.

ATTR is a Scheduler, or a function without arguments (plain or async) that returns one; a
dotted ATTR reaches into objects (app:tasks.scheduler). The current directory is importable.
If the scheduler has no store, it gets a MongoJobStore on --mongodb-uri / --database /
--collection. The first line on stderr names the worker, its server, database, collection
and the job names it runs. If importing MODULE fails, the error names the file and line;
--log-level debug prints the whole traceback.

The first SIGTERM or SIGINT (Ctrl-C) stops claiming and lets running jobs finish for up to
--stop-timeout seconds; jobs still running then are handed back (pending again, for another
worker). A second signal hands them back at once.

\b
Exit codes:
  0  stopped after a signal (running jobs finished or were handed back)
  1  error: the target cannot be loaded or is not a Scheduler, or MongoDB is unreachable
  2  usage error: bad option, missing argument, no MODULE:ATTR colon, no --mongodb-uri for
     a scheduler without a store
"""

logger = logging.getLogger("mongo_job_scheduler.cli")

_INSTALLED = tuple(
    {
        str(Path(path).resolve())
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (path := sysconfig.get_paths().get(key))
    }
)
_THIS_PACKAGE = str(Path(__file__).resolve().parents[1])


def _check_target(ctx: click.Context, param: click.Parameter, target: str) -> str:
    """``target`` if it has the ``MODULE:ATTR`` shape; a usage error otherwise."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name.strip() or not attr.strip():
        raise click.BadParameter(
            f"expected MODULE:ATTR (for example myapp.tasks:scheduler), got {target!r}",
            ctx=ctx,
            param=param,
        )
    return target


def _import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise CliError(f"cannot import {module_name!r}: no module named {missing!r}") from None
        raise _failed(f"importing {module_name!r}", exc) from None
    except Exception as exc:
        raise _failed(f"importing {module_name!r}", exc) from None
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CliError(f"module {module_name!r} has no attribute {attr!r}") from None
    return value


def _failed(what: str, exc: BaseException) -> CliError:
    """The one-line error for ``what`` (importing the module, calling the factory) having
    raised ``exc``: where it arose and what it was. The whole traceback goes to the debug
    log."""
    logger.debug("%s failed", what, exc_info=exc)
    place = _where_it_arose(exc)
    at = f" at {place}" if place else ""
    hint = "" if logger.isEnabledFor(logging.DEBUG) else " (--log-level debug shows the traceback)"
    return CliError(f"{what} failed{at}: {_describe(exc)}{hint}")


def _describe(exc: BaseException) -> str:
    text = exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)
    text = " ".join(text.split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _where_it_arose(exc: BaseException) -> str | None:
    """``file:line`` of ``exc``: a syntax error's own place; else the innermost frame of the
    application's code (outside this package, the standard library and installed packages),
    or failing that the innermost frame with a file."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return _place(exc.filename, exc.lineno)
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<") and not _under(frame.filename, (_THIS_PACKAGE,))
    ]
    own = [frame for frame in frames if not _under(frame.filename, _INSTALLED)]
    chosen = (own or frames)[-1:]
    return _place(chosen[0].filename, chosen[0].lineno) if chosen else None


def _under(filename: str, roots: tuple[str, ...]) -> bool:
    path = str(Path(filename).resolve())
    return any(path == root or path.startswith(root + os.sep) for root in roots)


def _place(filename: str, line: int | None) -> str:
    """``filename`` (relative to the current directory when inside it) and ``:line``."""
    path = Path(filename)
    try:
        path = path.resolve().relative_to(Path.cwd().resolve())
    except (ValueError, OSError):
        pass
    return f"{path}:{line}" if line else str(path)


async def _resolve_scheduler(target: str) -> Scheduler:
    value = _import_target(target)
    if not isinstance(value, Scheduler) and callable(value):
        try:
            value = value()
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            raise _failed(f"calling {target}", exc) from None
    if not isinstance(value, Scheduler):
        raise CliError(
            f"{target} is a {type(value).__name__}, not a Scheduler (or a function returning one)"
        )
    return value


@click.command(help=WORKER_HELP, short_help="Run a scheduler's workers until SIGTERM/SIGINT.")
@click.argument("target", metavar="MODULE:ATTR", callback=_check_target)
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
            if metrics_port is not None:
                _serve_metrics(scheduler, metrics_port)
            await _start(scheduler, options.mongodb_uri if client is not None else None)
            await _run_until_stopped(scheduler, signals.requested, stop_timeout, hurried)
    finally:
        if client is not None:
            await client.close()


async def _give_store(
    scheduler: Scheduler, options: CliOptions, target: str
) -> AsyncMongoClient[dict[str, Any]] | None:
    """Give a store-less ``scheduler`` a MongoJobStore on --database / --collection; return the
    client it opened (to close at the end), or ``None`` when the scheduler had a store (then
    say so if --database or --collection name another one)."""
    if scheduler.store is not None:
        _warn_unused(scheduler.store, options, target)
        return None
    missing = (
        f"{target} has no store: give it a MongoJobStore, or pass --mongodb-uri "
        "(or set MONGODB_URI) for one on --database / --collection"
    )
    client, store = await open_store(options, missing)
    scheduler.configure(store=store)
    return client


def _warn_unused(store: JobStore, options: CliOptions, target: str) -> None:
    """Warn that --database / --collection are not used when the scheduler's own store is
    elsewhere."""
    if isinstance(store, MongoJobStore):
        differs = options.database not in (None, store.database.name) or options.collection not in (
            None,
            store.collection_name,
        )
    else:
        differs = options.database is not None or options.collection is not None
    if differs:
        err(
            f"Warning: --database / --collection are not used: {target} has its own store "
            f"({_describe_store(store, None)})"
        )


def _describe_store(store: JobStore | None, uri: str | None) -> str:
    """Where ``store`` keeps the jobs: ``server=... database=... collection=...`` for MongoDB
    (the server as ``uri`` without its password when the command made the store, else the
    client's hosts)."""
    if isinstance(store, MongoJobStore):
        if uri is None:
            hosts = store.database.client.topology_description.server_descriptions()
            uri = "mongodb://" + ",".join(sorted(f"{host}:{port}" for host, port in hosts))
        return (
            f"server={redact_uri(uri)} database={store.database.name} "
            f"collection={store.collection_name}"
        )
    if isinstance(store, InMemoryJobStore):
        return "store=memory (InMemoryJobStore)"
    return f"store={type(store).__name__}"


async def _start(scheduler: Scheduler, uri: str | None) -> None:
    """Start the workers and say on stderr who they are, where their jobs are (the server of
    ``uri`` when the command made the store) and which job names they run."""
    owners: list[str] = []
    scheduler.on("worker:start", owners.append)
    try:
        await scheduler.start()
    except PyMongoError as exc:
        raise CliError(f"cannot start the workers: {mongo_error_message(exc, uri)}") from None
    except ValidationError as exc:
        raise CliError(f"cannot start the workers: {exc}") from None
    names = scheduler.handled_names()
    shown = "any (catch-all handler)" if names is None else ", ".join(names) or "none"
    err(
        f"worker started: id={owners[0] if owners else scheduler.id} "
        f"workers={scheduler.workers} {_describe_store(scheduler.store, uri)} names={shown}"
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
    """Instrument ``scheduler`` and serve its metrics on 127.0.0.1:``port`` (worker option);
    :class:`CliError` if the port cannot be bound."""
    try:
        from ..metrics import instrument
    except ImportError as exc:
        raise CliError(str(exc)) from None
    from prometheus_client import CollectorRegistry

    metrics = instrument(scheduler, registry=CollectorRegistry())
    try:
        server, _thread = metrics.start_http_server(port)
    except OSError as exc:
        raise CliError(f"cannot serve metrics on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    metrics.start_refreshing()
    err(f"metrics on http://127.0.0.1:{server.server_port}/metrics")
