"""Helpers importable by tests: ``from tests.helpers import wait_for``."""

from tests.conftest import wait_for

__all__ = ["wait_for"]
