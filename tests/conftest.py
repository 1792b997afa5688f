"""Shared fixtures: a real mongod (never a mock) for the whole session, fresh databases per test,
and the ``store`` fixture that runs each contract test over both stores."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient

from mongo_job_scheduler import InMemoryJobStore, JobStore, MongoJobStore
from mongo_job_scheduler._mongod import LocalMongod


@pytest.fixture(scope="session")
def mongodb_uri() -> Iterator[str]:
    """``MONGODB_URI`` if set, else a throwaway single-node replica set from the wheel."""
    uri = os.environ.get("MONGODB_URI")
    if uri:
        yield uri
        return
    server = LocalMongod()
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def db_name() -> str:
    return f"mjs_test_{uuid.uuid4().hex[:12]}"


def with_path(uri: str, database: str, userinfo: str = "") -> str:
    """``uri`` naming ``database`` in its path (and with ``userinfo@`` before its hosts)."""
    scheme, _, rest = uri.partition("://")
    hosts_and_path, _, query = rest.partition("?")
    hosts = hosts_and_path.partition("/")[0].rpartition("@")[2]
    user = f"{userinfo}@" if userinfo else ""
    return f"{scheme}://{user}{hosts}/{database}" + (f"?{query}" if query else "")


@pytest.fixture
def database_uri(mongodb_uri: str, db_name: str) -> Iterator[str]:
    """``mongodb_uri`` naming a fresh database (``db_name``) in its path, dropped afterwards:
    for programs that take their database from ``MONGODB_URI``."""
    yield with_path(mongodb_uri, db_name)
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    try:
        client.drop_database(db_name)
    finally:
        client.close()


@pytest.fixture
async def mongo_db(mongodb_uri: str, db_name: str) -> AsyncIterator[Any]:
    """A fresh database on the real server, dropped afterwards."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    try:
        yield client[db_name]
    finally:
        await client.drop_database(db_name)
        await client.close()


@pytest.fixture
def sync_db(mongodb_uri: str, db_name: str) -> Iterator[Any]:
    """The same fresh database through the sync client."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    try:
        yield client[db_name]
    finally:
        client.drop_database(db_name)
        client.close()


@pytest.fixture(params=["memory", "mongo"])
async def store(
    request: pytest.FixtureRequest, mongodb_uri: str, db_name: str
) -> AsyncIterator[JobStore]:
    """Each contract test runs once per store."""
    if request.param == "memory":
        if request.node.get_closest_marker("mongo_only"):
            pytest.skip("MongoJobStore only")
        yield InMemoryJobStore()
        return
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    try:
        yield MongoJobStore(client[db_name])
    finally:
        await client.drop_database(db_name)
        await client.close()


async def wait_for(
    predicate: Callable[[], Any | Awaitable[Any]], timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns a truthy value or ``timeout``
    seconds pass (then fail the test)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
