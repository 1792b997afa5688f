"""Rate limits: at most ``limit`` job starts per ``period`` for one job name, fleet-wide."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ._durations import MAX_INT64, duration_in, to_seconds
from ._errors import ValidationError

__all__ = ["RateLimit", "rate_limit_for"]

_KEYS = {"limit", "period", "periodMs"}


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` starts of jobs with one name within any ``period`` (a sliding
    window), counted across every worker. Jobs over the budget stay pending until the window
    allows them; nothing polls faster because of them.

    Given as ``rate_limit={"limit": 10, "period": 60}`` (period in seconds or a
    ``timedelta``; ``{"limit": 10, "periodMs": 60000}`` in milliseconds); stored on the job as
    ``rateLimit: {"limit": 10, "periodMs": 60000}``.
    """

    limit: int
    period: timedelta

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValidationError(
                "rate_limit.limit", f"must be a positive integer, got {self.limit!r}"
            )
        if self.limit > MAX_INT64:
            raise ValidationError("rate_limit.limit", f"at most {MAX_INT64} (64-bit)")
        if not isinstance(self.period, timedelta):
            seconds = to_seconds("rate_limit.period", self.period)
            object.__setattr__(self, "period", timedelta(seconds=seconds))
        if self.period < timedelta(milliseconds=1):
            raise ValidationError("rate_limit.period", "must be at least 1 ms")

    @classmethod
    def parse(cls, value: Any) -> RateLimit:
        """Build a limit from ``rate_limit=`` input: a ``RateLimit`` or a mapping whose
        ``period`` is a ``timedelta`` or seconds (``periodMs``: milliseconds; see
        :func:`duration_in` for the numbers refused as probably milliseconds)."""
        if isinstance(value, RateLimit):
            return value
        if not isinstance(value, Mapping):
            raise ValidationError("rate_limit", f"expected a mapping, got {type(value).__name__}")
        unknown = set(value) - _KEYS
        if unknown:
            raise ValidationError(
                "rate_limit",
                f"unknown key(s) {sorted(map(str, unknown))}; allowed: limit, period, periodMs",
            )
        if "limit" not in value:
            raise ValidationError("rate_limit.limit", "is required")
        period = duration_in(value, "rate_limit", "period", minimum=timedelta(milliseconds=1))
        if period is None:
            raise ValidationError(
                "rate_limit.period", "is required (seconds or a timedelta; periodMs: milliseconds)"
            )
        return cls(limit=value["limit"], period=period)

    @classmethod
    def from_document(cls, value: Any) -> RateLimit | None:
        """Read a stored ``rateLimit`` field (``None`` if absent or unusable)."""
        if not isinstance(value, Mapping):
            return None
        limit, period = value.get("limit"), value.get("periodMs")
        if not isinstance(limit, int) or not isinstance(period, (int, float)):
            return None
        if limit < 1 or not math.isfinite(period) or period < 1:
            return None
        return cls(limit, timedelta(milliseconds=period))

    def to_document(self) -> dict[str, Any]:
        """The stored form."""
        return {"limit": self.limit, "periodMs": round(self.period / timedelta(milliseconds=1))}

    @property
    def period_ms(self) -> int:
        return round(self.period / timedelta(milliseconds=1))


def rate_limit_for(
    doc: Mapping[str, Any], task_limits: Mapping[str, RateLimit] | None
) -> RateLimit | None:
    """The rate limit a start of the stored job ``doc`` counts against: the limit of its
    name's task in ``task_limits`` (the claiming scheduler's), else the job's own stored
    ``rateLimit``; ``None`` when neither applies."""
    if task_limits:
        task_limit = task_limits.get(str(doc.get("name")))
        if task_limit is not None:
            return task_limit
    return RateLimit.from_document(doc.get("rateLimit"))
