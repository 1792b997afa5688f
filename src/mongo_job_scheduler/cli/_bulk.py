"""``jobs cancel`` and ``jobs retry``: one job by id, or every job a filter matches.

A filter (``--name``, ``--status``, ``--data``) first says how many jobs it matches, then asks
before acting (on a terminal; elsewhere ``--yes`` is needed), then acts on each job it matched,
with a progress bar when stderr is a terminal and nothing extra when it is not."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .._errors import InvalidJobState, JobNotFound
from .._format import fmt_when, inert
from ..job import Job
from ..scheduler import Scheduler
from ._connection import CliError, CliOptions, run_with_scheduler, usage_error
from ._output import err
from ._parsing import check_job_id, check_offline, data_filters

__all__ = ["jobs_cancel", "jobs_retry"]

PAGE = 10_000
"""Jobs read per page while collecting the ones a filter matches."""
AT_ONCE = 16
"""Jobs acted on at the same time."""
SHOWN_REFUSALS = 10
"""Refusals listed one by one after a bulk action (the rest are counted)."""

CANCELLABLE = ("pending", "running", "waiting")
RETRYABLE = ("failed", "cancelled")


@dataclass
class Filter:
    """Which jobs a bulk action is for."""

    name: str | None
    statuses: list[str]
    data: dict[str, Any] | None

    def describe(self) -> str:
        parts = [f"status {'|'.join(self.statuses)}"]
        if self.name is not None:
            parts.insert(0, f"name {self.name!r}")
        parts += [f"data.{key} = {value!r}" for key, value in (self.data or {}).items()]
        return inert(", ".join(parts))


@dataclass
class Tally:
    """What a bulk action did."""

    done: int = 0
    unchanged: int = 0
    gone: int = 0
    refused: list[str] = field(default_factory=list)


def _filter_options(statuses: Sequence[str]) -> Callable[[Any], Any]:
    """The options that choose jobs by filter (``--status`` among ``statuses``)."""

    def decorate(command: Any) -> Any:
        for option in reversed(
            [
                click.argument("job_id", metavar="ID", required=False),
                click.option("--name", help="Every job with this exact name."),
                click.option(
                    "--status",
                    "statuses",
                    multiple=True,
                    type=click.Choice(statuses),
                    help=f"Every job in this status (default: {', '.join(statuses)}); repeat "
                    "for several.",
                ),
                click.option(
                    "--data",
                    "data",
                    multiple=True,
                    metavar="KEY=VALUE",
                    callback=data_filters,
                    help="Every job whose data KEY equals VALUE (JSON if it parses, else a "
                    "string); repeat for several.",
                ),
                click.option(
                    "--yes", "-y", is_flag=True, help="Act on every match without asking."
                ),
            ]
        ):
            command = option(command)
        return command

    return decorate


def _chosen(
    job_id: str | None,
    name: str | None,
    statuses: tuple[str, ...],
    data: dict[str, Any] | None,
    default: Sequence[str],
) -> Filter | None:
    """The filter of a bulk action, or ``None`` for one job by id (checked offline)."""
    filtered = name is not None or bool(statuses) or data is not None
    if job_id is not None and filtered:
        raise usage_error("give a job ID or --name/--status/--data, not both")
    if job_id is not None:
        check_job_id(job_id)
        return None
    if not filtered:
        raise usage_error(
            "give a job ID, or --name/--status/--data to act on every job that matches"
        )
    chosen = Filter(name, list(statuses) or list(default), data)

    async def look_up(scheduler: Scheduler) -> None:
        await scheduler.get_jobs(
            name=chosen.name, status=chosen.statuses, data=chosen.data, limit=1
        )

    check_offline(look_up, {"name": "name", "data": "data", "status": "statuses"})
    return chosen


async def _matching(scheduler: Scheduler, chosen: Filter) -> list[Any]:
    """The ids of the jobs ``chosen`` matches now, oldest first."""
    ids: list[Any] = []
    while True:
        page = await scheduler.get_jobs(
            name=chosen.name,
            status=chosen.statuses,
            data=chosen.data,
            sort=("createdAt", "asc"),
            limit=PAGE,
            skip=len(ids),
            fields=["status"],
        )
        ids += [job.id for job in page]
        if len(page) < PAGE:
            return ids


def _confirm(what: str, count: int, yes: bool) -> None:
    if yes:
        return
    jobs = f"{count} job{'s' if count != 1 else ''}"
    if not sys.stdin.isatty():
        raise CliError(
            f"refusing to {what} {jobs} without confirmation: pass --yes (no terminal to ask on)"
        )
    if not click.confirm(f"{what.capitalize()} these {jobs}?", default=False, err=True):
        raise CliError(f"{what} aborted; nothing was changed")


async def _each(ids: Sequence[Any], act: Callable[[Any], Awaitable[None]], label: str) -> None:
    """``act`` on every id, :data:`AT_ONCE` at a time, with a progress bar on a terminal."""
    gate = asyncio.Semaphore(AT_ONCE)
    console = Console(stderr=True)
    progress = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )

    async def one(job_id: Any, task: Any) -> None:
        async with gate:
            await act(job_id)
        progress.advance(task)

    with progress:
        task = progress.add_task(label, total=len(ids))
        await asyncio.gather(*(one(job_id, task) for job_id in ids))


def _bulk(
    options: CliOptions,
    chosen: Filter,
    yes: bool,
    verb: tuple[str, str],
    act: Callable[[Scheduler, Any, Tally], Awaitable[None]],
) -> Tally | None:
    """Count what ``chosen`` matches, confirm, and ``act`` on each match; ``None`` when
    nothing matched."""
    what, label = verb

    async def run(scheduler: Scheduler) -> Tally | None:
        ids = await _matching(scheduler, chosen)
        matches = "1 job matches" if len(ids) == 1 else f"{len(ids)} jobs match"
        err(f"{matches} ({chosen.describe()}).")
        if not ids:
            return None
        _confirm(what, len(ids), yes)
        tally = Tally()

        async def one(job_id: Any) -> None:
            try:
                await act(scheduler, job_id, tally)
            except JobNotFound:
                tally.gone += 1
            except InvalidJobState as exc:
                tally.refused.append(str(exc))

        await _each(ids, one, label)
        return tally

    return run_with_scheduler(options, run)


def _report(tally: Tally, done: str, unchanged: str) -> None:
    parts = [f"{done} {tally.done} job{'s' if tally.done != 1 else ''}"]
    if tally.unchanged:
        parts.append(f"{tally.unchanged} {unchanged}")
    if tally.gone:
        parts.append(f"{tally.gone} no longer existed")
    if tally.refused:
        parts.append(f"{len(tally.refused)} refused")
    click.echo("; ".join(parts) + ".")
    for reason in tally.refused[:SHOWN_REFUSALS]:
        err(f"  {inert(reason)}")
    if len(tally.refused) > SHOWN_REFUSALS:
        err(f"  and {len(tally.refused) - SHOWN_REFUSALS} more")


@click.command("cancel", short_help="Cancel a job, or every job a filter matches.")
@_filter_options(CANCELLABLE)
@click.pass_obj
def jobs_cancel(
    options: CliOptions,
    job_id: str | None,
    name: str | None,
    statuses: tuple[str, ...],
    data: dict[str, Any] | None,
    yes: bool,
) -> None:
    """Cancel the pending, waiting or running job ID (a running handler is asked to stop), or
    every such job that --name, --status and --data match.

    By ID, exits 1 if the job had already finished. By filter, says how many jobs match and
    asks first (without a terminal to ask on: needs --yes); jobs that finished meanwhile are
    counted, not errors.
    """
    chosen = _chosen(job_id, name, statuses, data, CANCELLABLE)
    if chosen is None:
        assert job_id is not None

        async def action(scheduler: Scheduler) -> tuple[bool, Job | None]:
            changed = await scheduler.cancel(job_id)
            return changed, None if changed else await scheduler.get_job(job_id)

        changed, job = run_with_scheduler(options, action)
        if not changed:
            status = job.status.value if job is not None else "gone"
            raise CliError(f"job {job_id} is already {status}: nothing to cancel")
        click.echo(f"Cancelled job {job_id}.")
        return

    async def cancel(scheduler: Scheduler, one_id: Any, tally: Tally) -> None:
        if await scheduler.cancel(one_id):
            tally.done += 1
        else:
            tally.unchanged += 1

    tally = _bulk(options, chosen, yes, ("cancel", "Cancelling"), cancel)
    if tally is not None:
        _report(tally, "Cancelled", "had finished already")


@click.command(
    "retry", short_help="Run a failed or cancelled job again, or every one a filter matches."
)
@_filter_options(RETRYABLE)
@click.pass_obj
def jobs_retry(
    options: CliOptions,
    job_id: str | None,
    name: str | None,
    statuses: tuple[str, ...],
    data: dict[str, Any] | None,
    yes: bool,
) -> None:
    """Run the failed or cancelled job ID again now, with fresh attempts, or every such job
    that --name, --status and --data match.

    By filter, says how many jobs match and asks first (without a terminal to ask on: needs
    --yes); a job that changed meanwhile, or whose dedupe key another job holds now, is
    refused and listed.
    """
    chosen = _chosen(job_id, name, statuses, data, RETRYABLE)
    if chosen is None:
        assert job_id is not None

        async def action(scheduler: Scheduler) -> Job:
            return await scheduler.retry_job(job_id)

        job = run_with_scheduler(options, action)
        due = fmt_when(job.next_run_at)
        click.echo(f"Job {job.id} ({inert(job.name)}) is pending again, due {due} UTC.")
        return

    async def retry(scheduler: Scheduler, one_id: Any, tally: Tally) -> None:
        await scheduler.retry_job(one_id)
        tally.done += 1

    tally = _bulk(options, chosen, yes, ("retry", "Retrying"), retry)
    if tally is not None:
        _report(tally, "Retried", "unchanged")
