"""Fixtures of the dashboard tests: the app served by uvicorn on 127.0.0.1 (in a thread with its
own event loop, on a real MongoDB), a sync scheduler to seed jobs, and Debian's Chromium driven
by Playwright."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
pytest.importorskip("uvicorn", reason="the dashboard extra is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")

import uvicorn  # noqa: E402
from prometheus_client import CollectorRegistry, Counter  # noqa: E402
from pymongo import AsyncMongoClient, MongoClient  # noqa: E402

from mongo_job_scheduler import MongoJobStore, Scheduler  # noqa: E402
from mongo_job_scheduler import sync as mjs_sync  # noqa: E402
from mongo_job_scheduler.dashboard import create_app  # noqa: E402

CHROMIUM = os.environ.get("DASHBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TOKEN = "test-dashboard-token-" + uuid.uuid4().hex
REFRESH_SECONDS = 0.5

T = TypeVar("T")


@dataclass
class DashboardServer:
    """The running dashboard: its URL, the database it shows, and a way to run coroutines on
    the server's own scheduler (in the server's event loop)."""

    base_url: str
    token: str
    db_name: str
    sync_db: Any
    jobs: mjs_sync.Scheduler
    loop: asyncio.AbstractEventLoop
    scheduler: Scheduler
    requests_counter: Counter
    _server: uvicorn.Server = field(repr=False)

    def run(self, make: Callable[[Scheduler], Coroutine[Any, Any, T]], timeout: float = 10) -> T:
        """Run ``make(scheduler)`` in the server's loop and return its result."""
        future = asyncio.run_coroutine_threadsafe(make(self.scheduler), self.loop)
        return future.result(timeout)

    def client(self, **kwargs: Any) -> httpx.Client:
        return serving_client(self.base_url, **kwargs)


def serving_client(base_url: str, **kwargs: Any) -> httpx.Client:
    """An HTTP client of the dashboard at ``base_url`` that does not follow redirects."""
    return httpx.Client(base_url=base_url, follow_redirects=False, timeout=10, **kwargs)


class _ServerThread(threading.Thread):
    def __init__(self, uri: str, db_name: str, sock: socket.socket, registry: Any) -> None:
        super().__init__(name="dashboard-uvicorn", daemon=True)
        self.uri = uri
        self.db_name = db_name
        self.sock = sock
        self.registry = registry
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.scheduler: Scheduler | None = None
        self.server: uvicorn.Server | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the fixture
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.uri)
        try:
            self.scheduler = Scheduler(MongoJobStore(client[self.db_name]))
            app = create_app(
                self.scheduler,
                token=TOKEN,
                refresh_seconds=REFRESH_SECONDS,
                title="Test dashboard",
                metrics_registry=self.registry,
            )
            config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
            self.server = uvicorn.Server(config)
            # The socket already listens: connections made from now on wait in its backlog.
            self.ready.set()
            await self.server.serve(sockets=[self.sock])
        finally:
            await client.close()


@contextlib.contextmanager
def _serve(mongodb_uri: str, db_name: str) -> Iterator[tuple[str, _ServerThread, Counter]]:
    """A dashboard on a free port of 127.0.0.1 over ``db_name``: its base URL, its thread and
    the marker counter of its metrics."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.listen(128)
    registry = CollectorRegistry()
    counter = Counter(
        "dashboard_test_marker", "A series the /metrics test looks for.", [], registry=registry
    )
    counter.inc()
    thread = _ServerThread(mongodb_uri, db_name, sock, registry)
    thread.start()
    try:
        if not thread.ready.wait(30):
            raise RuntimeError("the dashboard server did not start within 30 s")
        if thread.error is not None:
            raise RuntimeError("the dashboard server failed to start") from thread.error
        assert thread.loop is not None and thread.scheduler is not None
        assert thread.server is not None
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
        assert health.status_code == 200, health.text
        yield f"http://127.0.0.1:{port}", thread, counter
    finally:
        if thread.server is not None:
            thread.server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture(scope="module")
def dashboard(mongodb_uri: str) -> Iterator[DashboardServer]:
    """The dashboard served on a free port of 127.0.0.1 over a fresh database."""
    db_name = f"mjs_dash_{uuid.uuid4().hex[:12]}"
    sync_client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    try:
        with _serve(mongodb_uri, db_name) as (base_url, thread, counter):
            assert thread.loop is not None and thread.scheduler is not None
            assert thread.server is not None
            sync_db = sync_client[db_name]
            yield DashboardServer(
                base_url=base_url,
                token=TOKEN,
                db_name=db_name,
                sync_db=sync_db,
                jobs=mjs_sync.Scheduler(mjs_sync.MongoJobStore(sync_db)),
                loop=thread.loop,
                scheduler=thread.scheduler,
                requests_counter=counter,
                _server=thread.server,
            )
    finally:
        sync_client.drop_database(db_name)
        sync_client.close()


@pytest.fixture(scope="module")
def other_dashboard(mongodb_uri: str, dashboard: DashboardServer) -> Iterator[str]:
    """The base URL of a second dashboard process (its own app, scheduler and client) over
    the same database and token as ``dashboard``."""
    with _serve(mongodb_uri, dashboard.db_name) as (base_url, _thread, _counter):
        yield base_url


@pytest.fixture(autouse=True)
def _empty_database(dashboard: DashboardServer) -> None:
    """Every test starts with no jobs and no paused names."""
    for name in dashboard.sync_db.list_collection_names():
        dashboard.sync_db[name].delete_many({})


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (skips when it is not installed)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium package to run browser tests"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    playwright = sync_api.sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser: Any, dashboard: DashboardServer) -> Iterator[Any]:
    """A fresh browser context (no cookies) with one page."""
    context = browser.new_context(base_url=dashboard.base_url)
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def signed_in(page: Any, dashboard: DashboardServer) -> Any:
    """A page whose context has signed in with the token."""
    page.goto("/login")
    page.fill("#token", dashboard.token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{dashboard.base_url}/")
    return page
