"""The scheduler's options: one validated configuration, changed only through ``configure``
before start, and the names its workers claim."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mongo_job_scheduler import ConfigurationError, InMemoryJobStore, Scheduler


def test_options_are_validated_once_into_one_configuration() -> None:
    scheduler = Scheduler(
        InMemoryJobStore(), workers=3, lock_timeout=60, retention={"failed": 3600}
    )
    config = scheduler.config
    assert config.workers == 3
    assert config.lease == timedelta(seconds=60)
    assert config.heartbeat_interval == 5.0
    assert config.retention == {"failed": timedelta(hours=1)}
    assert scheduler.lock_timeout == 60
    assert scheduler.workers == 3


async def test_configure_sets_store_and_workers_before_start_only() -> None:
    scheduler = Scheduler(workers=1)
    assert scheduler.store is None
    store = InMemoryJobStore()
    scheduler.configure(store=store, workers=4)
    assert scheduler.store is store
    assert scheduler.workers == 4
    with pytest.raises(ConfigurationError, match="workers"):
        scheduler.configure(workers=0)
    with pytest.raises(ConfigurationError, match="store"):
        scheduler.configure(store="not a store")  # type: ignore[arg-type]
    async with scheduler:
        with pytest.raises(ConfigurationError, match="stop the scheduler"):
            scheduler.configure(workers=2)
    assert scheduler.workers == 4


def test_handled_names_follow_the_registered_tasks() -> None:
    scheduler = Scheduler(InMemoryJobStore())
    assert scheduler.handled_names() == []

    @scheduler.task("b-task")
    def b(job: object) -> None: ...

    @scheduler.task("a-task")
    async def a(job: object) -> None: ...

    assert scheduler.handled_names() == ["a-task", "b-task"]
    scheduler.handler = lambda job: None
    assert scheduler.handled_names() is None
