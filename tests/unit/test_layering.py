"""The package's layering rules, checked on its source: decisions are pure, the worker and the
scheduler reach MongoDB only through the store seam, and the worker stays readable."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "mongo_job_scheduler"

NO_DRIVER = [
    "scheduler.py",
    "tasks.py",
    "_config.py",
    "_outcomes.py",
    *(f"worker/{p.name}" for p in sorted((PACKAGE / "worker").glob("*.py"))),
]
"""Modules that must not import the MongoDB driver (``pymongo``, ``bson``): they talk to a
``JobStore``, which classifies its own errors and hands back plain values."""

PURE = ["_outcomes.py", "_cron.py", "repeat.py", "retry.py", "rate_limit.py", "_durations.py"]
"""Decision and scheduling maths: no I/O, no clock, no event loop."""
IMPURE_MODULES = {"asyncio", "pymongo", "socket", "time", "threading", "subprocess", "os"}

LONGEST_FUNCTION = 60
LONGEST_CLASS = 400


def imported_modules(relative: str) -> set[str]:
    """The top-level names of the modules ``relative`` imports at run time (imports under
    ``if TYPE_CHECKING:`` do not count)."""
    tree = ast.parse((PACKAGE / relative).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("relative", NO_DRIVER)
def test_the_worker_and_scheduler_import_no_driver(relative: str) -> None:
    assert not imported_modules(relative) & {"pymongo", "bson", "motor"}


@pytest.mark.parametrize("relative", PURE)
def test_decisions_and_scheduling_maths_do_no_io(relative: str) -> None:
    assert not imported_modules(relative) & IMPURE_MODULES


@pytest.mark.parametrize("path", sorted((PACKAGE / "worker").glob("*.py")), ids=lambda p: p.name)
def test_the_worker_reads_in_one_sitting(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            assert length <= LONGEST_FUNCTION, f"{node.name} has {length} lines"
        elif isinstance(node, ast.ClassDef):
            length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            assert length <= LONGEST_CLASS, f"class {node.name} has {length} lines"


def test_the_checks_see_a_violation() -> None:
    """The import check reads real imports (guards the checks themselves)."""
    assert "pymongo" in imported_modules("stores/mongo.py")
    assert "asyncio" in imported_modules("worker/_worker.py")
