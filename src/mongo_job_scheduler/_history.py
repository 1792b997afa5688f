"""The attempt history kept on each job (the ``history`` field, docs/schema.md): pure rules,
no I/O.

Every write that ends an attempt appends one entry and keeps the last :data:`HISTORY_LIMIT`:
the outcome write (carrying an :class:`Ending`), the release at shutdown, a cancel of a running
job, and the claim that takes over an expired lease. The entry's per-attempt values come from
the job document as it is before that write: ``lastRunAt`` (when the attempt was claimed),
``lockedBy`` and ``lockVersion``; the :class:`Ending` adds the outcome, the error and the retry
delay. The MongoDB stores build the same entry on the server in the update itself
(``stores/_mongo_common``), so grouped outcome writes stay grouped; the in-memory store and the
worker's view of a written job build it with :func:`entry` and :func:`appended`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .job import AttemptOutcome

__all__ = [
    "HISTORY_LIMIT",
    "MAX_HISTORY_ERROR_LENGTH",
    "MAX_HISTORY_ERROR_TYPE_LENGTH",
    "Ending",
    "appended",
    "entry",
]

HISTORY_LIMIT = 20
"""Entries kept in ``history``: the last attempts, oldest first."""
MAX_HISTORY_ERROR_LENGTH = 500
"""Characters of an error message kept in an entry (``lastError`` keeps up to 4000)."""
MAX_HISTORY_ERROR_TYPE_LENGTH = 200
"""Characters of an exception type name kept in an entry."""


@dataclass(frozen=True)
class Ending:
    """How an attempt ended, as the write that ends it records it: the entry's values that do
    not come from the job document."""

    outcome: AttemptOutcome
    error: str | None = None
    error_type: str | None = None
    retry_delay_ms: int | None = None

    @classmethod
    def of(
        cls,
        outcome: AttemptOutcome,
        error: str | None = None,
        error_type: str | None = None,
        retry_delay: timedelta | None = None,
    ) -> Ending:
        """An ending with the error and its type cut to their bounds, and the retry delay in
        whole milliseconds (never negative)."""
        delay = None
        if retry_delay is not None:
            delay = max(0, retry_delay // timedelta(milliseconds=1))
        return cls(
            outcome,
            None if error is None else error[:MAX_HISTORY_ERROR_LENGTH],
            None if error_type is None else error_type[:MAX_HISTORY_ERROR_TYPE_LENGTH],
            delay,
        )

    def fields(self) -> dict[str, Any]:
        """The entry's fields given as values (the same on every job of a grouped write):
        ``outcome``, then ``error``, ``errorType`` and ``retryDelayMs`` when set."""
        out: dict[str, Any] = {"outcome": self.outcome.value}
        if self.error is not None:
            out["error"] = self.error
        if self.error_type is not None:
            out["errorType"] = self.error_type
        if self.retry_delay_ms is not None:
            out["retryDelayMs"] = self.retry_delay_ms
        return out


def entry(doc: Mapping[str, Any], ending: Ending, ended_at: datetime) -> dict[str, Any]:
    """The entry of the attempt that ``doc`` (the job as stored before the write that ends
    it) is running, ended at ``ended_at``; fields in the order the server builds them, and
    those the document lacks left out."""
    given = ending.fields()
    out: dict[str, Any] = {"outcome": given.pop("outcome")}
    started = doc.get("lastRunAt")
    if started is not None:
        out["startedAt"] = started
    out["endedAt"] = ended_at
    if isinstance(started, datetime):
        out["durationMs"] = (ended_at - started) // timedelta(milliseconds=1)
    for name in ("lockedBy", "lockVersion"):
        if doc.get(name) is not None:
            out[name] = doc[name]
    out.update(given)
    return out


def appended(history: Any, new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``history`` (as stored: anything that is not a list counts as empty) with ``new`` at
    its end, cut to the last :data:`HISTORY_LIMIT` entries."""
    kept = list(history) if isinstance(history, list) else []
    return [*kept, dict(new)][-HISTORY_LIMIT:]
