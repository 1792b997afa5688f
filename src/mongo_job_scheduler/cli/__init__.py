"""The ``mongo-job-scheduler`` command line (also ``python -m mongo_job_scheduler``).

A thin layer over the public API. The group :data:`main` holds what every command shares
(connection options, logging) and hands the commands a :class:`CliOptions`; each command lives
in its own module and is registered here. Commands raise :class:`CliError` for anything the
user should fix: it prints one line to stderr and exits 1, never a traceback.
"""

from __future__ import annotations

import logging
import sys
import warnings

import click

from .. import __version__
from ._connection import (
    DEFAULT_COLLECTION,
    DEFAULT_DATABASE,
    CliError,
    CliOptions,
    connect,
    mongo_error_message,
    redact_uri,
)
from ._dashboard import dashboard
from ._demo import demo
from ._jobs import jobs
from ._stats import pause, resume, stats
from ._worker import worker

__all__ = ["CliError", "CliOptions", "connect", "main", "mongo_error_message", "redact_uri"]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


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


main.add_command(demo)
main.add_command(worker)
main.add_command(jobs)
main.add_command(stats)
main.add_command(pause)
main.add_command(resume)
main.add_command(dashboard)
