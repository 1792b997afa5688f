"""The orders the job list offers: only those an index keeps for the filter in use, so a page
never makes MongoDB sort the matching jobs in memory (``tests/integration/test_query_plans.py``
explains each one)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import ValidationError

__all__ = ["LIST_SORTS", "ListSort", "list_sort", "sort_refusal"]

FINISHED = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class ListSort:
    """A column the list can be sorted on: its ``sort`` value in the URL and its header."""

    key: str
    label: str


LIST_SORTS = (
    ListSort("createdAt", "Created"),
    ListSort("name", "Name"),
    ListSort("priority", "Priority"),
    ListSort("updatedAt", "Updated"),
)
"""The orders the list offers; ``createdAt`` (newest first) is the default."""

UNINDEXED = ("nextRunAt", "lastRunAt", "status")
"""Columns no index keeps in order (the list refuses to sort on them)."""

OFFERED = (
    "createdAt or name; priority with the status filter pending alone; "
    "updatedAt with finished statuses only (completed, failed, cancelled)"
)


def sort_refusal(key: str, name: str | None, statuses: Sequence[str]) -> str | None:
    """Why the list cannot be sorted on ``key`` with these filters, or ``None`` if it can."""
    if key in ("createdAt", "name"):
        return None
    if key == "priority":
        if list(statuses) == ["pending"]:
            return None
        return (
            "sorting on priority needs the status filter pending alone: the index that keeps "
            f"that order (the claim order) holds pending jobs only. Sort on {OFFERED}"
        )
    if key == "updatedAt":
        if statuses and set(statuses) <= FINISHED:
            return None
        return (
            "sorting on updatedAt needs a status filter of finished statuses only (completed, "
            "failed, cancelled): the index that keeps that order holds finished jobs only. "
            f"Sort on {OFFERED}"
        )
    if key in UNINDEXED:
        return (
            f"cannot sort on {key!r}: no index keeps jobs in that order, so MongoDB would sort "
            f"every matching job in memory. Sort on {OFFERED}"
        )
    return f"cannot sort on {key!r}; sort on {OFFERED}"


def list_sort(
    key: str, direction: str, name: str | None, statuses: Sequence[str]
) -> tuple[str, str]:
    """The ``get_jobs(sort=...)`` of the list's ``sort`` and ``dir``: creation order is the
    ``by_name`` index within one name, else the job id (which starts with its creation
    second). :class:`ValidationError` (field ``sort``) for an order no index keeps."""
    refusal = sort_refusal(key, name, statuses)
    if refusal is not None:
        raise ValidationError("sort", refusal)
    if key == "createdAt" and name is None:
        return ("_id", direction)
    return (key, direction)
