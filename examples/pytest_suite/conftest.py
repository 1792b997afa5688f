"""Fixtures of the app's suite, on top of the plugin's (``mjs_scheduler``: a scheduler on a
fresh database of a throwaway mongod, or of MONGODB_URI's server)."""

from __future__ import annotations

import pytest
from signup import Outbox, register

from mongo_job_scheduler import Scheduler


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def scheduler(mjs_scheduler: Scheduler, outbox: Outbox) -> Scheduler:
    """The plugin's scheduler with the app's tasks registered (not started: drain() runs it)."""
    register(mjs_scheduler, outbox)
    return mjs_scheduler
