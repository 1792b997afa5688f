"""Contract: the process executor (``executor="process"``), over both stores. Handlers run in
child processes of the worker; a timeout, a cancel, a lost lease and a stop of the worker stop
them for real (their process is gone afterwards), the death of a child fails only its own job
and counts towards poison, children are recycled, and progress and results travel back.

The handlers live in ``tests/process_handlers.py`` (a child imports them by module and name).
Spinning handlers report their pid as progress before they spin (``reported_pid``), so a test
knows which process must be gone."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from mongo_job_scheduler import Job, JobStatus, JobStore, Scheduler
from tests import process_handlers
from tests.conftest import wait_for
from tests.contract.helpers import (
    alive,
    make,
    reported_pid,
    running,
    status_is,
    steal,
    stored,
    wait_doc,
)

PROCESS: dict[str, Any] = {"executor": "process"}


async def gone(pid: int) -> None:
    """Wait until process ``pid`` no longer exists (the worker stopped it)."""
    await wait_for(lambda: not alive(pid), timeout=10)


def process_scheduler(store: JobStore, **options: Any) -> Scheduler:
    """A scheduler with the test handlers registered under the process executor."""
    scheduler = make(store, **options)
    for name in ("pid", "async_pid", "spin", "spin_deaf", "kill_self", "exit_3", "grow"):
        scheduler.task(name, **PROCESS)(getattr(process_handlers, name))
    for name in ("raise_value_error", "unpicklable", "unstorable", "report_then_wait"):
        scheduler.task(name, **PROCESS)(getattr(process_handlers, name))
    scheduler.task("wait_for_file", **PROCESS)(process_handlers.wait_for_file)
    scheduler.task("spin_2s", timeout=2, **PROCESS)(process_handlers.spin)
    return scheduler


# -- hard stops -----------------------------------------------------------------------------


async def test_a_spinning_handler_is_killed_at_its_timeout_while_other_jobs_start_on_time(
    store: JobStore, tmp_path: Path
) -> None:
    lags: list[float] = []
    scheduler = process_scheduler(store, workers=4, process_pool=2)

    @scheduler.task("on-time")
    async def on_time(job: Job) -> None:  # on the worker's event loop
        assert job.next_run_at is not None
        lags.append((datetime.now(timezone.utc) - job.next_run_at).total_seconds())

    marker = tmp_path / "stopped"
    async with running(scheduler):
        spinner = await scheduler.schedule("spin_2s", {"stopped": str(marker)})
        pid = await reported_pid(store, spinner.id)
        started = asyncio.get_running_loop().time()
        ticks = [await scheduler.schedule("on-time", delay=0.25 * n) for n in range(1, 5)]
        for tick in ticks:  # all due while the handler spins
            assert (await scheduler.wait(tick.id, timeout=20)).status is JobStatus.COMPLETED
        failed = await scheduler.wait(spinner.id, timeout=20)
        ended = asyncio.get_running_loop().time() - started
        await gone(pid)

    assert failed.status is JobStatus.FAILED
    assert failed.last_error_type == "JobTimeout"
    assert failed.last_error == "handler exceeded its timeout of 2s"
    assert ended < 10  # 2 s, with a wide margin
    assert marker.read_text() == "timeout"  # SIGTERM ran its finally block, reason set
    assert len(lags) == 4 and max(lags) < 2, lags  # on time (milliseconds), with a wide margin


async def test_a_handler_that_ignores_sigterm_is_killed_after_the_grace(store: JobStore) -> None:
    scheduler = process_scheduler(store)
    scheduler.task("deaf", timeout=0.5, **PROCESS)(process_handlers.spin_deaf)
    async with running(scheduler):
        job = await scheduler.schedule("deaf", retry={"maxAttempts": 2, "delay": 60})
        pid = await reported_pid(store, job.id)
        doc = await wait_doc(store, job.id, status_is("pending"), timeout=20)
        await gone(pid)
    assert doc["lastErrorType"] == "JobTimeout" and doc["attempts"] == 1


async def test_cancel_kills_a_spinning_handler(store: JobStore, tmp_path: Path) -> None:
    scheduler = process_scheduler(store)
    marker = tmp_path / "stopped"
    async with running(scheduler):
        job = await scheduler.schedule("spin", {"stopped": str(marker)})
        pid = await reported_pid(store, job.id)
        assert await scheduler.cancel(job.id)
        await gone(pid)
        await wait_for(marker.exists, timeout=10)
    assert marker.read_text() == "cancelled"
    doc = await stored(store, job.id)
    assert doc["status"] == "cancelled" and "lastError" not in doc


async def test_a_lost_lease_kills_a_spinning_handler_and_writes_nothing(
    store: JobStore, tmp_path: Path
) -> None:
    scheduler = process_scheduler(store, lock_timeout=30, heartbeat_interval=0.1)
    marker = tmp_path / "stopped"
    async with running(scheduler):
        job = await scheduler.schedule("spin", {"stopped": str(marker)})
        pid = await reported_pid(store, job.id)
        token = await steal(store, job.id, "thief")
        await gone(pid)
        await wait_for(marker.exists, timeout=10)
    assert marker.read_text() == "lease_lost"
    doc = await stored(store, job.id)
    assert (doc["status"], doc["lockedBy"], doc["lockVersion"]) == ("running", "thief", token)
    assert "lastError" not in doc and doc.get("attempts", 0) == 0


# -- crashes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "how"),
    [
        ("kill_self", "the handler's process was killed by SIGKILL (exit -9)"),
        ("exit_3", "the handler's process exited with code 3"),
    ],
)
async def test_a_dying_child_fails_only_its_job_and_is_replaced(
    store: JobStore, tmp_path: Path, name: str, how: str
) -> None:
    errors: list[BaseException] = []
    scheduler = process_scheduler(store, workers=2, process_pool=2)
    scheduler.on("worker:error", errors.append)
    release = tmp_path / "release"
    async with running(scheduler):
        survivor = await scheduler.schedule("wait_for_file", {"release": str(release)})
        survivor_pid = await reported_pid(store, survivor.id)  # running in its own child
        dying = await scheduler.schedule(name)
        died = await scheduler.wait(dying.id, timeout=20)
        release.touch()
        survived = await scheduler.wait(survivor.id, timeout=20)
        after = [await scheduler.schedule("pid") for _ in range(2)]
        pids = [(await scheduler.wait(job.id, timeout=20)).result for job in after]

    assert died.status is JobStatus.FAILED
    assert died.last_error_type == "HandlerCrashed"
    assert died.last_error is not None and died.last_error.startswith(how)
    assert died.lease_expiries == 1
    assert survived.status is JobStatus.COMPLETED and survived.result == survivor_pid
    assert all(isinstance(pid, int) and pid != os.getpid() for pid in pids)
    assert errors == []  # the worker carried on without an error of its own


async def test_the_next_job_after_a_crash_runs_in_a_fresh_child(store: JobStore) -> None:
    scheduler = process_scheduler(store, process_pool=1)
    async with running(scheduler):
        first = await scheduler.wait((await scheduler.schedule("pid")).id, timeout=20)
        died = await scheduler.wait((await scheduler.schedule("kill_self")).id, timeout=20)
        after = await scheduler.wait((await scheduler.schedule("pid")).id, timeout=20)
    assert died.progress is not None and died.progress.message is not None
    dead_pid = int(died.progress.message)
    assert first.result == dead_pid  # one child ran both, until it died
    assert died.last_error_type == "HandlerCrashed"
    assert isinstance(after.result, int) and after.result != dead_pid
    assert not alive(dead_pid)


async def test_a_job_whose_child_keeps_dying_ends_as_poison(store: JobStore) -> None:
    fails: list[tuple[Job, BaseException]] = []
    scheduler = process_scheduler(store, max_lease_expiries=3)
    scheduler.on("job:fail", lambda job, error: fails.append((job, error)))
    async with running(scheduler):
        job = await scheduler.schedule("kill_self", retry={"maxAttempts": 10, "delay": 0})
        done = await scheduler.wait(job.id, timeout=30)
    assert done.status is JobStatus.FAILED
    assert done.last_error_type == "PoisonJob"
    assert done.attempts == 3 and done.lease_expiries == 3
    assert done.last_error is not None and "killed by SIGKILL" in done.last_error
    assert [type(error).__name__ for _, error in fails] == ["PoisonJob"]


# -- recycling ------------------------------------------------------------------------------


async def test_max_tasks_per_child_recycles_children(store: JobStore) -> None:
    scheduler = process_scheduler(store, process_pool=1, max_tasks_per_child=2)
    async with running(scheduler):
        pids = []
        for _ in range(6):
            job = await scheduler.schedule("pid")
            pids.append((await scheduler.wait(job.id, timeout=20)).result)
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5], pids
    assert len(set(pids)) == 3, pids


@pytest.mark.parametrize(("limit", "children"), [(1, 3), (1 << 40, 1)])
async def test_max_memory_per_child_recycles_children_over_the_limit(
    store: JobStore, limit: int, children: int
) -> None:
    """Every child is over 1 byte and none is over 1 TiB."""
    scheduler = process_scheduler(store, process_pool=1, max_memory_per_child=limit)
    async with running(scheduler):
        pids = []
        for _ in range(3):
            job = await scheduler.schedule("grow", {"mib": 1})
            pids.append((await scheduler.wait(job.id, timeout=20)).result)
    assert len(set(pids)) == children, pids


# -- results, errors, progress --------------------------------------------------------------


async def test_results_come_back_from_sync_and_async_handlers(store: JobStore) -> None:
    scheduler = process_scheduler(store)
    async with running(scheduler):
        jobs = [await scheduler.schedule(name) for name in ("pid", "async_pid")]
        done = [await scheduler.wait(job.id, timeout=20) for job in jobs]
    assert [job.status for job in done] == [JobStatus.COMPLETED] * 2
    assert all(isinstance(job.result, int) and job.result != os.getpid() for job in done)


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("raise_value_error", "ValueError", "bad value {'n': 1}"),
        ("unpicklable", "TypeError", "the handler's return value cannot be sent from its process"),
        ("unstorable", "TypeError", "the handler's return value cannot be stored"),
    ],
)
async def test_a_failing_handler_fails_its_attempt_with_its_own_error(
    store: JobStore, name: str, kind: str, message: str
) -> None:
    scheduler = process_scheduler(store)
    async with running(scheduler):
        job = await scheduler.schedule(name, {"n": 1})
        done = await scheduler.wait(job.id, timeout=20)
    doc = await stored(store, job.id)
    assert done.status is JobStatus.FAILED
    assert done.last_error_type == kind
    assert done.last_error is not None and done.last_error.startswith(message)
    assert done.lease_expiries == 0  # an error is not a crash
    if kind == "ValueError":  # the traceback is the child's
        assert 'process_handlers.py", line' in doc["lastErrorTrace"]
        assert "raise ValueError" in doc["lastErrorTrace"]


async def test_progress_from_a_child_is_stored(store: JobStore, tmp_path: Path) -> None:
    scheduler = process_scheduler(store)
    release = tmp_path / "release"
    async with running(scheduler):
        job = await scheduler.schedule("report_then_wait", {"release": str(release)})
        doc = await wait_doc(store, job.id, lambda d: bool(d.get("progress")), timeout=20)
        assert doc["status"] == "running"
        assert (doc["progress"]["percent"], doc["progress"]["message"]) == (50, "half")
        release.touch()
        done = await scheduler.wait(job.id, timeout=20)
    assert done.result == "finished"
    assert done.progress is not None
    assert (done.progress.percent, done.progress.message) == (100, "done")


# -- stopping the worker --------------------------------------------------------------------


async def test_a_graceful_stop_waits_for_running_children(store: JobStore, tmp_path: Path) -> None:
    scheduler = process_scheduler(store)
    release = tmp_path / "release"
    await scheduler.start()
    try:
        job = await scheduler.schedule("wait_for_file", {"release": str(release)})
        pid = await reported_pid(store, job.id)
        stopping = asyncio.create_task(scheduler.stop(graceful=True, timeout=30))
        await wait_for(lambda: not scheduler.is_running, timeout=10)
        assert not stopping.done()
        release.touch()
        await asyncio.wait_for(stopping, timeout=30)
    finally:
        await scheduler.stop(graceful=False)
    doc = await stored(store, job.id)
    assert (doc["status"], doc["result"]) == ("completed", pid)
    assert not alive(pid)  # the pool is closed with the worker


@pytest.mark.parametrize("graceful", [True, False], ids=["graceful-timeout", "hard"])
async def test_a_stop_kills_the_children_that_did_not_finish_and_releases_their_jobs(
    store: JobStore, tmp_path: Path, graceful: bool
) -> None:
    scheduler = process_scheduler(store)
    marker = tmp_path / "stopped"
    await scheduler.start()
    try:
        job = await scheduler.schedule("spin", {"stopped": str(marker)})
        pid = await reported_pid(store, job.id)
    finally:
        await scheduler.stop(graceful=graceful, timeout=0.5)
    assert not alive(pid)  # stop() returns once its children are gone
    assert marker.read_text() == "shutdown"
    doc = await stored(store, job.id)
    assert doc["status"] == "pending" and doc.get("attempts", 0) == 0
    assert "lockedBy" not in doc and "lastError" not in doc
