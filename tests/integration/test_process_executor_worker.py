"""The process executor in a worker process run through the CLI: a handler's child dies with
its worker, and a signal sent to the whole process group (Ctrl-C in a terminal, a service
manager stopping a unit) reaches the children without ending their jobs: the worker decides,
and its graceful stop lets them finish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from tests.conftest import wait_for
from tests.contract.helpers import alive, reported_pid, stored

from mongo_job_scheduler import MongoJobStore, Scheduler

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture
async def producer(mongodb_uri: str, db_name: str) -> AsyncIterator[Scheduler]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    try:
        yield Scheduler(MongoJobStore(client[db_name]))
    finally:
        await client.drop_database(db_name)
        await client.close()


@pytest.fixture
def worker(mongodb_uri: str, db_name: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A CLI worker of ``tests.process_app`` in a process group of its own."""
    log = (tmp_path / "worker.log").open("wb")
    popen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mongo_job_scheduler",
            "--mongodb-uri",
            mongodb_uri,
            "--database",
            db_name,
            "worker",
            "tests.process_app:scheduler",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield popen
    finally:
        if popen.poll() is None:
            popen.kill()
        popen.wait(timeout=30)
        log.close()


async def test_a_handlers_child_dies_with_its_worker(
    producer: Scheduler, worker: subprocess.Popen[bytes]
) -> None:
    store = producer.store
    job = await producer.schedule("spin")
    pid = await reported_pid(store, job.id, timeout=60)
    assert pid != worker.pid and alive(pid)
    worker.kill()
    await wait_for(lambda: not alive(pid), timeout=10)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_signal_to_the_process_group_lets_running_jobs_finish(
    producer: Scheduler, worker: subprocess.Popen[bytes], tmp_path: Path, signum: int
) -> None:
    store = producer.store
    release = tmp_path / "release"
    job = await producer.schedule("wait_for_file", {"release": str(release)})
    pid = await reported_pid(store, job.id, timeout=60)
    os.killpg(worker.pid, signum)  # the worker and its children, as a terminal or systemd does
    await wait_for(lambda: b"stop" in (tmp_path / "worker.log").read_bytes(), timeout=30)
    assert alive(pid)  # the child ignored the signal: its worker decides
    release.touch()
    await wait_for(lambda: worker.poll() is not None, timeout=60)
    assert worker.returncode == 0
    doc = await stored(store, job.id)  # type: ignore[arg-type]
    assert (doc["status"], doc["result"]) == ("completed", pid)
    assert not alive(pid)
