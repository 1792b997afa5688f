"""Node parity: each behaviour of the Node library's own test suite that this
project keeps, tested against the Python API and (where it applies) over both stores.

Test names carry the item's number in ``docs/node-parity.md`` (``test_node_NNN_...``), which
maps every item; items whose behaviour this project changes test the project's behaviour
instead and say so.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId

from mongo_job_scheduler import (
    ConfigurationError,
    Job,
    JobStatus,
    JobStore,
    Repeat,
    Retry,
    Scheduler,
    ValidationError,
)
from mongo_job_scheduler._documents import build_new_job
from mongo_job_scheduler.stores.base import Fence, Finish
from tests.conftest import wait_for
from tests.parity import FAST, Recorder, claim_all, insert, running, utcnow

# -- helpers ----------------------------------------------------------------------------------


async def _doc(store: JobStore, job_id: Any) -> dict[str, Any]:
    doc = await store.get(job_id)
    assert doc is not None
    return doc


def _has_status(store: JobStore, job_id: Any, *statuses: str) -> Any:
    async def check() -> bool:
        doc = await store.get(job_id)
        return doc is not None and doc["status"] in statuses

    return check


def _count(scheduler: Scheduler, status: str, name: str | None = None) -> Any:
    async def check() -> int:
        return len(await scheduler.get_jobs(name=name, status=status, limit=10_000))

    return check


def _all_done(scheduler: Scheduler, total: int, name: str | None = None) -> Any:
    async def check() -> bool:
        return await _count(scheduler, "completed", name)() == total

    return check


def _fence(claimed_doc: dict[str, Any], owner: str) -> Fence:
    return Fence(claimed_doc["_id"], owner, int(claimed_doc["lockVersion"]))


# -- in-memory store items 1-8 (store semantics, both stores) ----------------------------------


async def test_node_001_create_assigns_id_and_pending_status(store: JobStore) -> None:
    doc = await insert(store, "a")
    stored = await _doc(store, doc["_id"])
    assert isinstance(stored["_id"], ObjectId)
    assert stored["status"] == "pending"


async def test_node_002_claim_returns_running_job_locked_by_worker(store: JobStore) -> None:
    doc = await insert(store, "a")
    [claimed] = await claim_all(store, "worker-1")
    assert claimed.document["_id"] == doc["_id"]
    assert claimed.document["status"] == "running"
    assert claimed.document["lockedBy"] == "worker-1"


async def test_node_003_second_claim_of_single_job_returns_nothing(store: JobStore) -> None:
    await insert(store, "a")
    assert len(await claim_all(store, "w1", limit=1)) == 1
    assert await claim_all(store, "w2", limit=1) == []


async def test_node_004_expired_lease_makes_job_claimable_again(store: JobStore) -> None:
    # Node: recoverStaleJobs() at start. Here the claim itself takes over a running
    # job whose lease expired, and counts the expiry.
    doc = await insert(store, "a")
    await claim_all(store, "dead-worker", lease=0.05)

    async def reclaimed() -> Any:
        return await claim_all(store, "w2")

    [again] = await wait_for(reclaimed, timeout=10)
    assert again.document["_id"] == doc["_id"]
    assert again.document["lockedBy"] == "w2"
    assert again.document["leaseExpiries"] == 1


async def test_node_005_rescheduled_to_the_future_is_not_claimable(store: JobStore) -> None:
    scheduler = Scheduler(store)
    job = await scheduler.schedule("a")
    await scheduler.update_job(job.id, run_at=utcnow() + timedelta(seconds=60))
    assert await claim_all(store) == []


async def test_node_006_cancelled_job_is_not_claimable(store: JobStore) -> None:
    scheduler = Scheduler(store)
    job = await scheduler.schedule("a")
    assert await scheduler.cancel(job.id) is True
    assert await claim_all(store) == []


async def test_node_007_twenty_concurrent_claims_take_one_job_once(store: JobStore) -> None:
    await insert(store, "a")
    results = await asyncio.gather(*(claim_all(store, f"w{i}", limit=1) for i in range(20)))
    assert sum(len(r) for r in results) == 1


async def test_node_008_claim_complete_loop_processes_every_job_once(store: JobStore) -> None:
    # Node uses 1000 jobs; 300 show the same (every job exactly once, then nothing) faster.
    now = await store.now()
    await store.insert([build_new_job("bulk", {"i": i}, now=now) for i in range(300)])
    seen: set[Any] = set()
    while True:
        batch = await claim_all(store, "w1", limit=100)
        if not batch:
            break
        for claimed in batch:
            assert claimed.document["_id"] not in seen
            seen.add(claimed.document["_id"])
            done = await store.finish(
                _fence(claimed.document, "w1"), Finish(set={"status": "completed"})
            )
            assert done
    assert len(seen) == 300
    assert await claim_all(store) == []


# -- cancel and get_job 9-12 -------------------------------------------------------------------


async def test_node_009_cancel_pending_job(store: JobStore) -> None:
    scheduler = Scheduler(store)
    job = await scheduler.schedule("a")
    await scheduler.cancel(job.id)
    assert (await _doc(store, job.id))["status"] == "cancelled"


async def test_node_010_cancel_running_job_clears_its_lock(store: JobStore) -> None:
    scheduler = Scheduler(store)
    job = await scheduler.schedule("a")
    await claim_all(store, "w1")
    assert await scheduler.cancel(job.id) is True
    doc = await _doc(store, job.id)
    assert doc["status"] == "cancelled"
    assert "lockedBy" not in doc and "lockUntil" not in doc


async def test_node_011_get_job_returns_the_created_job(store: JobStore) -> None:
    scheduler = Scheduler(store)
    job = await scheduler.schedule("report", {"x": 1})
    got = await scheduler.get_job(job.id)
    assert got is not None and got.id == job.id and got.name == "report"
    by_hex = await scheduler.get_job(str(job.id))
    assert by_hex is not None and by_hex.id == job.id


async def test_node_012_get_job_of_unknown_id_is_none_and_malformed_id_is_typed_error(
    store: JobStore,
) -> None:
    scheduler = Scheduler(store)
    assert await scheduler.get_job(ObjectId()) is None
    with pytest.raises(ValidationError):
        await scheduler.get_job("non-existent-id")


# -- concurrency 13-23 -------------------------------------------------------------------------


async def test_node_013_020_concurrency_is_kept_on_create(store: JobStore) -> None:
    scheduler = Scheduler(store)
    job = await scheduler.schedule("c", concurrency=3)
    assert job.concurrency == 3
    assert (await _doc(store, job.id))["concurrency"] == 3
    assert (await scheduler.schedule("c", concurrency=5)).concurrency == 5


async def test_node_014_limit_two_lets_two_of_three_be_claimed(store: JobStore) -> None:
    for _ in range(3):
        await insert(store, "limited", concurrency=2)
    first = await claim_all(store, "w1", limit=1)
    second = await claim_all(store, "w2", limit=1)
    third = await claim_all(store, "w3", limit=1)
    assert (len(first), len(second), len(third)) == (1, 1, 0)
    assert len(await claim_all(store, "w4", limit=10)) == 0


async def test_node_015_limit_above_demand_lets_all_be_claimed(store: JobStore) -> None:
    for _ in range(2):
        await insert(store, "roomy", concurrency=5)
    assert len(await claim_all(store, "w1", limit=10)) == 2


async def test_node_016_limits_are_per_name(store: JobStore) -> None:
    a = await insert(store, "type-a", concurrency=1)
    b = await insert(store, "type-b", concurrency=1)
    [first] = await claim_all(store, "w1", limit=1)
    [second] = await claim_all(store, "w2", limit=1)
    assert first.document["_id"] == a["_id"]
    assert second.document["_id"] == b["_id"]


async def test_node_017_unlimited_jobs_all_claimable(store: JobStore) -> None:
    for _ in range(5):
        await insert(store, "free")
    assert len(await claim_all(store, "w1", limit=10)) == 5


async def test_node_018_running_count_per_name(store: JobStore) -> None:
    # Node's store.countRunning(name) is internal; the public equivalent is get_jobs().
    for _ in range(3):
        await insert(store, "test-job")
    await insert(store, "other-job")
    await claim_all(store, "w1", limit=2)  # two test-job (inserted first)
    await claim_all(store, "w2", limit=10)
    scheduler = Scheduler(store)
    running_jobs = await scheduler.get_jobs(name="test-job", status="running")
    assert len(running_jobs) == 3  # every test-job now runs
    await scheduler.cancel(running_jobs[0].id)
    assert len(await scheduler.get_jobs(name="test-job", status="running")) == 2
    assert len(await scheduler.get_jobs(name="other-job", status="running")) == 1


async def test_node_019_023_update_job_concurrency_persists(store: JobStore) -> None:
    scheduler = Scheduler(store)
    job = await scheduler.schedule("c", concurrency=1)
    updated = await scheduler.update_job(job.id, concurrency=10)
    assert updated.concurrency == 10
    got = await scheduler.get_job(job.id)
    assert got is not None and got.concurrency == 10


async def test_node_021_invalid_concurrency_is_rejected(store: JobStore) -> None:
    scheduler = Scheduler(store)
    for bad in (0, -1, 2.5, "2", True):
        with pytest.raises(ValidationError) as info:
            await scheduler.schedule("c", concurrency=bad)
        assert info.value.field == "concurrency"
    assert await scheduler.get_jobs() == []


async def test_node_022_bulk_keeps_concurrency_and_rejects_whole_batch(store: JobStore) -> None:
    scheduler = Scheduler(store)
    jobs = await scheduler.schedule_bulk(
        [{"name": "a", "concurrency": 3}, {"name": "b", "concurrency": 5}]
    )
    assert [j.concurrency for j in jobs] == [3, 5]
    with pytest.raises(ValidationError) as info:
        await scheduler.schedule_bulk(
            [{"name": "c", "concurrency": 2}, {"name": "d", "concurrency": 0}]
        )
    assert info.value.field == "items[1].concurrency"
    assert {j.name for j in await scheduler.get_jobs()} == {"a", "b"}


# -- date validation 24-26 (no "Invalid Date" in Python: naive or non-datetime values) ---------


async def test_node_024_invalid_run_at_is_rejected(store: JobStore) -> None:
    scheduler = Scheduler(store)
    for bad in ("2024-01-01", datetime(2030, 1, 1), 12345):
        with pytest.raises(ValidationError) as info:
            await scheduler.schedule("a", run_at=bad)
        assert info.value.field == "run_at"
    assert await scheduler.get_jobs() == []


async def test_node_025_bulk_with_one_invalid_run_at_is_rejected(store: JobStore) -> None:
    scheduler = Scheduler(store)
    with pytest.raises(ValidationError) as info:
        await scheduler.schedule_bulk(
            [{"name": "ok", "run_at": utcnow()}, {"name": "bad", "run_at": datetime(2030, 1, 1)}]
        )
    assert info.value.field == "items[1].run_at"
    assert await scheduler.get_jobs() == []


async def test_node_026_update_with_invalid_run_at_is_rejected(store: JobStore) -> None:
    scheduler = Scheduler(store)
    job = await scheduler.schedule("a", run_at=utcnow() + timedelta(hours=1))
    for bad in ("tomorrow", datetime(2030, 1, 1), None):
        with pytest.raises(ValidationError):
            await scheduler.update_job(job.id, run_at=bad)
    assert (await _doc(store, job.id))["nextRunAt"] == job.next_run_at


# -- dedupe 27-29 --------------------------------------------------------------------------------


async def test_node_027_028_same_dedupe_key_same_job_other_key_other_job(store: JobStore) -> None:
    scheduler = Scheduler(store)
    first = await scheduler.schedule("email", dedupe_key="email:1")
    again = await scheduler.schedule("email", dedupe_key="email:1")
    other = await scheduler.schedule("email", dedupe_key="email:2")
    assert again.id == first.id
    assert other.id != first.id
    assert len(await scheduler.get_jobs()) == 2


async def test_node_029_dedupe_with_retry_runs_until_success(store: JobStore) -> None:
    rec = Recorder()

    async def handler(job: Job) -> None:
        rec.record(job)
        if rec.count == 1:
            raise RuntimeError("first try fails")

    async with running(store, handler) as scheduler:
        job = await scheduler.schedule(
            "pay", dedupe_key="pay:1", retry={"maxAttempts": 3, "delay": 0}
        )
        assert (await scheduler.schedule("pay", dedupe_key="pay:1")).id == job.id
        await wait_for(_has_status(store, job.id, "completed"))
    assert rec.count == 2


# -- graceful shutdown 30-31 ---------------------------------------------------------------------


async def test_node_030_graceful_stop_waits_for_the_running_handler(store: JobStore) -> None:
    started = asyncio.Event()
    finished: list[bool] = []

    async def handler(job: Job) -> None:
        started.set()
        await asyncio.sleep(0.1)
        finished.append(True)

    scheduler = Scheduler(store, handler, poll_interval=FAST)
    await scheduler.start()
    job = await scheduler.schedule("slow")
    await asyncio.wait_for(started.wait(), 10)
    await scheduler.stop(graceful=True, timeout=10)
    assert finished == [True]
    assert (await _doc(store, job.id))["status"] == "completed"


async def test_node_031_graceful_stop_timeout_returns_and_releases_the_job(store: JobStore) -> None:
    # Node resolves and leaves the job running in the background; here, after the timeout
    # the handler is stopped and the job released so another worker takes it at once.
    started = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()
        await asyncio.sleep(30)

    scheduler = Scheduler(store, handler, poll_interval=FAST)
    await scheduler.start()
    job = await scheduler.schedule("stuck")
    await asyncio.wait_for(started.wait(), 10)
    began = time.monotonic()
    await scheduler.stop(graceful=True, timeout=0.05)
    assert time.monotonic() - began < 10
    doc = await _doc(store, job.id)
    assert doc["status"] == "pending" and "lockedBy" not in doc


# -- heartbeat and max execution 32-41 -------------------------------------------------------------


async def test_node_032_036_lease_renewed_repeatedly_and_no_stall_without_limit(
    store: JobStore,
) -> None:
    done = asyncio.Event()
    stalls: list[Job] = []

    async def handler(job: Job) -> None:
        await asyncio.wait_for(done.wait(), 20)

    async with running(store, handler, lock_timeout=0.3) as scheduler:
        scheduler.on("job:stalled", stalls.append)
        job = await scheduler.schedule("long")
        seen: set[datetime] = set()

        async def renewed_twice() -> bool:
            doc = await _doc(store, job.id)
            if doc.get("lockUntil") is not None:
                seen.add(doc["lockUntil"])
            return len(seen) >= 3

        await wait_for(renewed_twice, timeout=10, interval=0.01)
        done.set()
        await wait_for(_has_status(store, job.id, "completed"))
    assert stalls == []


async def test_node_033_034_stall_emitted_once_and_lease_no_longer_renewed(store: JobStore) -> None:
    done = asyncio.Event()
    stalls: list[Job] = []

    async def handler(job: Job) -> None:
        await asyncio.wait_for(done.wait(), 20)

    async with running(store, handler, lock_timeout=0.4, max_execution=0.15) as scheduler:
        scheduler.on("job:stalled", stalls.append)
        job = await scheduler.schedule("stuck-job")
        await wait_for(lambda: stalls, timeout=10)

        async def lease_expired() -> bool:
            doc = await _doc(store, job.id)
            return doc["lockUntil"] < await store.now()

        await wait_for(lease_expired, timeout=10)
        done.set()
    assert len(stalls) == 1
    assert stalls[0].name == "stuck-job"


async def test_node_035_per_job_max_execution_overrides_global(store: JobStore) -> None:
    done = asyncio.Event()
    stalls: list[Job] = []

    async def handler(job: Job) -> None:
        await asyncio.wait_for(done.wait(), 20)

    async with running(store, handler, lock_timeout=0.3, max_execution=60) as scheduler:
        scheduler.on("job:stalled", stalls.append)
        await scheduler.schedule("quick-limit", max_execution=0.1)
        await wait_for(lambda: stalls, timeout=10)
        done.set()
    assert [j.name for j in stalls] == ["quick-limit"]


@pytest.mark.parametrize("bad", [0, -1, "500", timedelta(0)])
def test_node_037_scheduler_rejects_invalid_max_execution(bad: Any) -> None:
    # 1.5 is valid here: durations are seconds, so "positive integer" became "positive".
    with pytest.raises(ConfigurationError):
        Scheduler(max_execution=bad)
    assert Scheduler(max_execution=1.5).max_execution == timedelta(seconds=1.5)


async def test_node_038_schedule_rejects_invalid_max_execution(store: JobStore) -> None:
    scheduler = Scheduler(store)
    for bad in (0, -100, "80"):
        with pytest.raises(ValidationError) as info:
            await scheduler.schedule("a", max_execution=bad)
        assert info.value.field == "max_execution"
    assert await scheduler.get_jobs() == []


async def test_node_039_stalled_job_is_taken_again_after_its_lease_expires(store: JobStore) -> None:
    # Node's memory store never re-takes a stalled job (one call). Here delivery is
    # at-least-once, so once the un-renewed lease expires another worker runs it again.
    release = asyncio.Event()
    stalls: list[Job] = []
    rec = Recorder()

    async def handler(job: Job) -> None:
        rec.record(job)
        if rec.count == 1:
            await asyncio.wait_for(release.wait(), 20)

    async with running(store, handler, workers=2, lock_timeout=0.3, max_execution=0.1) as first:
        first.on("job:stalled", stalls.append)
        job = await first.schedule("stuck")
        await wait_for(lambda: rec.count >= 2, timeout=10)
        release.set()
        await wait_for(_has_status(store, job.id, "completed"))
    assert len(stalls) == 1
    assert rec.calls[1].lease_expiries == 1
    assert rec.calls[1].token > rec.calls[0].token


async def test_node_040_job_within_max_execution_completes_without_stall(store: JobStore) -> None:
    stalls: list[Job] = []

    async def handler(job: Job) -> None:
        await asyncio.sleep(0.15)

    async with running(store, handler, lock_timeout=0.3, max_execution=0.5) as scheduler:
        scheduler.on("job:stalled", stalls.append)
        job = await scheduler.schedule("ok")
        await wait_for(_has_status(store, job.id, "completed"))
    assert stalls == []


async def test_node_041_mixed_batch_only_slow_job_stalls(store: JobStore) -> None:
    stalls: list[Job] = []
    release = asyncio.Event()

    async def handler(job: Job) -> None:
        if job.name == "slow":
            await asyncio.wait_for(release.wait(), 20)
        else:
            await asyncio.sleep(job.data["ms"] / 1000)

    async with running(store, handler, workers=3, lock_timeout=0.3, max_execution=0.1) as scheduler:
        scheduler.on("job:stalled", stalls.append)
        fast = await scheduler.schedule("fast", {"ms": 20})
        medium = await scheduler.schedule("medium", {"ms": 50})
        await scheduler.schedule("slow")
        await wait_for(lambda: stalls, timeout=10)
        await wait_for(_has_status(store, fast.id, "completed"))
        await wait_for(_has_status(store, medium.id, "completed"))
        release.set()
    assert {j.name for j in stalls} == {"slow"}


# -- ownership 42-46 -----------------------------------------------------------------------------


async def test_node_042_owner_completes_and_lock_is_cleared(store: JobStore) -> None:
    doc = await insert(store, "a")
    [claimed] = await claim_all(store, "w1")
    assert await store.finish(_fence(claimed.document, "w1"), Finish(set={"status": "completed"}))
    after = await _doc(store, doc["_id"])
    assert after["status"] == "completed"
    assert "lockedBy" not in after


async def test_node_043_other_worker_cannot_complete(store: JobStore) -> None:
    doc = await insert(store, "a")
    [claimed] = await claim_all(store, "w1")
    assert not await store.finish(
        _fence(claimed.document, "w2"), Finish(set={"status": "completed"})
    )
    after = await _doc(store, doc["_id"])
    assert after["status"] == "running" and after["lockedBy"] == "w1"


async def test_node_044_completing_a_completed_job_is_refused(store: JobStore) -> None:
    await insert(store, "a")
    [claimed] = await claim_all(store, "w1")
    fence = _fence(claimed.document, "w1")
    assert await store.finish(fence, Finish(set={"status": "completed"}))
    assert not await store.finish(fence, Finish(set={"status": "failed"}))
    assert (await _doc(store, fence.job_id))["status"] == "completed"


async def test_node_045_old_owner_cannot_complete_after_takeover(store: JobStore) -> None:
    doc = await insert(store, "a")
    [old] = await claim_all(store, "worker-1", lease=0.05)

    async def take_over() -> Any:
        return await claim_all(store, "worker-2")

    [new] = await wait_for(take_over, timeout=10)
    assert not await store.finish(
        _fence(old.document, "worker-1"), Finish(set={"status": "completed"})
    )
    after = await _doc(store, doc["_id"])
    assert after["status"] == "running"
    assert after["lockedBy"] == "worker-2"
    assert after["lockVersion"] == new.token


async def test_node_046_cpu_bound_sync_handler_keeps_its_lease(store: JobStore) -> None:
    # Node: a busy-wait blocks the event loop and the heartbeat. Sync handlers run in a thread
    # pool here, so the lease is renewed and the job completes with no ownership error.
    errors: list[BaseException] = []

    def busy(job: Job) -> None:
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            pass

    async with running(store, busy, lock_timeout=0.3) as scheduler:
        scheduler.on("worker:error", errors.append)
        job = await scheduler.schedule("cpu")
        await wait_for(_has_status(store, job.id, "completed", "failed"))
    assert (await _doc(store, job.id))["status"] == "completed"
    assert errors == []


# -- priority 47-53 ------------------------------------------------------------------------------


async def test_node_047_048_default_priority_five_and_custom_kept(store: JobStore) -> None:
    scheduler = Scheduler(store)
    job = await scheduler.schedule("a")
    [bulk] = await scheduler.schedule_bulk([{"name": "b"}])
    high = await scheduler.schedule("c", priority=1)
    for j in (job, bulk):
        got = await scheduler.get_job(j.id)
        assert got is not None and got.priority == 5
    assert (await _doc(store, high.id))["priority"] == 1


async def test_node_049_priorities_run_in_order(store: JobStore) -> None:
    order: list[int] = []

    async def handler(job: Job) -> None:
        order.append(job.priority)

    scheduler = Scheduler(store, handler, poll_interval=FAST)
    for p in (10, 1, 5):
        await scheduler.schedule("p", priority=p)
    await scheduler.start()
    try:
        await wait_for(lambda: len(order) == 3)
    finally:
        await scheduler.stop()
    assert order == [1, 5, 10]


async def test_node_050_equal_priority_earlier_due_first(store: JobStore) -> None:
    order: list[str] = []

    async def handler(job: Job) -> None:
        order.append(job.data)

    scheduler = Scheduler(store, handler, poll_interval=FAST)
    now = utcnow()
    await scheduler.schedule("p", "later", run_at=now - timedelta(seconds=1))
    await scheduler.schedule("p", "earlier", run_at=now - timedelta(seconds=2))
    await scheduler.start()
    try:
        await wait_for(lambda: len(order) == 2)
    finally:
        await scheduler.stop()
    assert order == ["earlier", "later"]


async def test_node_051_update_priority_persists(store: JobStore) -> None:
    scheduler = Scheduler(store)
    job = await scheduler.schedule("a")
    await scheduler.update_job(job.id, priority=2)
    assert (await _doc(store, job.id))["priority"] == 2


async def test_node_052_invalid_priority_is_rejected(store: JobStore) -> None:
    scheduler = Scheduler(store)
    for bad in (0, 11, 1.5, None, "3"):
        with pytest.raises(ValidationError) as info:
            await scheduler.schedule("a", priority=bad)
        assert info.value.field == "priority"
    with pytest.raises(ValidationError) as info:
        await scheduler.schedule_bulk([{"name": "b", "priority": 15}])
    assert info.value.field == "items[0].priority"
    assert await scheduler.get_jobs() == []


async def test_node_053_raising_priority_before_due_runs_job_first(store: JobStore) -> None:
    order: list[str] = []

    async def handler(job: Job) -> None:
        order.append(job.data)

    scheduler = Scheduler(store, handler, poll_interval=FAST)
    due = utcnow() + timedelta(seconds=60)
    await scheduler.schedule("p", "first", run_at=due, priority=5)
    promoted = await scheduler.schedule("p", "promoted", run_at=due, priority=10)
    await scheduler.update_job(promoted.id, priority=1)
    for job in await scheduler.get_jobs():
        await scheduler.update_job(job.id, run_at=utcnow() - timedelta(seconds=1))
    await scheduler.start()
    try:
        await wait_for(lambda: len(order) == 2)
    finally:
        await scheduler.stop()
    assert order == ["promoted", "first"]


# -- query 54-58 -----------------------------------------------------------------------------------


async def _query_fixture(scheduler: Scheduler) -> list[Job]:
    base = utcnow() + timedelta(hours=1)
    jobs = []
    for i, name in enumerate(["job A", "job B", "job A"], start=1):
        jobs.append(await scheduler.schedule(name, {"id": i}, run_at=base + timedelta(minutes=i)))
    return jobs


async def test_node_054_filter_by_name(store: JobStore) -> None:
    scheduler = Scheduler(store)
    await _query_fixture(scheduler)
    found = await scheduler.get_jobs(name="job A")
    assert sorted(j.data["id"] for j in found) == [1, 3]


async def test_node_055_sort_by_next_run_at_desc(store: JobStore) -> None:
    scheduler = Scheduler(store)
    await _query_fixture(scheduler)
    found = await scheduler.get_jobs(sort=("nextRunAt", "desc"))
    assert [j.data["id"] for j in found] == [3, 2, 1]


async def test_node_056_sort_asc_with_skip_and_limit(store: JobStore) -> None:
    scheduler = Scheduler(store)
    await _query_fixture(scheduler)
    found = await scheduler.get_jobs(sort=("nextRunAt", "asc"), skip=1, limit=1)
    assert [j.data["id"] for j in found] == [2]


async def test_node_057_filter_by_data_key(store: JobStore) -> None:
    scheduler = Scheduler(store)
    await _query_fixture(scheduler)
    found = await scheduler.get_jobs(data={"id": 2})
    assert [j.name for j in found] == ["job B"]


async def test_node_058_data_filter_with_sort_and_name(store: JobStore) -> None:
    scheduler = Scheduler(store)
    await scheduler.schedule("report", {"orgId": "org-1", "type": "financial"})
    await scheduler.schedule("email", {"orgId": "org-1"})
    await scheduler.schedule("report", {"orgId": "org-2", "type": "sales"})
    found = await scheduler.get_jobs(data={"orgId": "org-1"}, sort=("createdAt", "asc"))
    assert [j.name for j in found] == ["report", "email"]
    [one] = await scheduler.get_jobs(name="report", data={"orgId": "org-1"})
    assert one.data["type"] == "financial"


# -- bulk and lifecycle 73-80 ----------------------------------------------------------------------


async def test_node_073_bulk_returns_jobs_in_order_and_findable(store: JobStore) -> None:
    scheduler = Scheduler(store)
    jobs = await scheduler.schedule_bulk([{"name": "first"}, {"name": "second"}])
    assert [j.name for j in jobs] == ["first", "second"]
    for job in jobs:
        assert await scheduler.get_job(job.id) is not None


async def test_node_074_bulk_item_with_empty_name_is_rejected(store: JobStore) -> None:
    scheduler = Scheduler(store)
    with pytest.raises(ValidationError) as info:
        await scheduler.schedule_bulk([{"name": "ok"}, {"name": ""}])
    assert info.value.field == "items[1].name"
    assert await scheduler.get_jobs() == []


async def test_node_075_076_077_lifecycle_flags_and_events_once() -> None:
    events: list[str] = []
    scheduler = Scheduler()
    scheduler.on("scheduler:start", lambda: events.append("start"))
    scheduler.on("scheduler:stop", lambda: events.append("stop"))
    for _ in range(3):
        await scheduler.start()
    assert scheduler.is_running
    await scheduler.stop()
    await scheduler.stop()
    assert not scheduler.is_running
    assert events == ["start", "stop"]


async def test_node_078_throwing_start_listener_does_not_break_start() -> None:
    errors: list[BaseException] = []
    scheduler = Scheduler()

    def boom() -> None:
        raise RuntimeError("listener failed")

    scheduler.on("scheduler:start", boom)
    scheduler.on("scheduler:error", errors.append)
    await scheduler.start()
    assert scheduler.is_running
    assert [str(e) for e in errors] == ["listener failed"]
    await scheduler.stop()


async def test_node_079_listeners_run_in_registration_order() -> None:
    order: list[str] = []
    scheduler = Scheduler()
    for name in "abc":
        scheduler.on("scheduler:start", lambda name=name: order.append(name))
    await scheduler.start()
    await scheduler.stop()
    assert order == ["a", "b", "c"]


def test_node_080_scheduler_id_is_a_string() -> None:
    assert isinstance(Scheduler().id, str) and Scheduler().id
    assert Scheduler(id="pod-1").id == "pod-1"


# -- updates 81-84 ---------------------------------------------------------------------------------


async def test_node_081_update_data_persists(store: JobStore) -> None:
    scheduler = Scheduler(store)
    job = await scheduler.schedule("a", {"v": 1})
    await scheduler.update_job(job.id, data={"v": 2})
    assert (await _doc(store, job.id))["data"] == {"v": 2}


async def test_node_082_update_run_at_sets_time_and_pending(store: JobStore) -> None:
    scheduler = Scheduler(store)
    job = await scheduler.schedule("a")
    when = (utcnow() + timedelta(hours=2)).replace(microsecond=0)
    updated = await scheduler.update_job(job.id, run_at=when)
    assert updated.next_run_at == when and updated.status is JobStatus.PENDING
    assert (await _doc(store, job.id))["nextRunAt"] == when


async def test_node_083_rescheduling_a_completed_job_revives_it(store: JobStore) -> None:
    scheduler = Scheduler(store)
    job = await scheduler.schedule("a")
    [claimed] = await claim_all(store, "w1")
    assert await store.finish(_fence(claimed.document, "w1"), Finish(set={"status": "completed"}))
    when = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    revived = await scheduler.update_job(job.id, run_at=when)
    assert revived.status is JobStatus.PENDING and revived.next_run_at == when


async def test_node_084_update_repeat_with_and_without_run_at(store: JobStore) -> None:
    # Node requires nextRunAt with repeat; here a new repeat applies from the next
    # occurrence, so without run_at a pending job moves to the new schedule's first slot.
    scheduler = Scheduler(store)
    job = await scheduler.schedule("r", repeat={"everyMs": 60_000})
    when = (utcnow() + timedelta(minutes=5)).replace(microsecond=0)
    updated = await scheduler.update_job(job.id, repeat={"everyMs": 3_600_000}, run_at=when)
    assert (await _doc(store, job.id))["repeat"] == {"every": 3_600_000}
    assert updated.next_run_at == when
    before = utcnow()
    again = await scheduler.update_job(job.id, repeat={"everyMs": 7_200_000})
    assert again.repeat is not None and again.repeat.every == timedelta(hours=2)
    assert again.next_run_at is not None
    assert before + timedelta(hours=2) - timedelta(seconds=5) <= again.next_run_at
    assert again.next_run_at <= utcnow() + timedelta(hours=2, seconds=5)


# -- scheduler integration 85-99 -------------------------------------------------------------------


async def test_node_085_concurrency_limit_caps_parallelism(store: JobStore) -> None:
    rec = Recorder()

    async def handler(job: Job) -> None:
        rec.enter(job)
        try:
            await asyncio.sleep(0.1)
        finally:
            rec.leave()

    async with running(store, handler, workers=5) as scheduler:
        for i in range(5):
            await scheduler.schedule("limited", {"i": i}, concurrency=2)
        await wait_for(_all_done(scheduler, 5))
    assert rec.count == 5
    assert 1 <= rec.max_active <= 2


async def test_node_086_087_single_slot_names_all_complete(store: JobStore) -> None:
    async def handler(job: Job) -> None:
        await asyncio.sleep(0.01)

    async with running(store, handler, workers=4) as scheduler:
        for name in ("alpha", "beta"):
            for _ in range(2):
                await scheduler.schedule(name, concurrency=1)
        for _ in range(3):
            await scheduler.schedule("gamma", concurrency=1)
        await wait_for(_all_done(scheduler, 7))


async def test_node_088_unlimited_jobs_run_in_parallel(store: JobStore) -> None:
    rec = Recorder()
    together = asyncio.Event()

    async def handler(job: Job) -> None:
        rec.enter(job)
        if rec.active >= 2:
            together.set()
        try:
            await asyncio.wait_for(together.wait(), 10)
        finally:
            rec.leave()

    async with running(store, handler, workers=5) as scheduler:
        for _ in range(5):
            await scheduler.schedule("free")
        await wait_for(_all_done(scheduler, 5))
    assert rec.max_active > 1


async def test_node_089_schedule_defaults(store: JobStore) -> None:
    scheduler = Scheduler(store)
    before = await store.now()
    job = await scheduler.schedule("a", {"userId": 123})
    assert job.status is JobStatus.PENDING and job.attempts == 0
    assert isinstance(job.created_at, datetime) and isinstance(job.updated_at, datetime)
    assert job.created_at.tzinfo is not None
    assert job.next_run_at is not None
    assert abs((job.next_run_at - before).total_seconds()) < 2
    assert job.data == {"userId": 123}


async def test_node_090_schedule_keeps_run_at_retry_and_repeat(store: JobStore) -> None:
    scheduler = Scheduler(store)
    run_at = datetime(2031, 5, 6, 7, 8, 9, 123000, tzinfo=timezone.utc)
    retry = {"maxAttempts": 4, "delayMs": 250}
    repeat = {"cron": "0 9 * * *", "timezone": "Asia/Kolkata"}
    job = await scheduler.schedule("a", run_at=run_at, retry=retry, repeat=repeat)
    doc = await _doc(store, job.id)
    assert job.next_run_at == run_at and doc["nextRunAt"] == run_at
    assert doc["retry"] == {"maxAttempts": 4, "delay": 250} and doc["repeat"] == repeat
    assert job.retry == Retry(max_attempts=4, delay=timedelta(milliseconds=250))


async def test_node_091_missing_name_both_repeats_and_no_store_are_typed_errors(
    store: JobStore,
) -> None:
    scheduler = Scheduler(store)
    for bad in ("", None, "   "):
        with pytest.raises(ValidationError) as info:
            await scheduler.schedule(bad)  # type: ignore[arg-type]
        assert info.value.field == "name"
    with pytest.raises(ValidationError) as info:
        await scheduler.schedule("a", repeat={"cron": "* * * * *", "everyMs": 1000})
    assert info.value.field == "repeat"
    with pytest.raises(ConfigurationError):
        await Scheduler().schedule("a")
    assert await scheduler.get_jobs() == []


async def test_node_092_two_jobs_one_worker_two_calls(store: JobStore) -> None:
    rec = Recorder()

    async with running(store, rec.record) as scheduler:
        await scheduler.schedule("a")
        await scheduler.schedule("b")
        await wait_for(_all_done(scheduler, 2))
    assert rec.count == 2


async def test_node_093_ten_jobs_three_workers_no_double_processing(store: JobStore) -> None:
    rec = Recorder()

    async def handler(job: Job) -> None:
        rec.record(job)
        await asyncio.sleep(0.01)

    async with running(store, handler, workers=3) as scheduler:
        for i in range(10):
            await scheduler.schedule("t", {"i": i})
        await wait_for(_all_done(scheduler, 10))
    assert sorted(j.data["i"] for j in rec.calls) == list(range(10))


async def test_node_094_stopped_scheduler_runs_nothing(store: JobStore) -> None:
    old = Recorder()
    new = Recorder()
    first = Scheduler(store, old.record, poll_interval=FAST)
    await first.start()
    await first.stop()
    job = await first.schedule("after-stop")
    async with running(store, new.record):
        await wait_for(_has_status(store, job.id, "completed"))
    assert old.count == 0 and new.count == 1


async def test_node_095_many_jobs_all_run(store: JobStore) -> None:
    rec = Recorder()
    async with running(store, rec.record, workers=4, poll_interval=0.001) as scheduler:
        await scheduler.schedule_bulk([{"name": "many", "data": i} for i in range(100)])
        await wait_for(_all_done(scheduler, 100), timeout=20)
    assert sorted(j.data for j in rec.calls) == list(range(100))


async def test_node_096_event_order_for_a_successful_job(store: JobStore) -> None:
    events: list[str] = []
    async with running(store, lambda job: None) as scheduler:
        for name in ("job:start", "job:success", "job:complete", "job:fail", "job:retry"):
            scheduler.on(name, lambda *a, name=name: events.append(name.split(":")[1]))
        job = await scheduler.schedule("ok")
        await wait_for(lambda: "complete" in events)
        assert (await _doc(store, job.id))["status"] == "completed"
    assert events == ["start", "success", "complete"]


async def test_node_097_failing_handler_emits_fail_once_with_its_error(store: JobStore) -> None:
    fails: list[tuple[Job, BaseException]] = []

    async def handler(job: Job) -> None:
        raise RuntimeError("boom")

    async with running(store, handler) as scheduler:
        scheduler.on("job:fail", lambda job, exc: fails.append((job, exc)))
        job = await scheduler.schedule("bad")
        await wait_for(_has_status(store, job.id, "failed"))
        await wait_for(lambda: fails)
    assert len(fails) == 1
    assert str(fails[0][1]) == "boom" and isinstance(fails[0][1], RuntimeError)
    doc = await _doc(store, job.id)
    assert doc["lastError"] == "boom" and doc["lastErrorType"] == "RuntimeError"


async def test_node_098_two_schedulers_one_job_one_execution(store: JobStore) -> None:
    rec = Recorder()

    async def handler(job: Job) -> None:
        rec.record(job)
        await asyncio.sleep(0.05)

    async with running(store, handler) as one, running(store, handler):
        job = await one.schedule("single")
        await wait_for(_has_status(store, job.id, "completed"))
    assert rec.count == 1


async def test_node_099_one_worker_processes_a_queue_sequentially(store: JobStore) -> None:
    rec = Recorder()

    async def handler(job: Job) -> None:
        rec.enter(job)
        await asyncio.sleep(0)
        rec.leave()

    async with running(store, handler, workers=1) as scheduler:
        await scheduler.schedule_bulk([{"name": "q", "data": i} for i in range(50)])
        await wait_for(_all_done(scheduler, 50), timeout=20)
    assert rec.count == 50 and rec.max_active == 1


# -- retry 100-106 ---------------------------------------------------------------------------------


def _failing(rec: Recorder, failures: int, message: str = "fail") -> Any:
    async def handler(job: Job) -> None:
        rec.record(job)
        if rec.count <= failures:
            raise RuntimeError(message)

    return handler


async def test_node_100_fails_once_with_two_attempts_runs_twice(store: JobStore) -> None:
    rec = Recorder()
    async with running(store, _failing(rec, 1)) as scheduler:
        job = await scheduler.schedule("r", retry={"maxAttempts": 2, "delay": 0})
        await wait_for(_has_status(store, job.id, "completed"))
    assert rec.count == 2
    assert [c.attempts for c in rec.calls] == [0, 1]


async def test_node_101_always_failing_three_attempts(store: JobStore) -> None:
    rec = Recorder()
    async with running(store, _failing(rec, 99)) as scheduler:
        job = await scheduler.schedule("r", retry={"maxAttempts": 3, "delay": 0})
        await wait_for(_has_status(store, job.id, "failed"))
    doc = await _doc(store, job.id)
    assert rec.count == 3 and doc["attempts"] == 3


async def test_node_102_retry_waits_for_its_delay(store: JobStore) -> None:
    rec = Recorder()
    async with running(store, _failing(rec, 1)) as scheduler:
        job = await scheduler.schedule("r", retry={"maxAttempts": 2, "delayMs": 200})
        await wait_for(_has_status(store, job.id, "completed"))
    assert rec.count == 2
    assert rec.times[1] - rec.times[0] >= 0.18


async def test_node_103_retry_and_fail_events_both_emitted(store: JobStore) -> None:
    events: list[str] = []
    rec = Recorder()
    async with running(store, _failing(rec, 99)) as scheduler:
        scheduler.on("job:retry", lambda job: events.append("retry"))
        scheduler.on("job:fail", lambda job, exc: events.append("fail"))
        job = await scheduler.schedule("r", retry={"maxAttempts": 2, "delay": 0})
        await wait_for(_has_status(store, job.id, "failed"))
        await wait_for(lambda: "fail" in events)
    assert events == ["retry", "fail"]


async def test_node_104_retry_survives_a_restart(store: JobStore) -> None:
    rec = Recorder()
    retried = asyncio.Event()
    handler = _failing(rec, 1)
    first = Scheduler(store, handler, poll_interval=FAST)
    first.on("job:retry", lambda job: retried.set())
    await first.start()
    job = await first.schedule("r", retry={"maxAttempts": 2, "delayMs": 300})
    await asyncio.wait_for(retried.wait(), 10)
    await first.stop()
    assert rec.count == 1
    async with running(store, handler):
        await wait_for(_has_status(store, job.id, "completed"))
    assert rec.count == 2


async def test_node_105_retry_shorthand_counts_total_executions(store: JobStore) -> None:
    rec = Recorder()
    async with running(store, _failing(rec, 99)) as scheduler:
        job = await scheduler.schedule("r", retry=3)
        await wait_for(_has_status(store, job.id, "failed"))
    assert rec.count == 3


async def test_node_106_attempts_persist_across_restarts(store: JobStore) -> None:
    rec = Recorder()
    handler = _failing(rec, 99)
    retry = {"maxAttempts": 3, "delayMs": 200}
    job = await Scheduler(store).schedule("r", retry=retry)
    for expected in (1, 2):
        retried = asyncio.Event()
        scheduler = Scheduler(store, handler, poll_interval=FAST)
        scheduler.on("job:retry", lambda job, retried=retried: retried.set())
        await scheduler.start()
        await asyncio.wait_for(retried.wait(), 10)
        await scheduler.stop()
        assert (await _doc(store, job.id))["attempts"] == expected
    async with running(store, handler):
        await wait_for(_has_status(store, job.id, "failed"))
    doc = await _doc(store, job.id)
    assert rec.count == 3 and doc["attempts"] == 3


# -- repeat 107-117 --------------------------------------------------------------------------------


async def test_node_107_every_second_cron_runs_on_consecutive_slots(store: JobStore) -> None:
    rec = Recorder()
    async with running(store, rec.record) as scheduler:
        job = await scheduler.schedule("tick", repeat={"cron": "* * * * * *"})
        first_slot = job.next_run_at
        assert first_slot is not None and first_slot.microsecond == 0
        await wait_for(lambda: rec.count >= 2, timeout=10)
    slots = [c.last_scheduled_at for c in rec.calls[:2]]
    assert slots[0] == first_slot
    assert slots[1] == first_slot + timedelta(seconds=1)
    for call in rec.calls[:2]:  # claimed (server clock) no earlier than its slot
        assert call.last_run_at is not None and call.last_scheduled_at is not None
        assert call.last_run_at >= call.last_scheduled_at


async def test_node_108_interval_shorter_than_handler_never_overlaps(store: JobStore) -> None:
    # Node: the first gap is handler + every (>= 200 ms for every 100 / handler 120). Here:
    # a fixed grid from the first slot, and the next occurrence waits for the current run.
    rec = Recorder()
    spans: list[tuple[float, float]] = []

    async def handler(job: Job) -> None:
        rec.enter(job)
        start = time.monotonic()
        await asyncio.sleep(0.12)
        spans.append((start, time.monotonic()))
        rec.leave()

    async with running(store, handler, workers=3) as scheduler:
        job = await scheduler.schedule("tick", repeat={"everyMs": 100}, run_at=utcnow())
        await wait_for(lambda: len(spans) >= 3, timeout=10)
    assert rec.max_active == 1
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end
    assert job.next_run_at is not None
    for call in rec.calls:
        assert call.last_scheduled_at is not None
        offset = (call.last_scheduled_at - job.next_run_at) / timedelta(milliseconds=100)
        assert offset == int(offset)  # every slot sits on the 100 ms grid


async def test_node_109_cron_job_survives_a_restart(store: JobStore) -> None:
    rec = Recorder()
    first = Scheduler(store, rec.record, poll_interval=FAST)
    await first.start()
    job = await first.schedule("tick", repeat={"cron": "* * * * * *"}, run_at=utcnow())
    await wait_for(lambda: rec.count >= 1)
    await first.stop()
    async with running(store, rec.record):
        await wait_for(lambda: rec.count >= 2, timeout=10)
    doc = await _doc(store, job.id)
    assert doc["status"] in ("pending", "running")
    assert rec.calls[1].last_scheduled_at is not None
    assert rec.calls[1].last_scheduled_at > rec.calls[0].last_scheduled_at  # type: ignore[operator]


async def test_node_111_interval_job_with_three_workers_repeats_without_overlap(
    store: JobStore,
) -> None:
    rec = Recorder()

    async def handler(job: Job) -> None:
        rec.enter(job)
        await asyncio.sleep(0.01)
        rec.leave()

    async with running(store, handler, workers=3) as scheduler:
        await scheduler.schedule("tick", repeat={"everyMs": 100}, run_at=utcnow())
        await wait_for(lambda: rec.count >= 3, timeout=10)
    assert rec.max_active == 1
    slots = [c.last_scheduled_at for c in rec.calls]
    assert len(set(slots)) == len(slots)


async def test_node_112_cron_far_in_the_past_runs_once_then_next_future_slot(
    store: JobStore,
) -> None:
    rec = Recorder()
    completes: list[Job] = []
    async with running(store, rec.record) as scheduler:
        scheduler.on("job:complete", completes.append)
        await scheduler.schedule(
            "tick", repeat={"cron": "* * * * * *"}, run_at=utcnow() - timedelta(seconds=60)
        )
        await wait_for(lambda: completes)
        after = completes[0]
        ran_at = utcnow()
    assert rec.count == 1
    assert after.next_run_at is not None
    assert ran_at - timedelta(seconds=2) < after.next_run_at <= ran_at + timedelta(seconds=2)


async def test_node_113_zero_interval_is_rejected(store: JobStore) -> None:
    # Node floors every:0 to 100 ms at run time; here every interval under 100 ms (zero and
    # negative ones included) and every non-finite one is rejected.
    scheduler = Scheduler(store)
    for bad in (0, -5, 50, float("inf"), float("nan")):
        with pytest.raises(ValidationError) as info:
            await scheduler.schedule("tick", repeat={"everyMs": bad})
        assert info.value.field == "repeat.everyMs"
        with pytest.raises(ValidationError) as info:
            await scheduler.schedule("tick", repeat={"every": bad / 1000})
        assert info.value.field == "repeat.every"
    assert await scheduler.get_jobs() == []
    job = await scheduler.schedule("tick", repeat={"everyMs": 100})
    assert (await _doc(store, job.id))["repeat"] == {"every": 100}


async def test_node_114_interval_fails_twice_then_succeeds_and_resets_attempts(
    store: JobStore,
) -> None:
    rec = Recorder()
    completes: list[Job] = []
    async with running(store, _failing(rec, 2)) as scheduler:
        scheduler.on("job:complete", completes.append)
        await scheduler.schedule(
            "tick", repeat={"everyMs": 200}, retry={"maxAttempts": 3, "delay": 0}, run_at=utcnow()
        )
        await wait_for(lambda: rec.count >= 4, timeout=10)
    assert [c.attempts for c in rec.calls[:4]] == [0, 1, 2, 0]
    assert completes[0].status is JobStatus.PENDING and completes[0].attempts == 0


async def test_node_115_always_failing_interval_stays_pending_with_last_error(
    store: JobStore,
) -> None:
    rec = Recorder()
    fails: list[Job] = []
    async with running(store, _failing(rec, 99, "Simulated permanent failure")) as scheduler:
        scheduler.on("job:fail", lambda job, exc: fails.append(job))
        job = await scheduler.schedule(
            "tick", repeat={"everyMs": 200}, retry={"maxAttempts": 3, "delay": 0}, run_at=utcnow()
        )
        await wait_for(lambda: fails and rec.count >= 4, timeout=10)
    assert fails[0].status is JobStatus.PENDING and fails[0].attempts == 0
    assert fails[0].last_error == "Simulated permanent failure"
    doc = await _doc(store, job.id)
    assert doc["status"] != "failed"


async def test_node_116_heartbeat_retry_and_repeat_together(store: JobStore) -> None:
    rec = Recorder()
    errors: list[BaseException] = []

    async def handler(job: Job) -> None:
        rec.record(job)
        if rec.count == 1:
            await asyncio.sleep(0.45)  # longer than the 0.3 s lease: heartbeats must keep it
            raise RuntimeError("long run failed")

    async with running(store, handler, lock_timeout=0.3) as scheduler:
        scheduler.on("worker:error", errors.append)
        await scheduler.schedule(
            "tick", repeat={"everyMs": 300}, retry={"maxAttempts": 2, "delay": 0}, run_at=utcnow()
        )
        await wait_for(lambda: rec.count >= 3, timeout=10)
    assert [c.attempts for c in rec.calls[:3]] == [0, 1, 0]
    assert errors == []


async def test_node_117_repeating_retry_sees_attempts_and_ends_pending_in_future(
    store: JobStore,
) -> None:
    rec = Recorder()
    completes: list[Job] = []
    fails: list[Job] = []
    async with running(store, _failing(rec, 1)) as scheduler:
        scheduler.on("job:complete", completes.append)
        scheduler.on("job:fail", lambda job, exc: fails.append(job))
        job = await scheduler.schedule(
            "cron-retry",
            repeat={"cron": "0 * * * *"},
            retry={"maxAttempts": 3, "delay": 0},
            run_at=utcnow(),
        )
        await wait_for(lambda: completes)
    assert [c.attempts for c in rec.calls] == [0, 1]
    assert fails == []
    doc = await _doc(store, job.id)
    assert doc["status"] == "pending" and doc["attempts"] == 0
    assert doc["nextRunAt"] > utcnow()


# -- lastScheduledAt / nextRunAt 118-125 -----------------------------------------------------------


async def test_node_118_123_last_scheduled_at_stored_for_repeating_jobs_only(
    store: JobStore,
) -> None:
    # Node: lastScheduledAt is a schedule() option. Here it is not an option; a repeating job
    # stores its first slot there (run_at when given), a one-shot job has none.
    scheduler = Scheduler(store)
    one_shot = await scheduler.schedule("once")
    assert one_shot.last_scheduled_at is None
    assert "lastScheduledAt" not in await _doc(store, one_shot.id)
    run_at = datetime(2031, 1, 1, 9, 0, 0, 250000, tzinfo=timezone.utc)
    rep = await scheduler.schedule("rep", repeat={"everyMs": 60_000}, run_at=run_at)
    assert rep.last_scheduled_at == run_at
    assert (await _doc(store, rep.id))["lastScheduledAt"] == run_at


async def test_node_121_122_past_cron_runs_and_moves_slot_forward(store: JobStore) -> None:
    rec = Recorder()
    start = utcnow()
    async with running(store, rec.record) as scheduler:
        job = await scheduler.schedule(
            "cron", repeat={"cron": "* * * * * *"}, run_at=start - timedelta(seconds=1)
        )
        original = job.last_scheduled_at
        await wait_for(lambda: rec.count >= 1)

        async def moved() -> bool:
            doc = await _doc(store, job.id)
            return doc["status"] == "pending" and doc["lastScheduledAt"] > original

        await wait_for(moved)
    doc = await _doc(store, job.id)
    assert doc["nextRunAt"] > start


async def test_node_124_interval_due_in_the_past_runs_then_keeps_its_grid(store: JobStore) -> None:
    rec = Recorder()
    anchor = utcnow() - timedelta(seconds=5)
    async with running(store, rec.record) as scheduler:
        job = await scheduler.schedule("tick", repeat={"everyMs": 300}, run_at=anchor)
        await wait_for(lambda: rec.count >= 2, timeout=10)
    second = rec.calls[1].last_scheduled_at
    assert second is not None and job.next_run_at is not None
    assert rec.calls[1].last_run_at is not None and rec.calls[1].last_run_at >= second
    assert second > utcnow() - timedelta(seconds=2)  # no backlog of missed slots
    assert ((second - job.next_run_at) / timedelta(milliseconds=300)).is_integer()


async def test_node_125_repeating_job_without_run_at_waits_for_its_first_slot(
    store: JobStore,
) -> None:
    # The first run is the first slot after now (Node runs it at once).
    scheduler = Scheduler(store)
    before = await store.now()
    job = await scheduler.schedule("tick", repeat={"everyMs": 60_000})
    assert job.next_run_at is not None and job.next_run_at > before
    assert job.next_run_at - before <= timedelta(seconds=61)
    assert job.last_scheduled_at == job.next_run_at
    assert await claim_all(store) == []


# -- crash recovery and scale 126-131 --------------------------------------------------------------


async def test_node_126_job_of_a_dead_worker_runs_exactly_once(store: JobStore) -> None:
    rec = Recorder()
    job = await Scheduler(store).schedule("orphan")
    await claim_all(store, "dead-worker", lease=0.1)
    async with running(store, rec.record):
        await wait_for(_has_status(store, job.id, "completed"))
    assert rec.count == 1


async def test_node_127_fifty_jobs_five_workers_each_once(store: JobStore) -> None:
    rec = Recorder()
    async with running(store, rec.record, workers=5) as scheduler:
        await scheduler.schedule_bulk([{"name": "j", "data": i} for i in range(50)])
        await wait_for(_all_done(scheduler, 50))
    assert Counter(j.data for j in rec.calls) == Counter(range(50))


async def test_node_128_one_job_ten_workers_runs_once(store: JobStore) -> None:
    rec = Recorder()

    async def handler(job: Job) -> None:
        rec.record(job)
        await asyncio.sleep(0.05)

    async with running(store, handler, workers=10) as scheduler:
        job = await scheduler.schedule("single")
        await wait_for(_has_status(store, job.id, "completed"))
    assert rec.count == 1


async def test_node_129_mixed_durations_all_complete_with_exact_counts(store: JobStore) -> None:
    rec = Recorder()
    durations = {"fast": 0.0, "medium": 0.02, "slow": 0.1}

    async def handler(job: Job) -> None:
        rec.record(job)
        await asyncio.sleep(durations[job.name])

    async with running(store, handler, workers=10) as scheduler:
        items = [{"name": "fast"}] * 60 + [{"name": "medium"}] * 25 + [{"name": "slow"}] * 15
        await scheduler.schedule_bulk(items)
        await wait_for(_all_done(scheduler, 100), timeout=20)
    assert Counter(j.name for j in rec.calls) == {"fast": 60, "medium": 25, "slow": 15}


async def test_node_130_every_tenant_runs_exactly_its_jobs(store: JobStore) -> None:
    rec = Recorder()
    async with running(store, rec.record, workers=5) as scheduler:
        await scheduler.schedule_bulk(
            [
                {"name": "tenant-job", "data": {"tenant": t, "n": n}}
                for t in range(50)
                for n in range(3)
            ]
        )
        await wait_for(_all_done(scheduler, 150), timeout=20)
    assert Counter(j.data["tenant"] for j in rec.calls) == {t: 3 for t in range(50)}
    assert len({(j.data["tenant"], j.data["n"]) for j in rec.calls}) == 150


async def test_node_131_interval_jobs_with_many_workers_never_double_run_a_slot(
    store: JobStore,
) -> None:
    rec = Recorder()
    async with running(store, rec.record, workers=10) as scheduler:
        for i in range(5):
            await scheduler.schedule(f"interval-{i}", repeat={"everyMs": 200}, run_at=utcnow())

        def each_twice() -> bool:
            counts = Counter(c.name for c in rec.calls)
            return len(counts) == 5 and min(counts.values()) >= 2

        await wait_for(each_twice, timeout=10)
    runs = Counter((c.name, c.last_scheduled_at) for c in rec.calls)
    assert max(runs.values()) == 1


# -- workflows 132-137 -----------------------------------------------------------------------------


async def test_node_132_134_136_mixed_workflow(store: JobStore) -> None:
    rec = Recorder()
    payment_failures = 0

    async def handler(job: Job) -> None:
        nonlocal payment_failures
        rec.record(job)
        if job.name == "payment" and payment_failures == 0:
            payment_failures += 1
            raise RuntimeError("card declined")
        if job.name == "report":
            await asyncio.sleep(0.1)

    async with running(store, handler, workers=3) as scheduler:
        payment = await scheduler.schedule("payment", retry={"maxAttempts": 3, "delay": 0})
        shipping = await scheduler.schedule("shipping", delay=0.1)
        cart = await scheduler.schedule("cart-email")
        reports = [await scheduler.schedule("report", {"i": i}) for i in range(2)]
        await scheduler.schedule("inventory", repeat={"everyMs": 200}, run_at=utcnow())
        for tenant in range(10):
            await scheduler.schedule(
                f"tenant-{tenant}", repeat={"everyMs": 100 * (tenant + 1)}, run_at=utcnow()
            )

        def all_ran() -> bool:
            names = Counter(c.name for c in rec.calls)
            return (
                names["payment"] >= 2
                and names["inventory"] >= 2
                and all(names[f"tenant-{t}"] >= 1 for t in range(10))
            )

        await wait_for(all_ran, timeout=10)
        for job in (payment, shipping, cart, *reports):
            await wait_for(_has_status(store, job.id, "completed"))


async def test_node_133_pipeline_runs_in_run_at_order(store: JobStore) -> None:
    order: list[str] = []
    transform_failed = False

    async def handler(job: Job) -> None:
        nonlocal transform_failed
        order.append(job.name)
        if job.name == "transform" and not transform_failed:
            transform_failed = True
            raise RuntimeError("transient")

    now = utcnow()
    scheduler = Scheduler(store, handler, poll_interval=FAST, workers=1)
    retry = {"maxAttempts": 2, "delay": 0}
    load = await scheduler.schedule("load", run_at=now - timedelta(seconds=1))
    transform = await scheduler.schedule(
        "transform", run_at=now - timedelta(seconds=2), retry=retry
    )
    extract = await scheduler.schedule("extract", run_at=now - timedelta(seconds=3))
    async with scheduler:
        for job in (extract, transform, load):
            await wait_for(_has_status(store, job.id, "completed"))
    assert order.index("extract") < order.index("transform") < order.index("load")
    assert order.count("transform") == 2


async def test_node_135_graceful_degradation(store: JobStore) -> None:
    calls: Counter[str] = Counter()

    async def handler(job: Job) -> None:
        calls[job.name] += 1
        if job.name == "flaky" and calls["flaky"] <= 2:
            raise RuntimeError("flaky")
        if job.name == "broken":
            raise RuntimeError("broken")

    async with running(store, handler, workers=2) as scheduler:
        critical = [await scheduler.schedule("critical", {"i": i}) for i in range(3)]
        flaky = await scheduler.schedule("flaky", retry={"maxAttempts": 3, "delay": 0})
        broken = await scheduler.schedule("broken", retry={"maxAttempts": 2, "delay": 0})
        for job in (*critical, flaky):
            await wait_for(_has_status(store, job.id, "completed"))
        await wait_for(_has_status(store, broken.id, "failed"))
    assert calls == {"critical": 3, "flaky": 3, "broken": 2}


async def test_node_137_heartbeat_keeps_short_leases_during_long_jobs(store: JobStore) -> None:
    errors: list[BaseException] = []
    rec = Recorder()

    async def handler(job: Job) -> None:
        rec.record(job)
        await asyncio.sleep(job.data / 1000)

    async with running(store, handler, workers=5, lock_timeout=0.3) as scheduler:
        scheduler.on("worker:error", errors.append)
        await scheduler.schedule_bulk(
            [{"name": "w", "data": ms} for ms in (50, 100, 200, 300, 400, 400)]
        )
        await wait_for(_all_done(scheduler, 6))
    assert rec.count == 6 and errors == []


# -- timezone 138 ----------------------------------------------------------------------------------

BASE = datetime(2023, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("cron", "job_tz", "default_tz", "expected"),
    [
        ("0 15 * * *", None, None, "2023-01-01T15:00:00+00:00"),
        ("0 15 * * *", None, "Asia/Tokyo", "2023-01-02T06:00:00+00:00"),
        ("0 15 * * *", "America/New_York", "Asia/Tokyo", "2023-01-01T20:00:00+00:00"),
        ("0 * * * *", None, None, "2023-01-01T13:00:00+00:00"),
        ("0 8 * * *", None, "America/New_York", "2023-01-01T13:00:00+00:00"),
        ("0 8 * * *", "Europe/London", "America/New_York", "2023-01-02T08:00:00+00:00"),
    ],
)
def test_node_138_timezone_vectors(
    cron: str, job_tz: str | None, default_tz: str | None, expected: str
) -> None:
    spec: dict[str, Any] = {"cron": cron}
    if job_tz:
        spec["timezone"] = job_tz
    assert Repeat.parse(spec).next_after(BASE, default_tz).isoformat() == expected


async def test_node_138_scheduler_default_timezone_applies_to_first_slot(store: JobStore) -> None:
    scheduler = Scheduler(store, default_timezone="Asia/Tokyo")
    job = await scheduler.schedule("daily", repeat={"cron": "0 15 * * *"})
    assert job.next_run_at is not None
    local = job.next_run_at.astimezone(Repeat(cron="* * * * *", timezone="Asia/Tokyo").zone())
    assert (local.hour, local.minute) == (15, 0)
    # Node applies each worker's own default at run time; here the producer's default zone is
    # stored with the job, so every worker computes the same slots.
    assert (await _doc(store, job.id))["repeat"] == {"cron": "0 15 * * *", "timezone": "Asia/Tokyo"}


# -- behaviours observed by running the Node library 139-147 ------------------------------------


async def test_node_139_dedupe_hit_emits_no_created_and_finished_key_is_reusable(
    store: JobStore,
) -> None:
    # A key is unique among active jobs by default; a dedupe hit is not a creation.
    created: list[Job] = []
    scheduler = Scheduler(store)
    scheduler.on("job:created", created.append)
    first = await scheduler.schedule("mail", dedupe_key="k")
    hit = await scheduler.schedule("mail", dedupe_key="k")
    assert hit.id == first.id and len(created) == 1
    [claimed] = await claim_all(store, "w1")
    assert await store.finish(
        _fence(claimed.document, "w1"),
        Finish(set={"status": "completed"}, release_dedupe_key="k"),
    )
    fresh = await scheduler.schedule("mail", dedupe_key="k")
    assert fresh.id != first.id and fresh.status is JobStatus.PENDING
    assert len(created) == 2
    forever = await scheduler.schedule("mail", dedupe_key="f", dedupe="forever")
    await scheduler.cancel(forever.id)
    again = await scheduler.schedule("mail", dedupe_key="f", dedupe="forever")
    assert again.id == forever.id and again.status is JobStatus.CANCELLED


async def test_node_140_run_at_of_a_repeating_job_is_its_first_slot(store: JobStore) -> None:
    # Node: lastScheduledAt + repeat overrides runAt. Here run_at always wins.
    scheduler = Scheduler(store)
    run_at = utcnow().replace(microsecond=0) + timedelta(minutes=7, seconds=13)
    job = await scheduler.schedule("r", repeat={"everyMs": 3_600_000}, run_at=run_at)
    assert job.next_run_at == run_at and job.last_scheduled_at == run_at


async def test_node_144_non_graceful_stop_cancels_handler_and_releases_job(
    store: JobStore,
) -> None:
    # Node: the in-flight job keeps running and is marked completed. Here
    # stop(graceful=False) cancels handlers and releases their leases now.
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def handler(job: Job) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    scheduler = Scheduler(store, handler, poll_interval=FAST)
    await scheduler.start()
    job = await scheduler.schedule("in-flight")
    await asyncio.wait_for(started.wait(), 10)
    await scheduler.stop(graceful=False)
    assert cancelled == [True]
    doc = await _doc(store, job.id)
    assert doc["status"] == "pending" and "lockedBy" not in doc
    assert doc["nextRunAt"] <= await store.now()


async def test_node_146_fail_event_attempts_match_the_stored_count(store: JobStore) -> None:
    fails: list[Job] = []
    rec = Recorder()
    async with running(store, _failing(rec, 99)) as scheduler:
        scheduler.on("job:fail", lambda job, exc: fails.append(job))
        job = await scheduler.schedule("r", retry={"maxAttempts": 2, "delay": 0})
        await wait_for(lambda: fails)
    doc = await _doc(store, job.id)
    assert fails[0].attempts == doc["attempts"] == 2
    assert fails[0].status is JobStatus.FAILED


async def test_node_147_backoff_function_receives_one_two_three(store: JobStore) -> None:
    seen: list[int] = []
    rec = Recorder()
    scheduler = Scheduler(store, poll_interval=FAST)

    def backoff(attempt: int) -> float:
        seen.append(attempt)
        return 0.0

    scheduler.task("flaky", retry=4, backoff=backoff)(_failing(rec, 99))
    async with scheduler:
        job = await scheduler.schedule("flaky")
        await wait_for(_has_status(store, job.id, "failed"))
    assert seen == [1, 2, 3]
    assert rec.count == 4
