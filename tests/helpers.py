"""Helpers importable by tests: ``from tests.helpers import wait_for, eventually``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tests.conftest import wait_for

__all__ = ["NotMetInTime", "eventually", "wait_for"]

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
