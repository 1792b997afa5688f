"""Helpers importable by tests: ``from tests.helpers import wait_for, eventually``."""

from __future__ import annotations

import http.client
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

from tests.conftest import wait_for, with_path

__all__ = ["NotMetInTime", "eventually", "wait_for", "wait_until_serving", "with_path"]

T = TypeVar("T")


class NotMetInTime(AssertionError):
    """What :func:`eventually` raises when its condition is still false at the deadline (an
    ``AssertionError`` the predicate itself raises goes through unchanged)."""


def eventually(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns a truthy value, or fail after ``timeout`` seconds
    (the blocking twin of :func:`wait_for`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise NotMetInTime(f"condition not met within {timeout}s")
        time.sleep(interval)


def wait_until_serving(base: str, process: subprocess.Popen[str]) -> None:
    """Return once ``base``/healthz answers (the server binds after its start line)."""
    deadline = time.monotonic() + 30
    while True:
        connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=2)
        try:
            connection.request("GET", "/healthz", headers={"Host": "dash.example"})
            connection.getresponse().read()
            return
        except OSError:
            assert process.poll() is None, "the dashboard exited"
            assert time.monotonic() < deadline, "the dashboard did not come up"
            time.sleep(0.05)  # polling a server that is starting: nothing to wait on
        finally:
            connection.close()
