"""Contract: jobs that wait for other jobs (``depends_on``) — chains and fan-out/fan-in,
released once when every dependency completed, cancelled down the graph when one fails, with
``run_on_failure`` for cleanup jobs; over both stores."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from mongo_job_scheduler import (
    Job,
    JobStatus,
    JobStore,
    Scheduler,
    ValidationError,
)
from mongo_job_scheduler._procedures import run_async, settle_dependants
from mongo_job_scheduler.stores.base import Fence, Finish
from tests.contract.helpers import make, running


async def _status(scheduler: Scheduler, job: Job) -> JobStatus:
    found = await scheduler.get_job(job.id)
    assert found is not None
    return found.status


async def _finish(store: JobStore, job: Job, status: str = "completed", **fields: Any) -> None:
    """Run ``job`` to an end through the store, as a worker whose process then died would:
    the outcome is written, nothing else happens."""
    [claimed] = (await store.claim("dying-worker", 1, timedelta(minutes=5), 3, [job.name])).jobs
    assert claimed.document["_id"] == job.id
    fence = Fence(job.id, "dying-worker", claimed.token)
    assert await store.finish(fence, Finish(set={"status": status, **fields}))


async def test_a_dependant_waits_then_runs_once_all_completed(store: JobStore) -> None:
    scheduler = make(store)
    order: list[str] = []

    @scheduler.task("step")
    async def step(job: Job) -> str:
        order.append(job.data["n"])
        return f"done {job.data['n']}"

    @scheduler.task("join")
    async def join(job: Job) -> list[Any]:
        before = await scheduler.get_jobs(ids=job.depends_on)
        order.append("join")
        return sorted(j.result for j in before)

    a = await step.schedule({"n": "a"})
    b = await step.schedule({"n": "b"}, delay=0.3)
    joined = await join.schedule(None, depends_on=[a, b.id, a])  # duplicates are ignored
    assert joined.status is JobStatus.WAITING
    assert joined.depends_on == (a.id, b.id)
    async with running(scheduler):
        done = await scheduler.wait(joined.id, timeout=10)
    assert done.status is JobStatus.COMPLETED
    assert done.result == ["done a", "done b"]
    assert order[-1] == "join" and sorted(order[:2]) == ["a", "b"]
    assert [j.id for j in await scheduler.dependants(a.id)] == [joined.id]


async def test_a_chain_runs_in_order(store: JobStore) -> None:
    scheduler = make(store)
    ran: list[int] = []

    @scheduler.task("link")
    async def link(job: Job) -> None:
        ran.append(job.data)

    first = await link.schedule(1, delay=0.2)
    second = await link.schedule(2, depends_on=[first])
    third = await link.schedule(3, depends_on=[second])
    async with running(scheduler):
        await scheduler.wait(third.id, timeout=10)
    assert ran == [1, 2, 3]


async def test_a_failed_dependency_cancels_down_the_graph(store: JobStore) -> None:
    scheduler = make(store)
    cancels: list[Job] = []
    scheduler.on("job:cancel", cancels.append)

    @scheduler.task("boom")
    async def boom(job: Job) -> None:
        raise RuntimeError("no")

    @scheduler.task("after")
    async def after(job: Job) -> None: ...

    bad = await boom.schedule()
    child = await after.schedule(depends_on=[bad])
    grandchild = await after.schedule(depends_on=[child])
    cleanup = await after.schedule("cleanup", depends_on=[bad], run_on_failure=True)
    async with running(scheduler):
        cleaned = await scheduler.wait(cleanup.id, timeout=10)
        assert cleaned.status is JobStatus.COMPLETED  # runs anyway
        lost = await scheduler.wait(grandchild.id, timeout=10)
    child_now = await scheduler.get_job(child.id)
    assert child_now is not None and child_now.status is JobStatus.CANCELLED
    assert child_now.last_error is not None and str(bad.id) in child_now.last_error
    assert child_now.last_error_type == "DependencyFailed"
    assert lost.status is JobStatus.CANCELLED
    assert lost.last_error is not None and str(child.id) in lost.last_error
    assert {j.id for j in cancels} == {child.id, grandchild.id}


async def test_cancelling_a_dependency_cancels_what_waits_for_it(store: JobStore) -> None:
    scheduler = Scheduler(store)
    first = await scheduler.schedule("slow", delay=3600)
    waiting = await scheduler.schedule("next", depends_on=[first])
    assert await scheduler.cancel(first.id)
    assert await _status(scheduler, waiting) is JobStatus.CANCELLED
    # A waiting job can be cancelled itself too.
    other = await scheduler.schedule("next", depends_on=[await scheduler.schedule("x", delay=60)])
    assert await scheduler.cancel(other.id)
    assert await _status(scheduler, other) is JobStatus.CANCELLED


async def test_finished_dependencies_count_at_once(store: JobStore) -> None:
    scheduler = Scheduler(store)
    done = await scheduler.schedule("a", delay=0)
    await _finish(store, done)
    failed = await scheduler.schedule("b")
    await _finish(store, failed, "failed")
    runnable = await scheduler.schedule("c", depends_on=[done], run_at=None)
    assert runnable.status is JobStatus.PENDING
    doomed = await scheduler.schedule("c", depends_on=[done, failed])
    assert doomed.status is JobStatus.CANCELLED
    assert doomed.last_error is not None and str(failed.id) in doomed.last_error
    anyway = await scheduler.schedule("c", depends_on=[done, failed], run_on_failure=True)
    assert anyway.status is JobStatus.PENDING


async def test_a_released_job_keeps_a_later_run_at(store: JobStore) -> None:
    scheduler = Scheduler(store)
    dep = await scheduler.schedule("a")
    later = await store.now() + timedelta(hours=2)
    waiting = await scheduler.schedule("b", depends_on=[dep], run_at=later)
    await _finish(store, dep)
    await run_async(settle_dependants([{"_id": dep.id, "status": "completed", "name": "a"}]), store)
    released = await scheduler.get_job(waiting.id)
    assert released is not None and released.status is JobStatus.PENDING
    assert released.next_run_at == waiting.next_run_at


@pytest.mark.parametrize(
    ("depends_on", "field"),
    [
        ("not-a-list", "depends_on"),
        ([42], "depends_on[0]"),
        (["zz" * 12], "depends_on[0]"),
        ([ObjectId()], "depends_on[0]"),
    ],
)
async def test_bad_references_are_refused_and_nothing_is_written(
    store: JobStore, depends_on: Any, field: str
) -> None:
    scheduler = Scheduler(store)
    with pytest.raises(ValidationError) as info:
        await scheduler.schedule("x", depends_on=depends_on)
    assert info.value.field == field
    assert await scheduler.get_jobs() == []


async def test_a_repeating_job_cannot_be_depended_on_nor_wait(store: JobStore) -> None:
    scheduler = Scheduler(store)
    cron = await scheduler.schedule("tick", repeat={"cron": "0 * * * *"})
    with pytest.raises(ValidationError, match="repeats") as info:
        await scheduler.schedule("x", depends_on=[cron])
    assert info.value.field == "depends_on[0]"
    plain = await scheduler.schedule("y")
    with pytest.raises(ValidationError, match="repeating"):
        await scheduler.schedule("z", depends_on=[plain], repeat={"cron": "0 * * * *"})
    with pytest.raises(ValidationError, match="needs depends_on"):
        await scheduler.schedule("z", run_on_failure=True)
    assert len(await scheduler.get_jobs()) == 2


async def test_schedule_bulk_checks_every_item_before_writing(store: JobStore) -> None:
    scheduler = Scheduler(store)
    dep = await scheduler.schedule("a")
    with pytest.raises(ValidationError) as info:
        await scheduler.schedule_bulk([{"name": "ok"}, {"name": "b", "depends_on": [ObjectId()]}])
    assert info.value.field == "items[1].depends_on[0]"
    assert [j.name for j in await scheduler.get_jobs()] == ["a"]
    jobs = await scheduler.schedule_bulk(
        [{"name": "b", "depends_on": [dep.id]}, {"name": "c"}, {"name": "d", "depends_on": [dep]}]
    )
    assert [(j.name, j.status) for j in jobs] == [
        ("b", JobStatus.WAITING),
        ("c", JobStatus.PENDING),
        ("d", JobStatus.WAITING),
    ]


async def test_a_worker_that_died_after_the_completion_leaves_nothing_stuck(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The completion was written but its dependants were never settled (the process died in
    between, or a Node worker finished the job): a running worker's sweep settles them."""
    from mongo_job_scheduler.worker import _acks, _registration

    monkeypatch.setattr(_registration, "REGISTER_EVERY", 0.05)
    monkeypatch.setattr(_acks, "SETTLE_GRACE", timedelta(milliseconds=100))
    scheduler = make(store)
    ran = asyncio.Event()

    @scheduler.task("fan-in")
    async def fan_in(job: Job) -> None:
        ran.set()

    dep = await scheduler.schedule("elsewhere")
    waiting = await fan_in.schedule(depends_on=[dep])
    await _finish(store, dep)  # completed, dependants not settled
    assert await _status(scheduler, waiting) is JobStatus.WAITING
    async with running(scheduler):
        await asyncio.wait_for(ran.wait(), 10)
    found = await scheduler.get_job(dep.id)
    assert found is not None and found.document.get("dependants") == "settled"


async def test_retrying_a_cancelled_dependant_waits_again(store: JobStore) -> None:
    scheduler = Scheduler(store)
    dep = await scheduler.schedule("a")
    waiting = await scheduler.schedule("b", depends_on=[dep])
    assert await scheduler.cancel(waiting.id)
    again = await scheduler.retry_job(waiting.id)
    assert again.status is JobStatus.WAITING
    await _finish(store, dep)
    await run_async(settle_dependants([{"_id": dep.id, "status": "completed", "name": "a"}]), store)
    assert await _status(scheduler, waiting) is JobStatus.PENDING
    # Retried after its dependency failed: it is cancelled again, naming it.
    failing = await scheduler.schedule("c")
    second = await scheduler.schedule("d", depends_on=[failing])
    await _finish(store, failing, "failed")
    await run_async(
        settle_dependants([{"_id": failing.id, "status": "failed", "name": "c"}]), store
    )
    assert await _status(scheduler, second) is JobStatus.CANCELLED
    retried = await scheduler.retry_job(second.id)
    assert retried.status is JobStatus.CANCELLED
    assert retried.last_error is not None and str(failing.id) in retried.last_error


async def test_waiting_jobs_are_visible(store: JobStore) -> None:
    scheduler = Scheduler(store)
    dep = await scheduler.schedule("a", delay=60)
    waiting = await scheduler.schedule("b", depends_on=[dep])
    assert [j.id for j in await scheduler.get_jobs(status="waiting")] == [waiting.id]
    stats = await scheduler.stats()
    assert stats.by_status["waiting"] == 1
    assert stats.by_name["b"] == {"waiting": 1}
    assert stats.due == 0


async def test_a_dedupe_key_is_held_while_waiting(store: JobStore) -> None:
    scheduler = Scheduler(store)
    dep = await scheduler.schedule("a", delay=60)
    first = await scheduler.schedule("b", depends_on=[dep], dedupe_key="k")
    again = await scheduler.schedule("b", depends_on=[dep], dedupe_key="k")
    assert again.id == first.id


async def test_a_task_handle_schedules_with_dependencies(store: JobStore) -> None:
    scheduler = make(store)

    @scheduler.task("handle-dep")
    async def dep_task(job: Job) -> None: ...

    first = await dep_task.schedule(delay=60)
    second = await dep_task.schedule(depends_on=[first])
    assert second.status is JobStatus.WAITING
