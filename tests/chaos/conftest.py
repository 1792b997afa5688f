"""Chaos scenarios run as separate worker processes through the CLI; see ``harness.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.harness import Fleet


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.chaos)
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def fleet(mongodb_uri: str, db_name: str, tmp_path: Path) -> Iterator[Fleet]:
    """Worker processes on the session's replica set, in a fresh database; killed at the end
    whatever happens."""
    fleet = Fleet(mongodb_uri, db_name, tmp_path)
    try:
        yield fleet
    finally:
        fleet.kill_leftovers()
