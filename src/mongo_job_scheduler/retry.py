"""Retry policies: how many executions a job gets and how long to wait between them (pure)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from ._durations import MAX_DURATION, MAX_INT64, Duration, duration_in, to_seconds
from ._errors import ValidationError

__all__ = ["Backoff", "Retry"]

Backoff = Literal["fixed", "linear", "exponential"]
_BACKOFFS = ("fixed", "linear", "exponential")
_STORED_KEYS = {"maxAttempts", "delay", "backoff", "maxDelay", "jitter"}
_STORED_AS = {"delay": "delayMs", "maxDelay": "maxDelayMs"}
"""Stored keys read under another name: the stored durations are milliseconds."""
_KEYS = _STORED_KEYS | {"delayMs", "maxDelayMs"}


@dataclass(frozen=True)
class Retry:
    """A retry policy, stored with the job as data so every worker computes the same delays.

    ``max_attempts`` is the total number of executions (``Retry(3)`` runs at most 3 times).
    ``delay`` is the base wait before a retry; ``backoff`` chooses how it grows:

    * ``"fixed"``: ``delay`` every time;
    * ``"linear"``: ``delay * n`` before the n-th retry;
    * ``"exponential"``: ``delay * 2 ** (n - 1)`` before the n-th retry.

    ``max_delay`` caps the wait; ``jitter=True`` draws the wait uniformly from ``[0, wait]``
    ("full jitter"), which spreads retries of many jobs failing together.

    Given as ``retry={"maxAttempts": 5, "delay": 1, "backoff": "exponential", "maxDelay":
    60}`` (seconds or ``timedelta``; ``delayMs`` and ``maxDelayMs`` take milliseconds).
    Stored form (the Node library's ``retry`` field, milliseconds):
    ``{"maxAttempts": 5, "delay": 1000, "backoff": "exponential", "maxDelay": 60000,
    "jitter": true}``.
    """

    max_attempts: int = 1
    delay: timedelta = timedelta(0)
    backoff: Backoff = "fixed"
    max_delay: timedelta | None = None
    jitter: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ValidationError("retry.maxAttempts", "expected an integer")
        if self.max_attempts < 1:
            raise ValidationError("retry.maxAttempts", f"must be >= 1, got {self.max_attempts}")
        if self.max_attempts > MAX_INT64:
            raise ValidationError("retry.maxAttempts", f"at most {MAX_INT64} (64-bit)")
        if not isinstance(self.delay, timedelta):
            object.__setattr__(
                self,
                "delay",
                timedelta(seconds=to_seconds("retry.delay", self.delay, allow_zero=True)),
            )
        elif self.delay < timedelta(0):
            raise ValidationError("retry.delay", "must be >= 0")
        if self.backoff not in _BACKOFFS:
            raise ValidationError("retry.backoff", f"must be one of {', '.join(_BACKOFFS)}")
        if self.max_delay is not None and not isinstance(self.max_delay, timedelta):
            seconds = to_seconds("retry.maxDelay", self.max_delay, allow_zero=True)
            object.__setattr__(self, "max_delay", timedelta(seconds=seconds))
        if self.max_delay is not None and self.max_delay < timedelta(0):
            raise ValidationError("retry.maxDelay", "must be >= 0")
        if not isinstance(self.jitter, bool):
            raise ValidationError("retry.jitter", "expected a bool")

    @classmethod
    def parse(cls, value: Any) -> Retry:
        """Build a policy from ``retry=`` input: a ``Retry``, an int (total executions), or a
        mapping whose ``delay`` and ``maxDelay`` are ``timedelta`` or seconds (``delayMs`` and
        ``maxDelayMs``: milliseconds; see :func:`duration_in` for the numbers refused as
        probably milliseconds). Unknown keys are an error."""
        if isinstance(value, Retry):
            return value
        if isinstance(value, bool):
            raise ValidationError("retry", "expected an int, a mapping or a Retry, got bool")
        if isinstance(value, int):
            if value < 0:
                raise ValidationError("retry", f"must be >= 0 executions, got {value}")
            return cls(max_attempts=max(1, value))
        if isinstance(value, Mapping):
            unknown = set(value) - _KEYS
            if unknown:
                raise ValidationError(
                    "retry", f"unknown key(s) {sorted(map(str, unknown))}; allowed: {sorted(_KEYS)}"
                )
            if "maxAttempts" not in value:
                raise ValidationError("retry.maxAttempts", "is required")
            delay = duration_in(value, "retry", "delay", allow_zero=True)
            max_delay = duration_in(value, "retry", "maxDelay", allow_zero=True)
            max_attempts = value["maxAttempts"]
            if isinstance(max_attempts, float) and max_attempts.is_integer():
                max_attempts = int(max_attempts)
            return cls(
                max_attempts=max_attempts,
                delay=timedelta(0) if delay is None else delay,
                backoff=value.get("backoff", "fixed"),
                max_delay=max_delay,
                jitter=value.get("jitter", False),
            )
        raise ValidationError(
            "retry", f"expected an int, a mapping or a Retry, got {type(value).__name__}"
        )

    @classmethod
    def from_document(cls, value: Any) -> Retry | None:
        """Read a stored ``retry`` field leniently (documents may come from the Node library)."""
        if value is None:
            return None
        try:
            if isinstance(value, Mapping):
                known = {_STORED_AS.get(k, k): v for k, v in value.items() if k in _STORED_KEYS}
                known.setdefault("maxAttempts", 1)
                if not isinstance(known.get("delayMs", 0), (int, float)):
                    known.pop("delayMs")  # the Node library allowed functions; BSON drops them
                return cls.parse(known)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return cls.parse(int(value))
        except ValidationError:
            return None
        return None

    def to_document(self) -> dict[str, Any]:
        """The stored (Node-compatible) form, durations in milliseconds."""
        doc: dict[str, Any] = {
            "maxAttempts": self.max_attempts,
            "delay": round(self.delay / timedelta(milliseconds=1)),
        }
        if self.backoff != "fixed":
            doc["backoff"] = self.backoff
        if self.max_delay is not None:
            doc["maxDelay"] = round(self.max_delay / timedelta(milliseconds=1))
        if self.jitter:
            doc["jitter"] = True
        return doc

    def delay_for(self, attempt: int, *, rng: random.Random | None = None) -> timedelta:
        """The wait before the retry that follows failed execution number ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError("attempt is 1-based")
        base = self.delay.total_seconds()
        if self.backoff == "linear":
            seconds = base * attempt
        elif self.backoff == "exponential":
            seconds = base * (2.0 ** min(attempt - 1, 62))
        else:
            seconds = base
        if self.max_delay is not None:
            seconds = min(seconds, self.max_delay.total_seconds())
        seconds = min(seconds, MAX_DURATION.total_seconds())  # uncapped exponentials overflow
        if self.jitter:
            seconds = (rng or random).uniform(0.0, seconds)
        return timedelta(seconds=seconds)

    def allows_another(self, failed_attempts: int) -> bool:
        """Whether a job that has failed ``failed_attempts`` times may run again."""
        return failed_attempts < self.max_attempts


def parse_duration_field(field: str, value: Duration | None) -> timedelta | None:
    """Validate an optional positive duration option (``timeout``, ``max_execution``)."""
    if value is None:
        return None
    return timedelta(seconds=to_seconds(field, value))
