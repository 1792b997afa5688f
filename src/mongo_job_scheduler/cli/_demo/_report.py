"""What the demo shows: events as they happen, a live table on a terminal, and the summary
with the facts each kind of job should demonstrate."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from rich import box
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ... import Job, JobStatus, Scheduler
from ._tour import (
    BATCH_CONCURRENCY,
    BATCH_SIZE,
    CRON,
    CRON_TIMEZONE,
    DELAY,
    FLAKY_SUCCEEDS_ON,
    JobStats,
    Scheduled,
    Tracker,
)

__all__ = ["event_printer", "live_table", "summary", "watch"]

EVENT_STYLE = {
    "job:start": "cyan",
    "job:complete": "green",
    "job:retry": "yellow",
    "job:fail": "bold red",
    "job:stalled": "magenta",
    "worker:error": "red",
}


def _short(job: Job) -> str:
    return str(job.id)[-6:]


def watch(scheduler: Scheduler, tracker: Tracker, log: Callable[[str, str, str], None]) -> None:
    """Count and show the events the demo cares about."""

    def on_start(job: Job) -> None:
        stats = tracker.get(job.name)
        stats.runs += 1
        stats.last = "running"
        tracker.start_order.append(job.name)
        log("job:start", job.name, f"#{_short(job)} attempt {job.attempts + 1}")

    def on_complete(job: Job) -> None:
        stats = tracker.get(job.name)
        stats.succeeded += 1
        stats.last = "succeeded"
        detail = f"#{_short(job)}"
        if job.attempts:
            detail += f" on attempt {job.attempts + 1}"
        if job.is_repeating and job.next_run_at is not None:
            detail += f", next run {job.next_run_at:%H:%M:%S} UTC"
        log("job:complete", job.name, detail)

    def on_retry(job: Job) -> None:
        stats = tracker.get(job.name)
        stats.retries += 1
        stats.last = "retrying"
        when = ""
        if job.next_run_at is not None:
            when = f", retry at {job.next_run_at:%H:%M:%S.%f}"[:-3]
        log("job:retry", job.name, f"#{_short(job)} {job.last_error}{when}")

    def on_fail(job: Job, error: BaseException) -> None:
        stats = tracker.get(job.name)
        stats.failures += 1
        stats.last = "failed"
        log("job:fail", job.name, f"#{_short(job)} {type(error).__name__}: {error}")

    def on_stalled(job: Job) -> None:
        log("job:stalled", job.name, f"#{_short(job)}")

    def on_worker_error(error: BaseException) -> None:
        log("worker:error", "", f"{type(error).__name__}: {error}")

    scheduler.on("job:start", on_start)
    scheduler.on("job:complete", on_complete)
    scheduler.on("job:retry", on_retry)
    scheduler.on("job:fail", on_fail)
    scheduler.on("job:stalled", on_stalled)
    scheduler.on("worker:error", on_worker_error)


def event_printer(console: Console, tracker: Tracker) -> Callable[[str, str, str], None]:
    """A ``log(event, name, detail)`` for :func:`watch` that prints each event on one line,
    after the seconds since the workers started."""

    def log(event: str, name: str, detail: str) -> None:
        style = EVENT_STYLE.get(event, "")
        line = Text.assemble(
            (f"{tracker.elapsed:6.2f}s ", "dim"),
            (f"{event:<13}", style),
            (f"{name:<17}", "bold"),
            detail,
        )
        console.print(line, overflow="fold")

    return log


def _counts(stats: JobStats) -> list[str]:
    return [str(stats.runs), str(stats.succeeded), str(stats.retries), str(stats.failures)]


def live_table(tracker: Tracker, deadline: float, stopping: bool) -> RenderableType:
    """The runs of each job so far and the time left (shown while the workers run)."""
    left = max(0.0, deadline - time.monotonic())
    state = "stopping..." if stopping else f"{left:4.1f}s left"
    table = Table(title=f"Live ({state})", box=box.ROUNDED, title_justify="left")
    for column in ("job", "kind", "runs", "ok", "retries", "failures", "last"):
        table.add_column(
            column, justify="right" if column in ("runs", "ok", "retries", "failures") else "left"
        )
    for name, stats in tracker.stats.items():
        table.add_row(name, stats.kind, *_counts(stats), stats.last)
    return table


# -- summary --------------------------------------------------------------------------------


async def summary(
    scheduler: Scheduler,
    tracker: Tracker,
    scheduled: Scheduled,
    console: Console,
    *,
    ran_for: float,
) -> None:
    """Print the runs per job, the final status of every job (read back with ``get_jobs``) and
    whether each kind of job did what it shows; ``ran_for`` is how long the workers ran."""
    console.print(_runs_table(tracker))
    jobs = await scheduler.get_jobs(limit=10_000)
    console.print(_status_table(jobs))
    console.print(f"[dim]({len(jobs)} jobs read back with get_jobs)[/dim]")

    deduped = await scheduler.get_jobs(name="sync-inventory")
    facts = _facts(tracker, scheduled, len(deduped))
    console.print("[bold]What happened[/bold]")
    for fact in facts:
        if fact.ok:
            mark = "[green]✔[/green]"
        elif ran_for < fact.needs:  # not reached in a short run: expected, not wrong
            mark = "[dim]-[/dim]"
        else:
            mark = "[red]✘[/red]"
        console.print(f"  {mark} {escape(fact.text)}")


def _runs_table(tracker: Tracker) -> Table:
    runs = Table(title="Runs per job", box=box.SQUARE, title_justify="left")
    runs.add_column("job")
    runs.add_column("kind")
    for column in ("runs", "succeeded", "retries", "failures"):
        runs.add_column(column, justify="right")
    for name, stats in tracker.stats.items():
        runs.add_row(name, stats.kind, *_counts(stats))
    total = JobStats("")
    for stats in tracker.stats.values():
        total.runs += stats.runs
        total.succeeded += stats.succeeded
        total.retries += stats.retries
        total.failures += stats.failures
    runs.add_section()
    runs.add_row("total", "", *_counts(total))
    return runs


def _status_table(jobs: list[Job]) -> Table:
    counts = Counter(job.status for job in jobs)
    statuses = Table(title="Final status", box=box.SQUARE, title_justify="left")
    statuses.add_column("status")
    statuses.add_column("jobs", justify="right")
    for status in JobStatus:
        statuses.add_row(status.value, str(counts.get(status, 0)))
    statuses.add_section()
    statuses.add_row("total", str(len(jobs)))
    return statuses


def _count(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def _times(count: int) -> str:
    return _count(count, "time", "times")


@dataclass(frozen=True)
class _Fact:
    """One line of "What happened": whether it held, and how long the workers must run for it
    to hold (a shorter or interrupted run shows it as not reached rather than wrong)."""

    ok: bool
    text: str
    needs: float = 0.0


def _facts(tracker: Tracker, scheduled: Scheduled, dedupe_jobs: int) -> list[_Fact]:
    return [
        *_repeat_facts(tracker),
        _retry_fact(tracker),
        _dedupe_fact(scheduled, dedupe_jobs),
        _priority_fact(tracker),
        _limit_fact(tracker),
        _delay_fact(tracker),
    ]


def _repeat_facts(tracker: Tracker) -> list[_Fact]:
    cron = tracker.stats["heartbeat-cron"].succeeded
    interval = tracker.stats["cleanup-interval"].succeeded
    return [
        _Fact(
            cron >= 2,
            f"cron job heartbeat-cron ran {_times(cron)} ({CRON!r} in {CRON_TIMEZONE})",
            needs=5,
        ),
        _Fact(interval >= 2, f"interval job cleanup-interval ran {_times(interval)}", needs=5),
    ]


def _retry_fact(tracker: Tracker) -> _Fact:
    attempt = tracker.flaky_success_attempt
    flaky = tracker.stats["flaky-payment"]
    if attempt is None:
        return _Fact(
            False,
            f"retrying job flaky-payment has not succeeded yet ({flaky.runs} attempts)",
            needs=4,
        )
    return _Fact(
        attempt == FLAKY_SUCCEEDS_ON,
        f"retrying job flaky-payment succeeded on attempt {attempt} "
        f"after {_count(flaky.retries, 'retry', 'retries')}",
    )


def _dedupe_fact(scheduled: Scheduled, dedupe_jobs: int) -> _Fact:
    same = scheduled.dedupe_second.id == scheduled.dedupe_first.id
    return _Fact(
        same and dedupe_jobs == 1,
        f"dedupe pair produced {dedupe_jobs} job"
        + ("s" if dedupe_jobs != 1 else "")
        + (" (the second schedule() returned the first job)" if same else ""),
    )


def _priority_fact(tracker: Tracker) -> _Fact:
    order = [n for n in tracker.start_order if n in ("urgent-report", "bulk-report")]
    if len(order) != 2:
        return _Fact(False, "the prioritised pair did not both run", needs=3)
    return _Fact(
        order[0] == "urgent-report",
        f"{order[0]} started before {order[1]} (priority 1 runs before priority 10)",
    )


def _limit_fact(tracker: Tracker) -> _Fact:
    peak = tracker.max_running["resize-image"]
    done = tracker.stats["resize-image"].succeeded
    return _Fact(
        0 < peak <= BATCH_CONCURRENCY and done == BATCH_SIZE,
        f"resize-image ran at most {peak} at once (limit {BATCH_CONCURRENCY}), "
        f"{done} of {BATCH_SIZE} done",
        needs=0 if peak > BATCH_CONCURRENCY else 4,
    )


def _delay_fact(tracker: Tracker) -> _Fact:
    delayed = tracker.reminder_started
    if delayed is None:
        return _Fact(False, "delayed job reminder has not run yet", needs=5)
    return _Fact(
        delayed >= DELAY.total_seconds() - 0.5,
        f"delayed job reminder started {delayed:.1f}s after it was scheduled "
        f"(delay {DELAY.total_seconds():g}s)",
    )
