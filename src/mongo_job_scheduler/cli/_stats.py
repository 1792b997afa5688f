"""``stats``, ``pause NAME`` and ``resume NAME``: the queue's counts and backlog, and the
fleet-wide pause of a job name."""

from __future__ import annotations

import click
from rich import box
from rich.table import Table
from rich.text import Text

from .._format import fmt_compact_duration, fmt_when, inert, to_json
from ..job import JobStatus
from ..scheduler import Scheduler
from ..stats import MAX_NAMES_SHOWN, SchedulerStats, busiest_names
from ._connection import CliOptions, run_with_scheduler
from ._output import STATUS_STYLE, console
from ._parsing import check_job_name

__all__ = ["pause", "resume", "stats"]


@click.command(short_help="Counts by status and name, due backlog and lag, recent failures.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_obj
def stats(options: CliOptions, as_json: bool) -> None:
    """Counts by status and by name, how many jobs are due but not started and how long the
    oldest has waited, how many jobs failed in the last hour, the paused names, and the due
    jobs (by name) that no live worker handles: they wait until a worker with a task for
    that name starts (`workers` lists the live ones). Tables show the 100 names with the most
    jobs and sum the others in one row; --json has every name."""

    async def action(scheduler: Scheduler) -> SchedulerStats:
        return await scheduler.stats()

    snapshot = run_with_scheduler(options, action)
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
                    "unhandled": snapshot.unhandled,
                }
            )
        )
        return
    click.echo(f"Jobs in {options.where}, {fmt_when(snapshot.at)} UTC")
    _print_counts(snapshot)
    oldest = (
        "" if snapshot.oldest_due_at is None else f" (due {fmt_when(snapshot.oldest_due_at)} UTC)"
    )
    click.echo(f"Due, not started: {snapshot.due}")
    click.echo(f"Lag of the oldest due job: {fmt_compact_duration(lag)}{oldest}")
    click.echo(f"Failed in the last hour: {snapshot.failed_last_hour}")
    paused = ", ".join(inert(name) for name in snapshot.paused[:MAX_NAMES_SHOWN])
    more = len(snapshot.paused) - MAX_NAMES_SHOWN
    click.echo(f"Paused names: {paused or 'none'}" + (f" and {more} more" if more > 0 else ""))
    if snapshot.unhandled:
        _print_unhandled(snapshot.unhandled)


def _print_unhandled(unhandled: dict[str, int]) -> None:
    """The due jobs, by name, that no live worker handles, as a table on stdout."""
    output = console()
    output.print("Due but no live worker handles them (see `workers`):", style="bold yellow")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("name", overflow="fold")
    table.add_column("due", justify="right")
    shown, others = busiest_names(unhandled)
    for name in shown:
        table.add_row(Text(inert(name)), str(unhandled[name]))
    if others:
        table.add_row(_others(others), str(sum(unhandled[name] for name in others)))
    output.print(table)


def _others(names: list[str]) -> Text:
    """The row label of the names a table sums up."""
    return Text(f"({len(names)} other name{'s' if len(names) != 1 else ''})", style="dim")


def _print_counts(snapshot: SchedulerStats) -> None:
    """The counts of ``snapshot`` by status, then by name, as tables on stdout."""
    output = console()
    statuses = [status.value for status in JobStatus]
    by_status = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, title="Jobs by status")
    by_status.add_column("status")
    by_status.add_column("jobs", justify="right")
    for status in statuses:
        by_status.add_row(
            Text(status, style=STATUS_STYLE.get(status, "")), str(snapshot.by_status[status])
        )
    by_status.add_row(Text("total", style="bold"), str(snapshot.total))
    output.print(by_status)
    if snapshot.by_name:
        by_name = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, title="Jobs by name")
        by_name.add_column("name", overflow="fold")
        for status in statuses:
            by_name.add_column(status, justify="right")
        by_name.add_column("total", justify="right")
        totals = {name: sum(counts.values()) for name, counts in snapshot.by_name.items()}
        shown, others = busiest_names(totals)
        for name in shown:
            counts = snapshot.by_name[name]
            row = [str(counts.get(status, 0)) for status in statuses]
            by_name.add_row(Text(inert(name)), *row, str(totals[name]))
        if others:
            summed = [str(sum(snapshot.by_name[n].get(s, 0) for n in others)) for s in statuses]
            by_name.add_row(_others(others), *summed, str(sum(totals[n] for n in others)))
        output.print(by_name)


@click.command(short_help="Stop every worker from starting jobs of a name.")
@click.argument("name")
@click.pass_obj
def pause(options: CliOptions, name: str) -> None:
    """Stop every worker, everywhere, from starting jobs named NAME (running ones finish).
    The pause survives restarts; undo it with `resume NAME`."""
    check_job_name(name)

    async def action(scheduler: Scheduler) -> bool:
        return await scheduler.pause(name)

    changed = run_with_scheduler(options, action)
    click.echo(f"Paused {name}." if changed else f"{name} was already paused.")


@click.command(short_help="Let workers start jobs of a paused name again.")
@click.argument("name")
@click.pass_obj
def resume(options: CliOptions, name: str) -> None:
    """Let workers start jobs named NAME again."""
    check_job_name(name)

    async def action(scheduler: Scheduler) -> bool:
        return await scheduler.resume(name)

    changed = run_with_scheduler(options, action)
    click.echo(f"Resumed {name}." if changed else f"{name} was not paused.")
