"""``workers``: the live workers of the fleet, as each last registered itself."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import click
from rich import box
from rich.table import Table
from rich.text import Text

from .._format import fmt_ago, inert, to_json
from ..fleet import LIVE_FOR, REGISTER_EVERY, WorkerInfo
from ..scheduler import Scheduler
from ._connection import CliOptions, run_with_scheduler
from ._output import console, err

__all__ = ["workers"]


WORKERS_HELP = f"""List the workers running now on --database / --collection, in every process
and on every machine: id, host, pid, the job names each claims ("any" for a catch-all
handler), jobs running out of how many at once, when it started and when it last registered.

A running worker registers itself every {REGISTER_EVERY:g} s (and within 10 s when
what it shows changes); one not seen for {LIVE_FOR.total_seconds():g} s is not listed.
"""


@click.command(
    help=WORKERS_HELP,
    short_help="The workers running now, in every process, and what they run.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per worker, per line.")
@click.pass_obj
def workers(options: CliOptions, as_json: bool) -> None:
    """List the live workers (the command's help is WORKERS_HELP)."""

    async def action(scheduler: Scheduler) -> tuple[list[WorkerInfo], datetime]:
        live = await scheduler.live_workers()
        store = scheduler.store
        assert store is not None
        return live, await store.now()

    live, now = run_with_scheduler(options, action)
    if as_json:
        for info in live:
            click.echo(to_json(dataclasses.asdict(info)))
        return
    if not live:
        err(f"No live workers on {options.where}.")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("host", overflow="fold")
    table.add_column("pid", justify="right")
    table.add_column("names", overflow="fold")
    table.add_column("running", justify="right")
    table.add_column("started", no_wrap=True)
    table.add_column("last seen", no_wrap=True)
    for info in live:
        table.add_row(
            Text(inert(info.id)),
            Text(inert(info.host)),
            str(info.pid),
            Text("any" if info.names is None else inert(", ".join(info.names)) or "none"),
            f"{info.running}/{info.workers}",
            fmt_ago(info.started_at, now),
            fmt_ago(info.last_seen, now),
        )
    console().print(table)
