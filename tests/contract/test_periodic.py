"""Contract: task handles (``@scheduler.task`` returns the function with ``schedule``) and
periodic jobs declared in code (``@scheduler.periodic``: one active job per declaration,
updated in place when the declaration changes, left alone on a plain restart)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from mongo_job_scheduler import (
    Job,
    JobStatus,
    JobStore,
    Repeat,
    Scheduler,
    ValidationError,
)
from mongo_job_scheduler.tasks import TaskHandle
from tests.conftest import wait_for
from tests.contract.helpers import make, running, sibling

# -- task handles ----------------------------------------------------------------------------


async def test_a_task_handle_still_calls_the_function_and_schedules_its_name(
    store: JobStore,
) -> None:
    scheduler = make(store)

    @scheduler.task("send-email")
    async def send_email(job: Job) -> str:
        """Send one email."""
        return f"sent to {job.data['to']}"

    assert isinstance(send_email, TaskHandle)
    assert send_email.name == "send-email"
    assert send_email.__name__ == "send_email" and send_email.__doc__ == "Send one email."
    job = await send_email.schedule({"to": "ada@example.com"}, priority=2, delay=3600)
    assert (job.name, job.data, job.priority) == ("send-email", {"to": "ada@example.com"}, 2)
    assert await send_email(job) == "sent to ada@example.com"  # still the function

    jobs = await send_email.schedule_bulk([{"data": {"to": "a"}}, {"data": {"to": "b"}}])
    assert [(j.name, j.data) for j in jobs] == [
        ("send-email", {"to": "a"}),
        ("send-email", {"to": "b"}),
    ]
    with pytest.raises(ValidationError, match=r"items\[0\]\.name"):
        await send_email.schedule_bulk([{"name": "other", "data": 1}])


async def test_a_handle_runs_its_jobs(store: JobStore) -> None:
    scheduler = make(store)
    done = asyncio.Event()

    @scheduler.task("ping")
    def ping(job: Job) -> None:  # a plain function: runs in a thread
        done.set()

    async with running(scheduler):
        job = await ping.schedule()
        finished = await scheduler.wait(job.id, timeout=10)
    assert finished.status is JobStatus.COMPLETED


# -- periodic declarations -------------------------------------------------------------------


def _declare(scheduler: Scheduler, **options: Any) -> list[Job]:
    """Declare 'nightly' on ``scheduler``; the list collects the jobs its handler ran."""
    ran: list[Job] = []
    options.setdefault("cron", "0 2 * * *")

    @scheduler.periodic("nightly", **options)
    async def nightly(job: Job) -> None:
        ran.append(job)

    return ran


async def _periodic_jobs(store: JobStore) -> list[Job]:
    return await Scheduler(store).get_jobs(name="nightly")


async def test_starting_creates_one_job_for_the_declaration(store: JobStore) -> None:
    scheduler = make(store, default_timezone="Europe/Paris")
    _declare(scheduler, data={"kind": "report"}, priority=3, retry=2, timeout=60)
    async with running(scheduler):
        [job] = await _periodic_jobs(store)
    assert job.status is JobStatus.PENDING
    assert job.data == {"kind": "report"}
    assert job.priority == 3
    assert job.repeat == Repeat(cron="0 2 * * *", timezone="Europe/Paris")
    assert job.retry is not None and job.retry.max_attempts == 2
    assert job.timeout == timedelta(seconds=60)
    assert job.dedupe_key == "periodic:nightly"
    assert job.next_run_at is not None and job.next_run_at > job.created_at  # type: ignore[operator]


async def test_a_restart_with_the_same_declaration_changes_nothing(store: JobStore) -> None:
    first = make(store)
    _declare(first, data={"v": 1})
    async with running(first):
        [before] = await _periodic_jobs(store)
    again = make(sibling(store))
    _declare(again, data={"v": 1})
    async with running(again):
        [after] = await _periodic_jobs(store)
    assert after.id == before.id
    assert after.updated_at == before.updated_at  # not even rewritten
    assert after.document == before.document


async def test_a_changed_declaration_updates_the_job_in_place(store: JobStore) -> None:
    first = make(store)
    _declare(first, cron="0 2 * * *", data={"v": 1}, priority=5)
    async with running(first):
        [before] = await _periodic_jobs(store)
    changed = make(sibling(store))
    _declare(changed, cron="30 4 * * *", data={"v": 2}, priority=1, concurrency=1)
    async with running(changed):
        [after] = await _periodic_jobs(store)
    assert after.id == before.id
    assert after.repeat is not None and after.repeat.cron == "30 4 * * *"
    assert (after.data, after.priority, after.concurrency) == ({"v": 2}, 1, 1)
    assert after.next_run_at is not None
    assert (after.next_run_at.hour, after.next_run_at.minute) == (4, 30)
    # And back: an option no longer declared is cleared.
    reverted = make(sibling(store))
    _declare(reverted, cron="30 4 * * *", data={"v": 2}, priority=1)
    async with running(reverted):
        [last] = await _periodic_jobs(store)
    assert last.id == before.id and last.concurrency is None


async def test_only_the_data_changed_keeps_the_next_run(store: JobStore) -> None:
    first = make(store)
    _declare(first, cron=None, every=3600, data={"v": 1})
    async with running(first):
        [before] = await _periodic_jobs(store)
    changed = make(sibling(store))
    _declare(changed, cron=None, every=3600, data={"v": 2})
    async with running(changed):
        [after] = await _periodic_jobs(store)
    assert after.data == {"v": 2}
    assert after.next_run_at == before.next_run_at


async def test_a_cancelled_periodic_job_stays_cancelled(store: JobStore) -> None:
    first = make(store)
    _declare(first)
    async with running(first):
        [job] = await _periodic_jobs(store)
        assert await first.cancel(job.id)
    again = make(sibling(store))
    _declare(again)
    async with running(again):
        [still] = await _periodic_jobs(store)
    assert still.id == job.id and still.status is JobStatus.CANCELLED


async def test_a_periodic_job_runs_on_its_schedule(store: JobStore) -> None:
    scheduler = make(store)
    ran = _declare(scheduler, cron=None, every=timedelta(milliseconds=200))
    async with running(scheduler):
        await wait_for(lambda: len(ran) >= 2, timeout=10)
        [job] = await _periodic_jobs(store)
    assert {r.id for r in ran} == {job.id}


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"cron": None}, "periodic"),
        ({"cron": "0 2 * * *", "every": 60}, "periodic"),
        ({"cron": None, "every": 60, "timezone": "UTC"}, "timezone"),
        ({"cron": "61 * * * *"}, "repeat.cron"),
        ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "repeat.timezone"),
        ({"priority": 0}, "priority"),
        ({"data": {"$bad": 1}}, "data"),
    ],
)
async def test_a_bad_declaration_is_refused_before_anything_is_written(
    store: JobStore, options: dict[str, Any], field: str
) -> None:
    scheduler = make(store)
    with pytest.raises(ValidationError) as info:
        _declare(scheduler, **options)
    assert info.value.field.startswith(field), info.value
    async with running(scheduler):
        assert await _periodic_jobs(store) == []
