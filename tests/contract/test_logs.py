"""Contract: what the ``mongo_job_scheduler`` logger says about jobs — DEBUG at a start, INFO
when a job completes, is retried or fails, WARNING when it is quarantined — with the job's id,
name and attempt as extras, and nothing formatted when the level is off."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from mongo_job_scheduler import Job, JobStore, Retry
from mongo_job_scheduler.worker import _logs
from tests.contract.helpers import make, running

LOGGER = "mongo_job_scheduler"


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


async def test_a_completed_job_is_logged_at_info_with_its_duration(
    store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler = make(store)

    @scheduler.task("greet")
    async def greet(job: Job) -> None: ...

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        async with running(scheduler):
            job = await greet.schedule()
            await scheduler.wait(job.id, timeout=10)
    [started] = [r for r in _messages(caplog, logging.DEBUG) if "started" in r.getMessage()]
    assert started.getMessage() == f"job greet ({job.id}) started, attempt 1"
    [done] = [r for r in _messages(caplog, logging.INFO) if "completed" in r.getMessage()]
    assert done.getMessage().startswith(f"job greet ({job.id}) completed, attempt 1, in ")
    assert (done.__dict__["job_id"], done.__dict__["job_name"]) == (str(job.id), "greet")
    assert done.__dict__["attempt"] == 1


async def test_a_retry_and_a_final_failure_are_logged_at_info(
    store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler = make(store)

    @scheduler.task("flaky", retry=Retry(max_attempts=2))
    async def flaky(job: Job) -> None:
        raise RuntimeError(f"boom {job.attempts + 1}")

    with caplog.at_level(logging.INFO, logger=LOGGER):
        async with running(scheduler):
            job = await flaky.schedule()
            await scheduler.wait(job.id, timeout=10)
    infos = [r.getMessage() for r in _messages(caplog, logging.INFO)]
    assert f"job flaky ({job.id}) attempt 1 failed, retrying in 0.0s: boom 1" in infos
    assert f"job flaky ({job.id}) failed on attempt 2: boom 2" in infos
    assert not [r for r in _messages(caplog, logging.WARNING) if str(job.id) in r.getMessage()]


async def test_a_failure_log_line_is_inert_in_a_terminal(
    store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler's error with terminal escapes is logged with them escaped, on one line."""
    scheduler = make(store)
    attack = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202e\nFAKE log line"

    @scheduler.task("hostile")
    async def hostile(job: Job) -> None:
        raise RuntimeError("boom " + attack)

    with caplog.at_level(logging.INFO, logger=LOGGER):
        async with running(scheduler):
            job = await hostile.schedule()
            await scheduler.wait(job.id, timeout=10)
    [failed] = [
        r.getMessage() for r in _messages(caplog, logging.INFO) if "failed" in r.getMessage()
    ]
    for raw in ("\x1b", "\x07", "\x9b", "\u202e", "\n"):
        assert raw not in failed, (raw, failed)
    assert failed == (
        f"job hostile ({job.id}) failed on attempt 1: boom "
        "\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202e\\nFAKE log line"
    )


async def test_a_poison_job_is_a_warning(store: JobStore, caplog: pytest.LogCaptureFixture) -> None:
    scheduler = make(store, max_lease_expiries=1)
    job = await scheduler.schedule("crashy")
    [claimed] = (await store.claim("dead", 1, scheduler.config.lease / 10**6, 9)).jobs
    assert claimed.document["_id"] == job.id

    @scheduler.task("crashy")
    async def crashy(job: Job) -> None: ...

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with running(scheduler):
            await scheduler.wait(job.id, timeout=10)
    [warning] = [r for r in _messages(caplog, logging.WARNING) if str(job.id) in r.getMessage()]
    assert warning.getMessage().startswith(f"job crashy ({job.id}) quarantined as poison: ")


async def test_nothing_is_formatted_when_the_level_is_off(
    store: JobStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Any] = []
    original = _logs._extra

    def counting(job: Job) -> dict[str, Any]:
        built.append(job)
        return original(job)

    monkeypatch.setattr(_logs, "_extra", counting)
    scheduler = make(store)

    @scheduler.task("quiet")
    async def quiet(job: Job) -> None: ...

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with running(scheduler):
            job = await quiet.schedule()
            await scheduler.wait(job.id, timeout=10)
    assert built == []
    with caplog.at_level(logging.INFO, logger=LOGGER):
        async with running(scheduler):
            job = await quiet.schedule()
            await scheduler.wait(job.id, timeout=10)
    assert len(built) == 1
