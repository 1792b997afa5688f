"""Serving an ASGI app for a test: uvicorn on a free port of 127.0.0.1, in a thread with its
own event loop, the app built inside that loop (so its MongoDB client lives there)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import uvicorn

Build = Callable[[], AbstractAsyncContextManager[Any]]
"""Makes the app to serve (entered in the server's loop, left when it stops)."""


@contextlib.contextmanager
def served(build: Build) -> Iterator[str]:
    """The app ``build`` makes, served until the block ends; its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections made from now on wait in the backlog
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        async with build() as app:
            config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
            state["server"] = uvicorn.Server(config)
            ready.set()
            await state["server"].serve(sockets=[sock])

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test
            state["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, name="test-uvicorn", daemon=True)
    thread.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the server did not start within 30 s")
        if "error" in state:
            raise RuntimeError("the server failed to start") from state["error"]
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        if "server" in state:
            state["server"].should_exit = True
        thread.join(15)
        sock.close()
