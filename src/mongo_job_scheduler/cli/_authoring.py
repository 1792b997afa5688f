"""``jobs add`` and ``jobs delete``: schedule a job and delete one, from the shell."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import click

from .._authoring import local_instant, parse_duration, parse_json, schedule_reporting, time_zone
from .._errors import ValidationError
from .._format import fmt_when, inert, to_plain
from ..job import Job
from ..scheduler import Scheduler
from ._connection import CliError, CliOptions, run_with_scheduler, usage_error
from ._parsing import check_job_id, check_offline

__all__ = ["jobs_add", "jobs_delete"]

ADD_PARAMS = {
    "name": "name",
    "data": "data",
    "run_at": "run_at",
    "delay": "delay",
    "repeat": "cron",
    "retry": "retry",
    "priority": "priority",
    "dedupe_key": "dedupe_key",
}
"""The option a refusal of each ``schedule()`` argument is reported on."""


def _parsed(ctx: click.Context, param: click.Parameter, value: Any, parse: Any) -> Any:
    if value is None:
        return None
    try:
        return parse(param.name or "", value)
    except ValidationError as exc:
        raise click.BadParameter(exc.reason, ctx=ctx, param=param) from None


def _json_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    return _parsed(ctx, param, value, parse_json)


def _duration_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> timedelta | None:
    result: timedelta | None = _parsed(ctx, param, value, parse_duration)
    return result


def _zone_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        _parsed(ctx, param, value, time_zone)
    return value


def _one_of(first: tuple[str, Any], second: tuple[str, Any]) -> None:
    if first[1] is not None and second[1] is not None:
        raise usage_error(f"give {first[0]} or {second[0]}, not both")


@click.command("add", short_help="Schedule a job (now, at a time, after a delay, repeating).")
@click.argument("name")
@click.option("--data", callback=_json_option, metavar="JSON", help="The job's data, as JSON.")
@click.option(
    "--run-at",
    metavar="ISO",
    help="First run at this date and time (2026-03-01T09:00:00; with an offset, or in --timezone).",
)
@click.option(
    "--delay",
    callback=_duration_option,
    metavar="DURATION",
    help="First run after this long (500ms, 90s, 10m, 1h30m, 2d).",
)
@click.option("--cron", metavar="EXPR", help="Repeat on this cron schedule (in --timezone).")
@click.option(
    "--every",
    callback=_duration_option,
    metavar="DURATION",
    help="Repeat at this interval (at least 100ms).",
)
@click.option(
    "--timezone",
    callback=_zone_option,
    metavar="TZ",
    help="IANA zone of --cron and of a --run-at without an offset (default UTC).",
)
@click.option("--priority", type=int, help="1 runs first, 10 last (default 5).")
@click.option("--retry", type=int, metavar="N", help="Run at most N times if it fails.")
@click.option("--dedupe-key", metavar="KEY", help="Create nothing while a job with KEY is active.")
@click.option("--json", "as_json", is_flag=True, help='Print {"created": ..., "job": ...}.')
@click.pass_obj
def jobs_add(
    options: CliOptions,
    name: str,
    data: Any,
    run_at: str | None,
    delay: timedelta | None,
    cron: str | None,
    every: timedelta | None,
    timezone: str | None,
    priority: int | None,
    retry: int | None,
    dedupe_key: str | None,
    as_json: bool,
) -> None:
    """Schedule a job named NAME: due now, at --run-at or after --delay; repeating on --cron or
    --every. Prints the job, or the existing job that holds --dedupe-key (nothing created).
    """
    _one_of(("--run-at", run_at), ("--delay", delay))
    _one_of(("--cron", cron), ("--every", every))
    arguments: dict[str, Any] = {"name": name, "data": data}
    if run_at is not None:
        zone = time_zone("timezone", timezone or "UTC")
        try:
            arguments["run_at"] = local_instant("run_at", run_at, zone)
        except ValidationError as exc:
            raise usage_error(exc.reason, "run_at") from None
    if delay is not None:
        arguments["delay"] = delay
    if cron is not None:
        arguments["repeat"] = {"cron": cron, "timezone": timezone or "UTC"}
    elif every is not None:
        arguments["repeat"] = {"every": every}
    for key, value in (("priority", priority), ("retry", retry), ("dedupe_key", dedupe_key)):
        if value is not None:
            arguments[key] = value

    async def schedule(scheduler: Scheduler) -> tuple[Job, bool]:
        [reported] = await schedule_reporting(scheduler, [arguments])
        return reported

    check_offline(schedule, {**ADD_PARAMS, "repeat": "cron" if cron is not None else "every"})
    job, created = run_with_scheduler(options, schedule)
    if as_json:
        click.echo(json.dumps({"created": created, "job": to_plain(job.document)}))
    elif created:
        due = "" if job.next_run_at is None else f", due {fmt_when(job.next_run_at)} UTC"
        click.echo(f"Created job {job.id} ({inert(job.name)}){due}.")
    else:
        click.echo(
            f"Job {job.id} ({inert(job.name)}, {job.status.value}) holds dedupe key "
            f"{inert(repr(job.dedupe_key))}: nothing created."
        )


@click.command("delete", short_help="Delete a job that is not running.")
@click.argument("job_id", metavar="ID")
@click.pass_obj
def jobs_delete(options: CliOptions, job_id: str) -> None:
    """Delete a pending, waiting or finished job for good (a running one: cancel it first).
    Its dedupe key is given back; jobs waiting for it are cancelled unless they run on
    failure."""
    check_job_id(job_id)

    async def delete(scheduler: Scheduler) -> bool:
        return await scheduler.delete_job(job_id)

    if not run_with_scheduler(options, delete):
        raise CliError(f"job {job_id} not found in {options.where}")
    click.echo(f"Deleted job {job_id}.")
