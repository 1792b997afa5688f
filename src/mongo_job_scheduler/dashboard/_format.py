"""Formatting of stored values for the dashboard's templates (all output is escaped later)."""

from __future__ import annotations

import base64
import enum
import json
import math
import uuid
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from bson import ObjectId

__all__ = [
    "compact_json",
    "document_for_display",
    "fmt_datetime",
    "fmt_duration",
    "pretty_json",
]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return aware.astimezone(timezone.utc).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (ObjectId, uuid.UUID)):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$binary": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return str(value)


def pretty_json(value: Any) -> str:
    """Indented JSON of a stored value (datetimes ISO, ObjectIds as strings)."""
    return json.dumps(value, default=_json_default, indent=2, ensure_ascii=False)


def compact_json(value: Any, limit: int = 80) -> str:
    """One-line JSON of ``value``, cut to ``limit`` characters."""
    if value is None:
        return ""
    text = json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt_datetime(value: Any) -> str:
    """``2024-05-01 12:00:00Z`` (UTC), or an em dash for no value."""
    if not isinstance(value, datetime):
        return "—"
    aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    return aware.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def fmt_duration(value: timedelta | float | None) -> str:
    """A short human duration: ``850 ms``, ``4.2 s``, ``3 min 5 s``, ``2 h 10 min``, ``3 d 4 h``."""
    if value is None:
        return "—"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds):
        return "—"
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def document_for_display(document: Mapping[str, Any]) -> dict[str, Any]:
    """The stored document as a plain dict (``_id`` first)."""
    ordered: dict[str, Any] = {}
    if "_id" in document:
        ordered["_id"] = document["_id"]
    for key, value in document.items():
        if key != "_id":
            ordered[key] = value
    return ordered
