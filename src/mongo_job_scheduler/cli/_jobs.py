"""``jobs list|show|purge``: look at jobs of the configured collection and purge old ones,
through a worker-less :class:`~mongo_job_scheduler.Scheduler` (the group's other commands live
in ``_authoring`` and ``_bulk``)."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

import click
from rich import box
from rich.table import Table
from rich.text import Text

from .._format import fmt_iso, fmt_line, fmt_when, inert, to_json
from ..job import FINISHED_STATUSES, Job, JobStatus
from ..scheduler import Scheduler
from ._connection import CliError, CliOptions, run_with_scheduler
from ._output import STATUS_STYLE, console, err
from ._parsing import (
    check_job_id,
    check_offline,
    data_filters,
    older_than,
    older_than_cutoff,
    sort_spec,
)

__all__ = ["jobs"]

TABLE_FIELDS = ("name", "status", "attempts", "priority", "nextRunAt", "updatedAt", "lastError")
"""The fields the ``jobs list`` table shows, the only ones it reads (``--json`` reads all)."""
TABLE_VALUE_BYTES = 16 * 1024
"""A value larger than this (BSON bytes) is not read for the table (``jobs show`` has it)."""


@click.group(short_help="List, show, add, cancel, retry, delete and purge jobs.")
def jobs() -> None:
    """List, show, add, cancel, retry, delete and purge jobs (on --database / --collection).

    A malformed value (status, id, sort, data filter, duration) is a usage error: exit 2.
    Other errors (unknown job, a job in the wrong state, unreachable server) print one line
    and exit 1.
    """


@jobs.command("list", short_help="List jobs by name, status and data (table or JSON).")
@click.option("--name", help="Only jobs with this exact name.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([status.value for status in JobStatus]),
    help="Only jobs in this status; repeat for several.",
)
@click.option(
    "--data",
    "data",
    multiple=True,
    metavar="KEY=VALUE",
    callback=data_filters,
    help="Only jobs whose data KEY (dotted for nested fields) equals VALUE (JSON if it parses, "
    "else a string); repeat for several.",
)
@click.option(
    "--sort",
    metavar="FIELD[:asc|desc]",
    callback=sort_spec,
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
    data: dict[str, object] | None,
    sort: tuple[str, str] | None,
    limit: int,
    skip: int,
    as_json: bool,
) -> None:
    """List jobs matching every filter (a table, or JSON lines with --json)."""

    async def action(scheduler: Scheduler) -> list[Job]:
        return await scheduler.get_jobs(
            name=name,
            status=list(statuses) or None,
            data=data,
            sort=sort,
            limit=limit,
            skip=skip,
            fields=None if as_json else TABLE_FIELDS,
            max_value_size=None if as_json else TABLE_VALUE_BYTES,
        )

    check_offline(
        action,
        {"name": "name", "data": "data", "sort": "sort", "limit": "limit", "skip": "skip"},
    )
    found = run_with_scheduler(options, action)
    if as_json:
        for job in found:
            click.echo(to_json(job.document))
        return
    if not found:
        err(f"No jobs match in {options.where}.")
        return
    _print_jobs(found)
    if len(found) == limit:
        err(f"Showing {limit} jobs from {skip}; --skip {skip + limit} shows the next ones.")


def _print_jobs(found: list[Job]) -> None:
    """``found`` as a table on stdout."""
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
            Text(inert(job.id)),
            Text(inert(job.name)),
            Text(job.status.value, style=STATUS_STYLE.get(job.status.value, "")),
            str(job.attempts),
            str(job.priority),
            fmt_when(job.next_run_at),
            fmt_when(job.updated_at),
            Text(fmt_line(job.last_error, 60)),
        )
    console().print(table)


SHOWN_DEPENDANTS = 100
"""The most jobs waiting for a job that `jobs show` lists."""


@jobs.command("show", short_help="Every field of one job, error and traceback included.")
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="The stored document as JSON only.")
@click.pass_obj
def jobs_show(options: CliOptions, job_id: str, as_json: bool) -> None:
    """Show every field of a job: the stored document, with its error and traceback."""
    check_job_id(job_id)

    async def action(scheduler: Scheduler) -> tuple[Job | None, list[Job], list[Job]]:
        job = await scheduler.get_job(job_id)
        if job is None:
            return None, [], []
        waits_for = await scheduler.get_jobs(ids=job.depends_on) if job.depends_on else []
        return job, waits_for, await scheduler.dependants(job.id, limit=SHOWN_DEPENDANTS)

    job, waits_for, dependants = run_with_scheduler(options, action)
    if job is None:
        raise CliError(f"job {job_id} not found in {options.where}")
    if as_json:
        click.echo(to_json(job.document, indent=2))
        return
    summary = (
        f"job {inert(job.id)}  {inert(job.name)}  {job.status.value}  attempts {job.attempts}  "
        f"priority {job.priority}  next run {fmt_when(job.next_run_at)}"
    )
    click.echo(summary)
    document = {k: v for k, v in job.document.items() if k not in ("lastErrorTrace", "dependsOn")}
    click.echo(to_json(document, indent=2))
    for title, related in (("waits for", waits_for), ("waited for by", dependants)):
        if related:
            click.echo(f"{title}:")
            for other in related:
                click.echo(f"  {other.id}  {other.name}  {other.status.value}")
    trace = job.document.get("lastErrorTrace")
    if trace:
        click.echo("lastErrorTrace:")
        click.echo(inert(str(trace).rstrip("\n"), lines=True))


@jobs.command("purge", short_help="Delete finished jobs older than a date or duration.")
@click.option(
    "--older-than",
    "cutoff",
    required=True,
    metavar="DURATION_OR_DATE",
    callback=older_than,
    help="Delete jobs last updated before this: a duration back from now (30m, 12h, 7d, 2w) "
    "or an ISO date/time (2026-01-01T00:00:00Z; UTC unless it has an offset).",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(FINISHED_STATUSES),
    help="Only jobs in this finished status (default: all three); repeat for several.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def jobs_purge(
    options: CliOptions, cutoff: timedelta | datetime, statuses: tuple[str, ...], yes: bool
) -> None:
    """Delete finished jobs last updated before a date. Pending and running jobs are never
    deleted. Asks for confirmation (showing how many jobs match) unless --yes; without a
    terminal to ask on, refuses (exit 1) unless --yes."""
    chosen = list(statuses) or list(FINISHED_STATUSES)

    async def action(scheduler: Scheduler) -> tuple[int, int, datetime]:
        store = scheduler.store
        assert store is not None
        before = older_than_cutoff(cutoff, await store.now())
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

    matching, deleted, before = run_with_scheduler(options, action)
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
            status=statuses,
            sort=("updatedAt", "asc"),
            limit=page,
            skip=skip,
            fields=["updatedAt"],
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
