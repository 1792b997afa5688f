"""The ``mongo-job-scheduler`` command line (also ``python -m mongo_job_scheduler``).

A thin layer over the public API. The group :data:`main` holds what every command shares
(connection options, logging) and hands the commands a :class:`CliOptions`; each command lives
in its own module and is registered here. A malformed argument or option value is a usage
error (click's usage format, exit 2, see ``usage_error``); anything else the user should fix
raises :class:`CliError`: one line on stderr, exit 1. Never a traceback.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

import click

from .. import __version__
from .._format import inert
from ._authoring import jobs_add, jobs_delete
from ._bulk import jobs_cancel, jobs_retry
from ._connection import (
    DEFAULT_COLLECTION,
    DEFAULT_DATABASE,
    CliError,
    CliOptions,
    connect,
    mongo_error_message,
    redact_secrets,
    redact_uri,
)
from ._dashboard import dashboard
from ._demo import demo
from ._fleet import workers
from ._jobs import jobs
from ._stats import pause, resume, stats
from ._worker import worker

__all__ = ["CliError", "CliOptions", "connect", "main", "mongo_error_message", "redact_uri"]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class _SafeOutput:
    """What the CLI prints of warnings and log records: one line each (a traceback keeps its
    lines), inert on a terminal, and with the secrets of ``uri`` (and any credentials in a
    URI) redacted."""

    def __init__(self, uri: str | None) -> None:
        self.uri = uri

    def text(self, text: str, *, lines: bool = False) -> str:
        return inert(redact_secrets(text, self.uri), lines=lines)

    def warning(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        line: str | None = None,
    ) -> str:
        return f"Warning: {self.text(' '.join(str(message).split()))}\n"


class _SafeFormatter(logging.Formatter):
    """Log records through :class:`_SafeOutput`."""

    def __init__(self, fmt: str, output: _SafeOutput) -> None:
        super().__init__(fmt)
        self.output = output

    def formatMessage(self, record: logging.LogRecord) -> str:
        return self.output.text(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return self.output.text(super().formatException(ei), lines=True)


def _configure_logging(level: str, uri: str | None) -> None:
    output = _SafeOutput(uri)
    warnings.formatwarning = output.warning
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter("%(levelname)s %(name)s: %(message)s", output))
    library = logging.getLogger("mongo_job_scheduler")
    library.handlers[:] = [handler]
    library.setLevel(level.upper())
    library.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--mongodb-uri",
    envvar="MONGODB_URI",
    show_envvar=True,
    metavar="URI",
    help="MongoDB connection string; the database in its path, as in mongodb://host/app, "
    "holds the jobs unless --database is given.",
)
@click.option(
    "--database",
    help="Database holding the jobs (default: the one named in the URI, as in "
    f"mongodb://host/app, else {DEFAULT_DATABASE}).",
)
@click.option(
    "--collection",
    help=f"Collection holding the jobs (default: {DEFAULT_COLLECTION}).",
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
    ctx: click.Context,
    mongodb_uri: str | None,
    database: str | None,
    collection: str | None,
    log_level: str,
) -> None:
    """mongo-job-scheduler: durable background jobs on MongoDB.

    Run a scheduler's workers with `worker MODULE:ATTR`; look at and act on jobs with `jobs`
    and `stats`, at the running workers with `workers`. Try `mongo-job-scheduler demo` to
    watch one-off, delayed, retrying, cron, interval, prioritised, deduplicated and
    concurrency-limited jobs run.

    \b
    Exit codes:
      0  done (worker: stopped after a signal)
      1  error: MongoDB unreachable or refusing, no such job, a job in the wrong state,
         a worker target that cannot be loaded or is not a Scheduler
      2  usage error: unknown command or option, missing or malformed argument or value
    """
    _configure_logging(log_level, mongodb_uri)
    ctx.obj = CliOptions(mongodb_uri=mongodb_uri or None, database=database, collection=collection)


main.add_command(demo)
main.add_command(worker)
jobs.add_command(jobs_add)
jobs.add_command(jobs_cancel)
jobs.add_command(jobs_retry)
jobs.add_command(jobs_delete)
main.add_command(jobs)
main.add_command(stats)
main.add_command(pause)
main.add_command(resume)
main.add_command(workers)
main.add_command(dashboard)
