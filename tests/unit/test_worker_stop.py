"""The worker's way of stopping an async handler: it runs in the execution's own task, which is
cancelled while the handler runs and given its cancellations back afterwards."""

from __future__ import annotations

import asyncio
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from mongo_job_scheduler.worker._running import uncancel as _uncancel


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tasks count cancellations from 3.11")
async def test_the_stops_of_a_handler_that_carried_on_are_taken_back() -> None:
    execution: Any = SimpleNamespace(task=None, cancels=0)
    caught = asyncio.Event()

    async def execute() -> int:
        try:
            await asyncio.sleep(60)  # the handler, stopped twice (say a timeout, then shutdown)
        except asyncio.CancelledError:
            caught.set()  # ... and it carries on
        _uncancel(execution)
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    execution.task = asyncio.create_task(execute())
    await asyncio.sleep(0)  # the task is now waiting inside the handler
    for _ in range(2):
        execution.cancels += 1
        execution.task.cancel()
    assert await asyncio.wait_for(execution.task, timeout=10) == 0
    assert caught.is_set()
    assert execution.cancels == 0
